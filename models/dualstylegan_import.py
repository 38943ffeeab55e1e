"""Official DualStyleGAN files -> our safe formats.

`generator.pt` ({"g_ema": state dict}; pretrain / fine-tune snapshots add g, d, g_optim,
d_optim, args, ada_aug_p) holds `generator.*` (a rosinality StyleGAN2 generator: mapped by
`models.legacy_rosinality`, up-sampling kernels flipped there), `style.N.*` (T_s) and
`res.N.*` (ModRes blocks and colour transforms, same names as ours). Every tensor must find
its place and every parameter must be supplied, as for the other importers. The file has no
`latent_avg`: w_avg is estimated from 10,000 mapped latents (seed 0) and noted.

Side files (`convert_side_file`): code dicts (.npy, read by `models.dualstylegan_codes`
without running pickled code) -> .npz; `sampler.pt` -> a weights-only torch file. pSp
encoder checkpoints (`encoder.pt`) are recognised and refused by name (`stylize --encoder`
reads them as they are).
"""

from __future__ import annotations

import re
import zipfile
from pathlib import Path

from models.configs import DualStyleGANNetwork
from models.dualstylegan import DEFAULT_RES_INDEX, OFFICIAL_MAPPING_LAYERS
from models.dualstylegan_codes import (
    CodeFileError,
    convert_sampler,
    is_code_file,
    is_official_sampler,
    read_codes,
    write_codes,
)
from models.legacy import safe_load_pickle
from models.legacy_import import CheckpointImportError, Imported, build_and_load, stylegan2_config
from models.legacy_rosinality import estimate_w_avg, rosinality_discriminator, rosinality_generator

EXTRINSIC_KEY = re.compile(r"(res|style)\.(\d+)\.(.+)")
BASE_PREFIX = "generator."
SAMPLER_MAX_BYTES = 64 * 2 ** 20


def refuse_psp_encoder(obj: dict) -> None:
    state = obj.get("state_dict")
    if isinstance(state, dict) and isinstance(obj.get("opts"), dict) and any(
            str(k).startswith("encoder.") for k in state):
        raise CheckpointImportError(
            "a pSp encoder checkpoint (encoder.pt): nothing to convert; use it as it is "
            "with stylize --encoder encoder.pt")


def is_dualstylegan(obj) -> bool:
    """A rosinality-style dict whose generator carries `generator.*` and `res.*` tensors."""
    if not isinstance(obj, dict):
        return False
    refuse_psp_encoder(obj)
    state = obj.get("g_ema", obj.get("g"))
    return isinstance(state, dict) and any(str(k).startswith(BASE_PREFIX) for k in state) \
        and any(str(k).startswith("res.") for k in state)


def dualstylegan_tensors(state: dict, net: str) -> tuple[dict, dict, dict]:
    """(our tensors, their source names, the base generator's tensors under StyleGAN2 names)."""
    base_state = {k[len(BASE_PREFIX):]: v for k, v in state.items() if k.startswith(BASE_PREFIX)}
    try:
        base, base_names = rosinality_generator(base_state)
    except CheckpointImportError as exc:
        raise CheckpointImportError(f"{net} ({BASE_PREFIX}*): {exc}") from None
    out = {BASE_PREFIX + k: v for k, v in base.items()}
    names = {BASE_PREFIX + k: BASE_PREFIX + src for k, src in base_names.items()}
    for key, value in state.items():
        if key.startswith(BASE_PREFIX):
            continue
        if not EXTRINSIC_KEY.fullmatch(key):
            raise CheckpointImportError(f"{net}: DualStyleGAN tensor {key!r} has no counterpart "
                                        "in our network")
        out[key], names[key] = value.detach().float(), key
    return out, names, base


def check_extrinsic_layout(tensors: dict, mapping_layers: int, num_ws: int) -> None:
    structure = sorted({int(m.group(1)) for k in tensors
                        if (m := re.fullmatch(r"res\.(\d+)\.conv\.0\.weight", k))})
    expected = [k for k in range(num_ws)
                if k == 0 or (k <= DEFAULT_RES_INDEX and k < num_ws - 1)]
    if structure != expected:
        raise CheckpointImportError(
            f"ModRes blocks at layers {structure}; only the official res_index "
            f"{DEFAULT_RES_INDEX} (ModRes at layers {expected}) is supported")
    layers = len({m.group(1) for k in tensors if (m := re.fullmatch(r"style\.(\d+)\.weight", k))})
    if layers != mapping_layers - OFFICIAL_MAPPING_LAYERS:
        raise CheckpointImportError(
            f"T_s has {layers} layers (style.N), but a {mapping_layers}-layer mapping network "
            f"implies {mapping_layers - OFFICIAL_MAPPING_LAYERS} (n_mlp - 6)")


def import_dualstylegan(ckpt: dict) -> Imported:
    g_key = "g_ema" if "g_ema" in ckpt else "g"
    gen, gen_names, base = dualstylegan_tensors(ckpt[g_key], g_key)
    resolution = max(int(m.group(1)) for k in base if (m := re.match(r"synthesis\.b(\d+)", k)))
    disc = rosinality_discriminator(ckpt["d"], resolution) if isinstance(ckpt.get("d"), dict) \
        else None
    config, resolution, _, img_channels = stylegan2_config(
        base, None if disc is None else disc[0], {})
    num_ws = 2 * resolution.bit_length() - 4
    check_extrinsic_layout(gen, config.mapping_layers, num_ws)
    extrinsic = DualStyleGANNetwork(
        res_index=DEFAULT_RES_INDEX,
        structure_layers=config.mapping_layers - OFFICIAL_MAPPING_LAYERS)
    config = config.replace(arch="dualstylegan", name="imported-dualstylegan",
                            description="imported DualStyleGAN checkpoint",
                            dualstylegan=extrinsic)
    result = Imported("dualstylegan", config, resolution, 0, img_channels)
    sources = {"G_ema" if g_key == "g_ema" else "G": (gen, gen_names)}
    if g_key == "g_ema" and isinstance(ckpt.get("g"), dict):
        sources["G"] = dualstylegan_tensors(ckpt["g"], "g")[:2]
    if disc is not None:
        sources["D"] = disc
    build_and_load(result, sources)
    for net in sources:
        if net != "D":
            estimate_w_avg(result.networks[net].generator)
            result.notes.append(f"{net}: w_avg not stored in the file: estimated from 10,000 "
                                "latents (seed 0)")
    return result


def convert_side_file(src: Path, dst: Path) -> list[str] | None:
    """Summary lines when `src` is a DualStyleGAN code file or sampler (written to `dst`);
    None for anything else (a checkpoint for `import_checkpoint`)."""
    if is_code_file(src):
        if dst.suffix != ".npz":
            raise CodeFileError(f"{dst}: DualStyleGAN codes are written as .npz; name the "
                                "output file *.npz")
        codes = read_codes(src)
        write_codes(dst, codes)
        return [f"{src}: DualStyleGAN codes -> {dst}",
                f"{len(codes.names)} codes of shape {list(codes.codes.shape[1:])}, first "
                f"{codes.names[0]!r}"]
    if zipfile.is_zipfile(src) and src.stat().st_size <= SAMPLER_MAX_BYTES:
        obj = safe_load_pickle(src)
        if is_official_sampler(obj):
            samplers = convert_sampler(src, dst, obj)
            sizes = ", ".join(f"{part} -> {s.lin_out.out_features}"
                              for part, s in samplers.items())
            return [f"{src}: DualStyleGAN code samplers -> {dst}", f"samplers: {sizes}"]
    return None

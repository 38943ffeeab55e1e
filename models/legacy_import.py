"""Convert official checkpoints to our format: NVIDIA TF pickles (ProGAN, StyleGAN v1,
StyleGAN2), stylegan2-ada-pytorch pickles and rosinality stylegan2-pytorch `.pt` files.
stylegan3 pickles (alias-free generators) are recognised and refused by name.

Each importer renames the source tensors to our state-dict names (fixing layouts: TF keeps
dense weights [in, out] and conv kernels [kh, kw, in, out]; TF stores modulation biases minus
one), infers the architecture from the shapes,
builds our networks, and loads every parameter - refusing a file with tensors left over or
parameters missing, so nothing is silently dropped or left at random.

Up-sampling kernels: our layers follow TF StyleGAN2's `upsample_conv_2d`, which flips the
stored kernel before the transposed convolution. stylegan2-ada-pytorch and rosinality run
`conv_transpose2d` on the kernel as stored (ada's `legacy.py` and rosinality's
`convert_weight.py` flip TF's `Conv0_up` / `Skip` kernels when they convert), so their
up-sampling kernels (`conv0`, and `skip` of resnet generators) are flipped here on import.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ffhq_tools.errors import FfhqToolsError
from ffhq_tools.hashing import sha256_file
from models.configs import ModelConfig, build_networks, get_config
from models.layers import channels_for
from models.legacy import PersistentObject, ProGANNetwork, TFNetwork, safe_load_pickle

FILTER_BUFFERS = ("resample_filter", "blur_filter")
# Bumped when an importer's output changes; revision 2 flips stylegan2-ada's up-sampling
# kernels (revision 1 rendered those checkpoints wrong).
IMPORTER_REVISION = 2


class CheckpointImportError(FfhqToolsError):
    """The checkpoint's structure is not one we can map."""


@dataclass
class Imported:
    source_format: str
    config: ModelConfig
    resolution: int
    c_dim: int
    img_channels: int
    networks: dict = field(default_factory=dict)  # "G" / "D" / "G_ema" -> nn.Module
    mapped: list = field(default_factory=list)    # (network, source name, our name, shape)
    notes: list = field(default_factory=list)


# ------------------------------------------------------------------------------------------
# Loading tensors into our networks
# ------------------------------------------------------------------------------------------
def load_renamed(module, tensors: dict, sources: dict, net: str, result: Imported) -> None:
    """Copy tensors (our names) into module; every parameter must be supplied, every tensor
    used. Buffers not supplied keep their values (filters are fixed; noise_const is noted)."""
    own = module.state_dict()
    unused = sorted(set(tensors) - set(own))
    if unused:
        raise CheckpointImportError(f"{net}: source tensors with no place in the network: "
                           f"{', '.join(sources.get(u, u) for u in unused[:5])}")
    params = {name for name, _ in module.named_parameters()}
    missing = sorted(params - set(tensors))
    if missing:
        raise CheckpointImportError(f"{net}: parameters missing from the source: "
                                    f"{', '.join(missing[:5])}")
    for name, value in tensors.items():
        value = torch.as_tensor(np.asarray(value) if isinstance(value, np.ndarray) else value)
        if tuple(value.shape) != tuple(own[name].shape):
            raise CheckpointImportError(f"{net}: {sources.get(name, name)} has shape "
                               f"{tuple(value.shape)}, expected {tuple(own[name].shape)} "
                               f"for {name}")
        own[name] = value.to(own[name].dtype)
        result.mapped.append((net, sources.get(name, name), name, tuple(value.shape)))
    module.load_state_dict(own)
    skipped = [n for n in own if n not in tensors and not n.endswith(FILTER_BUFFERS)]
    if skipped:
        more = "..." if len(skipped) > 3 else ""
        result.notes.append(f"{net}: kept initial values for {len(skipped)} buffer(s) not in "
                            f"the source ({', '.join(skipped[:3])}{more})")


def infer_channels(shapes: dict[int, int], what: str) -> tuple[int, int]:
    """(channel_base, channel_max) reproducing channels-per-resolution `shapes`."""
    channel_max = max(shapes.values())
    top = max(shapes)
    below_max = [res * c for res, c in shapes.items() if c < channel_max]
    channel_base = min(below_max) if below_max else channel_max * top
    if any(channels_for(r, channel_base, channel_max) != c for r, c in shapes.items()):
        raise CheckpointImportError(f"{what}: channel layout {shapes} is not min(base / res, max)")
    return channel_base, channel_max


def _resolutions(tensors: dict, pattern: str) -> list[int]:
    return sorted({int(m.group(1)) for k in tensors if (m := re.fullmatch(pattern, k))})


# ------------------------------------------------------------------------------------------
# Architecture inference (on our names)
# ------------------------------------------------------------------------------------------
def stylegan2_config(G: dict, D: dict | None, extra: dict) -> tuple[ModelConfig, int, int, int]:
    res = _resolutions(G, r"synthesis\.b(\d+)\.conv1\.weight")
    resolution = res[-1]
    channels = {r: G[f"synthesis.b{r}.conv1.weight"].shape[0] for r in res}
    base, cmax = infer_channels(channels, "generator")
    w_dim = G["mapping.fc0.weight"].shape[0]
    c_dim = G["mapping.embed.weight"].shape[1] if "mapping.embed.weight" in G else 0
    z_dim = G["mapping.fc0.weight"].shape[1] - (w_dim if c_dim else 0)
    layers = len(_resolutions(G, r"mapping\.fc(\d+)\.weight"))
    g_arch = "resnet" if "synthesis.b8.skip.weight" in G else \
        "skip" if "synthesis.b8.torgb.weight" in G and resolution > 8 else "orig"
    changes = dict(z_dim=z_dim, w_dim=w_dim, mapping_layers=layers, channel_base=base,
                   channel_max=cmax, g_architecture=g_arch,
                   use_noise="synthesis.b4.conv1.noise_strength" in G)
    if D is not None:
        d_channels = {r: D[f"b{r}.conv0.weight"].shape[0]
                      for r in _resolutions(D, r"b(\d+)\.conv0\.weight")}
        if any(channels[r] != c for r, c in d_channels.items()):
            raise CheckpointImportError(f"D channels {d_channels} differ from G channels "
                                        f"{channels}")
        changes["d_architecture"] = "resnet" if f"b{resolution}.skip.weight" in D else \
            "skip" if f"b{resolution // 2}.fromrgb.weight" in D else "orig"
    changes.update(extra)
    config = get_config("stylegan2-F").replace(
        name="imported-stylegan2", base="stylegan2-F",
        description="imported StyleGAN2 checkpoint", **changes)
    img_channels = G[f"synthesis.b{resolution}.torgb.weight"].shape[0]
    return config, resolution, c_dim, img_channels


def stylegan_v1_config(G: dict, extra: dict) -> tuple[ModelConfig, int, int, int]:
    res = _resolutions(G, r"synthesis\.b(\d+)\.conv1\.weight")
    resolution = res[-1]
    channels = {r: G[f"synthesis.b{r}.conv1.weight"].shape[0] for r in res}
    base, cmax = infer_channels(channels, "generator")
    layers = len(_resolutions(G, r"mapping\.fc(\d+)\.weight"))
    z_dim = G["mapping.fc0.weight"].shape[1] if layers else 512
    w_dim = G["mapping.fc0.weight"].shape[0] if layers else z_dim
    changes = dict(z_dim=z_dim, w_dim=w_dim, mapping_layers=layers, channel_base=base,
                   channel_max=cmax, use_noise="synthesis.b4.conv1.noise_weight" in G,
                   use_styles="synthesis.b4.conv1.style.weight" in G,
                   const_input="synthesis.b4.conv0.const" in G)
    changes.update(extra)
    config = get_config("stylegan-F").replace(
        name="imported-stylegan", base="stylegan-F", description="imported StyleGAN checkpoint",
        **changes)
    img_channels = G[f"synthesis.b{resolution}.torgb.weight"].shape[0]
    return config, resolution, 0, img_channels


def build_and_load(result: Imported, sources: dict[str, tuple[dict, dict]]) -> Imported:
    for net, (tensors, names) in sources.items():
        G, D = build_networks(result.config, result.resolution, c_dim=result.c_dim,
                              img_channels=result.img_channels)
        module = D if net == "D" else G
        load_renamed(module, tensors, names, net, result)
        result.networks[net] = module
    return result


# ------------------------------------------------------------------------------------------
# Source formats
# ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SourceFormat:
    """One official checkpoint format: how to recognise its unpickled object, and the
    importer ("module:function") that turns it into an `Imported`."""

    name: str
    detect: Callable[[object], bool]
    importer: str

    def run(self, obj) -> Imported:
        module, function = self.importer.split(":")
        return getattr(importlib.import_module(module), function)(obj)


def _tf_variable_names(obj) -> str:
    is_tf = isinstance(obj, tuple) and obj and all(isinstance(n, TFNetwork) for n in obj) \
        and not any(isinstance(n, ProGANNetwork) for n in obj)
    return " ".join(obj[-1].variables) if is_tf else ""


def _is_unknown_tf(obj) -> bool:
    if _tf_variable_names(obj):
        raise CheckpointImportError("TF pickle of an unsupported network (neither StyleGAN nor "
                                    "StyleGAN2 variable names)")
    return False


FORMATS: tuple[SourceFormat, ...] = (
    SourceFormat("tf-progan", lambda o: isinstance(o, tuple) and bool(o) and all(
        isinstance(n, ProGANNetwork) for n in o), "models.legacy_progan:import_tf_progan"),
    SourceFormat("tf-stylegan2", lambda o: "mod_weight" in _tf_variable_names(o),
                 "models.legacy_tf:import_tf_stylegan2"),
    SourceFormat("tf-stylegan", lambda o: any(k in _tf_variable_names(o)
                                              for k in ("StyleMod", "ToRGB_lod")),
                 "models.legacy_tf:import_tf_stylegan"),
    SourceFormat("tf-unknown", _is_unknown_tf, ""),
    SourceFormat("stylegan2-ada", lambda o: isinstance(o, dict) and any(
        isinstance(o.get(k), PersistentObject) for k in ("G", "G_ema")),
        "models.legacy_import:import_ada"),
    SourceFormat("dualstylegan", lambda o: importlib.import_module(
        "models.dualstylegan_import").is_dualstylegan(o),
        "models.dualstylegan_import:import_dualstylegan"),
    SourceFormat("rosinality", lambda o: isinstance(o, dict) and ("g_ema" in o or "g" in o),
                 "models.legacy_rosinality:import_rosinality"),
)


def detect_format(obj) -> SourceFormat:
    for fmt in FORMATS:
        if fmt.detect(obj):
            return fmt
    raise CheckpointImportError("unrecognised checkpoint: expected a TF (G, D, Gs) pickle, a "
                                "stylegan2-ada-pytorch pickle or a rosinality .pt file")


def import_object(obj) -> Imported:
    return detect_format(obj).run(obj)


UPSAMPLING_KERNEL = re.compile(r"synthesis\.b\d+\.(conv0|skip)\.weight")


def flip_upsampling_kernels(tensors: dict) -> dict:
    """Kernels of conv_transpose-as-stored up-sampling layers -> our (TF) convention."""
    return {k: v.flip([2, 3]) if UPSAMPLING_KERNEL.fullmatch(k) else v
            for k, v in tensors.items()}


def import_ada(obj: dict) -> Imported:
    refuse_stylegan3(obj)
    sources = {}
    for ours, theirs in (("G", "G"), ("D", "D"), ("G_ema", "G_ema")):
        stub = obj.get(theirs)
        if isinstance(stub, PersistentObject):
            tensors = {k: v for k, v in stub.tensors().items()
                       if not k.endswith(FILTER_BUFFERS)}
            sources[ours] = (tensors if ours == "D" else flip_upsampling_kernels(tensors), {})
    if "G_ema" not in sources and "G" not in sources:
        raise CheckpointImportError("stylegan2-ada pickle without G or G_ema")
    gen = sources.get("G_ema", sources.get("G"))[0]
    extra = _ada_extras(obj)
    config, resolution, c_dim, img_channels = stylegan2_config(
        gen, sources.get("D", (None,))[0], extra)
    result = Imported("stylegan2-ada", config, resolution, c_dim, img_channels)
    return build_and_load(result, sources)


def refuse_stylegan3(obj: dict) -> None:
    """stylegan3's alias-free generators (SynthesisInput, L0_36_512 ...) have no counterpart."""
    for key in ("G_ema", "G"):
        gen = obj.get(key)
        synthesis = gen.child("synthesis") if isinstance(gen, PersistentObject) else None
        if isinstance(synthesis, PersistentObject) and (
                isinstance(synthesis.child("input"), PersistentObject)
                or "class SynthesisInput" in synthesis.module_src):
            raise CheckpointImportError(
                "a stylegan3 (alias-free) generator: stylegan3-t / stylegan3-r networks are not "
                "supported; only StyleGAN2 layouts (stylegan2-ada-pytorch, or stylegan3's "
                "--cfg=stylegan2) can be imported")


def _ada_extras(obj: dict) -> dict:
    """Settings that are attributes, not tensors: mapping lr multiplier, w_avg decay, mbstd,
    conv clamp."""
    extra = {}
    gen = obj.get("G_ema") or obj.get("G")
    mapping = gen.child("mapping") if isinstance(gen, PersistentObject) else None
    if isinstance(mapping, PersistentObject):
        beta = mapping.state.get("w_avg_beta")
        if isinstance(beta, float):
            extra["w_avg_beta"] = beta
        fc0 = mapping.child("fc0")
        if isinstance(fc0, PersistentObject) and isinstance(fc0.state.get("bias_gain"), float):
            extra["mapping_lr_multiplier"] = fc0.state["bias_gain"]
    synthesis = gen.child("synthesis") if isinstance(gen, PersistentObject) else None
    if isinstance(synthesis, PersistentObject):
        top = synthesis.child(f"b{synthesis.state.get('img_resolution')}")
        conv1 = top.child("conv1") if isinstance(top, PersistentObject) else None
        if isinstance(conv1, PersistentObject) and conv1.state.get("conv_clamp") is not None:
            extra["conv_clamp"] = float(conv1.state["conv_clamp"])
    disc = obj.get("D")
    b4 = disc.child("b4") if isinstance(disc, PersistentObject) else None
    mbstd = b4.child("mbstd") if isinstance(b4, PersistentObject) else None
    if isinstance(mbstd, PersistentObject):
        extra["mbstd_group"] = int(mbstd.state.get("group_size") or 4)
        extra["mbstd_channels"] = int(mbstd.state.get("num_channels") or 1)
    return extra


# What a malformed but allowed checkpoint (a variable missing, a field of the wrong type or
# shape) provokes inside an importer.
MALFORMED_CHECKPOINT_ERRORS = (LookupError, AttributeError, TypeError, ValueError,
                               ArithmeticError, RuntimeError)


def _guarded(src: Path, step: str, run: Callable[[], object]):
    """run(), with its errors turned into a CheckpointImportError naming `src` and `step`."""
    try:
        return run()
    except CheckpointImportError as exc:
        raise CheckpointImportError(f"{src}: {exc}") from None
    except MALFORMED_CHECKPOINT_ERRORS as exc:
        raise CheckpointImportError(f"{src}: malformed checkpoint: {step} failed "
                                    f"({type(exc).__name__}: {exc})") from None


def import_checkpoint(src: str | Path, dst: str | Path) -> Imported:
    """Read an official checkpoint with the restricted unpickler and write our format."""
    from models.checkpoint import save_checkpoint

    src, dst = Path(src), Path(dst)
    obj = safe_load_pickle(src)
    fmt = _guarded(src, "recognising the format", lambda: detect_format(obj))
    result = _guarded(src, f"importing it as {fmt.name}", lambda: fmt.run(obj))
    nets = result.networks
    if "G" not in nets:
        nets["G"] = nets["G_ema"]
        result.notes.append("no training generator in the source: G is a copy of G_ema")
    config = {"model": result.config.to_dict(), "resolution": result.resolution,
              "c_dim": result.c_dim, "img_channels": result.img_channels,
              "source": {"format": result.source_format, "file": src.name,
                         "sha256": sha256_file(src), "importer_revision": IMPORTER_REVISION}}
    save_checkpoint(dst, config=config, G=nets["G"], D=nets.get("D"), G_ema=nets.get("G_ema"))
    return result

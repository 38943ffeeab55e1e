"""Official Progressive GAN pickles (tkarras/progressive_growing_of_gans) -> our ProGAN.

The files (`karras2018iclr-celebahq-1024x1024.pkl` and friends) hold `(G, D, Gs)`, three
`tfutil.Network` states whose `variables` list carries the G_paper / D_paper weights:

  G: 4x4/Dense (latent -> 16 * C, reshaped to [C, 4, 4]), 4x4/Conv, {R}x{R}/Conv0 (nearest
     upscale then conv; the Theano-trained official files) or {R}x{R}/Conv0_up (fused
     transposed conv), {R}x{R}/Conv1, ToRGB_lod{n}, lod.
  D: FromRGB_lod{n}, {R}x{R}/Conv0, {R}x{R}/Conv1_down (fused) or Conv1 (then 2x2 average
     pool), 4x4/Conv (after the minibatch stddev feature), 4x4/Dense0, 4x4/Dense1, lod.

Layouts: conv kernels are [kh, kw, in, out] except the fused up-conv, stored [kh, kw, out, in]
for conv2d_transpose; dense weights [in, out]. With use_wscale the stored weights are N(0, 1)
and scaled at run time by gain / sqrt(fan_in) - the same convention as our layers, so values
copy unchanged. Conditional pickles (label_size > 0) and the non-paper switches (no pixel norm,
plain ReLU, no wscale, unnormalised latents, fmap_decay != 1) are refused, never approximated.
"""

from __future__ import annotations

import re

import numpy as np
import torch

from models.configs import get_config
from models.legacy import TFNetwork
from models.legacy_import import (
    CheckpointImportError,
    Imported,
    build_and_load,
    infer_channels,
)
from models.legacy_tf import Renamer, conv, dense, plain

# G_paper / D_paper keyword arguments whose non-default values change the computation in a
# way our ProGAN does not implement.
PAPER_SWITCHES = {"normalize_latents": True, "use_wscale": True, "use_pixelnorm": True,
                  "use_leakyrelu": True, "pixelnorm_epsilon": 1e-8, "fmap_decay": 1.0,
                  "label_size": 0}


def fused_up_conv(v: np.ndarray):
    """Fused up-conv kernel [kh, kw, out, in] -> ours [out, in, kh, kw]."""
    return plain(np.asarray(v).transpose(2, 3, 0, 1))


def check_paper_switches(net: TFNetwork, what: str) -> None:
    for key, paper in PAPER_SWITCHES.items():
        value = net.static_kwargs.get(key, paper)
        if value == paper:
            continue
        if key == "label_size":
            raise CheckpointImportError(
                f"{what}: conditional ProGAN pickle (label_size={value}) is not supported: "
                "G_paper concatenates raw labels to the latent and D_paper predicts them, "
                "which our ProGAN does not implement")
        raise CheckpointImportError(f"{what}: ProGAN variant {key}={value!r} is not supported "
                                    f"(the paper networks use {key}={paper!r})")


def _lod(variables: dict, what: str) -> float:
    if "lod" not in variables:
        raise CheckpointImportError(f"{what}: TF variable 'lod' is missing")
    return float(np.asarray(variables["lod"]))


def _resolution_log2(variables: dict, what: str) -> int:
    sizes = [int(m.group(1)) for k in variables if (m := re.match(r"(\d+)x\1/", k))]
    if not sizes:
        raise CheckpointImportError(f"{what}: no '<R>x<R>/' variables; not a ProGAN network")
    resolution = max(sizes)
    log2 = resolution.bit_length() - 1
    if 2 ** log2 != resolution or not 3 <= log2 <= 10:
        raise CheckpointImportError(f"{what}: resolution {resolution} is not a power of two "
                                    "between 8 and 1024")
    return log2


def _check_names(variables: dict, expected: list[str], what: str) -> None:
    """Every expected TF variable present, nothing else: no silent skipping."""
    missing = [k for k in expected if k not in variables]
    if missing:
        raise CheckpointImportError(f"{what}: TF variable(s) missing: {', '.join(missing[:5])}")
    extra = sorted(set(variables) - set(expected))
    if extra:
        raise CheckpointImportError(f"{what}: TF variable(s) with no counterpart in our ProGAN: "
                                    f"{', '.join(extra[:5])}")


def _layer(out: Renamer, variables: dict, tf_scope: str, ours: str, weight_fn) -> None:
    out.put(f"{ours}.weight", weight_fn(variables[f"{tf_scope}/weight"]), f"{tf_scope}/weight")
    out.put(f"{ours}.bias", plain(variables[f"{tf_scope}/bias"]), f"{tf_scope}/bias")


def _fused(variables: dict, fused_name: str, plain_name: str, what: str) -> bool:
    fused = any(f"/{fused_name}/" in k for k in variables)
    if fused and any(f"/{plain_name}/" in k for k in variables):
        raise CheckpointImportError(f"{what}: mixes {fused_name} and {plain_name} layers")
    return fused


def progan_generator(net: TFNetwork, what: str) -> tuple[Renamer, float, bool]:
    """(our tensors, lod, fused upscale) for a G_paper network."""
    check_paper_switches(net, what)
    variables = net.variables
    log2 = _resolution_log2(variables, what)
    fused = _fused(variables, "Conv0_up", "Conv0", what)
    up = "Conv0_up" if fused else "Conv0"
    scopes = [("4x4/Dense", "synthesis.b4.conv0.dense", dense),
              ("4x4/Conv", "synthesis.b4.conv1", conv)]
    for r in (2 ** i for i in range(3, log2 + 1)):
        scopes += [(f"{r}x{r}/{up}", f"synthesis.b{r}.conv0",
                    fused_up_conv if fused else conv),
                   (f"{r}x{r}/Conv1", f"synthesis.b{r}.conv1", conv)]
    scopes += [(f"ToRGB_lod{log2 - i}", f"synthesis.b{2 ** i}.torgb", conv)
               for i in range(2, log2 + 1)]
    _check_names(variables, ["lod"] + [f"{s}/{k}" for s, _, _ in scopes
                                       for k in ("weight", "bias")], what)
    out = Renamer()
    for tf_scope, ours, weight_fn in scopes:
        _layer(out, variables, tf_scope, ours, weight_fn)
    # the dense layer's bias is per channel, added after the reshape: it belongs to conv0
    bias = out.tensors.pop("synthesis.b4.conv0.dense.bias")
    out.sources.pop("synthesis.b4.conv0.dense.bias")
    out.put("synthesis.b4.conv0.bias", bias, "4x4/Dense/bias")
    # no mapping network: "w" is the pixel-normalised latent, whose mean is exactly zero
    z_dim = out.tensors["synthesis.b4.conv0.dense.weight"].shape[1]
    out.put("mapping.w_avg", torch.zeros(z_dim), "(zero: mean of the normalised latent)")
    return out, _lod(variables, what), fused


def progan_discriminator(net: TFNetwork, what: str) -> tuple[Renamer, float, bool]:
    """(our tensors, lod, fused downscale) for a D_paper network."""
    check_paper_switches(net, what)
    variables = net.variables
    log2 = _resolution_log2(variables, what)
    fused = _fused(variables, "Conv1_down", "Conv1", what)
    scopes = []
    for r in (2 ** i for i in range(log2, 2, -1)):
        scopes += [(f"FromRGB_lod{log2 - r.bit_length() + 1}", f"b{r}.fromrgb", conv),
                   (f"{r}x{r}/Conv0", f"b{r}.conv0", conv),
                   (f"{r}x{r}/{'Conv1_down' if fused else 'Conv1'}", f"b{r}.conv1", conv)]
    scopes += [(f"FromRGB_lod{log2 - 2}", "b4.fromrgb", conv), ("4x4/Conv", "b4.conv", conv),
               ("4x4/Dense0", "b4.dense0", dense), ("4x4/Dense1", "b4.dense1", dense)]
    _check_names(variables, ["lod"] + [f"{s}/{k}" for s, _, _ in scopes
                                       for k in ("weight", "bias")], what)
    outputs = np.asarray(variables["4x4/Dense1/weight"]).shape[-1]
    if outputs != 1:
        raise CheckpointImportError(f"{what}: 4x4/Dense1 has {outputs} outputs (1 + label "
                                    "logits): conditional ProGAN pickles are not supported")
    out = Renamer()
    for tf_scope, ours, weight_fn in scopes:
        _layer(out, variables, tf_scope, ours, weight_fn)
    return out, _lod(variables, what), fused


def _unpack(networks: tuple) -> tuple:
    if len(networks) == 3:
        return networks
    if len(networks) == 1:
        return None, None, networks[0]
    raise CheckpointImportError(f"ProGAN pickle holds {len(networks)} networks; expected "
                                "(G, D, Gs)")


def progan_config(gs: Renamer, D: TFNetwork | None, fused: bool):
    """(ModelConfig, resolution, img_channels) inferred from Gs's tensors (our names)."""
    t = gs.tensors
    res = sorted(int(m.group(1)) for k in t
                 if (m := re.fullmatch(r"synthesis\.b(\d+)\.conv1\.weight", k)))
    channels = {r: t[f"synthesis.b{r}.conv1.weight"].shape[0] for r in res}
    base, cmax = infer_channels(channels, "ProGAN generator")
    z_dim = t["synthesis.b4.conv0.dense.weight"].shape[1]
    changes = dict(z_dim=z_dim, w_dim=z_dim, channel_base=base, channel_max=cmax,
                   fused_scale_min_res=8 if fused else 2048)
    if D is not None:
        group = int(D.static_kwargs.get("mbstd_group_size", 4))
        changes.update(mbstd_group=group, mbstd_channels=1 if group > 1 else 0)
    config = get_config("stylegan-A").replace(
        name="imported-progan", base="stylegan-A",
        description="imported Progressive GAN checkpoint (G_paper / D_paper)", **changes)
    return config, res[-1], t[f"synthesis.b{res[-1]}.torgb.weight"].shape[0]


def import_tf_progan(networks: tuple) -> Imported:
    G, D, Gs = _unpack(networks)
    gs, gs_lod, fused = progan_generator(Gs, "Gs")
    config, resolution, img_channels = progan_config(gs, D, fused)
    result = Imported("tf-progan", config, resolution, 0, img_channels)
    sources = {"G_ema": (gs.tensors, gs.sources)}
    lods = {"G_ema": gs_lod}
    if G is not None:
        g, lods["G"], g_fused = progan_generator(G, "G")
        if g_fused != fused:
            raise CheckpointImportError("G and Gs differ in fused upscaling")
        sources["G"] = (g.tensors, g.sources)
    if D is not None:
        d, lods["D"], d_fused = progan_discriminator(D, "D")
        if d_fused != fused:
            raise CheckpointImportError(
                f"D {'uses' if d_fused else 'does not use'} fused downscaling but G "
                f"{'does' if fused else 'does not'}; our ProGAN shares one fused_scale switch")
        sources["D"] = (d.tensors, d.sources)
    build_and_load(result, sources)
    for net, lod in lods.items():
        result.networks[net].lod = lod
    if any(lod != 0 for lod in lods.values()):
        result.notes.append(f"networks saved mid-growth: lod {lods} (0 = full resolution)")
    return result

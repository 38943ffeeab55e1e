"""NVIDIA TF pickles -> our networks: variable names and layouts of the reference code.

Layouts: dense weights are [in, out] (ours [out, in]); conv kernels [kh, kw, in, out] (ours
[out, in, kh, kw]); StyleGAN2 modulation biases are stored without their +1; noise inputs are
non-trainable variables noise0, noise1, ... in layer order.
"""

from __future__ import annotations

import re

import numpy as np
import torch

from models.legacy import TFNetwork
from models.legacy_import import (
    CheckpointImportError,
    Imported,
    build_and_load,
    stylegan2_config,
    stylegan_v1_config,
)


def dense(v: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(v.T)).float()


def conv(v: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(v.transpose(3, 2, 0, 1))).float()


def plain(v) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(np.asarray(v))).float()


class Renamer:
    """Collects (our name -> tensor) with the source name kept for the report."""

    def __init__(self):
        self.tensors: dict[str, torch.Tensor] = {}
        self.sources: dict[str, str] = {}

    def put(self, ours: str, value: torch.Tensor, source: str) -> None:
        self.tensors[ours] = value
        self.sources[ours] = source


def _unknown(name: str) -> CheckpointImportError:
    return CheckpointImportError(f"TF variable {name!r} has no counterpart in our networks")


def _synthesis_resolution(variables: dict) -> int:
    return max(int(m.group(1)) for k in variables if (m := re.match(r"synthesis/(\d+)x", k)))


def _mapping_variable(name: str, value, out: Renamer) -> bool:
    """Put a mapping-network variable (DenseN, dlatent_avg; the same in StyleGAN v1 and v2)
    under our name; False when `name` is not one."""
    if m := re.fullmatch(r"mapping/Dense(\d+)/(weight|bias)", name):
        tensor = dense(value) if m.group(2) == "weight" else plain(value)
        out.put(f"mapping.fc{m.group(1)}.{m.group(2)}", tensor, name)
        return True
    if name == "dlatent_avg":
        out.put("mapping.w_avg", plain(value), name)
        return True
    return False


# ------------------------------------------------------------------------------------------
# StyleGAN2
# ------------------------------------------------------------------------------------------
SG2_LAYER = {"Conv": "conv1", "Conv0_up": "conv0", "Conv1": "conv1", "ToRGB": "torgb",
             "Skip": "skip"}


def sg2_noise_layers(resolution: int) -> list[str]:
    names = ["synthesis.b4.conv1"]
    r = 8
    while r <= resolution:
        names += [f"synthesis.b{r}.conv0", f"synthesis.b{r}.conv1"]
        r *= 2
    return names


def sg2_generator(variables: dict) -> Renamer:
    out = Renamer()
    noise_layers = sg2_noise_layers(_synthesis_resolution(variables))
    for name, v in variables.items():
        if _mapping_variable(name, v, out):
            continue
        if name == "lod":  # G_main's growing level: always 0 for StyleGAN2 networks
            continue
        elif name == "synthesis/4x4/Const/const":
            out.put("synthesis.b4.const", plain(v)[0], name)
        elif m := re.fullmatch(r"synthesis/noise(\d+)", name):
            out.put(f"{noise_layers[int(m.group(1))]}.noise_const", plain(v)[0, 0], name)
        elif m := re.fullmatch(r"synthesis/(\d+)x\d+/(\w+)/(\w+)", name):
            layer = SG2_LAYER.get(m.group(2))
            if layer is None:
                raise _unknown(name)
            prefix = f"synthesis.b{m.group(1)}.{layer}"
            kind = m.group(3)
            if kind == "weight":
                out.put(f"{prefix}.weight", conv(v), name)
            elif kind == "mod_weight":
                out.put(f"{prefix}.affine.weight", dense(v), name)
            elif kind == "mod_bias":
                out.put(f"{prefix}.affine.bias", plain(v) + 1, name)
            elif kind in ("bias", "noise_strength"):
                out.put(f"{prefix}.{kind}", plain(v).reshape(-1) if kind == "bias"
                        else plain(v).reshape([]), name)
            else:
                raise _unknown(name)
        elif name.startswith("mapping/LabelConcat"):
            raise CheckpointImportError("conditional TF StyleGAN2 pickles are not supported")
        else:
            raise _unknown(name)
    return out


SG2_D_LAYER = {"FromRGB": "fromrgb", "Conv0": "conv0", "Conv1_down": "conv1", "Skip": "skip"}


def sg2_discriminator(variables: dict) -> Renamer:
    out = Renamer()
    for name, v in variables.items():
        m = re.fullmatch(r"(\d+)x\d+/(\w+)/(weight|bias)", name)
        if m and m.group(1) == "4" and m.group(2) in ("Conv", "Dense0", "FromRGB"):
            ours = {"Conv": "b4.conv", "Dense0": "b4.fc", "FromRGB": "b4.fromrgb"}[m.group(2)]
            is_dense = m.group(2) == "Dense0"
            value = (dense(v) if is_dense else conv(v)) if m.group(3) == "weight" else plain(v)
            out.put(f"{ours}.{m.group(3)}", value, name)
        elif m and m.group(2) in SG2_D_LAYER:
            value = conv(v) if m.group(3) == "weight" else plain(v)
            out.put(f"b{m.group(1)}.{SG2_D_LAYER[m.group(2)]}.{m.group(3)}", value, name)
        elif m2 := re.fullmatch(r"Output/(weight|bias)", name):
            out.put(f"b4.out.{m2.group(1)}", dense(v) if m2.group(1) == "weight" else plain(v),
                    name)
        else:
            raise _unknown(name)
    return out


def import_tf_stylegan2(networks: tuple) -> Imported:
    G, D, Gs = _unpack(networks)
    gs = sg2_generator(Gs.variables)
    d = sg2_discriminator(D.variables) if D is not None else None
    extra = {"mbstd_group": int(D.static_kwargs.get("mbstd_group_size", 4)),
             "mbstd_channels": int(D.static_kwargs.get("mbstd_num_features", 1))} if D else {}
    config, resolution, c_dim, img_channels = stylegan2_config(
        gs.tensors, None if d is None else d.tensors, extra)
    result = Imported("tf-stylegan2", config, resolution, c_dim, img_channels)
    sources = {"G_ema": (gs.tensors, gs.sources)}
    if G is not None:
        g = sg2_generator(G.variables)
        sources["G"] = (g.tensors, g.sources)
    if d is not None:
        sources["D"] = (d.tensors, d.sources)
    return build_and_load(result, sources)


def _unpack(networks: tuple):
    if len(networks) == 3:
        return networks
    if len(networks) == 1:
        return None, None, networks[0]
    raise CheckpointImportError(f"TF pickle holds {len(networks)} networks; expected (G, D, Gs)")


# ------------------------------------------------------------------------------------------
# StyleGAN v1
# ------------------------------------------------------------------------------------------
def v1_noise_layers(resolution: int) -> list[str]:
    names = ["synthesis.b4.conv0", "synthesis.b4.conv1"]
    r = 8
    while r <= resolution:
        names += [f"synthesis.b{r}.conv0", f"synthesis.b{r}.conv1"]
        r *= 2
    return names


V1_LAYER = {"Const": "conv0", "Dense": "conv0", "Conv": "conv1", "Conv0_up": "conv0",
            "Conv1": "conv1"}


def v1_layer_variable(prefix: str, rest: str, v, name: str, out: Renamer) -> None:
    if rest == "const":
        out.put(f"{prefix}.const", plain(v), name)
    elif rest == "weight":
        is_dense = prefix.endswith("b4.conv0")
        out.put(f"{prefix}.dense.weight" if is_dense else f"{prefix}.weight",
                dense(v) if is_dense else conv(v), name)
    elif rest == "bias":
        out.put(f"{prefix}.bias", plain(v), name)
    elif rest == "Noise/weight":
        out.put(f"{prefix}.noise_weight", plain(v), name)
    elif rest in ("StyleMod/weight", "StyleMod/bias"):
        kind = rest.split("/")[1]
        out.put(f"{prefix}.style.{kind}", dense(v) if kind == "weight" else plain(v), name)
    else:
        raise _unknown(name)


def v1_generator(variables: dict) -> tuple[Renamer, float]:
    out = Renamer()
    lod = 0.0
    res = _synthesis_resolution(variables)
    log2 = res.bit_length() - 1
    noise_layers = v1_noise_layers(res)
    for name, v in variables.items():
        if _mapping_variable(name, v, out):
            continue
        if name in ("lod", "synthesis/lod"):  # G_style's own copy and the synthesis one
            lod = float(np.asarray(v))
        elif m := re.fullmatch(r"synthesis/noise(\d+)", name):
            out.put(f"{noise_layers[int(m.group(1))]}.noise_const", plain(v)[0, 0], name)
        elif m := re.fullmatch(r"synthesis/ToRGB_lod(\d+)/(weight|bias)", name):
            r = 2 ** (log2 - int(m.group(1)))
            value = conv(v) if m.group(2) == "weight" else plain(v)
            out.put(f"synthesis.b{r}.torgb.{m.group(2)}", value, name)
        elif m := re.fullmatch(r"synthesis/(\d+)x\d+/(Const|Dense|Conv|Conv0_up|Conv1)/(.+)",
                               name):
            prefix = f"synthesis.b{m.group(1)}.{V1_LAYER[m.group(2)]}"
            v1_layer_variable(prefix, m.group(3), v, name, out)
        elif name.startswith("mapping/LabelConcat"):
            raise CheckpointImportError("conditional TF StyleGAN pickles are not supported")
        else:
            raise _unknown(name)
    return out, lod


def v1_discriminator(variables: dict, resolution: int) -> tuple[Renamer, float]:
    out = Renamer()
    lod = 0.0
    log2 = resolution.bit_length() - 1
    for name, v in variables.items():
        if m := re.fullmatch(r"FromRGB_lod(\d+)/(weight|bias)", name):
            r = 2 ** (log2 - int(m.group(1)))
            out.put(f"b{r}.fromrgb.{m.group(2)}", conv(v) if m.group(2) == "weight"
                    else plain(v), name)
        elif m := re.fullmatch(r"4x4/(Conv|Dense0|Dense1)/(weight|bias)", name):
            ours = {"Conv": "conv", "Dense0": "dense0", "Dense1": "dense1"}[m.group(1)]
            fn = conv if m.group(1) == "Conv" else dense
            out.put(f"b4.{ours}.{m.group(2)}", fn(v) if m.group(2) == "weight" else plain(v),
                    name)
        elif m := re.fullmatch(r"(\d+)x\d+/(Conv0|Conv1_down)/(weight|bias)", name):
            layer = "conv0" if m.group(2) == "Conv0" else "conv1"
            out.put(f"b{m.group(1)}.{layer}.{m.group(3)}", conv(v) if m.group(3) == "weight"
                    else plain(v), name)
        elif name == "lod":
            lod = float(np.asarray(v))
        else:
            raise _unknown(name)
    return out, lod


def import_tf_stylegan(networks: tuple) -> Imported:
    G, D, Gs = _unpack(networks)
    gs, gs_lod = v1_generator(Gs.variables)
    synth = Gs.components.get("synthesis")
    kwargs = synth.static_kwargs if isinstance(synth, TFNetwork) else {}
    extra = {}
    if kwargs.get("blur_filter", [1, 2, 1]) is None:
        extra["blur"] = False
    if isinstance(kwargs.get("fused_scale"), bool):
        extra["fused_scale_min_res"] = 8 if kwargs["fused_scale"] else 2048
    if D is not None:
        extra["mbstd_group"] = int(D.static_kwargs.get("mbstd_group_size", 4))
        extra["mbstd_channels"] = int(D.static_kwargs.get("mbstd_num_features", 1))
    psi = Gs.static_kwargs.get("truncation_psi")
    if isinstance(psi, (int, float)):
        extra["truncation_psi"] = float(psi)
        extra["truncation_cutoff"] = Gs.static_kwargs.get("truncation_cutoff", 8)
    config, resolution, c_dim, img_channels = stylegan_v1_config(gs.tensors, extra)
    result = Imported("tf-stylegan", config, resolution, c_dim, img_channels)
    sources = {"G_ema": (gs.tensors, gs.sources)}
    lods = {"G_ema": gs_lod}
    if G is not None:
        g, lods["G"] = v1_generator(G.variables)
        sources["G"] = (g.tensors, g.sources)
    if D is not None:
        d, lods["D"] = v1_discriminator(D.variables, resolution)
        sources["D"] = (d.tensors, d.sources)
    build_and_load(result, sources)
    for net, lod in lods.items():
        result.networks[net].lod = lod
    return result

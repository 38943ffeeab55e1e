"""rosinality/stylegan2-pytorch `.pt` checkpoints -> our StyleGAN2 networks.

The file is a dict {g, d, g_ema, g_optim, d_optim, args[, latent_avg]} of state dicts. Its
modulated kernels carry a leading batch axis; noise strengths are shape [1]; toRGB biases are
[1, 3, 1, 1]; its up-sampling convs run conv_transpose2d on the unflipped kernel (the
reference flips it), so those kernels are flipped here. Without a stored `latent_avg`, w_avg
is estimated from 10,000 mapped latents (seed 0), as rosinality's `mean_latent` does.
"""

from __future__ import annotations

import re

import torch

from models.legacy_import import CheckpointImportError, Imported, build_and_load, stylegan2_config


def unknown_tensor(name: str) -> CheckpointImportError:
    return CheckpointImportError(f"rosinality tensor {name!r} has no counterpart in our networks")


def _layer(prefix: str, key: str, value: torch.Tensor, out: dict, names: dict, src: str):
    table = {
        "conv.weight": ("weight", lambda v: v[0]),
        "conv.modulation.weight": ("affine.weight", None),
        "conv.modulation.bias": ("affine.bias", None),
        "noise.weight": ("noise_strength", lambda v: v.reshape([])),
        "activate.bias": ("bias", None),
        "bias": ("bias", lambda v: v.reshape(-1)),
    }
    if key not in table:
        raise unknown_tensor(src)
    ours, fn = table[key]
    out[f"{prefix}.{ours}"] = fn(value) if fn else value
    names[f"{prefix}.{ours}"] = src


def rosinality_generator(state: dict) -> tuple[dict, dict]:
    out, names = {}, {}
    res_of = {}
    for key, value in state.items():
        value = value.detach().float()
        if key.endswith(".kernel") or key.endswith("blur.kernel"):
            continue  # fixed [1,3,3,1] resampling filters
        if m := re.fullmatch(r"style\.(\d+)\.(weight|bias)", key):
            ours = f"mapping.fc{int(m.group(1)) - 1}.{m.group(2)}"
            out[ours], names[ours] = value, key
        elif key == "input.input":
            out["synthesis.b4.const"], names["synthesis.b4.const"] = value[0], key
        elif m := re.fullmatch(r"(conv1|to_rgb1)\.(.+)", key):
            layer = "conv1" if m.group(1) == "conv1" else "torgb"
            _layer(f"synthesis.b4.{layer}", m.group(2), value, out, names, key)
        elif m := re.fullmatch(r"convs\.(\d+)\.(.+)", key):
            j = int(m.group(1))
            res = 2 ** (3 + j // 2)
            res_of[res] = True
            if j % 2 == 0 and m.group(2) == "conv.weight":
                value = value.flip([3, 4])  # rosinality's transposed conv skips the flip
            _layer(f"synthesis.b{res}.{'conv0' if j % 2 == 0 else 'conv1'}", m.group(2), value,
                   out, names, key)
        elif m := re.fullmatch(r"to_rgbs\.(\d+)\.(.+)", key):
            _layer(f"synthesis.b{2 ** (3 + int(m.group(1)))}.torgb", m.group(2), value, out,
                   names, key)
        elif m := re.fullmatch(r"noises\.noise_(\d+)", key):
            i = int(m.group(1))
            layer = "synthesis.b4.conv1" if i == 0 else \
                f"synthesis.b{2 ** (3 + (i - 1) // 2)}.{'conv0' if i % 2 else 'conv1'}"
            out[f"{layer}.noise_const"], names[f"{layer}.noise_const"] = value[0, 0], key
        else:
            raise unknown_tensor(key)
    return out, names


D_BLOCK = {"conv1.0.weight": "conv0.weight", "conv1.1.bias": "conv0.bias",
           "conv2.1.weight": "conv1.weight", "conv2.2.bias": "conv1.bias",
           "skip.1.weight": "skip.weight"}
D_HEAD = {"final_conv.0.weight": "b4.conv.weight", "final_conv.1.bias": "b4.conv.bias",
          "final_linear.0.weight": "b4.fc.weight", "final_linear.0.bias": "b4.fc.bias",
          "final_linear.1.weight": "b4.out.weight", "final_linear.1.bias": "b4.out.bias"}


def rosinality_discriminator(state: dict, resolution: int) -> tuple[dict, dict]:
    out, names = {}, {}
    for key, value in state.items():
        value = value.detach().float()
        if key.endswith(".kernel"):
            continue
        if key in D_HEAD:
            ours = D_HEAD[key]
        elif m := re.fullmatch(r"convs\.0\.([01])\.(weight|bias)", key):
            ours = f"b{resolution}.fromrgb.{m.group(2)}"
        elif (m := re.fullmatch(r"convs\.(\d+)\.(.+)", key)) and m.group(2) in D_BLOCK:
            ours = f"b{resolution >> (int(m.group(1)) - 1)}.{D_BLOCK[m.group(2)]}"
        else:
            raise unknown_tensor(key)
        out[ours], names[ours] = value, key
    return out, names


def import_rosinality(ckpt: dict) -> Imported:
    g_key = "g_ema" if "g_ema" in ckpt else "g"
    gen, gen_names = rosinality_generator(ckpt[g_key])
    latent_avg = ckpt.get("latent_avg")
    if isinstance(latent_avg, torch.Tensor):
        gen["mapping.w_avg"] = latent_avg.detach().float().reshape(-1)
        gen_names["mapping.w_avg"] = "latent_avg"
    resolution = max(int(m.group(1)) for k in gen if (m := re.match(r"synthesis\.b(\d+)", k)))
    disc = rosinality_discriminator(ckpt["d"], resolution) if "d" in ckpt else None
    config, resolution, c_dim, img_channels = stylegan2_config(
        gen, None if disc is None else disc[0], {})
    result = Imported("rosinality", config, resolution, c_dim, img_channels)
    sources = {"G_ema" if g_key == "g_ema" else "G": (gen, gen_names)}
    if g_key == "g_ema" and "g" in ckpt:
        g, g_names = rosinality_generator(ckpt["g"])
        sources["G"] = (g, g_names)
    if disc is not None:
        sources["D"] = disc
    build_and_load(result, sources)
    for net, (tensors, _) in sources.items():
        if net != "D" and "mapping.w_avg" not in tensors:
            estimate_w_avg(result.networks[net])
            result.notes.append(f"{net}: w_avg not stored in the file: estimated from 10,000 "
                                "latents (seed 0)")
    return result


def estimate_w_avg(G, num: int = 10_000) -> None:
    with torch.no_grad():
        z = torch.randn(num, G.z_dim, generator=torch.Generator().manual_seed(0))
        G.mapping.w_avg.copy_(G.mapping(z)[:, 0].mean(0))

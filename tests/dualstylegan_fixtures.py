"""DualStyleGAN files as the official code writes them, from the published naming:
`generator.pt` state dicts (rosinality generator under `generator.`, `style.N.*`, `res.N.*`
with ModRes `conv.0.weight`, `conv.1.bias`, `conv2.*`, `norm.style.*`, `norm2.style.*`, colour
transforms `weight`, `bias`), `np.save`d code dicts and `sampler.pt`."""

from __future__ import annotations

import numpy as np
import torch
from legacy_fixtures import rosinality_discriminator_state, rosinality_generator_state

from models.configs import build_networks, get_config

SMALL = get_config("tiny").replace(arch="dualstylegan", mapping_layers=8)


def small_net(resolution: int = 64, seed: int = 0):
    torch.manual_seed(seed)
    return build_networks(SMALL, resolution)[0].eval()


def codes(net, seed: int = 1, batch: int = 2):
    """(intrinsic z [N, z_dim], extrinsic W+ codes mapped from random z+)."""
    gen = torch.Generator().manual_seed(seed)
    z = torch.randn(batch, net.generator.z_dim, generator=gen)
    ex_z = torch.randn(batch, net.num_ws, net.generator.z_dim, generator=gen)
    return z, net.map_z(ex_z)


MODRES_NAMES = ("conv.0.weight", "conv.1.bias", "conv2.0.weight", "conv2.1.bias",
                "norm.style.weight", "norm.style.bias", "norm2.style.weight", "norm2.style.bias")


def modres_tensors(block) -> dict[str, torch.Tensor]:
    return {"conv.0.weight": block.conv[0].weight, "conv.1.bias": block.conv[1].bias,
            "conv2.0.weight": block.conv2[0].weight, "conv2.1.bias": block.conv2[1].bias,
            "norm.style.weight": block.norm.style.weight,
            "norm.style.bias": block.norm.style.bias,
            "norm2.style.weight": block.norm2.style.weight,
            "norm2.style.bias": block.norm2.style.bias}


def official_state(net, res_index: int = 6) -> dict[str, torch.Tensor]:
    """DualStyleGAN(size, 512, 8, 2, res_index).state_dict() layout, values from `net`."""
    out = {f"generator.{k}": v for k, v in rosinality_generator_state(net.generator).items()}
    for i, layer in enumerate(net.style[1:], start=1):
        out[f"style.{i}.weight"] = layer.weight
        out[f"style.{i}.bias"] = layer.bias
    num_ws = net.num_ws
    for k in range(num_ws):
        if k == 0 or (k <= res_index and k < num_ws - 1):
            for name, value in modres_tensors(net.res[k]).items():
                out[f"res.{k}.{name}"] = value
        else:
            out[f"res.{k}.weight"] = net.res[k].weight
            out[f"res.{k}.bias"] = net.res[k].bias
    return {k: v.detach().clone() for k, v in out.items()}


def official_key_count(resolution: int, mapping_layers: int = 8) -> int:
    """Keys of the official module's state dict (rosinality generator + extrinsic path)."""
    log2 = resolution.bit_length() - 1
    blocks = log2 - 2  # 8 .. resolution
    styled = 5  # conv.weight, conv.modulation.{weight,bias}, noise.weight, activate.bias
    generator = 2 * mapping_layers + 1 + styled + 4  # style.*, input, conv1, to_rgb1
    generator += blocks * (2 * styled + 1 + 4 + 1)  # convs (+ blur kernel), to_rgb (+ upsample)
    generator += 2 * blocks + 1  # noise buffers
    num_ws = 2 * log2 - 2
    return generator + 2 * (mapping_layers - 6) + 7 * len(MODRES_NAMES) + 2 * (num_ws - 7)


def write_generator_pt(path, net, D=None, g=None) -> None:
    ckpt = {"g_ema": official_state(net)}
    if D is not None:
        import argparse

        ckpt.update({"g": official_state(g or net), "d": rosinality_discriminator_state(D),
                     "g_optim": {}, "d_optim": {}, "ada_aug_p": 0.0,
                     "args": argparse.Namespace(size=net.img_resolution)})
    torch.save(ckpt, path)


def write_code_dict(path, names, num_ws: int, dim: int, seed: int = 0) -> dict:
    rng = np.random.RandomState(seed)
    codes = {name: rng.randn(1, num_ws, dim).astype(np.float32) for name in names}
    np.save(path, codes)
    return codes


def write_sampler_pt(path, layers_structure: int, layers_colour: int, dim: int) -> None:
    def net_t(out_dim):
        torch.manual_seed(out_dim)
        state = {"lin1.weight": torch.randn(128, 128), "lin2.weight": torch.randn(128, 128),
                 "lin_out.weight": torch.randn(out_dim, 128)}
        for bn in ("bn1", "bn2"):
            state.update({f"{bn}.weight": torch.rand(128), f"{bn}.bias": torch.randn(128),
                          f"{bn}.running_mean": torch.randn(128),
                          f"{bn}.running_var": torch.rand(128) + 0.5,
                          f"{bn}.num_batches_tracked": torch.tensor(7)})
        return state

    torch.save({"color": net_t(layers_colour * dim), "structure": net_t(layers_structure * dim)},
               path)

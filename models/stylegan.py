"""StyleGAN (v1) generator with every ablation switch of the paper's Tables 1, 2 and 4.

One class covers the whole ladder from the ProGAN baseline to config F: mapping depth 0..8
(lr multiplier 0.01), AdaIN styles vs traditional pixel-norm layers, learned constant vs a
dense layer fed by the latent, per-layer noise, [1,2,1] blur vs nearest resampling, fused
up-convolutions from `fused_scale_min_res`, truncation with cutoff and a tracked w_avg, and
progressive growing through the `lod` attribute (0 = full resolution).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from models.layers import (
    SQRT2,
    EqualLinear,
    bias_act,
    channels_for,
    filter2d,
    growing_levels,
    lod_blend,
    log2_resolution,
    pixel_norm,
    setup_filter,
    upscale_nearest,
)
from models.stylegan2 import MappedGenerator, broadcast_ws


def instance_norm(x: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    x = x - x.mean(dim=[2, 3], keepdim=True)
    return x * (x.square().mean(dim=[2, 3], keepdim=True) + eps).rsqrt()


def fused_up_weight(w: torch.Tensor) -> torch.Tensor:
    """3x3 kernel [O, I, 3, 3] -> 4x4 transposed-conv kernel [I, O, 4, 4] (TF fused upscale)."""
    w = F.pad(w, [1, 1, 1, 1])
    w = w[:, :, 1:, 1:] + w[:, :, :-1, 1:] + w[:, :, 1:, :-1] + w[:, :, :-1, :-1]
    return w.transpose(0, 1)


def fused_down_weight(w: torch.Tensor) -> torch.Tensor:
    """3x3 kernel [O, I, 3, 3] -> 4x4 stride-2 kernel (TF fused downscale)."""
    w = F.pad(w, [1, 1, 1, 1])
    return (w[:, :, 1:, 1:] + w[:, :, :-1, 1:] + w[:, :, 1:, :-1] + w[:, :, :-1, :-1]) * 0.25


class MappingV1(nn.Module):
    """Pixel-normalised z (label embedding concatenated first), then `num_layers` dense."""

    def __init__(self, z_dim: int, c_dim: int, w_dim: int, num_ws: int, num_layers: int,
                 lr_multiplier: float, w_avg_beta: float):
        super().__init__()
        self.z_dim, self.c_dim, self.num_ws, self.num_layers = z_dim, c_dim, num_ws, num_layers
        self.w_avg_beta = w_avg_beta
        if c_dim:
            self.embed = nn.Parameter(torch.randn(c_dim, z_dim))
        width = z_dim * (2 if c_dim else 1)
        for i in range(num_layers):
            setattr(self, f"fc{i}", EqualLinear(width if i == 0 else w_dim, w_dim,
                                                lr_multiplier=lr_multiplier,
                                                activation="lrelu-plain", gain=SQRT2))
        self.w_dim = w_dim if num_layers else width
        self.register_buffer("w_avg", torch.zeros(self.w_dim))

    def forward(self, z, c=None, truncation_psi=1.0, truncation_cutoff=None, update_w_avg=False):
        x = z.to(torch.float32)
        if self.c_dim:
            if c is None:
                raise ValueError(f"this generator is conditional (c_dim={self.c_dim}); pass c")
            x = torch.cat([x, c.to(torch.float32) @ self.embed], dim=1)
        x = pixel_norm(x)
        for i in range(self.num_layers):
            x = getattr(self, f"fc{i}")(x)
        return broadcast_ws(self, x, update_w_avg, truncation_psi, truncation_cutoff)


class LayerV1(nn.Module):
    """One synthesis layer: (const | dense | conv | up-conv) + blur, noise, bias, lrelu, norm,
    AdaIN style modulation."""

    def __init__(self, kind: str, in_channels: int, out_channels: int, w_dim: int,
                 resolution: int, *, use_styles: bool, use_noise: bool, blur: bool,
                 fused: bool):
        super().__init__()
        self.kind, self.resolution, self.out_channels = kind, resolution, out_channels
        self.use_styles, self.use_noise, self.blur, self.fused = use_styles, use_noise, blur, fused
        if kind == "const":
            self.const = nn.Parameter(torch.ones(1, out_channels, 4, 4))
        elif kind == "dense":
            self.dense = EqualLinear(in_channels, out_channels * 16, bias=False, gain=SQRT2 / 4)
        else:
            self.weight = nn.Parameter(torch.randn(out_channels, in_channels, 3, 3))
            self.weight_gain = SQRT2 / math.sqrt(in_channels * 9)
        if use_noise:
            self.noise_weight = nn.Parameter(torch.zeros(out_channels))
            self.register_buffer("noise_const", torch.randn(resolution, resolution))
        self.bias = nn.Parameter(torch.zeros(out_channels))
        if use_styles:
            self.style = EqualLinear(w_dim, out_channels * 2)
        self.register_buffer("blur_filter", setup_filter([1, 2, 1]))

    def convolve(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        if self.kind == "const":
            return self.const.to(w.dtype).repeat(w.shape[0], 1, 1, 1)
        if self.kind == "dense":
            return self.dense(w).reshape(-1, self.out_channels, 4, 4)
        weight = self.weight.to(x.dtype) * self.weight_gain
        if self.kind == "conv":
            return F.conv2d(x, weight, padding=1)
        if self.fused:
            x = F.conv_transpose2d(x, fused_up_weight(weight), stride=2, padding=1)
        else:
            x = F.conv2d(upscale_nearest(x), weight, padding=1)
        return filter2d(x, self.blur_filter) if self.blur else x

    def forward(self, x, w, noise_mode="random"):
        x = self.convolve(x, w)
        if self.use_noise and noise_mode != "none":
            if noise_mode == "random":
                noise = torch.randn(x.shape[0], 1, *x.shape[2:], device=x.device, dtype=x.dtype)
            else:
                noise = self.noise_const.to(x.dtype)
            x = x + noise * self.noise_weight.to(x.dtype).reshape(1, -1, 1, 1)
        x = bias_act(x, self.bias, "lrelu-plain")
        if not self.use_styles:
            return pixel_norm(x)
        x = instance_norm(x)
        style = self.style(w).reshape(-1, 2, self.out_channels, 1, 1)
        return x * (style[:, 0] + 1) + style[:, 1]


class ToRGBV1(nn.Module):
    def __init__(self, in_channels: int, img_channels: int):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(img_channels, in_channels, 1, 1))
        self.bias = nn.Parameter(torch.zeros(img_channels))
        self.weight_gain = 1 / math.sqrt(in_channels)

    def forward(self, x):
        return bias_act(F.conv2d(x, self.weight.to(x.dtype) * self.weight_gain), self.bias,
                        "linear")


class SynthesisV1(nn.Module):
    def __init__(self, w_dim: int, img_resolution: int, img_channels: int,
                 channels: dict[int, int], *, use_styles: bool, const_input: bool,
                 use_noise: bool, blur: bool, fused_scale_min_res: int):
        super().__init__()
        self.img_resolution = img_resolution
        self.block_resolutions = [2 ** i for i in range(2, log2_resolution(img_resolution) + 1)]
        self.num_ws = 2 * len(self.block_resolutions)
        self.lod = 0.0
        flags = dict(use_styles=use_styles, use_noise=use_noise, blur=blur)
        for res in self.block_resolutions:
            c = channels[res]
            if res == 4:
                first = "const" if const_input else "dense"
                layer0 = LayerV1(first, w_dim, c, w_dim, 4, fused=False, **flags)
                layer1 = LayerV1("conv", c, c, w_dim, 4, fused=False, **flags)
            else:
                layer0 = LayerV1("up", channels[res // 2], c, w_dim, res,
                                 fused=res >= fused_scale_min_res, **flags)
                layer1 = LayerV1("conv", c, c, w_dim, res, fused=False, **flags)
            setattr(self, f"b{res}", nn.ModuleDict(
                {"conv0": layer0, "conv1": layer1, "torgb": ToRGBV1(c, img_channels)}))

    def forward(self, ws: torch.Tensor, noise_mode: str = "random") -> torch.Tensor:
        if noise_mode not in ("random", "const", "none"):
            raise ValueError(f"noise_mode must be random, const or none, got {noise_mode!r}")
        x = img = None
        top = len(self.block_resolutions) - 1
        for level, res, t in growing_levels(self.block_resolutions, self.lod):
            block = getattr(self, f"b{res}")
            x = block["conv0"](x, ws[:, 2 * level], noise_mode)
            x = block["conv1"](x, ws[:, 2 * level + 1], noise_mode)
            if level == top or t > -1:
                y = block["torgb"](x).to(torch.float32)
                img = y if img is None else lod_blend(y, upscale_nearest(img), t)
        return upscale_nearest(img, self.img_resolution // img.shape[-1])


class StyleGANGenerator(MappedGenerator):
    def __init__(self, z_dim: int, c_dim: int, w_dim: int, img_resolution: int,
                 img_channels: int, channels: dict[int, int], *, mapping_layers: int = 8,
                 mapping_lr_multiplier: float = 0.01, w_avg_beta: float = 0.995,
                 use_styles: bool = True, const_input: bool = True, use_noise: bool = True,
                 blur: bool = True, fused_scale_min_res: int = 128):
        super().__init__()
        num_ws = 2 * (log2_resolution(img_resolution) - 1)
        self.mapping = MappingV1(z_dim, c_dim, w_dim, num_ws, mapping_layers,
                                 mapping_lr_multiplier, w_avg_beta)
        self.z_dim, self.c_dim, self.w_dim = z_dim, c_dim, self.mapping.w_dim
        self.img_resolution, self.img_channels, self.num_ws = img_resolution, img_channels, num_ws
        self.has_mapping = mapping_layers > 0
        self.use_styles = use_styles  # False: traditional input, only ws[:, 0] is used
        self.synthesis = SynthesisV1(self.w_dim, img_resolution, img_channels, channels,
                                     use_styles=use_styles, const_input=const_input,
                                     use_noise=use_noise, blur=blur,
                                     fused_scale_min_res=fused_scale_min_res)


def v1_channels(img_resolution: int, channel_base: int, channel_max: int) -> dict[int, int]:
    return {2 ** i: channels_for(2 ** i, channel_base, channel_max)
            for i in range(1, log2_resolution(img_resolution) + 1)}


def build_stylegan(config, resolution: int, c_dim: int = 0, img_channels: int = 3):
    """(G, D) for a StyleGAN v1 or ProGAN ModelConfig (progressive D from models.progan)."""
    from models.progan import ProgressiveDiscriminator

    channels = v1_channels(resolution, config.channel_base, config.channel_max)
    if not config.mapping_layers and config.w_dim != config.z_dim * (2 if c_dim else 1):
        config = config.replace(w_dim=config.z_dim * (2 if c_dim else 1))
    G = StyleGANGenerator(config.z_dim, c_dim, config.w_dim, resolution, img_channels, channels,
                          mapping_layers=config.mapping_layers,
                          mapping_lr_multiplier=config.mapping_lr_multiplier,
                          w_avg_beta=config.w_avg_beta, use_styles=config.use_styles,
                          const_input=config.const_input, use_noise=config.use_noise,
                          blur=config.blur, fused_scale_min_res=config.fused_scale_min_res)
    D = ProgressiveDiscriminator(c_dim, resolution, img_channels, channels, blur=config.blur,
                                 fused_scale_min_res=config.fused_scale_min_res,
                                 mbstd_group_size=config.mbstd_group,
                                 mbstd_num_channels=config.mbstd_channels)
    return G, D

"""ProGAN baseline (Karras et al. 2018) and the progressive discriminator StyleGAN v1 shares.

The ProGAN generator is the StyleGAN v1 generator with every style switch off (traditional
latent input through a dense layer, pixel norm after each conv, no noise, nearest resampling),
built here from a config whose `arch` is "progan". The discriminator has a fromRGB at every
level and fades between levels by its `lod` attribute, as the reference "linear" structure does
(entering at the coarsest level that still matters, so low-lod steps stay cheap).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from models.layers import (
    SQRT2,
    EqualLinear,
    MinibatchStd,
    bias_act,
    downscale_box,
    filter2d,
    lod_blend,
    log2_resolution,
    setup_filter,
)


class ConvV1(nn.Module):
    """Equalised-lr conv (gain sqrt 2 in the weight), bias, plain leaky ReLU; optional
    2x downscale: "fused" (4x4 stride-2 kernel), "pool" (StyleGAN v1: 2x2 average pool of the
    conv output, then bias and activation) or "pool-after" (ProGAN D_paper: bias and
    activation, then the pool)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, *,
                 down: str | None = None, gain: float = SQRT2, activation: str = "lrelu-plain"):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size,
                                               kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channels))
        self.weight_gain = gain / math.sqrt(in_channels * kernel_size * kernel_size)
        self.down, self.activation = down, activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        from models.stylegan import fused_down_weight

        w = self.weight.to(x.dtype) * self.weight_gain
        if self.down == "fused":
            x = F.conv2d(x, fused_down_weight(w), stride=2, padding=1)
        else:
            x = F.conv2d(x, w, padding=w.shape[-1] // 2)
            if self.down == "pool":
                x = downscale_box(x, 2)
        x = bias_act(x, self.bias, self.activation)
        return downscale_box(x, 2) if self.down == "pool-after" else x


class DiscriminatorLevel(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, img_channels: int, resolution: int,
                 *, blur: bool, fused: bool):
        super().__init__()
        self.blur = blur
        self.fromrgb = ConvV1(img_channels, in_channels, 1)
        self.conv0 = ConvV1(in_channels, in_channels, 3)
        self.conv1 = ConvV1(in_channels, out_channels, 3, down="fused" if fused else "pool")
        self.register_buffer("blur_filter", setup_filter([1, 2, 1]))

    def run_convs(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv0(x)
        if self.blur:
            x = filter2d(x, self.blur_filter)
        return self.conv1(x)


class DiscriminatorHead(nn.Module):
    def __init__(self, channels: dict[int, int], img_channels: int, c_dim: int, *,
                 mbstd_group_size: int, mbstd_num_channels: int):
        super().__init__()
        c4, c2 = channels[4], channels[2]
        self.c_dim = c_dim
        self.fromrgb = ConvV1(img_channels, c4, 1)
        self.mbstd = MinibatchStd(mbstd_group_size, mbstd_num_channels) \
            if mbstd_num_channels else None
        self.conv = ConvV1(c4 + mbstd_num_channels, c4, 3)
        self.dense0 = EqualLinear(c4 * 16, c2, gain=SQRT2, activation="lrelu-plain")
        self.dense1 = EqualLinear(c2, max(c_dim, 1))

    def run_convs(self, x: torch.Tensor) -> torch.Tensor:
        if self.mbstd is not None:
            x = self.mbstd(x)
        return self.dense1(self.dense0(self.conv(x).flatten(1)))


class ProgressiveDiscriminator(nn.Module):
    def __init__(self, c_dim: int, img_resolution: int, img_channels: int,
                 channels: dict[int, int], *, blur: bool = True, fused_scale_min_res: int = 128,
                 mbstd_group_size: int = 4, mbstd_num_channels: int = 1):
        super().__init__()
        self.c_dim, self.img_resolution, self.img_channels = c_dim, img_resolution, img_channels
        self.block_resolutions = [2 ** i for i in range(log2_resolution(img_resolution), 2, -1)]
        self.lod = 0.0
        for res in self.block_resolutions:
            setattr(self, f"b{res}", DiscriminatorLevel(
                channels[res], channels[res // 2], img_channels, res, blur=blur,
                fused=res >= fused_scale_min_res))
        self.b4 = DiscriminatorHead(channels, img_channels, c_dim,
                                    mbstd_group_size=mbstd_group_size,
                                    mbstd_num_channels=mbstd_num_channels)

    def forward(self, img: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        levels = [getattr(self, f"b{res}") for res in self.block_resolutions] + [self.b4]
        start = min(max(int(math.floor(self.lod)), 0), len(levels) - 1)
        frac = self.lod - start if start < len(levels) - 1 else 0.0
        img = downscale_box(img, 2 ** start)
        x = levels[start].fromrgb(img)
        for level in range(start, len(levels)):
            x = levels[level].run_convs(x)
            if level == start and frac > 0:
                x = lod_blend(x, levels[level + 1].fromrgb(downscale_box(img, 2)), frac)
        if self.c_dim:
            if c is None:
                raise ValueError(f"this discriminator is conditional (c_dim={self.c_dim}); "
                                 "pass c")
            x = (x * c.to(x.dtype)).sum(dim=1, keepdim=True)
        return x


def build_progan(config, resolution: int, c_dim: int = 0, img_channels: int = 3):
    """(G, D) for a ProGAN ModelConfig: the v1 generator with all style switches off; D pools
    after the activation where it does not fuse the downscale, as D_paper does."""
    from models.stylegan import build_stylegan

    if config.use_styles or config.const_input or config.use_noise:
        raise ValueError(f"config {config.name}: ProGAN has no styles, constant input or noise")
    G, D = build_stylegan(config, resolution, c_dim, img_channels)
    for res in D.block_resolutions:
        conv1 = getattr(D, f"b{res}").conv1
        if conv1.down == "pool":
            conv1.down = "pool-after"
    return G, D

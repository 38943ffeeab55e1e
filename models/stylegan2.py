"""StyleGAN2 generator and discriminator (Karras et al. 2020), pure PyTorch.

Parameter and buffer names follow the stylegan2-ada-pytorch layout (mapping.fc0, synthesis.b4.
conv1.affine, D b1024.fromrgb, b4.fc ...) so its checkpoints import by name. Switches cover the
paper's Table 1: weight demodulation on/off, G architecture orig/skip/resnet, D architecture
orig/skip/resnet, channel_base / channel_max, minibatch-stddev group.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from models.layers import (
    EqualConv2d,
    EqualLinear,
    MinibatchStd,
    bias_act,
    channels_for,
    downsample2d,
    downscale_box,
    growing_levels,
    lod_blend,
    log2_resolution,
    pixel_norm,
    resample_conv2d,
    setup_filter,
    upsample2d,
    upscale_nearest,
)

ARCHITECTURES = ("orig", "skip", "resnet")


def modulated_conv2d(x: torch.Tensor, weight: torch.Tensor, styles: torch.Tensor, *,
                     demodulate: bool = True, up: int = 1, resample_filter: torch.Tensor,
                     fused: bool = True) -> torch.Tensor:
    """Modulate `weight` [O, I, k, k] per sample by `styles` [N, I], optionally demodulate.

    fused=True runs one grouped convolution with per-sample weights; fused=False scales the
    activations instead (same result, one shared weight), which is faster for large batches.
    """
    n = x.shape[0]
    out_c, in_c, k, _ = weight.shape
    # sum over (i, kh, kw) of (W[o,i] s[n,i])^2 as one [N, I] x [I, O] product: no per-sample
    # [N, O, I, k, k] tensor is needed unless the grouped form asks for it
    dcoefs = (styles.square() @ weight.square().sum(dim=[2, 3]).t() + 1e-8).rsqrt() \
        if demodulate else None
    if not fused:
        x = x * styles.to(x.dtype)[:, :, None, None]
        x = resample_conv2d(x, weight.to(x.dtype), resample_filter, up=up)
        return x * dcoefs.to(x.dtype)[:, :, None, None] if demodulate else x
    w = weight[None] * styles[:, None, :, None, None]
    if demodulate:
        w = w * dcoefs[:, :, None, None, None]
    x = x.reshape(1, n * in_c, *x.shape[2:])
    w = w.reshape(n * out_c, in_c, k, k).to(x.dtype)
    x = resample_conv2d(x, w, resample_filter, up=up, groups=n)
    return x.reshape(n, out_c, *x.shape[2:])


def broadcast_ws(mapping: nn.Module, w: torch.Tensor, update_w_avg: bool,
                 truncation_psi: float, truncation_cutoff: int | None) -> torch.Tensor:
    """The end of every mapping network: track w_avg, repeat w per layer, truncate."""
    if update_w_avg:
        mapping.w_avg.copy_(w.detach().mean(dim=0).lerp(mapping.w_avg, mapping.w_avg_beta))
    ws = w[:, None, :].repeat(1, mapping.num_ws, 1)
    return truncate(ws, mapping.w_avg, truncation_psi, truncation_cutoff)


class MappingNetwork(nn.Module):
    def __init__(self, z_dim: int, c_dim: int, w_dim: int, num_ws: int, *, num_layers: int = 8,
                 lr_multiplier: float = 0.01, w_avg_beta: float = 0.995):
        super().__init__()
        self.z_dim, self.c_dim, self.w_dim, self.num_ws = z_dim, c_dim, w_dim, num_ws
        self.num_layers = num_layers
        self.w_avg_beta = w_avg_beta
        if c_dim:
            self.embed = EqualLinear(c_dim, w_dim)
        features = [z_dim + (w_dim if c_dim else 0)] + [w_dim] * num_layers
        for i in range(num_layers):
            setattr(self, f"fc{i}", EqualLinear(features[i], features[i + 1],
                                                lr_multiplier=lr_multiplier, activation="lrelu"))
        self.register_buffer("w_avg", torch.zeros(w_dim))

    def forward(self, z, c=None, truncation_psi=1.0, truncation_cutoff=None, update_w_avg=False):
        parts = [pixel_norm(z.to(torch.float32))] if self.z_dim else []
        if self.c_dim:
            if c is None:
                raise ValueError(f"this generator is conditional (c_dim={self.c_dim}); pass c")
            parts.append(pixel_norm(self.embed(c.to(torch.float32))))
        x = torch.cat(parts, dim=1)
        for i in range(self.num_layers):
            x = getattr(self, f"fc{i}")(x)
        return broadcast_ws(self, x, update_w_avg, truncation_psi, truncation_cutoff)


def truncate(ws: torch.Tensor, w_avg: torch.Tensor, psi: float, cutoff: int | None):
    if psi == 1:
        return ws
    ws = ws.clone()
    cutoff = ws.shape[1] if cutoff is None else cutoff
    ws[:, :cutoff] = w_avg.to(ws.dtype).lerp(ws[:, :cutoff], psi)
    return ws


class SynthesisLayer(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, w_dim: int, resolution: int, *,
                 kernel_size: int = 3, up: int = 1, use_noise: bool = True,
                 demodulate: bool = True, resample_filter=(1, 3, 3, 1),
                 conv_clamp: float | None = None):
        super().__init__()
        self.resolution, self.up = resolution, up
        self.use_noise, self.demodulate, self.conv_clamp = use_noise, demodulate, conv_clamp
        self.register_buffer("resample_filter", setup_filter(resample_filter))
        self.affine = EqualLinear(w_dim, in_channels, bias_init=1)
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size,
                                               kernel_size))
        self.weight_gain = 1 / math.sqrt(in_channels * kernel_size * kernel_size)
        if use_noise:
            self.register_buffer("noise_const", torch.randn(resolution, resolution))
            self.noise_strength = nn.Parameter(torch.zeros([]))
        self.bias = nn.Parameter(torch.zeros(out_channels))

    def forward(self, x, w, noise_mode="random", fused=True):
        styles = self.affine(w)
        x = modulated_conv2d(x, self.weight * self.weight_gain, styles, up=self.up,
                             demodulate=self.demodulate, resample_filter=self.resample_filter,
                             fused=fused)
        if self.use_noise and noise_mode != "none":
            if noise_mode == "random":
                noise = torch.randn(x.shape[0], 1, self.resolution, self.resolution,
                                    device=x.device, dtype=x.dtype)
            else:
                noise = self.noise_const.to(x.dtype)
            x = x + noise * self.noise_strength.to(x.dtype)
        return bias_act(x, self.bias, "lrelu", self.conv_clamp)


class ToRGBLayer(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, w_dim: int,
                 conv_clamp: float | None = None):
        super().__init__()
        self.affine = EqualLinear(w_dim, in_channels, bias_init=1)
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, 1, 1))
        self.bias = nn.Parameter(torch.zeros(out_channels))
        self.weight_gain = 1 / math.sqrt(in_channels)
        self.conv_clamp = conv_clamp
        self.register_buffer("resample_filter", setup_filter([1]))

    def forward(self, x, w, fused=True):
        styles = self.affine(w)
        x = modulated_conv2d(x, self.weight * self.weight_gain, styles, demodulate=False,
                             resample_filter=self.resample_filter, fused=fused)
        return bias_act(x, self.bias, "linear", self.conv_clamp)


class SynthesisBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, w_dim: int, resolution: int,
                 img_channels: int, is_last: bool, *, architecture: str = "skip",
                 use_noise: bool = True, demodulate: bool = True, resample_filter=(1, 3, 3, 1),
                 conv_clamp: float | None = None, progressive: bool = False):
        super().__init__()
        self.in_channels, self.resolution = in_channels, resolution
        self.architecture, self.is_last = architecture, is_last
        self.register_buffer("resample_filter", setup_filter(resample_filter))
        layer = dict(w_dim=w_dim, resolution=resolution, use_noise=use_noise,
                     demodulate=demodulate, resample_filter=resample_filter,
                     conv_clamp=conv_clamp)
        self.num_conv = 0
        if in_channels == 0:
            self.const = nn.Parameter(torch.randn(out_channels, resolution, resolution))
        else:
            self.conv0 = SynthesisLayer(in_channels, out_channels, up=2, **layer)
            self.num_conv += 1
        self.conv1 = SynthesisLayer(out_channels, out_channels, **layer)
        self.num_conv += 1
        self.num_torgb = 0
        if is_last or architecture == "skip" or progressive:
            self.torgb = ToRGBLayer(out_channels, img_channels, w_dim, conv_clamp=conv_clamp)
            self.num_torgb = 1
        if in_channels != 0 and architecture == "resnet":
            self.skip = EqualConv2d(in_channels, out_channels, 1, bias=False, up=2,
                                    resample_filter=resample_filter)

    def run_convs(self, x, ws, noise_mode="random", fused=True):
        """The block's convolutions; ws holds this block's latents (convs first)."""
        if self.in_channels == 0:
            x = self.const[None].repeat(ws.shape[0], 1, 1, 1)
            return self.conv1(x, ws[:, 0], noise_mode, fused)
        if self.architecture == "resnet":
            y = self.skip(x) * math.sqrt(0.5)
            x = self.conv0(x, ws[:, 0], noise_mode, fused)
            return y + self.conv1(x, ws[:, 1], noise_mode, fused) * math.sqrt(0.5)
        x = self.conv0(x, ws[:, 0], noise_mode, fused)
        return self.conv1(x, ws[:, 1], noise_mode, fused)

    def forward(self, x, img, ws, noise_mode="random", fused=True):
        x = self.run_convs(x, ws, noise_mode, fused)
        if img is not None:
            img = upsample2d(img, self.resample_filter)
        if self.num_torgb:
            y = self.torgb(x, ws[:, self.num_conv], fused).to(torch.float32)
            img = img + y if img is not None else y
        return x, img


class SynthesisNetwork(nn.Module):
    def __init__(self, w_dim: int, img_resolution: int, img_channels: int,
                 channels: dict[int, int], *, architecture: str = "skip", use_noise: bool = True,
                 demodulate: bool = True, resample_filter=(1, 3, 3, 1),
                 conv_clamp: float | None = None, progressive: bool = False):
        super().__init__()
        if architecture not in ARCHITECTURES:
            raise ValueError(f"G architecture must be one of {ARCHITECTURES}, got {architecture}")
        self.w_dim, self.img_resolution, self.img_channels = w_dim, img_resolution, img_channels
        self.block_resolutions = [2 ** i for i in range(2, log2_resolution(img_resolution) + 1)]
        # None = automatic: one grouped conv in eval mode, activation scaling while training
        # (stylegan2-ada's choice); True / False force one form.
        self.fused_modconv: bool | None = None
        self.progressive = progressive
        self.lod = 0.0
        self.num_ws = 0
        for res in self.block_resolutions:
            block = SynthesisBlock(channels[res // 2] if res > 4 else 0, channels[res], w_dim,
                                   res, img_channels, res == img_resolution,
                                   architecture=architecture, use_noise=use_noise,
                                   demodulate=demodulate, resample_filter=resample_filter,
                                   conv_clamp=conv_clamp, progressive=progressive)
            self.num_ws += block.num_conv
            if res == img_resolution:
                self.num_ws += block.num_torgb
            setattr(self, f"b{res}", block)

    def forward(self, ws: torch.Tensor, noise_mode: str = "random") -> torch.Tensor:
        if noise_mode not in ("random", "const", "none"):
            raise ValueError(f"noise_mode must be random, const or none, got {noise_mode!r}")
        if self.progressive:
            return self._forward_growing(ws, noise_mode)
        x = img = None
        w_idx = 0
        for res in self.block_resolutions:
            block = getattr(self, f"b{res}")
            block_ws = ws[:, w_idx: w_idx + block.num_conv + block.num_torgb]
            x, img = block(x, img, block_ws, noise_mode, self._fused())
            w_idx += block.num_conv
        return img

    def _fused(self) -> bool:
        return (not self.training) if self.fused_modconv is None else self.fused_modconv

    def _forward_growing(self, ws: torch.Tensor, noise_mode: str) -> torch.Tensor:
        """Progressive growing: every level has a toRGB; the output blends levels by `lod`."""
        x = img = None
        w_idx = 0
        for _, res, t in growing_levels(self.block_resolutions, self.lod):
            block = getattr(self, f"b{res}")
            x = block.run_convs(x, ws[:, w_idx: w_idx + block.num_conv], noise_mode,
                                self._fused())
            w_idx += block.num_conv
            y = block.torgb(x, ws[:, w_idx], self._fused()).to(torch.float32)
            # the revised StyleGAN2 networks fade in against the FIR-upsampled coarser level
            img = y if img is None else lod_blend(y, upsample2d(img, self.b4.resample_filter), t)
        return upscale_nearest(img, self.img_resolution // img.shape[-1])


class MappedGenerator(nn.Module):
    """What every style-based generator shares: `mapping` then `synthesis`, w_avg and lod."""

    @property
    def w_avg(self) -> torch.Tensor:
        return self.mapping.w_avg

    @property
    def lod(self) -> float:
        return self.synthesis.lod

    @lod.setter
    def lod(self, value: float) -> None:
        self.synthesis.lod = float(value)

    def forward(self, z, c=None, truncation_psi=1.0, truncation_cutoff=None,
                noise_mode="random"):
        ws = self.mapping(z, c, truncation_psi, truncation_cutoff)
        return self.synthesis(ws, noise_mode=noise_mode)


class Generator(MappedGenerator):
    has_mapping = True

    def __init__(self, z_dim: int, c_dim: int, w_dim: int, img_resolution: int,
                 img_channels: int, channels: dict[int, int], *, mapping_layers: int = 8,
                 mapping_lr_multiplier: float = 0.01, w_avg_beta: float = 0.995,
                 architecture: str = "skip", use_noise: bool = True, demodulate: bool = True,
                 resample_filter=(1, 3, 3, 1), conv_clamp: float | None = None,
                 progressive: bool = False):
        super().__init__()
        self.z_dim, self.c_dim, self.w_dim = z_dim, c_dim, w_dim
        self.img_resolution, self.img_channels = img_resolution, img_channels
        self.synthesis = SynthesisNetwork(w_dim, img_resolution, img_channels, channels,
                                          architecture=architecture, use_noise=use_noise,
                                          demodulate=demodulate, resample_filter=resample_filter,
                                          conv_clamp=conv_clamp, progressive=progressive)
        self.num_ws = self.synthesis.num_ws
        self.mapping = MappingNetwork(z_dim, c_dim, w_dim, self.num_ws, num_layers=mapping_layers,
                                      lr_multiplier=mapping_lr_multiplier, w_avg_beta=w_avg_beta)



class DiscriminatorBlock(nn.Module):
    def __init__(self, in_channels: int, tmp_channels: int, out_channels: int, resolution: int,
                 img_channels: int, first: bool, *, architecture: str = "resnet",
                 resample_filter=(1, 3, 3, 1), conv_clamp: float | None = None,
                 progressive: bool = False):
        super().__init__()
        self.resolution, self.architecture = resolution, architecture
        self.register_buffer("resample_filter", setup_filter(resample_filter))
        self.has_fromrgb = first or architecture == "skip" or progressive
        if self.has_fromrgb:
            self.fromrgb = EqualConv2d(img_channels, tmp_channels, 1, activation="lrelu",
                                       conv_clamp=conv_clamp)
        self.conv0 = EqualConv2d(tmp_channels, tmp_channels, 3, activation="lrelu",
                                 conv_clamp=conv_clamp)
        gain = math.sqrt(0.5) if architecture == "resnet" else 1.0
        self.conv1 = EqualConv2d(tmp_channels, out_channels, 3, activation="lrelu", down=2,
                                 resample_filter=resample_filter, conv_clamp=conv_clamp)
        self.conv1_gain = gain
        if architecture == "resnet":
            self.skip = EqualConv2d(tmp_channels, out_channels, 1, bias=False, down=2,
                                    resample_filter=resample_filter)

    def forward(self, x, img):
        if self.has_fromrgb:
            y = self.fromrgb(img)
            x = x + y if x is not None else y
            img = downsample2d(img, self.resample_filter) if self.architecture == "skip" else None
        return self.run_convs(x), img

    def run_convs(self, x):
        if self.architecture == "resnet":
            y = self.skip(x) * math.sqrt(0.5)
            return y + self.conv1(self.conv0(x)) * self.conv1_gain
        return self.conv1(self.conv0(x))


class DiscriminatorEpilogue(nn.Module):
    def __init__(self, in_channels: int, cmap_dim: int, img_channels: int, *,
                 architecture: str = "resnet", mbstd_group_size: int = 4,
                 mbstd_num_channels: int = 1, conv_clamp: float | None = None,
                 progressive: bool = False):
        super().__init__()
        self.architecture = architecture
        if architecture == "skip" or progressive:
            self.fromrgb = EqualConv2d(img_channels, in_channels, 1, activation="lrelu")
        self.mbstd = MinibatchStd(mbstd_group_size, mbstd_num_channels) if mbstd_num_channels \
            else None
        self.conv = EqualConv2d(in_channels + mbstd_num_channels, in_channels, 3,
                                activation="lrelu", conv_clamp=conv_clamp)
        self.fc = EqualLinear(in_channels * 16, in_channels, activation="lrelu")
        self.out = EqualLinear(in_channels, 1 if cmap_dim == 0 else cmap_dim)
        self.cmap_dim = cmap_dim

    def forward(self, x, img, cmap=None):
        if self.architecture == "skip":
            x = x + self.fromrgb(img)
        return self.head(x, cmap)

    def head(self, x, cmap=None):
        if self.mbstd is not None:
            x = self.mbstd(x)
        x = self.conv(x)
        x = self.fc(x.flatten(1))
        x = self.out(x)
        if self.cmap_dim:
            x = (x * cmap).sum(dim=1, keepdim=True) / math.sqrt(self.cmap_dim)
        return x


class Discriminator(nn.Module):
    def __init__(self, c_dim: int, img_resolution: int, img_channels: int,
                 channels: dict[int, int], *, architecture: str = "resnet",
                 mbstd_group_size: int = 4, mbstd_num_channels: int = 1,
                 resample_filter=(1, 3, 3, 1), conv_clamp: float | None = None,
                 progressive: bool = False):
        super().__init__()
        if architecture not in ARCHITECTURES:
            raise ValueError(f"D architecture must be one of {ARCHITECTURES}, got {architecture}")
        self.c_dim, self.img_resolution, self.img_channels = c_dim, img_resolution, img_channels
        self.block_resolutions = [2 ** i for i in range(log2_resolution(img_resolution), 2, -1)]
        for res in self.block_resolutions:
            block = DiscriminatorBlock(channels[res] if res < img_resolution else 0,
                                       channels[res], channels[res // 2], res, img_channels,
                                       res == img_resolution, architecture=architecture,
                                       resample_filter=resample_filter, conv_clamp=conv_clamp,
                                       progressive=progressive)
            setattr(self, f"b{res}", block)
        self.progressive = progressive
        self.lod = 0.0
        cmap_dim = channels[4] if c_dim else 0
        if c_dim:
            self.mapping = MappingNetwork(0, c_dim, cmap_dim, num_ws=1, num_layers=8,
                                          lr_multiplier=0.01, w_avg_beta=1.0)
        self.b4 = DiscriminatorEpilogue(channels[4], cmap_dim, img_channels,
                                        architecture=architecture,
                                        mbstd_group_size=mbstd_group_size,
                                        mbstd_num_channels=mbstd_num_channels,
                                        conv_clamp=conv_clamp, progressive=progressive)

    def forward(self, img: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        cmap = self.mapping(None, c)[:, 0] if self.c_dim else None
        if self.progressive:
            return self.b4.head(self._features_growing(img), cmap)
        x = None
        for res in self.block_resolutions:
            x, img = getattr(self, f"b{res}")(x, img)
        return self.b4(x, img, cmap)

    def _features_growing(self, img: torch.Tensor) -> torch.Tensor:
        """Progressive growing: enter at the level `lod` selects, fading in from the next one."""
        levels = [getattr(self, f"b{res}") for res in self.block_resolutions] + [self.b4]
        start = min(int(math.floor(self.lod)), len(levels) - 1)
        frac = self.lod - start if start < len(levels) - 1 else 0.0
        img = downscale_box(img, 2 ** start)
        x = levels[start].fromrgb(img)
        for level in range(start, len(levels) - 1):
            x = levels[level].run_convs(x)
            if level == start and frac > 0:
                x = lod_blend(x, levels[level + 1].fromrgb(downscale_box(img, 2)), frac)
        return x


def stylegan2_channels(img_resolution: int, channel_base: int, channel_max: int):
    return {2 ** i: channels_for(2 ** i, channel_base, channel_max)
            for i in range(1, log2_resolution(img_resolution) + 1)}


def build_stylegan2(config, resolution: int, c_dim: int = 0, img_channels: int = 3):
    """(G, D) for a StyleGAN2-family ModelConfig."""
    channels = stylegan2_channels(resolution, config.channel_base, config.channel_max)
    G = Generator(config.z_dim, c_dim, config.w_dim, resolution, img_channels, channels,
                  mapping_layers=config.mapping_layers,
                  mapping_lr_multiplier=config.mapping_lr_multiplier,
                  w_avg_beta=config.w_avg_beta, architecture=config.g_architecture,
                  use_noise=config.use_noise, demodulate=config.demodulate,
                  resample_filter=config.fir, conv_clamp=config.conv_clamp,
                  progressive=config.progressive)
    D = Discriminator(c_dim, resolution, img_channels, channels,
                      architecture=config.d_architecture, mbstd_group_size=config.mbstd_group,
                      mbstd_num_channels=config.mbstd_channels, resample_filter=config.fir,
                      conv_clamp=config.conv_clamp, progressive=config.progressive)
    return G, D

"""DualStyleGAN (Yang et al., CVPR 2022, "Pastiche Master"), pure PyTorch.

A StyleGAN2 generator (the intrinsic path, our `models.stylegan2.Generator`, built as
rosinality builds it: skip G, no labels) plus an extrinsic style path driven by an artistic
exemplar's code:
  - `style`: the structure transform T_s = PixelNorm + (n_mlp - 6) equalised linear layers
    (lr multiplier 0.01, lrelu), applied to every layer of the extrinsic code;
  - `res`: one entry per latent layer. Entries 0..res_index are ModRes blocks (`AdaResBlock`,
    two AdaIN + 3x3 conv pairs added to the features after the conv of that layer, scaled by
    the layer's weight); the others are colour transforms T_c (equalised linear w_dim -> w_dim
    initialised to the identity) whose output replaces the layer's intrinsic w by
    weight * T_c(extrinsic) + (1 - weight) * intrinsic.

Parameter names follow the official module (williamyang1991/DualStyleGAN,
`model/dualstylegan.py`) below `style.*` and `res.*`; `generator.*` holds our StyleGAN2
names (the rosinality importer maps the official ones). Latent layer k is the k-th w of the
base generator (conv, conv, toRGB order, the toRGB of a block sharing its w with the next
block's first conv, as rosinality indexes them).

Differences from the official forward, all explicit: one intrinsic code (no two-code style
mixing), truncation applied for any `truncation != 1` towards a `truncation_latent` that must be
given, and `noise_mode` (random / const / none) instead of `randomize_noise`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from models.layers import EqualLinear, bias_act, pixel_norm, upsample2d
from models.stylegan2 import Generator, build_stylegan2

DEFAULT_RES_INDEX = 6
OFFICIAL_MAPPING_LAYERS = 6  # T_s has (n_mlp - 6) layers
RESIDUAL_INIT_SCALE = 0.01
COLOUR_INIT_NOISE = 0.01


class PixelNorm(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return pixel_norm(x)


class Conv3x3(nn.Module):
    """Equalised 3x3 conv without bias (the official ConvLayer's `0`)."""

    def __init__(self, channels: int):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(channels, channels, 3, 3))
        self.weight_gain = 1 / math.sqrt(channels * 9)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight.to(x.dtype) * self.weight_gain, padding=1)


class BiasLeakyReLU(nn.Module):
    """Bias, leaky ReLU 0.2, gain sqrt(2) (the official ConvLayer's `1`, FusedLeakyReLU)."""

    def __init__(self, channels: int):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return bias_act(x, self.bias, "lrelu")


def conv_layer(channels: int) -> nn.Sequential:
    return nn.Sequential(Conv3x3(channels), BiasLeakyReLU(channels))


class AdaptiveInstanceNorm(nn.Module):
    """Instance norm, then per-channel gamma, beta from a plain linear layer of the style."""

    def __init__(self, channels: int, style_dim: int):
        super().__init__()
        self.norm = nn.InstanceNorm2d(channels, affine=False)
        self.style = nn.Linear(style_dim, channels * 2)
        with torch.no_grad():
            self.style.bias[:channels] = 1
            self.style.bias[channels:] = 0

    def forward(self, x: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        gamma, beta = self.style(style)[:, :, None, None].chunk(2, dim=1)
        return gamma * self.norm(x) + beta


class AdaResBlock(nn.Module):
    """ModRes: x + weight * conv2(AdaIN2(conv(AdaIN(x, s)), s)); convs start near zero."""

    def __init__(self, channels: int, style_dim: int):
        super().__init__()
        self.conv = conv_layer(channels)
        self.conv2 = conv_layer(channels)
        self.norm = AdaptiveInstanceNorm(channels, style_dim)
        self.norm2 = AdaptiveInstanceNorm(channels, style_dim)
        with torch.no_grad():
            self.conv[0].weight.mul_(RESIDUAL_INIT_SCALE)
            self.conv2[0].weight.mul_(RESIDUAL_INIT_SCALE)

    def forward(self, x: torch.Tensor, style: torch.Tensor, weight: float = 1.0):
        if weight == 0:
            return x
        out = self.conv(self.norm(x, style))
        out = self.conv2(self.norm2(out, style))
        return out * weight + x


def colour_transform(w_dim: int) -> EqualLinear:
    """T_c: equalised linear layer whose effective weight starts at identity + small noise."""
    layer = EqualLinear(w_dim, w_dim)
    with torch.no_grad():
        layer.weight.copy_(torch.eye(w_dim) * math.sqrt(w_dim)
                           + torch.randn(w_dim, w_dim) * COLOUR_INIT_NOISE)
    return layer


def layer_resolution(k: int) -> int:
    """Feature resolution at latent layer k's conv (0 -> 4; 1, 2 -> 8; 3, 4 -> 16 ...)."""
    return 4 if k == 0 else 2 ** (3 + (k - 1) // 2)


class DualStyleGAN(nn.Module):
    """`DualStyleGAN(generator, res_index=6, structure_layers=2)`; see the module docstring.

    Not itself a contract generator (no z_dim): wrap it in `DualStyleGANGenerator` with a
    fixed exemplar to sample or score it.
    """

    def __init__(self, generator: Generator, *, res_index: int = DEFAULT_RES_INDEX,
                 structure_layers: int = 2):
        super().__init__()
        check_base_generator(generator)
        if res_index < 0 or structure_layers < 0:
            raise ValueError(f"res_index ({res_index}) and structure_layers "
                             f"({structure_layers}) must be >= 0")
        self.generator = generator
        w_dim = generator.w_dim
        self.w_dim, self.num_ws = w_dim, generator.num_ws
        self.img_resolution, self.img_channels = generator.img_resolution, generator.img_channels
        self.c_dim = 0
        self.res_index = res_index // 2 * 2
        self.style = nn.Sequential(PixelNorm(), *[
            EqualLinear(w_dim, w_dim, lr_multiplier=0.01, activation="lrelu")
            for _ in range(structure_layers)])
        self.res = nn.ModuleList(
            AdaResBlock(self.layer_channels(k), w_dim) if self.is_structure_layer(k)
            else colour_transform(w_dim) for k in range(self.num_ws))

    def is_structure_layer(self, k: int) -> bool:
        """res[k] is a ModRes block (else a colour transform)."""
        return k == 0 or (k <= self.res_index and k < self.num_ws - 1)

    def layer_channels(self, k: int) -> int:
        block = getattr(self.generator.synthesis, f"b{layer_resolution(k)}")
        return block.conv1.weight.shape[0]

    # --------------------------------------------------------------------------------------
    def map_z(self, z: torch.Tensor) -> torch.Tensor:
        """The base mapping network on z [..., z_dim] -> w [..., w_dim] (z+ layer by layer)."""
        flat = z.reshape(-1, z.shape[-1])
        return self.generator.mapping(flat, None)[:, 0].reshape(*z.shape[:-1], self.w_dim)

    def intrinsic_ws(self, instyle: torch.Tensor, *, z_plus_latent: bool = False,
                     input_is_latent: bool = False, truncation: float = 1.0,
                     truncation_latent: torch.Tensor | float | None = None) -> torch.Tensor:
        """The intrinsic code (z, z+ [N, num_ws, z_dim], w or w+) -> truncated w+."""
        if input_is_latent:
            ws = instyle
        else:
            expected = 3 if z_plus_latent else 2
            if instyle.ndim != expected:
                form = f"z+ [N, {self.num_ws}, z_dim]" if z_plus_latent else "z [N, z_dim]"
                raise ValueError(f"intrinsic code: expected {form}, got {tuple(instyle.shape)}")
            ws = self.map_z(instyle)
        if truncation != 1:
            if truncation_latent is None:
                raise ValueError("truncation != 1 needs a truncation_latent (0, as the official "
                                 "style_transfer.py, or the base generator's w_avg)")
            ws = truncation_latent + truncation * (ws - truncation_latent)
        if ws.ndim == 2:
            ws = ws[:, None].repeat(1, self.num_ws, 1)
        if tuple(ws.shape[1:]) != (self.num_ws, self.w_dim):
            raise ValueError(f"intrinsic code has shape {tuple(ws.shape)}, expected "
                             f"[N, {self.num_ws}, {self.w_dim}]")
        return ws

    def extrinsic_codes(self, exstyle: torch.Tensor, batch: int):
        """(T_s codes for ModRes, raw codes for T_c), both [N, num_ws, w_dim]."""
        if exstyle.ndim == 2:
            exstyle = exstyle[:, None].repeat(1, self.num_ws, 1)
        if exstyle.shape[0] == 1 and batch > 1:
            exstyle = exstyle.expand(batch, -1, -1)
        if tuple(exstyle.shape) != (batch, self.num_ws, self.w_dim):
            raise ValueError(f"extrinsic code has shape {tuple(exstyle.shape)}, expected "
                             f"[{batch}, {self.num_ws}, {self.w_dim}]")
        structure = self.style(exstyle.reshape(-1, self.w_dim)).reshape(exstyle.shape)
        return structure, exstyle

    def interp_weights(self, weights: Sequence[float] | None) -> list[float]:
        if weights is None:
            return [1.0] * self.num_ws
        weights = [float(w) for w in weights]
        if len(weights) != self.num_ws:
            raise ValueError(f"{len(weights)} interpolation weights for {self.num_ws} layers")
        return weights

    # --------------------------------------------------------------------------------------
    def forward(self, instyle: torch.Tensor, exstyle: torch.Tensor | None, *,
                interp_weights: Sequence[float] | None = None, use_res: bool = True,
                fuse_index: int | None = None, z_plus_latent: bool = False,
                input_is_latent: bool = False, truncation: float = 1.0,
                truncation_latent: torch.Tensor | float | None = None,
                noise_mode: str = "random") -> torch.Tensor:
        """Images [N, C, H, W]. exstyle is the extrinsic code in W (+): map a z+ exemplar
        code through `map_z` first, as the official style_transfer.py does."""
        ws = self.intrinsic_ws(instyle, z_plus_latent=z_plus_latent,
                               input_is_latent=input_is_latent, truncation=truncation,
                               truncation_latent=truncation_latent)
        return self.synthesize(ws, exstyle, interp_weights=interp_weights, use_res=use_res,
                               fuse_index=fuse_index, noise_mode=noise_mode)

    def synthesize(self, ws: torch.Tensor, exstyle: torch.Tensor | None, *,
                   interp_weights: Sequence[float] | None = None, use_res: bool = True,
                   fuse_index: int | None = None, noise_mode: str = "random") -> torch.Tensor:
        """The two paths from the intrinsic w+ [N, num_ws, w_dim] and the extrinsic W code."""
        if noise_mode not in ("random", "const", "none"):
            raise ValueError(f"noise_mode must be random, const or none, got {noise_mode!r}")
        path = _ExtrinsicPath(self, ws, exstyle, self.interp_weights(interp_weights),
                              use_res, self.num_ws if fuse_index is None else fuse_index)
        synthesis = self.generator.synthesis
        fused = synthesis._fused()
        x = img = None
        for res in synthesis.block_resolutions:
            block = getattr(synthesis, f"b{res}")
            if res == 4:
                x = block.const[None].repeat(ws.shape[0], 1, 1, 1)
                x = path.conv(block.conv1, x, 0, noise_mode, fused)
                img = block.torgb(x, ws[:, 1], fused).to(torch.float32)
                continue
            k = 2 * int(math.log2(res)) - 5
            x = path.conv(block.conv0, x, k, noise_mode, fused)
            x = path.conv(block.conv1, x, k + 1, noise_mode, fused)
            img = upsample2d(img, block.resample_filter)
            img = img + block.torgb(x, path.w(k + 2), fused).to(torch.float32)
        return img


class _ExtrinsicPath:
    """One forward pass's blending of the intrinsic ws with the exemplar's codes."""

    def __init__(self, net: DualStyleGAN, ws, exstyle, weights: list[float], use_res: bool,
                 fuse_index: int):
        self.net, self.ws, self.weights = net, ws, weights
        self.use_res, self.fuse_index = use_res, fuse_index
        if use_res:
            if exstyle is None:
                raise ValueError("use_res needs an extrinsic code (exstyle)")
            self.structure, self.colour = net.extrinsic_codes(exstyle.to(ws.dtype), ws.shape[0])

    def active(self, k: int) -> bool:
        reaches = self.fuse_index > 0 if k == 0 else self.fuse_index >= k
        return self.use_res and reaches and self.weights[k] != 0

    def w(self, k: int) -> torch.Tensor:
        """Latent k, blended with T_c(extrinsic k) on colour layers."""
        if k <= self.net.res_index or not self.active(k):
            return self.ws[:, k]
        weight = self.weights[k]
        return weight * self.net.res[k](self.colour[:, k]) + (1 - weight) * self.ws[:, k]

    def conv(self, layer, x, k: int, noise_mode: str, fused: bool) -> torch.Tensor:
        x = layer(x, self.w(k), noise_mode, fused)
        if k <= self.net.res_index and self.active(k):
            x = self.net.res[k](x, self.structure[:, k], self.weights[k])
        return x


def check_base_generator(G) -> None:
    if not isinstance(G, Generator):
        raise ValueError(f"DualStyleGAN's intrinsic path is a StyleGAN2 Generator, got "
                         f"{type(G).__name__}")
    synthesis = G.synthesis
    if G.c_dim or synthesis.progressive or synthesis.b4.architecture != "skip":
        raise ValueError("DualStyleGAN needs an unconditional, non-growing skip-architecture "
                         "StyleGAN2 generator (as rosinality builds it)")


def build_dualstylegan(config, resolution: int, c_dim: int = 0, img_channels: int = 3):
    """(DualStyleGAN, D) for a ModelConfig with arch 'dualstylegan': the base StyleGAN2 from
    the config's own fields, the extrinsic path from its `dualstylegan` section (the official
    DualStyleGAN(size, 512, 8, 2) is res_index 6 and a 2-layer T_s)."""
    if c_dim:
        raise ValueError("DualStyleGAN generators are unconditional (c_dim 0)")
    G, D = build_stylegan2(config, resolution, 0, img_channels)
    fields = config.dualstylegan
    return DualStyleGAN(G, res_index=fields.res_index,
                        structure_layers=fields.structure_layers), D


class FixedExemplarSynthesis(nn.Module):
    """synthesis(ws, noise_mode) of a DualStyleGAN whose extrinsic code and weights are fixed."""

    def __init__(self, net: DualStyleGAN, exstyle: torch.Tensor, weights: Sequence[float]):
        super().__init__()
        self.net = net
        self.register_buffer("exstyle", exstyle.detach().clone())
        self.weights = tuple(net.interp_weights(weights))
        self.w_dim, self.num_ws = net.w_dim, net.num_ws
        self.img_resolution, self.img_channels = net.img_resolution, net.img_channels

    def forward(self, ws: torch.Tensor, noise_mode: str = "random") -> torch.Tensor:
        return self.net.synthesize(ws, self.exstyle, interp_weights=self.weights,
                                   noise_mode=noise_mode)


class DualStyleGANGenerator(nn.Module):
    """A DualStyleGAN behind the generator contract (`models.contract.StyleGenerator`): one
    fixed exemplar (its W+ code [1, num_ws, w_dim]) and fixed interpolation weights, so
    metrics (fid50k ...) can score the stylised distribution. z is mapped by the base mapping
    network; truncation, as for every generator, pulls towards its w_avg."""

    has_mapping = True

    def __init__(self, net: DualStyleGAN, exstyle: torch.Tensor,
                 interp_weights: Sequence[float] | None = None):
        super().__init__()
        if tuple(exstyle.shape) != (1, net.num_ws, net.w_dim):
            raise ValueError(f"the exemplar's W+ code is [1, {net.num_ws}, {net.w_dim}], got "
                             f"{tuple(exstyle.shape)}")
        base = net.generator
        self.z_dim, self.c_dim, self.w_dim, self.num_ws = base.z_dim, 0, net.w_dim, net.num_ws
        self.img_resolution, self.img_channels = net.img_resolution, net.img_channels
        self.mapping = base.mapping
        self.synthesis = FixedExemplarSynthesis(net, exstyle, interp_weights)

    @classmethod
    def from_z_plus(cls, net: DualStyleGAN, exstyle_z: torch.Tensor,
                    interp_weights: Sequence[float] | None = None) -> "DualStyleGANGenerator":
        """From an exstyle file's z+ code, mapped as the official style_transfer.py maps it."""
        with torch.no_grad():
            return cls(net, net.map_z(exstyle_z), interp_weights)

    def forward(self, z, c=None, truncation_psi=1.0, truncation_cutoff=None,
                noise_mode="random"):
        ws = self.mapping(z, c, truncation_psi, truncation_cutoff)
        return self.synthesis(ws, noise_mode=noise_mode)

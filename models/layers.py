"""Building blocks shared by the ProGAN, StyleGAN and StyleGAN2 networks (pure PyTorch).

Equalised learning rate: parameters are stored as N(0, 1/lr_multiplier) and scaled at run time
by gain / sqrt(fan_in) * lr_multiplier, as in the reference code, so official weights load
unchanged. FIR resampling follows the upfirdn2d definition (upsample by zero insertion, pad,
convolve with the filter, downsample by striding) in plain torch ops.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

SQRT2 = math.sqrt(2.0)
LRELU_SLOPE = 0.2


def lrelu(x: torch.Tensor, gain: float = SQRT2) -> torch.Tensor:
    return F.leaky_relu(x, LRELU_SLOPE) * gain


def pixel_norm(x: torch.Tensor, dim: int = 1, eps: float = 1e-8) -> torch.Tensor:
    return x * (x.square().mean(dim=dim, keepdim=True) + eps).rsqrt()


def setup_filter(taps) -> torch.Tensor:
    """1-D taps -> normalised 2-D separable filter (sums to 1)."""
    f = torch.as_tensor(taps, dtype=torch.float32)
    if f.ndim == 1:
        f = f[:, None] * f[None, :]
    return f / f.sum()


def upfirdn2d(x: torch.Tensor, f: torch.Tensor, up: int = 1, down: int = 1,
              pad: tuple[int, int, int, int] = (0, 0, 0, 0), gain: float = 1.0) -> torch.Tensor:
    """Upsample (zero insertion), pad (x0, x1, y0, y1; negative crops), FIR-filter, downsample."""
    n, c, h, w = x.shape
    if up > 1:
        x = x.reshape(n, c, h, 1, w, 1)
        x = F.pad(x, [0, up - 1, 0, 0, 0, up - 1])
        x = x.reshape(n, c, h * up, w * up)
    px0, px1, py0, py1 = pad
    x = F.pad(x, [max(px0, 0), max(px1, 0), max(py0, 0), max(py1, 0)])
    x = x[:, :, max(-py0, 0): x.shape[2] - max(-py1, 0), max(-px0, 0): x.shape[3] - max(-px1, 0)]
    kernel = (f * gain).flip([0, 1]).to(x.dtype)
    kernel = kernel[None, None].repeat(c, 1, 1, 1)
    # striding the depthwise conv keeps exactly the samples [::down] would keep, without
    # computing the ones it drops (4-6x faster on CPU in channels_last)
    return F.conv2d(x, kernel, groups=c, stride=down)


def upsample2d(x: torch.Tensor, f: torch.Tensor, up: int = 2) -> torch.Tensor:
    fw = f.shape[-1]
    p0, p1 = (fw + up - 1) // 2, (fw - up) // 2
    return upfirdn2d(x, f, up=up, pad=(p0, p1, p0, p1), gain=up * up)


def downsample2d(x: torch.Tensor, f: torch.Tensor, down: int = 2) -> torch.Tensor:
    fw = f.shape[-1]
    p0, p1 = (fw - down + 1) // 2, (fw - down) // 2
    return upfirdn2d(x, f, down=down, pad=(p0, p1, p0, p1))


def filter2d(x: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    """Same-size blur."""
    fw = f.shape[-1]
    p0, p1 = fw // 2, (fw - 1) // 2
    return upfirdn2d(x, f, pad=(p0, p1, p0, p1))


def upscale_nearest(x: torch.Tensor, factor: int = 2) -> torch.Tensor:
    return x if factor == 1 else x.repeat_interleave(factor, 2).repeat_interleave(factor, 3)


def downscale_box(x: torch.Tensor, factor: int = 2) -> torch.Tensor:
    return x if factor == 1 else F.avg_pool2d(x, factor)


def downscale_to_lod(images: torch.Tensor, lod: float) -> torch.Tensor:
    """What a progressive discriminator sees at level-of-detail `lod` (0 = full resolution).

    Box-downsample by 2**floor(lod), blend towards the next coarser level by frac(lod) and
    upsample back (nearest), as the reference training loop does for the reals.
    """
    if lod <= 0:
        return images
    level = int(math.floor(lod))
    frac = lod - level
    x = downscale_box(images, 2 ** level)
    if frac > 0:
        coarse = upscale_nearest(downscale_box(x, 2), 2)
        x = torch.lerp(x, coarse, frac)
    return upscale_nearest(x, 2 ** level)


def lod_blend(fine: torch.Tensor, coarse: torch.Tensor, t: float) -> torch.Tensor:
    """lerp_clip of the reference code: fine at t <= 0, coarse at t >= 1."""
    t = min(max(t, 0.0), 1.0)
    if t == 0.0:
        return fine
    if t == 1.0:
        return coarse
    return torch.lerp(fine, coarse, t)


def growing_levels(resolutions: list[int], lod: float):
    """(level, resolution, t) of the blocks a growing generator runs at `lod`, coarsest first;
    t = lod - (top - level) is the level's blend weight towards the coarser output (<= 0: its
    own output, >= 1: none). Stops at the first level past the coarsest with t >= 1: the one
    below it already produced the output at full weight."""
    top = len(resolutions) - 1
    for level, resolution in enumerate(resolutions):
        t = lod - (top - level)
        if level > 0 and t >= 1:
            return
        yield level, resolution, t


class EqualLinear(nn.Module):
    """Dense layer with equalised learning rate (weight [out, in])."""

    def __init__(self, in_features: int, out_features: int, *, bias: bool = True,
                 bias_init: float = 0.0, lr_multiplier: float = 1.0, gain: float = 1.0,
                 activation: str = "linear"):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_features, in_features) / lr_multiplier)
        self.bias = nn.Parameter(torch.full([out_features], float(bias_init))) if bias else None
        self.weight_gain = gain * lr_multiplier / math.sqrt(in_features)
        self.bias_gain = lr_multiplier
        self.activation = activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bias = None if self.bias is None else self.bias.to(x.dtype) * self.bias_gain
        x = F.linear(x, self.weight.to(x.dtype) * self.weight_gain, bias)
        return bias_act(x, None, self.activation)


class EqualConv2d(nn.Module):
    """Conv with equalised learning rate; optional FIR up/down-sampling (StyleGAN2 style).

    Up: transposed conv of the flipped kernel, then FIR; down: FIR, then strided conv, exactly
    as the reference code orders them.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, *,
                 bias: bool = True, activation: str = "linear", up: int = 1, down: int = 1,
                 resample_filter=(1, 3, 3, 1), gain: float = 1.0, conv_clamp: float | None = None):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        self.weight_gain = gain / math.sqrt(in_channels * kernel_size * kernel_size)
        self.activation = activation
        self.up, self.down = up, down
        self.conv_clamp = conv_clamp
        self.register_buffer("resample_filter", setup_filter(resample_filter))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight.to(x.dtype) * self.weight_gain
        x = resample_conv2d(x, w, self.resample_filter, up=self.up, down=self.down)
        return bias_act(x, self.bias, self.activation, self.conv_clamp)


def bias_act(x: torch.Tensor, bias: torch.Tensor | None, activation: str,
             clamp: float | None = None, gain: float = 1.0) -> torch.Tensor:
    """Add bias, apply activation: linear | lrelu (times sqrt 2) | lrelu-plain (no gain)."""
    if bias is not None:
        x = x + bias.to(x.dtype).reshape(1, -1, *([1] * (x.ndim - 2)))
    if activation == "lrelu":
        x = lrelu(x, SQRT2 * gain)
    elif activation == "lrelu-plain":  # TF StyleGAN v1 / ProGAN: the gain lives in the weights
        x = lrelu(x, gain)
    elif gain != 1.0:
        x = x * gain
    if clamp is not None:
        x = x.clamp(-clamp * gain, clamp * gain)
    return x


def resample_conv2d(x: torch.Tensor, w: torch.Tensor, f: torch.Tensor, *, up: int = 1,
                    down: int = 1, groups: int = 1) -> torch.Tensor:
    """conv2d with optional 2x FIR up/down-sampling; w is [out, in/groups, k, k]."""
    k = w.shape[-1]
    fw = f.shape[-1]
    if up > 1:
        p = (fw - up) - (k - 1)
        wt = w.flip([2, 3])
        if groups > 1:
            out_per_group = w.shape[0] // groups
            wt = wt.reshape(groups, out_per_group, -1, k, k).transpose(1, 2)
            wt = wt.reshape(-1, out_per_group, k, k)
        else:
            wt = wt.transpose(0, 1)
        x = F.conv_transpose2d(x, wt, stride=up, groups=groups)
        p0, p1 = (p + 1) // 2 + up - 1, p // 2 + 1
        return upfirdn2d(x, f, pad=(p0, p1, p0, p1), gain=up * up)
    if down > 1:
        p = (fw - down) + (k - 1)
        pad = ((p + 1) // 2, p // 2, (p + 1) // 2, p // 2)
        if k == 1:  # a 1x1 conv commutes with the sampling: filter only the kept pixels
            return F.conv2d(upfirdn2d(x, f, down=down, pad=pad), w, groups=groups)
        x = upfirdn2d(x, f, pad=pad)
        return F.conv2d(x, w, stride=down, groups=groups)
    return F.conv2d(x, w, padding=k // 2, groups=groups)


class MinibatchStd(nn.Module):
    """Append the (grouped) minibatch standard deviation as extra feature maps."""

    def __init__(self, group_size: int = 4, num_channels: int = 1):
        super().__init__()
        self.group_size = group_size
        self.num_channels = num_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        g = min(self.group_size, n) if self.group_size else n
        if n % g:
            raise ValueError(f"minibatch size {n} is not divisible by the mbstd group size {g}")
        f = self.num_channels
        y = x.reshape(g, -1, f, c // f, h, w)
        y = y - y.mean(dim=0)
        y = (y.square().mean(dim=0) + 1e-8).sqrt()
        y = y.mean(dim=[2, 3, 4])
        y = y.reshape(-1, f, 1, 1).repeat(g, 1, h, w)
        return torch.cat([x, y], dim=1)


def channels_for(resolution: int, channel_base: int, channel_max: int) -> int:
    return max(1, min(channel_base // resolution, channel_max))


def log2_resolution(resolution: int) -> int:
    log2 = int(round(math.log2(resolution)))
    if 2 ** log2 != resolution or not 3 <= log2 <= 10:
        raise ValueError(f"resolution must be a power of two between 8 and 1024, got {resolution}")
    return log2


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def style_mix(ws: torch.Tensor, ws_other: torch.Tensor, crossover) -> torch.Tensor:
    """Layers before `crossover` from ws, the rest from ws_other (int or per-sample tensor)."""
    layer = torch.arange(ws.shape[1], device=ws.device)
    crossover = torch.as_tensor(crossover, device=ws.device).reshape(-1, 1)
    take_other = (layer[None, :] >= crossover)[:, :, None]
    return torch.where(take_other, ws_other, ws)

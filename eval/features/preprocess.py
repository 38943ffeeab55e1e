"""uint8 NCHW images -> normalised 299x299 Inception input, by named preprocessing mode.

- `tf`: TF1 `resize_bilinear` (align_corners=False, half_pixel_centers=False: source
  coordinate = dst * in / out), then (x - 128) / 128. What the papers' numbers used.
- `pytorch-fid`: x / 255, `F.interpolate(bilinear, align_corners=False)`, then 2x - 1.
- `clean`: clean-fid's convention: PIL bicubic on each channel in float, then (x - 128) / 128.
"""

from __future__ import annotations

import functools

import numpy as np
import torch
import torch.nn.functional as F

from eval import defaults
from ffhq_tools.errors import FfhqToolsError


def check_mode(mode: str) -> str:
    if mode not in defaults.MODES:
        raise FfhqToolsError(f"--mode {mode}: expected one of {', '.join(defaults.MODES)}")
    return mode


@functools.lru_cache(maxsize=32)
def _tf_coordinates(in_size: int, out_size: int):
    """TF1's legacy source coordinates in float32: lower, upper index and lerp weight."""
    scale = np.float32(in_size / out_size)
    source = np.arange(out_size, dtype=np.float32) * scale
    lower = np.floor(source)
    upper = np.minimum(np.ceil(source), in_size - 1).astype(np.int64)
    lerp = (source - lower).astype(np.float32)
    return (torch.from_numpy(np.maximum(lower, 0).astype(np.int64)), torch.from_numpy(upper),
            torch.from_numpy(lerp))


def tf_resize_bilinear(x: torch.Tensor, size: int) -> torch.Tensor:
    """Float NCHW -> NC(size)(size) as TF1's resize_bilinear (half_pixel_centers=False), with
    TF's float32 arithmetic: top = tl + (tr - tl) * x_lerp (likewise bottom), then
    top + (bottom - top) * y_lerp. The x-lerp is done once per input row, then rows gathered."""
    y_lo, y_hi, y_lerp = (t.to(x.device) for t in _tf_coordinates(x.shape[2], size))
    x_lo, x_hi, x_lerp = (t.to(x.device) for t in _tf_coordinates(x.shape[3], size))
    left = x[..., x_lo]
    rows = left + (x[..., x_hi] - left) * x_lerp  # no fused multiply-add: TF rounds twice
    top = rows[:, :, y_lo]
    return top + (rows[:, :, y_hi] - top) * y_lerp.view(-1, 1)


def pil_bicubic_float(x: torch.Tensor, size: int) -> torch.Tensor:
    """clean-fid's resize: every channel as a float32 PIL image, bicubic, no re-quantisation."""
    from PIL import Image

    arrays = x.detach().cpu().float().numpy()
    out = np.empty((arrays.shape[0], arrays.shape[1], size, size), dtype=np.float32)
    for n in range(arrays.shape[0]):
        for ch in range(arrays.shape[1]):
            channel = Image.fromarray(arrays[n, ch], mode="F")
            resized = channel.resize((size, size), resample=Image.Resampling.BICUBIC)
            out[n, ch] = np.asarray(resized).clip(0, 255)
    return torch.from_numpy(out).to(x.device)


def _as_rgb_uint8(images: torch.Tensor) -> torch.Tensor:
    if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] not in (1, 3):
        raise FfhqToolsError(f"expected uint8 images (N, 1|3, H, W), got {images.dtype} "
                             f"{tuple(images.shape)}")
    return images.expand(-1, 3, -1, -1) if images.shape[1] == 1 else images


def resize_299(images: torch.Tensor, mode: str,
               size: int = defaults.INCEPTION_RESOLUTION) -> torch.Tensor:
    """uint8 NCHW (1 or 3 channels) -> float32 NCHW in [0, 255] at size x size, per `mode`."""
    x = _as_rgb_uint8(images).float()
    check_mode(mode)
    if mode == defaults.MODE_TF:
        return tf_resize_bilinear(x, size)
    if mode == defaults.MODE_PYTORCH_FID:
        return F.interpolate(x / 255, size=(size, size), mode="bilinear",
                             align_corners=False) * 255
    return pil_bicubic_float(x, size)


def preprocess(images: torch.Tensor, mode: str,
               size: int = defaults.INCEPTION_RESOLUTION) -> torch.Tensor:
    """uint8 NCHW -> float32 normalised size x size Inception input for `mode`."""
    if check_mode(mode) == defaults.MODE_PYTORCH_FID:  # pytorch-fid's exact operation order
        x = _as_rgb_uint8(images).float() / 255
        return 2 * F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False) - 1
    return (resize_299(images, mode, size) - 128) / 128

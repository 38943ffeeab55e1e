"""`--method fast`, first step: shrink, crop and pad the photo as the FFHQ script does, with fewer
operations and the same pixels.

- shrink + crop: one PIL Lanczos resize restricted to the crop box (the same coefficients as
  resizing everything and cropping afterwards, so identical pixels);
- pad: the Gaussian blur (sigma = 0.02 qsize, truncated at 4 sigma, half-sample reflection, as
  scipy.ndimage.gaussian_filter) by one float32 2-D FFT: within 1e-4 of SciPy, O(N log N)
  instead of O(N sigma);
- blend: FFHQ's two blends (towards the blur, then towards the median) only where their
  weights are non-zero, a frame around the photo, with the script's float64 arithmetic there:
  bit-identical to `reference.blend_padding`.
"""

from __future__ import annotations

import numpy as np
import scipy.fft
from PIL import Image

from ffhq_tools.align.quad import WarpPlan, pad_weights
from ffhq_tools.align.reference import reflect_pad


def shrink_and_crop(image: Image.Image, plan: WarpPlan) -> Image.Image:
    if plan.shrink == 1:
        return image.crop(plan.crop) if plan.crop is not None else image
    box = plan.crop or (0, 0) + plan.shrunk_size
    scale_x = image.size[0] / plan.shrunk_size[0]
    scale_y = image.size[1] / plan.shrunk_size[1]
    source_box = (box[0] * scale_x, box[1] * scale_y, box[2] * scale_x, box[3] * scale_y)
    return image.resize((box[2] - box[0], box[3] - box[1]), Image.LANCZOS, box=source_box)


def gaussian_kernel(sigma: float, truncate: float = 4.0) -> np.ndarray:
    radius = int(truncate * float(sigma) + 0.5)
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    kernel = np.exp(-0.5 * (x / sigma) ** 2)
    return kernel / kernel.sum()


def gaussian_blur_fft(image: np.ndarray, sigma: float) -> np.ndarray:
    """scipy.ndimage.gaussian_filter(image, [sigma, sigma, 0]) (mode 'reflect') of an HWC image,
    as float32 HWC: the image extended by half-sample reflection (SciPy's 'reflect', numpy's
    'symmetric') on both axes, one circular 2-D FFT convolution with the separable kernel, the
    middle kept (the wrap-around only reaches the first 2 radius outputs, which are dropped)."""
    import torch

    kernel = gaussian_kernel(sigma)
    radius = len(kernel) // 2
    extended = np.pad(np.asarray(image, dtype=np.float32),
                      ((radius, radius), (radius, radius), (0, 0)), mode="symmetric")
    planes = torch.from_numpy(np.ascontiguousarray(extended.transpose(2, 0, 1)))
    height, width = planes.shape[1:]
    size = (scipy.fft.next_fast_len(height, real=True),
            scipy.fft.next_fast_len(width, real=True))
    taps = torch.from_numpy(kernel.astype(np.float32))
    spectrum = torch.fft.rfft2(planes, s=size)
    spectrum *= torch.fft.fft(taps, size[0])[:, None] * torch.fft.rfft(taps, size[1])[None, :]
    full = torch.fft.irfft2(spectrum, s=size)
    rows, columns = image.shape[:2]
    middle = full[:, 2 * radius:2 * radius + rows, 2 * radius:2 * radius + columns]
    return middle.permute(1, 2, 0).numpy()


def _outside(inside_rows: np.ndarray, inside_columns: np.ndarray) -> list[tuple[slice, slice]]:
    """Row/column slices covering everything but the rectangle inside_rows x inside_columns
    (each a boolean run, possibly empty)."""
    if not inside_rows.any() or not inside_columns.any():
        return [(slice(None), slice(None))]
    top, bottom = np.flatnonzero(inside_rows)[[0, -1]]
    left, right = np.flatnonzero(inside_columns)[[0, -1]]
    middle = slice(top, bottom + 1)
    return [(slice(0, top), slice(None)), (slice(bottom + 1, None), slice(None)),
            (middle, slice(0, left)), (middle, slice(right + 1, None))]


def blend_padding_banded(padded: np.ndarray, pad: tuple[int, int, int, int],
                         blurred: np.ndarray) -> Image.Image:
    """reference.blend_padding, computed only where each blend's weight is non-zero.

    FFHQ's mask is max(a(x), b(y)) with V-shaped a and b, so each weight is zero exactly on a
    rectangle (a and b both small enough) and the work is the frame around it."""
    height, width, _ = padded.shape
    across, down = pad_weights(height, width, pad)  # (1, W, 1) and (H, 1, 1), float64
    mask = np.maximum(across, down)
    out = padded.copy()

    def blend_towards(target, weight_of) -> None:
        """out += (target - out) * clip(weight_of(mask), 0, 1) where that weight is not 0."""
        inside = weight_of(down[:, 0, 0]) <= 0, weight_of(across[0, :, 0]) <= 0
        for rows, columns in _outside(*inside):
            part = out[rows, columns]
            goal = target[rows, columns] if np.ndim(target) == 3 else target
            part += (goal - part) * np.clip(weight_of(mask[rows, columns]), 0.0, 1.0)

    blend_towards(blurred, lambda m: m * 3.0 + 1.0)
    blend_towards(np.array([np.median(out[:, :, c]) for c in range(out.shape[2])],
                           dtype=out.dtype), lambda m: m)
    return Image.fromarray(np.uint8(np.clip(np.rint(out), 0, 255)), "RGB")


def prepare_fast(image: Image.Image, plan: WarpPlan) -> Image.Image:
    """The shrunk, cropped and padded photo the QUAD transform reads (see the module notes)."""
    image = shrink_and_crop(image, plan)
    if plan.pad is not None:
        padded = reflect_pad(image, plan.pad)
        image = blend_padding_banded(padded, plan.pad, gaussian_blur_fft(padded, plan.qsize * 0.02))
    return image

"""Geometric and filtering machinery of the ADA augmentation pipeline (Karras et al. 2020).

Coordinates are pixel units centred on the image; a 3x3 matrix `G_inv` maps an output pixel
to the input pixel it reads (as stylegan2-ada's augment.py). Two executions:
- `blit`: when a sample's matrix sends every pixel centre onto a pixel centre (x-flips,
  quarter turns, integer translations) the pixels are copied by index, exactly, with
  reflection at the border;
- `filtered_warp`: every other matrix is executed as the reference does: reflect-pad by the
  margin the transformed corners need, upsample 2x with the orthogonal sym6 wavelet low-pass,
  bilinear `grid_sample`, low-pass again and downsample 2x. For an orthogonal wavelet the
  up/down pair is the identity, so the warp differs from an ideal one only by the filter.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

# Low-pass filters of the wavelet decompositions the pipeline uses (PyWavelets' dec_lo values,
# the same constants stylegan2-ada lists).
SYM2 = (-0.12940952255092145, 0.22414386804185735, 0.836516303737469, 0.48296291314469025)
SYM6 = (0.015404109327027373, 0.0034907120842174702, -0.11799011114819057, -0.048311742585633,
        0.4910559419267466, 0.787641141030194, 0.3379294217276218, -0.07263752278646252,
        -0.021060292512300564, 0.04472490177066578, 0.0017677118642428036,
        -0.007800708325034148)

BLIT_TOLERANCE = 1e-3  # how far from a pixel centre a blit sample may read (float round-off)


def _stack_matrix(rows: list[list], like: torch.Tensor) -> torch.Tensor:
    """[N, R, C] from rows of scalars / [N] tensors."""
    n = like.shape[0]
    cells = [v if isinstance(v, torch.Tensor) else torch.full((n,), float(v), device=like.device,
                                                               dtype=like.dtype)
             for row in rows for v in row]
    return torch.stack(cells, dim=-1).reshape(n, len(rows), len(rows[0]))


def translate2d(tx: torch.Tensor, ty: torch.Tensor) -> torch.Tensor:
    return _stack_matrix([[1, 0, tx], [0, 1, ty], [0, 0, 1]], tx)


def scale2d(sx: torch.Tensor, sy: torch.Tensor) -> torch.Tensor:
    return _stack_matrix([[sx, 0, 0], [0, sy, 0], [0, 0, 1]], sx)


def rotate2d(theta: torch.Tensor) -> torch.Tensor:
    c, s = torch.cos(theta), torch.sin(theta)
    return _stack_matrix([[c, -s, 0], [s, c, 0], [0, 0, 1]], theta)


def translate3d(t: torch.Tensor) -> torch.Tensor:
    """Colour offset t (same on R, G, B), [N] -> [N, 4, 4]."""
    return _stack_matrix([[1, 0, 0, t], [0, 1, 0, t], [0, 0, 1, t], [0, 0, 0, 1]], t)


def scale3d(s: torch.Tensor) -> torch.Tensor:
    return _stack_matrix([[s, 0, 0, 0], [0, s, 0, 0], [0, 0, s, 0], [0, 0, 0, 1]], s)


def rotate3d(axis: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """Rotation by theta [N] around the unit vector axis [3] (Rodrigues), homogeneous 4x4."""
    x, y, z = (float(v) for v in axis[:3])
    s, c = torch.sin(theta), torch.cos(theta)
    cc = 1 - c
    return _stack_matrix([
        [x * x * cc + c, x * y * cc - z * s, x * z * cc + y * s, 0],
        [y * x * cc + z * s, y * y * cc + c, y * z * cc - x * s, 0],
        [z * x * cc - y * s, z * y * cc + x * s, z * z * cc + c, 0],
        [0, 0, 0, 1]], theta)


def _constant_matrix(rows, n: int, device) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.float32, device=device).expand(n, -1, -1)


def wavelet_filter(taps) -> torch.Tensor:
    """1-D taps normalised to sum 1; the 2-D filter is their outer product (separable)."""
    f = torch.as_tensor(taps, dtype=torch.float64)
    return (f / f.sum()).float()


def separable_upfirdn(x: torch.Tensor, taps: torch.Tensor, up: int = 1, down: int = 1,
                      pad: tuple[int, int] = (0, 0), gain: float = 1.0,
                      correlate: bool = False) -> torch.Tensor:
    """upfirdn2d with the separable filter outer(taps, taps): zero-insert by `up`, pad both
    axes by (before, after) (negative crops), filter each axis with the 1-D taps times `gain`
    (convolution; `correlate` uses the taps unflipped), keep every `down`-th sample."""
    n, c, h, w = x.shape
    if up > 1:
        x = x.reshape(n, c, h, 1, w, 1)
        x = F.pad(x, [0, up - 1, 0, 0, 0, up - 1]).reshape(n, c, h * up, w * up)
    p0, p1 = pad
    x = F.pad(x, [max(p0, 0), max(p1, 0), max(p0, 0), max(p1, 0)])
    x = x[:, :, max(-p0, 0): x.shape[2] - max(-p1, 0), max(-p0, 0): x.shape[3] - max(-p1, 0)]
    kernel = [float(v) * gain for v in (taps if correlate else taps.flip(0)).tolist()]
    return _correlate_axis(_correlate_axis(x, kernel, 3, down), kernel, 2, down)


def _correlate_axis(x: torch.Tensor, kernel: list[float], dim: int, stride: int):
    """Valid correlation along one axis as a sum of shifted slices (CPU depthwise
    convolutions with long 1-D kernels are far slower)."""
    length = (x.shape[dim] - len(kernel)) // stride + 1
    out = None
    for k, weight in enumerate(kernel):
        part = x.narrow(dim, k, (length - 1) * stride + 1)
        if stride > 1:
            index = [slice(None)] * x.ndim
            index[dim] = slice(None, None, stride)
            part = part[tuple(index)]
        out = part * weight if out is None else out + part * weight
    return out


def filter_bank(taps=SYM2, bands: int = 4) -> np.ndarray:
    """[bands, K] zero-phase band-pass filters splitting the spectrum in octaves from the
    wavelet's low-pass H(z): band 0 is the lowest octave, band i the high-pass H(-z) H(-1/z)/2
    at octave i (the construction of stylegan2-ada's image-space filter)."""
    lo = np.asarray(taps, dtype=np.float64)
    hi = lo * (-1.0) ** np.arange(lo.size)
    lo2 = np.convolve(lo, lo[::-1]) / 2
    hi2 = np.convolve(hi, hi[::-1]) / 2
    bank = np.eye(bands, 1)
    for band in range(1, bands):
        spread = np.zeros((bands, bank.shape[1] * 2 - 1))
        spread[:, ::2] = bank  # upsample every filter by 2 (zero insertion)
        bank = np.stack([np.convolve(row, lo2) for row in spread])
        start = (bank.shape[1] - hi2.size) // 2
        bank[band, start:start + hi2.size] += hi2
    return bank


# ----- execution ----------------------------------------------------------------------------
def source_pixels(G_inv: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """[N, 2, H*W] input pixel coordinates (x, y; 0 = first pixel centre) every output
    pixel reads."""
    cx, cy = (width - 1) / 2, (height - 1) / 2
    ys, xs = torch.meshgrid(torch.arange(height, device=G_inv.device, dtype=G_inv.dtype) - cy,
                            torch.arange(width, device=G_inv.device, dtype=G_inv.dtype) - cx,
                            indexing="ij")
    points = torch.stack([xs.flatten(), ys.flatten(), torch.ones_like(xs.flatten())])
    mapped = G_inv[:, :2, :] @ points
    return mapped + torch.tensor([cx, cy], device=G_inv.device, dtype=G_inv.dtype)[None, :, None]


def is_blit(G_inv: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """[N] bool: the matrix reads every output pixel from a pixel centre."""
    src = source_pixels(G_inv.double(), height, width)
    return (src - src.round()).abs().amax(dim=(1, 2)) < BLIT_TOLERANCE


def _reflect(index: torch.Tensor, size: int) -> torch.Tensor:
    """Reflection without repeating the edge pixel (torch's `reflect` padding), any range."""
    if size == 1:
        return torch.zeros_like(index)
    period = 2 * (size - 1)
    index = index.remainder(period)
    return torch.where(index > size - 1, period - index, index)


def blit(images: torch.Tensor, G_inv: torch.Tensor) -> torch.Tensor:
    """Exact pixel copy for matrices `is_blit` accepts."""
    n, c, height, width = images.shape
    src = source_pixels(G_inv.double(), height, width).round().long()
    xs, ys = _reflect(src[:, 0], width), _reflect(src[:, 1], height)
    flat = (ys * width + xs)[:, None, :].expand(n, c, height * width)
    return images.reshape(n, c, height * width).gather(2, flat).reshape(n, c, height, width)


def _corner_margin(G_inv: torch.Tensor, height: int, width: int, pad: int) -> list[int]:
    """Reflect-padding (x0, y0, x1, y1) that holds every transformed corner plus the filter."""
    cx, cy = (width - 1) / 2, (height - 1) / 2
    corners = torch.tensor([[-cx, -cy, 1], [cx, -cy, 1], [cx, cy, 1], [-cx, cy, 1]],
                           dtype=G_inv.dtype, device=G_inv.device)
    points = (G_inv @ corners.t())[:, :2, :].permute(1, 0, 2).flatten(1)  # [xy, N*4]
    margin = torch.cat([-points, points]).amax(dim=1).cpu()  # [x0, y0, x1, y1]
    margin = margin + torch.tensor([pad * 2 - cx, pad * 2 - cy] * 2, dtype=margin.dtype)
    upper = torch.tensor([width - 1, height - 1] * 2, dtype=margin.dtype)
    margin = margin.clamp(min=0).minimum(upper)
    return [int(v) for v in margin.ceil()]


def filtered_warp(images: torch.Tensor, G_inv: torch.Tensor, geom_filter: torch.Tensor
                  ) -> torch.Tensor:
    """Execute G_inv with 2x oversampling between two passes of the wavelet low-pass."""
    n, c, height, width = images.shape
    pad = geom_filter.shape[0] // 4
    mx0, my0, mx1, my1 = _corner_margin(G_inv, height, width, pad)
    images = F.pad(images, [mx0, mx1, my0, my1], mode="reflect")
    ones = torch.ones(n, device=G_inv.device, dtype=G_inv.dtype)
    G_inv = translate2d(ones * (mx0 - mx1) / 2, ones * (my0 - my1) / 2) @ G_inv
    taps = geom_filter.shape[0]
    images = separable_upfirdn(images, geom_filter, up=2, pad=((taps + 1) // 2, (taps - 2) // 2),
                               gain=2.0)
    two, half = ones * 2, ones * 0.5
    G_inv = scale2d(two, two) @ G_inv @ scale2d(1 / two, 1 / two)
    G_inv = translate2d(-half, -half) @ G_inv @ translate2d(half, half)
    shape = [n, c, (height + pad * 2) * 2, (width + pad * 2) * 2]
    to_norm = scale2d(ones * 2 / images.shape[3], ones * 2 / images.shape[2])
    from_norm = scale2d(ones * shape[3] / 2, ones * shape[2] / 2)
    G_inv = to_norm @ G_inv @ from_norm
    grid = F.affine_grid(G_inv[:, :2, :].to(images.dtype), shape, align_corners=False)
    images = F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros",
                           align_corners=False)
    # Correlate with the low-pass (the up-pass convolved with it), crop the padding, stride 2.
    crop0, crop1 = -pad * 2 + (taps - 1) // 2, -pad * 2 + (taps - 2) // 2
    return separable_upfirdn(images, geom_filter, down=2, pad=(crop0, crop1), correlate=True)


def warp(images: torch.Tensor, G_inv: torch.Tensor, geom_filter: torch.Tensor) -> torch.Tensor:
    """Blit the samples whose matrix allows it, filter-warp the others."""
    height, width = images.shape[2:]
    exact = is_blit(G_inv, height, width)
    if bool(exact.all()):
        return blit(images, G_inv)
    if not bool(exact.any()):
        return filtered_warp(images, G_inv, geom_filter)
    exact_rows, other_rows = exact.nonzero()[:, 0], (~exact).nonzero()[:, 0]
    out = torch.zeros_like(images).index_copy(0, exact_rows, blit(images[exact], G_inv[exact]))
    return out.index_copy(0, other_rows,
                          filtered_warp(images[~exact], G_inv[~exact], geom_filter))


def apply_color(images: torch.Tensor, C: torch.Tensor) -> torch.Tensor:
    """C [N, 4, 4] acting on homogeneous RGB; grey images take the mean of its RGB rows."""
    n, channels, height, width = images.shape
    flat = images.reshape(n, channels, height * width)
    if channels == 3:
        flat = C[:, :3, :3].to(flat.dtype) @ flat + C[:, :3, 3:].to(flat.dtype)
    elif channels == 1:
        rows = C[:, :3, :].mean(dim=1, keepdim=True).to(flat.dtype)
        flat = flat * rows[:, :, :3].sum(dim=2, keepdim=True) + rows[:, :, 3:]
    else:
        raise ValueError(f"colour augmentation needs RGB or grey images, got {channels} "
                         "channels")
    return flat.reshape(n, channels, height, width)


def apply_band_filter(images: torch.Tensor, gains: torch.Tensor, bank: torch.Tensor
                      ) -> torch.Tensor:
    """Separable per-sample filter sum_i gains[:, i] * bank[i], reflect-padded."""
    n, channels, height, width = images.shape
    taps = (gains @ bank).to(images.dtype)  # [N, K]
    taps = taps[:, None, :].repeat(1, channels, 1).reshape(n * channels, 1, -1)
    p = bank.shape[1] // 2
    x = images.reshape(1, n * channels, height, width)
    x = F.pad(x, [p, p, p, p], mode="reflect")
    x = F.conv2d(x, taps[:, :, None, :], groups=n * channels)
    x = F.conv2d(x, taps[:, :, :, None], groups=n * channels)
    return x.reshape(n, channels, height, width)

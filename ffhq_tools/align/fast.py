"""`--method fast`: the FFHQ alignment with far fewer pixel operations, same pixels within a level.

The reference samples the face quad bilinearly at transform_size (4096) and reduces with
Lanczos to output_size. Here (agreement with `reference` is tested: max abs diff <= 2 and mean
<= 0.25 on 8-bit pixels at 1024 output on real photos):
- shrink, crop, pad: `fast_prepare` (the same pixels with fewer operations);
- warp, approximate pass: samples at output_size * 2 when the face is small enough (qsize at
  most output_size), in float with torch; PIL's uint8 truncation of each sample enters as its
  mean effect (-0.5); the Lanczos-3 reduction uses PIL's coefficients (renormalised border taps
  included) as cache-blocked strided sums and clips the horizontal pass like PIL's uint8
  buffer; samples are taken band by band, each reduced while it is still in cache;
- warp, exact tiles: where the coarser sampling can err by more than a level (tiles where the
  source has a strong kink, `kinky_tiles`), output pixels are recomputed exactly as the
  reference does (samples at transform_size, truncated, horizontal pass rounded to uint8),
  only over each tile's footprint;
- large faces (qsize > output_size) and photos too sharp for the coarse pass use PIL's own
  QUAD transform on the prepared image: the reference's pixels.
"""

from __future__ import annotations

import functools

import numpy as np
from PIL import Image

from ffhq_tools.align.fast_prepare import prepare_fast
from ffhq_tools.align.quad import AlignOptions, WarpPlan
from ffhq_tools.align.reference import warp_prepared

TILE = 32
REDUCE_BLOCK = 32  # outputs per cache-sized block of the Lanczos reduction
SAMPLE_BAND = 32  # outputs of the first Lanczos pass per band of bilinear samples
KINK_THRESHOLD = 28.0  # calibrated on 21 real-photo cases: every tile off by > 2 scored >= 38
MAX_REFINED_FRACTION = 0.35  # beyond this, PIL's own transform is cheaper


def intermediate_size(qsize: float, options: AlignOptions) -> int:
    """output_size * 2 for faces up to output_size, else transform_size (the exact path)."""
    if qsize <= options.output_size and 2 * options.output_size < options.transform_size:
        return 2 * options.output_size
    return options.transform_size


def _sample_quad(source, quad: np.ndarray, size: int, columns: range, rows: range,
                 transposed: bool = False, mode: str = "bilinear"):
    """PIL's QUAD transform to (size, size) with bilinear filtering (mode="nearest" reads maps
    cell by cell), in float, restricted to a window of output columns and rows:
    (C, len(rows), len(columns)), not yet truncated; (C, len(columns), len(rows)) when
    transposed."""
    import torch
    import torch.nn.functional as F

    _, height, width = source.shape
    nw, sw, se, ne = (np.asarray(p, dtype=np.float64) for p in quad + 0.5)
    a1, a2 = (ne - nw) / size, (sw - nw) / size
    a3 = (se - sw - ne + nw) / size / size
    u = np.arange(columns.start, columns.stop, dtype=np.float64) + 0.5
    v = np.arange(rows.start, rows.stop, dtype=np.float64) + 0.5
    scale = np.array([2.0 / width, 2.0 / height])
    along_u = (nw * scale - 1.0)[None, :] + u[:, None] * (a1 * scale)[None, :]
    along_v = v[:, None] * (a2 * scale)[None, :]
    if transposed:
        grid = (torch.from_numpy(along_u[:, None]).float()
                + torch.from_numpy(along_v[None, :]).float())
    else:
        grid = (torch.from_numpy(along_u[None]).float()
                + torch.from_numpy(along_v[:, None]).float())
    if np.abs(a3).max() > 1e-12:  # a general quadrilateral
        term = np.einsum("j,i,c->jic", v, u, a3 * scale)
        grid += torch.from_numpy(term.transpose(1, 0, 2) if transposed else term).float()
    sampled = F.grid_sample(source[None], grid[None], mode=mode, padding_mode="border",
                            align_corners=False)[0]
    corners = quad + 0.5
    if corners.min() < 0 or corners[:, 0].max() >= width or corners[:, 1].max() >= height:
        pixels = (grid + 1.0) * torch.tensor([width / 2.0, height / 2.0])
        inside = ((pixels[..., 0] >= 0) & (pixels[..., 0] < width)
                  & (pixels[..., 1] >= 0) & (pixels[..., 1] < height))
        sampled = sampled * inside  # PIL fills samples outside the source with black
    return sampled


@functools.lru_cache(maxsize=8)
def lanczos_weights(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray]:
    """PIL's Lanczos-3 resize coefficients (precompute_coeffs): columns and weights per output
    (cached, read-only)."""
    scale = n_in / n_out
    support = 3.0 * max(scale, 1.0)
    centers = (np.arange(n_out) + 0.5) * scale
    first = np.maximum(np.trunc(centers - support + 0.5).astype(np.int64), 0)
    last = np.minimum(np.trunc(centers + support + 0.5).astype(np.int64), n_in)
    columns = first[:, None] + np.arange(int((last - first).max()))[None, :]
    x = (columns - centers[:, None] + 0.5) / max(scale, 1.0)
    weights = np.where((x >= -3) & (x < 3), np.sinc(x) * np.sinc(x / 3), 0.0)
    weights[columns >= last[:, None]] = 0.0
    weights /= weights.sum(axis=1, keepdims=True)
    columns = np.minimum(columns, n_in - 1)
    columns.flags.writeable = weights.flags.writeable = False
    return columns, weights


@functools.lru_cache(maxsize=8)
def _interior(n_in: int, n_out: int) -> range:
    """The outputs whose Lanczos taps follow the shared pattern of an integer factor (the rest,
    near the borders, have taps PIL clips and renormalises)."""
    columns, _ = lanczos_weights(n_in, n_out)
    factor = n_in // n_out
    middle = n_out // 2
    interior = ((columns[:, 0] == (np.arange(n_out) - middle) * factor + columns[middle, 0])
                & (columns[:, -1] < n_in - 1) & (columns[:, 0] > 0))
    if n_in % n_out or not interior.any():
        raise ValueError("the Lanczos reduction needs an integer factor and an interior")
    return range(int(np.argmax(interior)), n_out - int(np.argmax(interior[::-1])))


def input_span(n_in: int, n_out: int, outputs: range) -> range:
    """The input samples the Lanczos outputs `outputs` read."""
    columns, _ = lanczos_weights(n_in, n_out)
    picked = columns[outputs.start:outputs.stop]
    return range(int(picked.min()), int(picked.max()) + 1)


def reduce_axis(x, n_out: int, axis: int, n_in: int | None = None,
                outputs: range | None = None, offset: int = 0, out=None):
    """PIL's Lanczos resize of one axis of a tensor from n_in to n_out samples, in float.

    x may hold a window of the input: samples offset .. offset + x.shape[axis] (at least
    input_span(outputs)); only `outputs` are computed (default: all), into `out` when given.
    Interior outputs share one tap pattern (an integer factor), summed as strided slices in
    cache-sized blocks; the few border outputs, whose taps PIL clips and renormalises, are
    computed one by one."""
    import torch

    n_in = x.shape[axis] if n_in is None else n_in
    outputs = range(n_out) if outputs is None else outputs
    columns, weights = lanczos_weights(n_in, n_out)
    factor, interior = n_in // n_out, _interior(n_in, n_out)
    taps = weights[interior.start]
    if out is None:
        out_shape = list(x.shape)
        out_shape[axis] = len(outputs)
        out = torch.empty(out_shape, dtype=x.dtype)
    index = [slice(None)] * x.dim()
    index[axis] = slice(0, None, factor)
    inside = range(max(outputs.start, interior.start), min(outputs.stop, interior.stop))
    for block in range(inside.start, inside.stop, REDUCE_BLOCK):
        count = min(REDUCE_BLOCK, inside.stop - block)
        inner = out.narrow(axis, block - outputs.start, count)
        for k, weight in enumerate(taps):
            window = x.narrow(axis, int(columns[block, k]) - offset, factor * (count - 1) + 1)
            if k == 0:
                torch.mul(window[tuple(index)], float(weight), out=inner)
            else:
                inner.add_(window[tuple(index)], alpha=float(weight))
    for i in outputs:
        if i not in inside:
            picked = torch.tensor(columns[i] - offset)
            edge = (x.index_select(axis, picked).movedim(axis, -1)
                    @ torch.tensor(weights[i], dtype=x.dtype))
            out.select(axis, i - outputs.start).copy_(edge)
    return out


def _truncate(values):
    """PIL casts each bilinear sample to uint8 (truncation); 1e-4 absorbs float32 error."""
    import torch

    return torch.floor_(values.add_(1e-4)).clamp_(0, 255)


@functools.lru_cache(maxsize=256)
def _dense_taps(n_in: int, n_out: int, start: int, stop: int):
    """PIL's Lanczos taps of outputs start..stop as a dense (outputs x span) matrix, with the
    span of inputs they read (cached: tiles sit on a fixed grid)."""
    import torch

    columns, weights = lanczos_weights(n_in, n_out)
    span = input_span(n_in, n_out, range(start, stop))
    dense = np.zeros((stop - start, len(span)))
    rows = np.arange(stop - start)[:, None]
    np.add.at(dense, (rows, columns[start:stop] - span.start), weights[start:stop])
    return span, torch.from_numpy(dense).float()


def _exact_tile(source, plan: WarpPlan, options: AlignOptions, rows: range, columns: range):
    """Output pixels rows x columns exactly as the reference computes them (float, unrounded):
    bilinear samples at transform_size, truncated, PIL's Lanczos horizontal pass kept in uint8,
    then the vertical pass. Dense per-tile matrices hold PIL's coefficients."""
    import torch

    size = options.transform_size
    if size == options.output_size:
        return _truncate(_sample_quad(source, plan.quad, size, columns, rows))
    sample_rows, vertical = _dense_taps(size, options.output_size, rows.start, rows.stop)
    sample_columns, horizontal = _dense_taps(size, options.output_size, columns.start,
                                             columns.stop)
    samples = _truncate(_sample_quad(source, plan.quad, size, sample_columns, sample_rows))
    across = torch.round_((samples @ horizontal.T).clamp_(0, 255))
    return vertical @ across


def _transpose_planes(x, block: int = 32):
    """x.transpose(1, 2).contiguous() of a (C, H, W) tensor, copied in cache-sized bands
    (4-5x faster than one strided copy of the whole array)."""
    import torch

    out = torch.empty((x.shape[0], x.shape[2], x.shape[1]), dtype=x.dtype)
    for start in range(0, x.shape[1], block):
        out[:, :, start:start + block].copy_(x[:, start:start + block].transpose(1, 2))
    return out


def _approximate(source, plan: WarpPlan, options: AlignOptions, size: int):
    """The whole output (C, Y, X) from samples at `size` < transform_size."""
    import torch

    n_out = options.output_size
    across = torch.empty((source.shape[0], n_out, size))
    # PIL reduces x first. Samples are taken transposed, (C, x, y), so that both passes run
    # over contiguous rows, and band by band of outputs, so that they stay in cache.
    for start in range(0, n_out, SAMPLE_BAND):
        outputs = range(start, min(start + SAMPLE_BAND, n_out))
        span = input_span(size, n_out, outputs)
        samples = _sample_quad(source, plan.quad, size, span, range(size), transposed=True)
        band = across[:, outputs.start:outputs.stop]
        reduce_axis(samples, n_out, axis=1, n_in=size, outputs=outputs, offset=span.start,
                    out=band)
        # PIL truncates each sample (-0.5 on average, through normalised taps) and clips the
        # first pass to uint8: clip here, subtract after the (normalised) second pass
        band.clamp_(0.5, 255.5)
    return reduce_axis(_transpose_planes(across), n_out, axis=1).sub_(0.5)


def kink_strength(pixels: np.ndarray) -> np.ndarray:
    """(H, W) int16: per source pixel, the largest |second difference| over channels and both
    axes of a (C, H, W) uint8 image, the size of the bilinear interpolant's kink there."""
    a = pixels.astype(np.int16)
    kink = np.zeros(a.shape[1:], np.int16)
    kink[:, 1:-1] = np.abs(a[:, :, 2:] + a[:, :, :-2] - 2 * a[:, :, 1:-1]).max(axis=0)
    vertical = np.abs(a[:, 2:] + a[:, :-2] - 2 * a[:, 1:-1]).max(axis=0)
    np.maximum(kink[1:-1], vertical, out=kink[1:-1])
    return kink


def _dilate(values: np.ndarray, reach: int) -> np.ndarray:
    """Maximum over the (2 reach + 1)^2 neighbourhood of each element of a 2-D array."""
    for axis in (0, 1):
        spread = values.copy()
        for shift in range(1, reach + 1):
            low = [slice(None)] * 2
            high = [slice(None)] * 2
            low[axis], high[axis] = slice(None, -shift), slice(shift, None)
            np.maximum(spread[tuple(low)], values[tuple(high)], out=spread[tuple(low)])
            np.maximum(spread[tuple(high)], values[tuple(low)], out=spread[tuple(high)])
        values = spread
    return values


def _block_max(values: np.ndarray, block: int) -> np.ndarray:
    rows, columns = -(-values.shape[0] // block), -(-values.shape[1] // block)
    padded = np.zeros((rows * block, columns * block), values.dtype)
    padded[:values.shape[0], :values.shape[1]] = values
    return padded.reshape(rows, block, columns, block).max(axis=(1, 3))


def kinky_tiles(pixels: np.ndarray, plan: WarpPlan, options: AlignOptions,
                size: int) -> np.ndarray:
    """(row, column) indices of TILE x TILE output tiles whose footprint (plus the Lanczos
    support) holds a strong kink of the bilinear interpolant, i.e. a large second difference of
    the (C, H, W) uint8 source times the sample spacing (what the samples at `size` would see):
    there the coarser sampling can be off by more than a level, so those tiles are recomputed
    exactly.

    Kinks are gathered in 2x2-pixel cells dilated by 2 cells, so each cell holds every kink
    within 4 source pixels; the cells are read (nearest) at every 4th output pixel. On this path
    an output pixel spans at most one source pixel (qsize <= output size), so any point of a
    tile's footprint lies within 2 output pixels (2.83 source pixels) of a reading, and a kink
    moves the interpolant within 1 pixel of itself: 3.83 < 4."""
    import torch

    kink = kink_strength(pixels)
    corners = plan.quad + 0.5
    _, height, width = pixels.shape
    if corners.min() < 0 or corners[:, 0].max() >= width or corners[:, 1].max() >= height:
        # --no-padding: PIL fills outside the photo with black, a step at the border
        step = np.iinfo(np.int16).max
        kink[:2], kink[-2:], kink[:, :2], kink[:, -2:] = step, step, step, step
    cells = _dilate(_block_max(kink, 2), reach=2)
    quarter = max(options.output_size // 4, 1)
    cells_quad = (plan.quad + 0.5) / 2 - 0.5  # the same quad in cell coordinates
    seen = _sample_quad(torch.from_numpy(cells[None].astype(np.float32)), cells_quad, quarter,
                        range(quarter), range(quarter), mode="nearest")[0].numpy()
    seen *= plan.qsize / size  # source second difference -> sample second difference
    # a tile's footprint: its own readings, one more each side (the Lanczos support, 3 px)
    per_tile = TILE // 4
    tiles = _block_max(_dilate(seen, reach=1), per_tile)
    return np.argwhere(tiles > KINK_THRESHOLD)


def _to_hwc_uint8(planes) -> np.ndarray:
    """(C, H, W) float -> (H, W, C) uint8, rounded and clipped, one channel at a time."""
    import torch

    out = torch.empty((planes.shape[1], planes.shape[2], planes.shape[0]), dtype=torch.uint8)
    for channel, plane in enumerate(planes):
        out[:, :, channel].copy_(plane.round_().clamp_(0, 255))
    return out.numpy()


def warp_fast(image: Image.Image, plan: WarpPlan, options: AlignOptions,
              refine: bool = True, exact: bool = False) -> np.ndarray:
    """The aligned face as HWC uint8 (see the module docstring). Faces larger than the output
    (qsize > output_size), photos too sharp for the coarse pass (more than
    MAX_REFINED_FRACTION of the tiles) and exact=True take PIL's own QUAD transform on the
    prepared image: the reference's pixels exactly, at the reference's speed for that step."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)  # hundreds of small ops: thread barriers cost more than they give
    try:
        return _warp_fast(image, plan, options, refine, exact)
    finally:
        torch.set_num_threads(previous)


def _warp_fast(image, plan, options, refine, exact) -> np.ndarray:
    import torch

    prepared = prepare_fast(image if image.mode == "RGB" else image.convert("RGB"), plan)
    size = options.transform_size if exact else intermediate_size(plan.qsize, options)
    if size < options.transform_size:
        pixels = np.ascontiguousarray(np.asarray(prepared).transpose(2, 0, 1))
        source = torch.from_numpy(pixels).float()
        tiles = kinky_tiles(pixels, plan, options, size) if refine else []
        if len(tiles) <= MAX_REFINED_FRACTION * (-(-options.output_size // TILE)) ** 2:
            warped = _approximate(source, plan, options, size)
            for r, c in tiles:
                rows = range(r * TILE, min((r + 1) * TILE, options.output_size))
                columns = range(c * TILE, min((c + 1) * TILE, options.output_size))
                warped[:, rows.start:rows.stop, columns.start:columns.stop] = _exact_tile(
                    source, plan, options, rows, columns)
            return _to_hwc_uint8(warped)
    return warp_prepared(prepared, plan, options)

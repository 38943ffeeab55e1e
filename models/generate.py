"""Sampling from a generator: seeded images, grids and the papers' figures.

Latents are drawn per seed (`np.random.RandomState(seed).randn(z_dim)`, the reference scripts'
convention), so an image depends only on its seed, never on the batch it was generated in.
Images are quantised as clamp(x * 127.5 + 128) like the metrics do.
Figures: style mixing (StyleGAN Fig. 3: coarse = layers 0-3 (4-8 px), middle = 4-7
(16-32 px), fine = 8+ (64 px and up)), noise variation (several noise draws of one w plus the
per-pixel standard deviation), truncation sweep, and interpolation (slerp in Z, lerp in W).
"""

from __future__ import annotations

import bisect
import itertools
import math
import re
from collections.abc import Iterable, Iterator, Sequence

import numpy as np
import torch

from ffhq_tools.errors import FfhqToolsError

STYLE_RANGES = {"coarse": (0, 4), "middle": (4, 8), "fine": (8, None)}


SEED_LIMIT = 2 ** 32  # np.random.RandomState accepts seeds in [0, 2^32)


class SeedRanges(Sequence):
    """Seeds as inclusive ranges in the order given: `0-100000000` costs two integers, not a
    list of 10^8. Indexing and iteration are lazy."""

    def __init__(self, ranges: list[tuple[int, int]]):
        self.ranges = [(int(lo), int(hi)) for lo, hi in ranges]
        self._starts = list(itertools.accumulate((hi - lo + 1 for lo, hi in self.ranges),
                                                 initial=0))

    def __len__(self) -> int:
        return self._starts[-1]

    def __iter__(self) -> Iterator[int]:
        for lo, hi in self.ranges:
            yield from range(lo, hi + 1)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(index)
        part = bisect.bisect_right(self._starts, index) - 1
        return self.ranges[part][0] + index - self._starts[part]

    def __repr__(self) -> str:
        return f"SeedRanges({self.spec()!r})"

    def spec(self) -> str:
        return ",".join(str(lo) if lo == hi else f"{lo}-{hi}" for lo, hi in self.ranges)

    def union(self, other: SeedRanges) -> SeedRanges:
        """Sorted, merged ranges covering both sets."""
        merged: list[list[int]] = []
        for lo, hi in sorted(self.ranges + other.ranges):
            if merged and lo <= merged[-1][1] + 1:
                merged[-1][1] = max(merged[-1][1], hi)
            else:
                merged.append([lo, hi])
        return SeedRanges([(lo, hi) for lo, hi in merged])


def parse_seeds(spec: str, flag: str = "--seeds") -> SeedRanges:
    """'0-3,10' -> seeds 0, 1, 2, 3, 10 (lazily); every seed in [0, 2^32)."""
    ranges: list[tuple[int, int]] = []
    for part in str(spec).split(","):
        part = part.strip()
        if m := re.fullmatch(r"(\d+)-(\d+)", part):
            lo, hi = int(m.group(1)), int(m.group(2))
            if hi < lo:
                raise FfhqToolsError(f"{flag} {spec}: range {part} is descending")
        elif part.isdigit():
            lo = hi = int(part)
        else:
            raise FfhqToolsError(f"{flag} {spec}: expected numbers and ranges like 0-63,70")
        if hi >= SEED_LIMIT:
            raise FfhqToolsError(f"{flag} {spec}: seeds must be below 2^32 = {SEED_LIMIT} "
                                 "(the range np.random.RandomState accepts)")
        ranges.append((lo, hi))
    return SeedRanges(ranges)


def batched(items: Iterable, size: int) -> Iterator[list]:
    iterator = iter(items)
    while chunk := list(itertools.islice(iterator, size)):
        yield chunk


def seed_latents(seeds: list[int], z_dim: int) -> torch.Tensor:
    return torch.from_numpy(np.stack([np.random.RandomState(s).randn(z_dim) for s in seeds])
                            ).float()


def class_labels(G, n: int, class_idx: int | None) -> torch.Tensor | None:
    if not G.c_dim:
        if class_idx is not None:
            raise FfhqToolsError("--class given but the generator is unconditional")
        return None
    if class_idx is None or not 0 <= class_idx < G.c_dim:
        raise FfhqToolsError(f"conditional generator: pass --class in 0..{G.c_dim - 1}")
    c = torch.zeros(n, G.c_dim)
    c[:, class_idx] = 1
    return c


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """[N, C, H, W] in about [-1, 1] -> uint8 [N, H, W, C]."""
    x = (images.float() * 127.5 + 128).clamp(0, 255).to(torch.uint8)
    return x.permute(0, 2, 3, 1).cpu().numpy()


def render(G, ws: torch.Tensor, noise_mode: str, noise_seeds: list[int] | None = None
           ) -> np.ndarray:
    """One forward pass of the synthesis network. With random noise and `noise_seeds`, each
    image draws its noise from its own seed (one image per pass), so it does not depend on
    the batch it was rendered in."""
    device = next(G.parameters()).device
    ws = ws.to(device)
    with torch.no_grad():
        if noise_mode != "random" or noise_seeds is None:
            return to_uint8(G.synthesis(ws, noise_mode=noise_mode))
        images = []
        for w, seed in zip(ws, noise_seeds, strict=True):
            with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
                torch.manual_seed(seed)
                images.append(G.synthesis(w[None], noise_mode="random"))
        return to_uint8(torch.cat(images))


def synthesize(G, ws: torch.Tensor, noise_mode: str, batch_size: int) -> np.ndarray:
    return np.concatenate([render(G, ws[i: i + batch_size], noise_mode)
                           for i in range(0, len(ws), batch_size)])


def map_seeds(G, seeds, truncation_psi=1.0, truncation_cutoff=None, class_idx=None):
    device = next(G.parameters()).device
    z = seed_latents(seeds, G.z_dim).to(device)
    c = class_labels(G, len(seeds), class_idx)
    with torch.no_grad():
        return G.mapping(z, None if c is None else c.to(device), truncation_psi=truncation_psi,
                         truncation_cutoff=truncation_cutoff)


def generate_images(G, seeds: Iterable[int], *, truncation_psi: float = 1.0,
                    truncation_cutoff: int | None = None, noise_mode: str = "const",
                    batch_size: int = 16, class_idx: int | None = None
                    ) -> Iterator[tuple[int, np.ndarray]]:
    """Yield (seed, HWC uint8 image) for each seed, `batch_size` at a time (lazily: at most
    one batch is in memory). Random noise is drawn from each image's seed."""
    for chunk in batched(seeds, batch_size):
        ws = map_seeds(G, chunk, truncation_psi, truncation_cutoff, class_idx)
        yield from zip(chunk, render(G, ws, noise_mode, chunk), strict=True)


def make_grid(images: np.ndarray | list, cols: int | None = None) -> np.ndarray:
    images = np.asarray(images)
    n, h, w, c = images.shape
    cols = cols or int(math.ceil(math.sqrt(n)))
    rows = int(math.ceil(n / cols))
    grid = np.zeros((rows * h, cols * w, c), dtype=images.dtype)
    for i, img in enumerate(images):
        r, k = divmod(i, cols)
        grid[r * h: (r + 1) * h, k * w: (k + 1) * w] = img
    return grid


def crossover_ws(ws: torch.Tensor, crossovers: torch.Tensor) -> torch.Tensor:
    """Per-layer ws of images mixed from several latents at crossover layers.

    `ws` [N, n, num_ws, w_dim] holds each image's n latents (mapped and broadcast per layer);
    `crossovers` [N, n - 1] are sorted layer indices in 1..num_ws - 1. Latent i covers layers
    crossovers[i - 1] .. crossovers[i] - 1 (latent 0 from layer 0, the last one to the end),
    as in StyleGAN's style mixing with two or more latents. Returns [N, num_ws, w_dim].
    """
    n, count, num_ws = ws.shape[:3]
    if crossovers.shape != (n, count - 1):
        raise ValueError(f"crossovers must have shape {(n, count - 1)}, got "
                         f"{tuple(crossovers.shape)}")
    layers = torch.arange(num_ws, device=ws.device)
    which = (crossovers.to(ws.device)[:, None, :] <= layers[None, :, None]).sum(dim=2)
    index = which[:, None, :, None].expand(n, 1, num_ws, ws.shape[3])
    return ws.gather(1, index).squeeze(1)


def style_mixing_grids(G, col_seeds: list[int], row_seeds: list[int], *,
                       truncation_psi: float = 1.0, truncation_cutoff: int | None = None,
                       noise_mode: str = "const", batch_size: int = 16,
                       class_idx: int | None = None) -> dict[str, np.ndarray]:
    """StyleGAN Fig. 3: columns = source A, rows = source B; each cell takes source A's styles
    except the range (coarse / middle / fine) copied from source B. Top-left cell is blank."""
    if not getattr(G, "use_styles", True):
        raise FfhqToolsError("--style-mixing needs a style-based generator; this one has a "
                             "traditional input (ProGAN / traditional configs)")
    ws_a = map_seeds(G, col_seeds, truncation_psi, truncation_cutoff, class_idx)
    ws_b = map_seeds(G, row_seeds, truncation_psi, truncation_cutoff, class_idx)
    img_a = synthesize(G, ws_a, noise_mode, batch_size)
    img_b = synthesize(G, ws_b, noise_mode, batch_size)
    grids = {}
    for name, (lo, hi) in STYLE_RANGES.items():
        hi = G.num_ws if hi is None else min(hi, G.num_ws)
        if lo >= hi:
            continue
        mixed = ws_a[None].repeat(len(row_seeds), 1, 1, 1)
        mixed[:, :, lo:hi] = ws_b[:, None, lo:hi]
        cells = synthesize(G, mixed.reshape(-1, *ws_a.shape[1:]), noise_mode, batch_size)
        blank = np.zeros_like(img_a[:1])
        rows = [np.concatenate([blank, img_a])]
        for r in range(len(row_seeds)):
            rows.append(np.concatenate([img_b[r: r + 1],
                                        cells[r * len(col_seeds): (r + 1) * len(col_seeds)]]))
        grids[name] = make_grid(np.concatenate(rows), cols=len(col_seeds) + 1)
    return grids


def noise_variation(G, seed: int, num: int = 8, *, truncation_psi: float = 1.0,
                    truncation_cutoff: int | None = None, class_idx: int | None = None
                    ) -> tuple[np.ndarray, np.ndarray]:
    """`num` images of one w under different noise draws, and the per-pixel std map (uint8,
    the standard deviation over draws averaged over channels, scaled to its max)."""
    ws = map_seeds(G, [seed], truncation_psi, truncation_cutoff, class_idx).repeat(num, 1, 1)
    torch.manual_seed(seed)
    device = next(G.parameters()).device
    with torch.no_grad():
        images = G.synthesis(ws.to(device), noise_mode="random").float()
    std = images.std(dim=0).mean(dim=0)
    std_map = (std / std.max().clamp_min(1e-8) * 255).round().to(torch.uint8).cpu().numpy()
    return to_uint8(images), std_map


def truncation_sweep(G, seeds: list[int], psis: list[float], *, truncation_cutoff=None,
                     noise_mode: str = "const", batch_size: int = 16,
                     class_idx: int | None = None) -> np.ndarray:
    """Grid: one row per seed, one column per psi."""
    rows = []
    for seed in seeds:
        ws = torch.cat([map_seeds(G, [seed], psi, truncation_cutoff, class_idx) for psi in psis])
        rows.append(synthesize(G, ws, noise_mode, batch_size))
    return make_grid(np.concatenate(rows), cols=len(psis))


def slerp(a: torch.Tensor, b: torch.Tensor, t: float) -> torch.Tensor:
    a_n, b_n = a / a.norm(dim=-1, keepdim=True), b / b.norm(dim=-1, keepdim=True)
    omega = torch.acos((a_n * b_n).sum(-1, keepdim=True).clamp(-1, 1))
    so = torch.sin(omega)
    if float(so.abs().min()) < 1e-6:
        return torch.lerp(a, b, t)
    return (torch.sin((1 - t) * omega) / so) * a + (torch.sin(t * omega) / so) * b


def _check_interpolation(points: int, steps: int) -> None:
    if points < 2 or steps < 2:
        raise FfhqToolsError("--interpolate needs at least two seeds (or projected codes) and "
                             "--frames >= 2")


def seed_interpolation_ws(G, seeds: list[int], steps: int, space: str = "w", *,
                          truncation_psi: float = 1.0, truncation_cutoff: int | None = None,
                          class_idx: int | None = None) -> Iterator[torch.Tensor]:
    """Per segment, the ws [steps, num_ws, w_dim] from one seed towards the next (slerp in Z,
    lerp in W), then the last seed's ws [1, num_ws, w_dim]."""
    if space not in ("z", "w"):
        raise FfhqToolsError(f"--interpolate {space}: expected z or w")
    _check_interpolation(len(seeds), steps)
    c = class_labels(G, steps, class_idx)
    return _seed_walk(G, seeds, steps, space, c, truncation_psi, truncation_cutoff, class_idx)


def _seed_walk(G, seeds, steps, space, c, truncation_psi, truncation_cutoff, class_idx):
    device = next(G.parameters()).device
    ts = [i / steps for i in range(steps)]
    for a, b in itertools.pairwise(seeds):
        if space == "z":
            za, zb = seed_latents([a, b], G.z_dim).to(device)
            zs = torch.stack([slerp(za, zb, t) for t in ts])
            with torch.no_grad():
                ws = G.mapping(zs, None if c is None else c.to(device), truncation_psi,
                               truncation_cutoff)
            yield ws
        else:
            wa, wb = map_seeds(G, [a, b], truncation_psi, truncation_cutoff, class_idx)
            yield torch.stack([torch.lerp(wa, wb, t) for t in ts])
    yield map_seeds(G, seeds[-1:], truncation_psi, truncation_cutoff, class_idx)


def code_interpolation_ws(codes: torch.Tensor, steps: int) -> Iterator[torch.Tensor]:
    """The same walk between given codes [K, num_ws, w_dim] (projected images): lerp per
    layer, so W+ codes interpolate too."""
    _check_interpolation(len(codes), steps)
    return _code_walk(codes, steps)


def _code_walk(codes: torch.Tensor, steps: int) -> Iterator[torch.Tensor]:
    ts = [i / steps for i in range(steps)]
    for wa, wb in itertools.pairwise(codes):
        yield torch.stack([torch.lerp(wa, wb, t) for t in ts])
    yield codes[-1:]


def render_stream(G, ws_chunks: Iterable[torch.Tensor], noise_mode: str, batch_size: int
                  ) -> Iterator[np.ndarray]:
    """Frames one by one from chunks of ws, `batch_size` per pass (random noise seeded by the
    frame index)."""
    index = 0
    for ws in ws_chunks:
        for i in range(0, len(ws), batch_size):
            part = ws[i: i + batch_size]
            yield from render(G, part, noise_mode, list(range(index, index + len(part))))
            index += len(part)


def interpolation_frames(G, seeds: list[int], steps: int, space: str = "w", *,
                         truncation_psi: float = 1.0, truncation_cutoff: int | None = None,
                         noise_mode: str = "const", batch_size: int = 16,
                         class_idx: int | None = None) -> Iterator[np.ndarray]:
    """Frames from seed to seed (closing at the last seed), yielded one at a time."""
    ws = seed_interpolation_ws(G, seeds, steps, space, truncation_psi=truncation_psi,
                               truncation_cutoff=truncation_cutoff, class_idx=class_idx)
    return render_stream(G, ws, noise_mode, batch_size)

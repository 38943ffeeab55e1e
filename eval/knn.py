"""Blocked k-nearest-neighbour radii and manifold membership (Kynkaanniemi et al. 2019).

Under torch.distributed the block pairs are dealt out to the ranks and the partial results
merged, so every rank returns the same answer for a share of the work.

Everything works on squared Euclidean distances computed block by block with one matrix
product (|a|^2 + |b|^2 - 2 a.b) on mean-centred features, so memory is bounded by one
row x column block and no square root is ever taken: comparing squared distances selects
exactly the same sets as comparing distances. Two savings over the straightforward
full-matrix form: a set's distances to itself are symmetric, so only the upper block
triangle is computed; and one pass over the real x generated blocks answers both
"is this generated sample inside the real manifold" and "is this real sample inside the
generated manifold".
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

DEFAULT_ROW_BATCH = 2048
DEFAULT_COL_BATCH = 10000


def blocks(n: int, size: int) -> list[tuple[int, int]]:
    """[start, stop) ranges of at most `size` covering range(n)."""
    return [(start, min(start + size, n)) for start in range(0, n, size)]


def squared_distances(a: torch.Tensor, b: torch.Tensor, a_sq: torch.Tensor,
                      b_sq: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """|a_i - b_j|^2 for rows of a and b (a_sq, b_sq: their squared norms), clamped at 0,
    written into `out` when given."""
    d = torch.addmm(b_sq.unsqueeze(0), a, b.T, alpha=-2.0, out=out)
    return d.add_(a_sq.unsqueeze(1)).clamp_(min=0.0)


class Workspace:
    """Reusable distance and scratch blocks: no large allocation (and page faults) per block."""

    def __init__(self, rows: int, cols: int, dtype: torch.dtype, device):
        self.flat = torch.empty(rows * cols, dtype=dtype, device=device)
        self.scratch = torch.empty(rows * cols, dtype=dtype, device=device)

    def squared_distances(self, a: torch.Tensor, b: torch.Tensor, a_sq: torch.Tensor,
                          b_sq: torch.Tensor) -> torch.Tensor:
        d = self.flat[:a.shape[0] * b.shape[0]].view(a.shape[0], b.shape[0])
        return squared_distances(a, b, a_sq, b_sq, out=d)

    def transposed(self, d: torch.Tensor) -> torch.Tensor:
        """d.T as a contiguous block (top-k along a strided dimension is ~3x slower)."""
        out = self.scratch[:d.numel()].view(d.shape[1], d.shape[0])
        return out.copy_(d.T)

    def below(self, d: torch.Tensor, radii: torch.Tensor) -> torch.Tensor:
        """1.0 where d < radii (broadcast), else 0.0, in the scratch block."""
        return torch.lt(d, radii, out=self.scratch[:d.numel()].view_as(d))

    def minus(self, d: torch.Tensor, radii: torch.Tensor) -> torch.Tensor:
        """d - radii (broadcast) in the scratch block; it is <= 0 exactly where d <= radii
        (a difference of finite floats is never rounded to zero or across it)."""
        return torch.sub(d, radii, out=self.scratch[:d.numel()].view_as(d))


def _merge_smallest(best: torch.Tensor, candidates: torch.Tensor, keep: int) -> torch.Tensor:
    """Keep the `keep` smallest values per row of `best` and `candidates` together."""
    keep_now = min(keep, candidates.shape[1])
    top = torch.topk(candidates, keep_now, dim=1, largest=False).values
    merged = torch.cat([best, top], dim=1)
    return torch.topk(merged, min(keep, merged.shape[1]), dim=1, largest=False).values


class _Centered:
    """Features shifted by `center` block by block (no full centred copy is ever made):
    centring keeps |a|^2 + |b|^2 - 2 a.b accurate for features far from the origin."""

    def __init__(self, features, center: torch.Tensor, dtype: torch.dtype, device,
                 block: int):
        self.x = torch.as_tensor(features).to(device=device, dtype=dtype)
        self.center = center
        self.sq = torch.cat([self.block(i0, i1).square().sum(dim=1)
                             for i0, i1 in blocks(len(self), block)])

    def __len__(self) -> int:
        return self.x.shape[0]

    def block(self, i0: int, i1: int) -> torch.Tensor:
        return self.x[i0:i1] - self.center


def _mean(features, dtype: torch.dtype, device) -> tuple[torch.Tensor, int]:
    x = torch.as_tensor(features)
    return x.to(device=device, dtype=dtype).mean(dim=0), x.shape[0]


def kth_neighbour_sq_radii(features, k: int = 3, *, row_batch: int = DEFAULT_ROW_BATCH,
                           col_batch: int = DEFAULT_COL_BATCH,
                           dtype: torch.dtype = torch.float32, device="cpu",
                           progress=None) -> torch.Tensor:
    """Squared distance of every sample to its k-th nearest neighbour, itself excluded.

    That is index k of the sorted distances of a sample to the whole set (index 0 being the
    sample itself), as in the reference code; with duplicates a twin counts as a neighbour.
    """
    x = _Centered(features, _mean(features, dtype, device)[0], dtype, device, row_batch)
    rows, cols = min(row_batch, len(x)), min(col_batch, len(x))
    return _self_radii(x, k, row_batch, col_batch, Workspace(rows, cols, dtype, device),
                       progress)


def _world() -> tuple[int, int]:
    """(rank, world size) under torch.distributed; blocks are dealt out round-robin."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def _self_panels(n: int, row_batch: int, col_batch: int) -> list[tuple[tuple, tuple]]:
    """(rows, columns) covering the upper triangle of a set's distances: each row block
    against the columns from its own start on, in panels of at most `col_batch` columns
    (wide matrix products run nearer the machine's peak than square blocks)."""
    return [((i0, i1), (c0, min(c0 + col_batch, n)))
            for i0, i1 in blocks(n, row_batch) for c0 in range(i0, n, col_batch)]


def _self_radii(x: _Centered, k, row_batch, col_batch, work: Workspace,
                progress) -> torch.Tensor:
    n, keep = len(x), k + 1
    if n < keep:
        raise ValueError(f"need more than k={k} samples to find a k-th neighbour (got {n})")
    rank, world = _world()
    best = torch.full((n, keep), float("inf"), dtype=x.sq.dtype, device=x.sq.device)
    for index, ((i0, i1), (c0, c1)) in enumerate(_self_panels(n, row_batch, col_batch)):
        if index % world != rank:
            continue
        d = work.squared_distances(x.block(i0, i1), x.block(c0, c1), x.sq[i0:i1], x.sq[c0:c1])
        lo, hi = max(i0, c0), min(i1, c1)
        if lo < hi:  # self-distance is exactly 0, whatever the rounding
            d[lo - i0:hi - i0, lo - c0:hi - c0].diagonal().zero_()
        best[i0:i1] = _merge_smallest(best[i0:i1], d, keep)
        later = max(i1, c0)  # columns of later row blocks take the transposed part
        if later < c1:
            best[later:c1] = _merge_smallest(best[later:c1],
                                             work.transposed(d[:, later - c0:]), keep)
        if progress is not None:
            progress.update(world)
    if world > 1:
        parts = [torch.empty_like(best) for _ in range(world)]
        torch.distributed.all_gather(parts, best)
        best = torch.topk(torch.cat(parts, dim=1), keep, dim=1, largest=False).values
    return best[:, k]


@dataclass
class ManifoldResult:
    precision: float
    recall: float
    inside_real: torch.Tensor  # bool per generated sample
    inside_gen: torch.Tensor   # bool per real sample


def precision_recall(real, gen, k: int = 3, *, row_batch: int = DEFAULT_ROW_BATCH,
                     col_batch: int = DEFAULT_COL_BATCH, dtype: torch.dtype = torch.float32,
                     device="cpu", progress: bool = False) -> ManifoldResult:
    """Improved precision and recall of `gen` features against `real` features ([N, D] each).

    Precision: share of generated samples within the k-NN radius of some real sample.
    Recall: share of real samples within the k-NN radius of some generated sample.
    """
    real = torch.as_tensor(real)
    gen = torch.as_tensor(gen)
    if real.ndim != 2 or gen.ndim != 2 or real.shape[1] != gen.shape[1]:
        raise ValueError(f"expected [N, D] feature matrices of equal D, got {tuple(real.shape)} "
                         f"and {tuple(gen.shape)}")
    (mean_r, n_r), (mean_g, n_g) = _mean(real, dtype, device), _mean(gen, dtype, device)
    center = (mean_r * n_r + mean_g * n_g) / (n_r + n_g)
    r = _Centered(real, center, dtype, device, row_batch)
    g = _Centered(gen, center, dtype, device, row_batch)
    bar = _progress_bar(progress, n_r, n_g, row_batch, col_batch)
    rows = min(row_batch, max(n_r, n_g))
    work = Workspace(rows, min(col_batch, max(n_r, n_g)), dtype, device)
    real_radii = _self_radii(r, k, row_batch, col_batch, work, bar)
    gen_radii = _self_radii(g, k, row_batch, col_batch, work, bar)
    inside_real = torch.zeros(n_g, dtype=torch.bool, device=device)
    inside_gen = torch.zeros(n_r, dtype=torch.bool, device=device)
    rank, world = _world()
    for index, (g0, g1) in enumerate(blocks(n_g, row_batch)):
        if index % world != rank:
            continue
        gen_rows = g.block(g0, g1)
        for r0, r1 in blocks(n_r, col_batch):
            d = work.squared_distances(gen_rows, r.block(r0, r1), g.sq[g0:g1], r.sq[r0:r1])
            # a minimum of differences: one pass less than a boolean block and any()
            inside_real[g0:g1] |= work.minus(d, real_radii[r0:r1].unsqueeze(0)).amin(dim=1) <= 0
            inside_gen[r0:r1] |= d.sub_(gen_radii[g0:g1].unsqueeze(1)).amin(dim=0) <= 0
            if bar is not None:
                bar.update(world)
    if bar is not None:
        bar.close()
    if world > 1:
        for flags in (inside_real, inside_gen):
            as_int = flags.to(torch.int32)
            torch.distributed.all_reduce(as_int, op=torch.distributed.ReduceOp.MAX)
            flags.copy_(as_int.bool())
    return ManifoldResult(int(inside_real.sum()) / len(inside_real),
                          int(inside_gen.sum()) / len(inside_gen),
                          inside_real.cpu(), inside_gen.cpu())


def _progress_bar(enabled: bool, n_real: int, n_gen: int, row_batch: int, col_batch: int):
    if not enabled:
        return None
    from tqdm import tqdm

    def triangle(n):
        return len(_self_panels(n, row_batch, col_batch))

    total = (triangle(n_real) + triangle(n_gen)
             + len(blocks(n_gen, row_batch)) * len(blocks(n_real, col_batch)))
    return tqdm(total=total, desc="precision/recall blocks", unit="block", leave=False)

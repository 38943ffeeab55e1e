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


def _blocks(n: int, size: int) -> list[tuple[int, int]]:
    return [(start, min(start + size, n)) for start in range(0, n, size)]


class _Workspace:
    """One reusable distance block: no large allocation (and page faults) per block."""

    def __init__(self, rows: int, cols: int, dtype: torch.dtype, device):
        self.flat = torch.empty(rows * cols, dtype=dtype, device=device)

    def squared_distances(self, a: torch.Tensor, b: torch.Tensor, a_sq: torch.Tensor,
                          b_sq: torch.Tensor) -> torch.Tensor:
        d = self.flat[:a.shape[0] * b.shape[0]].view(a.shape[0], b.shape[0])
        torch.addmm(b_sq.unsqueeze(0), a, b.T, alpha=-2.0, out=d)
        d.add_(a_sq.unsqueeze(1))
        return d.clamp_(min=0.0)


def _merge_smallest(best: torch.Tensor | None, candidates: torch.Tensor, keep: int) -> torch.Tensor:
    """Keep the `keep` smallest values per row of `best` and `candidates` together."""
    keep_now = min(keep, candidates.shape[1])
    top = torch.topk(candidates, keep_now, dim=1, largest=False).values
    if best is None:
        return top
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
                             for i0, i1 in _blocks(len(self), block)])

    def __len__(self) -> int:
        return self.x.shape[0]

    def block(self, i0: int, i1: int) -> torch.Tensor:
        return self.x[i0:i1] - self.center


def _mean(features, dtype: torch.dtype, device) -> tuple[torch.Tensor, int]:
    x = torch.as_tensor(features)
    return x.to(device=device, dtype=dtype).mean(dim=0), x.shape[0]


def kth_neighbour_sq_radii(features, k: int = 3, *, row_batch: int = DEFAULT_ROW_BATCH,
                           dtype: torch.dtype = torch.float32, device="cpu",
                           progress=None) -> torch.Tensor:
    """Squared distance of every sample to its k-th nearest neighbour, itself excluded.

    That is index k of the sorted distances of a sample to the whole set (index 0 being the
    sample itself), as in the reference code; with duplicates a twin counts as a neighbour.
    """
    x = _Centered(features, _mean(features, dtype, device)[0], dtype, device, row_batch)
    block = min(row_batch, len(x))
    return _self_radii(x, k, row_batch, _Workspace(block, block, dtype, device), progress)


def _world() -> tuple[int, int]:
    """(rank, world size) under torch.distributed; block pairs are dealt out round-robin."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def _merge_over_ranks(best: list[torch.Tensor | None], blocks, keep: int, like: torch.Tensor):
    """Every rank's partial k-smallest lists of every block, merged (inf where a rank had none)."""
    def padded(b, rows):
        pad = torch.full((rows, keep), float("inf"), dtype=like.dtype, device=like.device)
        if b is not None:
            pad[:, :b.shape[1]] = b
        return pad

    local = torch.cat([padded(b, i1 - i0) for b, (i0, i1) in zip(best, blocks, strict=True)])
    parts = [torch.empty_like(local) for _ in range(_world()[1])]
    torch.distributed.all_gather(parts, local)
    return torch.topk(torch.cat(parts, dim=1), keep, dim=1, largest=False).values


def _self_radii(x: _Centered, k, row_batch, work: _Workspace, progress) -> torch.Tensor:
    n = len(x)
    if n < k + 1:
        raise ValueError(f"need more than k={k} samples to find a k-th neighbour (got {n})")
    rank, world = _world()
    best: list[torch.Tensor | None] = [None] * len(_blocks(n, row_batch))
    blocks = _blocks(n, row_batch)
    pair = -1
    for i, (i0, i1) in enumerate(blocks):
        rows = x.block(i0, i1)
        for j in range(i, len(blocks)):
            pair += 1
            if pair % world != rank:
                continue
            j0, j1 = blocks[j]
            cols = rows if j == i else x.block(j0, j1)
            d = work.squared_distances(rows, cols, x.sq[i0:i1], x.sq[j0:j1])
            if i == j:
                d.diagonal().zero_()  # self-distance is exactly 0, whatever the rounding
            best[i] = _merge_smallest(best[i], d, k + 1)
            if j != i:
                best[j] = _merge_smallest(best[j], d.T, k + 1)
            if progress is not None:
                progress.update(world)
    if world > 1:
        return _merge_over_ranks(best, blocks, k + 1, x.sq)[:, k]
    return torch.cat([b[:, k] for b in best])


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
    work = _Workspace(rows, max(rows, min(col_batch, n_r)), dtype, device)
    real_radii = _self_radii(r, k, row_batch, work, bar)
    gen_radii = _self_radii(g, k, row_batch, work, bar)
    inside_real = torch.zeros(n_g, dtype=torch.bool, device=device)
    inside_gen = torch.zeros(n_r, dtype=torch.bool, device=device)
    rank, world = _world()
    for index, (g0, g1) in enumerate(_blocks(n_g, row_batch)):
        if index % world != rank:
            continue
        gen_rows = g.block(g0, g1)
        for r0, r1 in _blocks(n_r, col_batch):
            d = work.squared_distances(gen_rows, r.block(r0, r1), g.sq[g0:g1], r.sq[r0:r1])
            inside_real[g0:g1] |= (d <= real_radii[r0:r1].unsqueeze(0)).any(dim=1)
            inside_gen[r0:r1] |= (d <= gen_radii[g0:g1].unsqueeze(1)).any(dim=0)
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
        b = len(_blocks(n, row_batch))
        return b * (b + 1) // 2

    total = (triangle(n_real) + triangle(n_gen)
             + len(_blocks(n_gen, row_batch)) * len(_blocks(n_real, col_batch)))
    return tqdm(total=total, desc="precision/recall blocks", unit="block", leave=False)

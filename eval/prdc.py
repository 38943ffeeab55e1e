"""Precision, recall, density and coverage (Naeem et al. 2020) from k-NN radii, blocked.

Definitions as the `prdc` package (and dgm-eval) computes them, with strict comparisons and
the radius of a sample = distance to its k-th nearest neighbour in its own set (itself
excluded):
- precision: share of fake samples inside some real sample's ball;
- recall: share of real samples inside some fake sample's ball;
- density: (1 / k) x the mean, over fake samples, of the number of real balls holding them;
- coverage: share of real samples whose ball holds at least one fake sample.

Where `prdc` builds three full N x N distance matrices with scikit-learn, this computes
squared distances block by block with one matrix product each (memory: one block), the
radii with `eval.knn`'s symmetric blocked k-NN, and all four numbers from one pass over the
real x fake blocks, reduced with minima and a matrix-vector count rather than boolean
blocks. `density_coverage` skips the fake radii, which only recall needs.
"""

from __future__ import annotations

import torch

from eval import knn

DEFAULT_BLOCK = 2048
DEFAULT_COL_BLOCK = 10_000


def _as_matrix(features, name: str, dtype: torch.dtype, device) -> torch.Tensor:
    x = torch.as_tensor(features)
    if x.ndim != 2:
        raise ValueError(f"{name} features must be (N, dim), got {tuple(x.shape)}")
    return x.to(device=device, dtype=dtype)


class _CrossTally:
    """What the real x fake pass accumulates; `real_in_fake_ball` only with fake radii."""

    def __init__(self, n_real: int, n_fake: int, col_block: int, device, dtype):
        self.balls_holding_fake = torch.zeros(n_fake, dtype=torch.int64, device=device)
        self.real_in_fake_ball = torch.zeros(n_real, dtype=torch.bool, device=device)
        self.real_ball_holds_fake = torch.zeros(n_real, dtype=torch.bool, device=device)
        self.ones = torch.ones(min(col_block, n_real), dtype=dtype, device=device)

    def add(self, d: torch.Tensor, work: knn.Workspace, fake: tuple[int, int],
            real: tuple[int, int], real_radii: torch.Tensor, fake_radii: torch.Tensor | None):
        (f0, f1), (r0, r1) = fake, real
        radii = real_radii[r0:r1]
        inside_real = work.below(d, radii.unsqueeze(0))  # 0/1 per (fake, real) pair
        counts = torch.mv(inside_real, self.ones[:r1 - r0])  # exact: below 2^24 per block
        self.balls_holding_fake[f0:f1] += counts.to(torch.int64)
        self.real_ball_holds_fake[r0:r1] |= d.amin(dim=0) < radii
        if fake_radii is not None:  # last: d is overwritten in place
            self.real_in_fake_ball[r0:r1] |= d.sub_(fake_radii[f0:f1].unsqueeze(1)).amin(dim=0) < 0


def _cross_pass(real: torch.Tensor, fake: torch.Tensor, real_radii: torch.Tensor,
                fake_radii: torch.Tensor | None, block: int, col_block: int) -> _CrossTally:
    center = torch.cat([real, fake]).mean(dim=0)
    real_c, fake_c = real - center, fake - center
    real_sq, fake_sq = real_c.square().sum(dim=1), fake_c.square().sum(dim=1)
    rows, cols = min(block, fake.shape[0]), min(col_block, real.shape[0])
    work = knn.Workspace(rows, cols, real.dtype, real.device)
    tally = _CrossTally(real.shape[0], fake.shape[0], col_block, real.device, real.dtype)
    for f0, f1 in knn.blocks(fake.shape[0], block):
        for r0, r1 in knn.blocks(real.shape[0], col_block):
            d = work.squared_distances(fake_c[f0:f1], real_c[r0:r1], fake_sq[f0:f1],
                                       real_sq[r0:r1])
            tally.add(d, work, (f0, f1), (r0, r1), real_radii, fake_radii)
    return tally


def _checked_pair(real, fake, dtype, device) -> tuple[torch.Tensor, torch.Tensor]:
    real = _as_matrix(real, "real", dtype, device)
    fake = _as_matrix(fake, "fake", dtype, device)
    if real.shape[1] != fake.shape[1]:
        raise ValueError(f"real features have {real.shape[1]} dimensions, fake "
                         f"{fake.shape[1]}: features of different networks?")
    return real, fake


def _radii(x: torch.Tensor, nearest_k: int, block: int, col_block: int) -> torch.Tensor:
    return knn.kth_neighbour_sq_radii(x, nearest_k, row_batch=block, col_batch=col_block,
                                      dtype=x.dtype, device=x.device)


def prdc(real, fake, nearest_k: int = 5, *, block: int = DEFAULT_BLOCK,
         col_block: int = DEFAULT_COL_BLOCK, dtype: torch.dtype = torch.float32,
         device="cpu") -> dict[str, float]:
    """{"precision", "recall", "density", "coverage"} of fake vs real features (N x D each)."""
    real, fake = _checked_pair(real, fake, dtype, device)
    tally = _cross_pass(real, fake, _radii(real, nearest_k, block, col_block),
                        _radii(fake, nearest_k, block, col_block), block, col_block)
    return {
        "precision": float((tally.balls_holding_fake > 0).double().mean()),
        "recall": float(tally.real_in_fake_ball.double().mean()),
        **_density_coverage(tally, nearest_k),
    }


def density_coverage(real, fake, nearest_k: int = 5, *, block: int = DEFAULT_BLOCK,
                     col_block: int = DEFAULT_COL_BLOCK, dtype: torch.dtype = torch.float32,
                     device="cpu") -> dict[str, float]:
    """{"density", "coverage"} alone: both need only the real radii, so the fake x fake
    distances (a third of `prdc`'s work) are never computed."""
    real, fake = _checked_pair(real, fake, dtype, device)
    real_radii = _radii(real, nearest_k, block, col_block)
    tally = _cross_pass(real, fake, real_radii, None, block, col_block)
    return _density_coverage(tally, nearest_k)


def _density_coverage(tally: _CrossTally, nearest_k: int) -> dict[str, float]:
    return {"density": (1.0 / nearest_k) * float(tally.balls_holding_fake.double().mean()),
            "coverage": float(tally.real_ball_holds_fake.double().mean())}

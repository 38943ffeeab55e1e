"""Memorisation checks on feature sets: AuthPct and the feature likelihood divergence.

- `authpct` (Alaa et al. 2022, as dgm-eval computes it): a generated sample is authentic when
  its nearest training sample is closer to its own nearest training neighbour than to the
  generated sample; the metric is the percentage of authentic samples. Blocked squared
  distances (same comparisons as Euclidean ones), never an N x N matrix.
- `feature_likelihood` (Jiralerspong et al. 2023, dgm-eval's FLS constants): an isotropic
  Gaussian kernel density on the generated samples, one bandwidth per kernel point fitted to
  the training samples (Adam, lr 0.5, x0.1 after 50 of 100 steps, log-bandwidths clamped to
  [-100, 20]), scored by the mean negative log-likelihood of held-out test samples; the same
  with half of the training samples as kernel points gives the baseline. dgm-eval's score is
  FLS = 100 exp(-2 (nll_gen - nll_base) / d); the divergence FLD = 100 (nll_gen - nll_base) / d
  is the same comparison without the exponential (0: as good as real data, higher: worse or
  memorised).
"""

from __future__ import annotations

import math

import torch

from eval import defaults, knn

DEFAULT_BLOCK = 4096


def _matrix(features, dtype, device) -> torch.Tensor:
    x = torch.as_tensor(features)
    if x.ndim != 2:
        raise ValueError(f"features must be (N, dim), got {tuple(x.shape)}")
    return x.to(device=device, dtype=dtype)


def nearest(queries: torch.Tensor, points: torch.Tensor, block: int = DEFAULT_BLOCK) \
        -> tuple[torch.Tensor, torch.Tensor]:
    """(squared distance, index) of each query's nearest point, in blocks of both sets."""
    center = points.mean(dim=0)
    q, p = queries - center, points - center
    q_sq, p_sq = q.square().sum(dim=1), p.square().sum(dim=1)
    best = torch.full((q.shape[0],), float("inf"), dtype=q.dtype, device=q.device)
    index = torch.zeros(q.shape[0], dtype=torch.int64, device=q.device)
    for q0, q1 in knn.blocks(q.shape[0], block):
        for p0, p1 in knn.blocks(p.shape[0], block):
            values, where = knn.squared_distances(q[q0:q1], p[p0:p1], q_sq[q0:q1],
                                                  p_sq[p0:p1]).min(dim=1)
            better = values < best[q0:q1]
            best[q0:q1] = torch.where(better, values, best[q0:q1])
            index[q0:q1] = torch.where(better, where + p0, index[q0:q1])
    return best, index


def authpct(train, gen, *, dtype: torch.dtype = torch.float32, device="cpu",
            block: int = DEFAULT_BLOCK) -> float:
    """Percentage of generated samples that are authentic with respect to `train`."""
    train, gen = _matrix(train, dtype, device), _matrix(gen, dtype, device)
    train_nn = knn.kth_neighbour_sq_radii(train, 1, row_batch=block, dtype=dtype,
                                          device=device)
    gen_nn, closest = nearest(gen, train, block)
    authentic = train_nn[closest] < gen_nn
    return 100.0 * float(authentic.double().mean())


def _all_squared_distances(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    return knn.squared_distances(x, kernel, x.square().sum(dim=1), kernel.square().sum(dim=1))


def kde_nll(dists: torch.Tensor, log_sigmas: torch.Tensor, dim: int) -> torch.Tensor:
    """Per-sample negative log-likelihood under the equal-weight Gaussian mixture with
    variances exp(log_sigmas) (constant 2 pi term dropped, as in dgm-eval)."""
    exponent = -0.5 * dists / torch.exp(log_sigmas) - (dim / 2) * log_sigmas
    return -(torch.logsumexp(exponent, dim=1) - math.log(dists.shape[1]))


def fit_log_bandwidths(train: torch.Tensor, kernel: torch.Tensor,
                       steps: int = defaults.FLD_STEPS) -> torch.Tensor:
    """One log-variance per kernel point minimising the NLL of `train` (dgm-eval's schedule)."""
    dists = _all_squared_distances(train, kernel)
    log_sigmas = torch.full((kernel.shape[0],), defaults.FLD_LOG_SIGMA_INIT,
                            dtype=kernel.dtype, device=kernel.device, requires_grad=True)
    optimiser = torch.optim.Adam([log_sigmas], lr=defaults.FLD_LR)
    schedule = torch.optim.lr_scheduler.MultiStepLR(optimiser, [defaults.FLD_LR_MILESTONE],
                                                    gamma=defaults.FLD_LR_GAMMA)
    low, high = defaults.FLD_LOG_SIGMA_CLAMP
    with torch.enable_grad():
        for _ in range(steps):
            loss = kde_nll(dists, log_sigmas, train.shape[1]).mean()
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            schedule.step()
            with torch.no_grad():
                log_sigmas.clamp_(low, high)
    return log_sigmas.detach()


def _standardise(*sets: torch.Tensor) -> list[torch.Tensor]:
    joined = torch.cat(sets)
    mean, std = joined.mean(dim=0), joined.std(dim=0)
    return [(x - mean) / std for x in sets]


def feature_likelihood(train, baseline, test, gen, *, steps: int = defaults.FLD_STEPS,
                       device="cpu") -> dict[str, float]:
    """{"fld", "fls", "nll_gen", "nll_baseline"}: train / baseline are two disjoint sets of
    training samples, test held-out real samples, gen generated samples (N x D each)."""
    sets = [_matrix(x, torch.float32, device) for x in (train, baseline, test, gen)]
    train, baseline, test, gen = _standardise(*sets)
    dim = train.shape[1]
    nll = {}
    for name, kernel in (("gen", gen), ("baseline", baseline)):
        log_sigmas = fit_log_bandwidths(train, kernel, steps)
        nll[name] = float(kde_nll(_all_squared_distances(test, kernel), log_sigmas, dim).mean())
    gap = (nll["gen"] - nll["baseline"]) / dim
    return {"fld": 100.0 * gap, "fls": 100.0 * math.exp(-2.0 * gap),
            "nll_gen": nll["gen"], "nll_baseline": nll["baseline"]}

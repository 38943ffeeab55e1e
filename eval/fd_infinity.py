"""FD-infinity (Chong & Forsyth 2020, "Effectively Unbiased FID and Inception Score and where
to find them"), as dgm-eval computes it: the Frechet distance of N generated samples against
the full real statistics at 15 sample sizes N from min(5000, max(n / 10, 2)) to n (random
subsets without replacement), a least-squares line in 1 / N, and its value at 1 / N = 0.
"""

from __future__ import annotations

import numpy as np

from eval import defaults
from eval.frechet import frechet_distance
from ffhq_tools.errors import FfhqToolsError


def sample_sizes(num: int, num_points: int = defaults.FD_INF_NUM_POINTS,
                 min_gen: int = defaults.FD_INF_MIN_GEN) -> np.ndarray:
    """dgm-eval's sample sizes: linspace(min(min_gen, max(num // 10, 2)), num, num_points)."""
    return np.linspace(min(min_gen, max(num // 10, 2)), num, num_points).astype(np.int32)


def _moments(rows: np.ndarray, covariance: str) -> tuple[np.ndarray, np.ndarray]:
    rows = rows.astype(np.float64)
    ddof = 0 if covariance == defaults.COVARIANCE_BIASED else 1
    return rows.mean(axis=0), np.cov(rows, rowvar=False, ddof=ddof)


def fd_infinity(gen: np.ndarray, real_mu: np.ndarray, real_sigma: np.ndarray, *,
                num_points: int = defaults.FD_INF_NUM_POINTS,
                min_gen: int = defaults.FD_INF_MIN_GEN, seed: int = 0,
                covariance: str = defaults.DEFAULT_COVARIANCE) -> dict:
    """{"fd_inf", "slope", "sizes", "fd_n"} of generated features `gen` (n x d) against the
    real Gaussian (real_mu, real_sigma)."""
    gen = np.asarray(gen)
    if gen.ndim != 2 or gen.shape[0] < 3:
        raise FfhqToolsError(f"FD-infinity needs (n >= 3, dim) generated features, got "
                             f"{gen.shape}")
    rng = np.random.default_rng(seed)
    sizes = sample_sizes(gen.shape[0], num_points, min_gen)
    values = []
    for size in sizes:
        mu, sigma = _moments(gen[rng.choice(gen.shape[0], int(size), replace=False)],
                             covariance)
        values.append(frechet_distance(mu, sigma, real_mu, real_sigma,
                                       labels=(f"generated (N={size})", "real")))
    slope, intercept = np.polyfit(1.0 / sizes, np.array(values), 1)
    return {"fd_inf": float(intercept), "slope": float(slope),
            "sizes": [int(s) for s in sizes], "fd_n": [float(v) for v in values]}

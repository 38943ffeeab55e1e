"""Exact Frechet distance between Gaussians, via a symmetric eigenproblem.

    d^2 = |mu1 - mu2|^2 + Tr(S1) + Tr(S2) - 2 Tr((S1 S2)^(1/2))

S1 S2 is similar to the symmetric PSD matrix S1^(1/2) S2 S1^(1/2), and, for any factor
S1 = F F^T, has the same non-zero eigenvalues as F^T S2 F; so Tr((S1 S2)^(1/2)) is the sum of
the square roots of the eigenvalues of that symmetric matrix. A pivoted Cholesky factor
(rank-revealing, so rank-deficient covariances from fewer samples than dimensions are exact)
plus one eigenvalues-only decomposition in float64 replace scipy.linalg.sqrtm: never complex,
and much faster.
"""

from __future__ import annotations

import numpy as np
import scipy.linalg
from scipy.linalg import lapack

from ffhq_tools.errors import FfhqToolsError


def _validate(mu: np.ndarray, sigma: np.ndarray, label: str) -> tuple[np.ndarray, np.ndarray]:
    mu = np.atleast_1d(np.asarray(mu, dtype=np.float64))
    sigma = np.atleast_2d(np.asarray(sigma, dtype=np.float64))
    if mu.ndim != 1 or sigma.shape != (mu.shape[0], mu.shape[0]):
        raise FfhqToolsError(f"{label}: mean {mu.shape} and covariance {sigma.shape} do not "
                             "describe one Gaussian")
    if not (np.isfinite(mu).all() and np.isfinite(sigma).all()):
        raise FfhqToolsError(f"{label}: statistics contain NaN or infinity")
    return mu, sigma


def psd_factor(sigma: np.ndarray) -> np.ndarray:
    """F (d x rank) with sigma = F F^T, by LAPACK's pivoted Cholesky (rank-revealing)."""
    sym = (sigma + sigma.T) / 2
    upper, pivots, rank, info = lapack.dpstrf(sym, lower=0, tol=-1.0)
    if info < 0:
        raise FfhqToolsError(f"pivoted Cholesky failed (LAPACK dpstrf info={info})")
    factor = np.empty((sym.shape[0], rank), dtype=np.float64)
    factor[pivots - 1] = np.triu(upper)[:rank].T  # P^T S P = U^T U  ->  S = (P U^T)(P U^T)^T
    return factor


def trace_sqrt_product(sigma1: np.ndarray, sigma2: np.ndarray) -> float:
    """Tr((S1 S2)^(1/2)) for symmetric PSD S1, S2.

    With S1 = F F^T, S1 S2 has the non-zero eigenvalues of the symmetric PSD F^T S2 F
    (rank x rank), so only one eigenvalues-only decomposition is needed.
    """
    import torch

    factor = psd_factor(sigma1)
    if factor.shape[1] == 0:
        return 0.0
    middle = factor.T @ sigma2 @ factor
    eigenvalues = torch.linalg.eigvalsh(torch.from_numpy((middle + middle.T) / 2)).numpy()
    return float(np.sqrt(np.clip(eigenvalues, 0, None)).sum())


def frechet_distance(mu1, sigma1, mu2, sigma2, labels=("first", "second")) -> float:
    """Squared Frechet distance between N(mu1, sigma1) and N(mu2, sigma2); exact, real."""
    mu1, sigma1 = _validate(mu1, sigma1, labels[0])
    mu2, sigma2 = _validate(mu2, sigma2, labels[1])
    if mu1.shape != mu2.shape:
        raise FfhqToolsError(f"{labels[0]} has {mu1.shape[0]} dimensions, {labels[1]} "
                             f"{mu2.shape[0]}: features of different networks?")
    diff = mu1 - mu2
    value = diff @ diff + np.trace(sigma1) + np.trace(sigma2) \
        - 2 * trace_sqrt_product(sigma1, sigma2)
    return float(max(value, 0.0))


def frechet_distance_sqrtm(mu1, sigma1, mu2, sigma2) -> float:
    """The reference formula with scipy.linalg.sqrtm (for benchmarks and agreement tests)."""
    covmean = scipy.linalg.sqrtm(np.asarray(sigma1, np.float64) @ np.asarray(sigma2, np.float64))
    covmean = np.real(covmean)
    diff = np.asarray(mu1, np.float64) - np.asarray(mu2, np.float64)
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean))

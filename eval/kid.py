"""Kernel Inception Distance (`kid50k_full`): unbiased MMD^2 with the cubic polynomial kernel
k(x, y) = (x.y / d + 1)^3, averaged over random subsets (Binkowski et al.; stylegan2-ada)."""

from __future__ import annotations

import numpy as np

from eval import defaults, runner
from eval.registry import MetricContext, register_metric
from ffhq_tools.errors import FfhqToolsError


def polynomial_kernel(x: np.ndarray, y: np.ndarray, degree: int = defaults.KID_DEGREE,
                      coef0: float = defaults.KID_COEF0) -> np.ndarray:
    """(x.y / d + coef0) ** degree, computed in place: one (n, m) matrix, no temporaries."""
    kernel = x @ y.T
    kernel /= x.shape[1]
    kernel += coef0
    kernel **= degree
    return kernel


def _sum_and_trace(kernel: np.ndarray) -> tuple[float, float]:
    return kernel.sum(), np.trace(kernel)


def mmd2_unbiased(x: np.ndarray, y: np.ndarray) -> float:
    """Unbiased MMD^2 between equal-size samples x and y under the polynomial kernel (one
    kernel matrix alive at a time)."""
    m = x.shape[0]
    xx, xx_diagonal = _sum_and_trace(polynomial_kernel(x, x))
    yy, yy_diagonal = _sum_and_trace(polynomial_kernel(y, y))
    xy = polynomial_kernel(x, y).sum()
    within = (xx - xx_diagonal + yy - yy_diagonal) / (m * (m - 1))
    return float(within - 2 * xy / (m * m))


def _rows(features, side: str) -> np.ndarray:
    features = np.asarray(features)  # float32 from FeatureStats stays float32: no copy
    if features.ndim != 2:
        raise FfhqToolsError(f"KID: {side} features must be (N, dim), got {features.shape}")
    return features


def _subset(features: np.ndarray, rng: np.random.Generator, size: int) -> np.ndarray:
    """`size` random rows (without replacement), only these converted to float64."""
    return features[rng.choice(features.shape[0], size, replace=False)].astype(np.float64)


def kid_from_features(gen: np.ndarray, real: np.ndarray,
                      num_subsets: int = defaults.KID_NUM_SUBSETS,
                      max_subset_size: int = defaults.KID_MAX_SUBSET_SIZE,
                      seed: int = 0) -> dict:
    """Mean and std of MMD^2 over `num_subsets` random subsets (without replacement).

    The kernel sums run in float64 on each subset; the full feature sets are never copied
    (float32 inputs are read as they are; the float64 conversion of a float32 value is exact,
    so the numbers equal converting everything first).
    """
    gen, real = _rows(gen, "generated"), _rows(real, "real")
    size = min(gen.shape[0], real.shape[0], max_subset_size)
    if size < 2:
        raise FfhqToolsError(f"KID needs at least 2 images on each side (got {gen.shape[0]} "
                             f"generated, {real.shape[0]} real)")
    rng = np.random.default_rng(seed)
    values = np.array([mmd2_unbiased(_subset(gen, rng, size), _subset(real, rng, size))
                       for _ in range(num_subsets)])
    return {"kid": float(values.mean()), "kid_std": float(values.std()),
            "subset_size": size}


@register_metric(
    "kid50k_full",
    protocol={"num_gen": defaults.KID_NUM_GEN, "max_real": defaults.KID_MAX_REAL,
              "num_subsets": defaults.KID_NUM_SUBSETS,
              "max_subset_size": defaults.KID_MAX_SUBSET_SIZE, "degree": defaults.KID_DEGREE,
              "xflip": False},
    takes_features=True,
    needs=("generator", "data"), weights=(defaults.INCEPTION_STATE_DICT,),
    description="KID: 50,000 generated vs up to 1,000,000 reals, 100 subsets of <= 1,000")
def kid50k_full(ctx: MetricContext) -> dict:
    from eval.fid import uses_inception

    if uses_inception(ctx):
        num_gen = ctx.count("num_gen", ctx.num_gen)
        max_real = ctx.count("max_real", ctx.max_real)
        real = runner.real_features(ctx, max_real, capture=True).features()
        gen = runner.generated_features(ctx, num_gen, capture=True)[0].features()
    else:
        from eval.feature_pairs import captured_pair

        gen, real = captured_pair(ctx, ctx.features, ctx.count("max_real", ctx.max_real))
    result = kid_from_features(gen, real, ctx.protocol["num_subsets"],
                               ctx.protocol["max_subset_size"], seed=ctx.seed)
    ctx.use("subset_size", result.pop("subset_size"))
    return result

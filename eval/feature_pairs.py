"""Generated vs real in any registered network's feature space (`eval.features.networks`):
the Frechet distance of their moments, or the captured rows for k-NN and kernel metrics.
The metrics of every protocol call these when `--features` names a network other than the
protocol's own."""

from __future__ import annotations

import numpy as np

from eval import sampling
from eval.embedding_passes import generated_embeddings, real_embeddings
from eval.frechet import frechet_distance
from eval.registry import MetricContext
from eval.stats import FeatureStats
from ffhq_tools.errors import FfhqToolsError


def require_images(ctx: MetricContext) -> None:
    for source in (ctx.data, ctx.test_data):
        if source is not None and sampling.data_kind(source) == "stats":
            raise FfhqToolsError(f"{source}: a statistics file holds one network's moments; "
                                 "this metric needs the images (folder or .h5)")


def gaussian(stats: FeatureStats, ctx: MetricContext):
    return stats.mean(), stats.covariance(ctx.covariance)


def frechet_in(ctx: MetricContext, network: str, num_real: int | None = None) -> float:
    """FD of ctx.generator's images vs the context's first `num_real` reals (None: all;
    --max-real overrides) in `network`'s feature space."""
    require_images(ctx)
    num_gen = ctx.count("num_gen", ctx.num_gen)
    real = real_embeddings(ctx, network, ctx.max_real if ctx.max_real is not None
                           else num_real)
    gen = generated_embeddings(ctx, network, num_gen)
    ctx.use("covariance", ctx.covariance)
    return frechet_distance(*gaussian(gen, ctx), *gaussian(real, ctx),
                            labels=("generated", str(ctx.data)))


def captured_pair(ctx: MetricContext, network: str, num_real: int | None) \
        -> tuple[np.ndarray, np.ndarray]:
    """(generated rows, real rows) of `network`'s features."""
    require_images(ctx)
    num_gen = ctx.count("num_gen", ctx.num_gen)
    real = real_embeddings(ctx, network, ctx.max_real or num_real, capture=True).features()
    gen = generated_embeddings(ctx, network, num_gen, capture=True).features()
    return gen, real

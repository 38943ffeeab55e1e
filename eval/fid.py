"""Frechet Inception Distance: `fid50k_full`, `fid50k` and the two-source `fid_between`."""

from __future__ import annotations

from pathlib import Path

from eval import defaults, runner, sampling
from eval.feature_pairs import frechet_in
from eval.frechet import frechet_distance
from eval.registry import MetricContext, register_metric
from eval.stats import FeatureStats, load_gaussian
from ffhq_tools.errors import FfhqToolsError


def uses_inception(ctx: MetricContext) -> bool:
    """True unless `--features` names a network other than an Inception."""
    return ctx.features is None or ctx.features in defaults.FEATURE_NETWORKS


def gaussian_of(stats: FeatureStats, covariance: str):
    return stats.mean(), stats.covariance(covariance)


def _real_gaussian(ctx: MetricContext, num_real: int | None):
    """(mu, sigma) of the real side: a statistics file as given, else images (cached)."""
    if sampling.data_kind(ctx.data) == "stats":
        mu, sigma, meta = load_gaussian(ctx.data, ctx.covariance)
        runner.require_stats_file_matches(meta, ctx, Path(ctx.data))
        ctx.use("num_real", meta.get("num", "unknown (statistics file)"))
        ctx.notes["real_covariance"] = meta.get("covariance")
        return mu, sigma
    return gaussian_of(runner.real_features(ctx, num_real), ctx.covariance)


def generator_fid(ctx: MetricContext, num_real_default: int | None) -> dict:
    """{"fid"} of ctx.generator's images vs the first `num_real_default` reals of ctx.data
    (None: all; ctx.num_gen / ctx.max_real override the counts), as `fid50k` / `fid50k_full`
    compute it; in the space of `ctx.features` when that names another network."""
    if not uses_inception(ctx):
        return {"fid": frechet_in(ctx, ctx.features, num_real_default)}
    num_gen = ctx.count("num_gen", ctx.num_gen)
    num_real = ctx.max_real if ctx.max_real is not None else num_real_default
    real_mu, real_sigma = _real_gaussian(ctx, num_real)
    gen_stats, _ = runner.generated_features(ctx, num_gen)
    ctx.use("covariance", ctx.covariance)
    gen_mu, gen_sigma = gaussian_of(gen_stats, ctx.covariance)
    return {"fid": frechet_distance(gen_mu, gen_sigma, real_mu, real_sigma,
                                    labels=("generated", str(ctx.data)))}


@register_metric(
    "fid50k_full",
    protocol={"num_gen": defaults.FID_NUM_GEN, "num_real": "all", "xflip": False,
              "truncation_psi": 1.0, "noise_mode": "random"},
    takes_features=True,
    needs=("generator", "data"), weights=(defaults.INCEPTION_STATE_DICT,),
    description="FID: 50,000 generated images vs every real image (no x-flip)")
def fid50k_full(ctx: MetricContext) -> dict:
    return generator_fid(ctx, None)


@register_metric(
    "fid50k",
    protocol={"num_gen": defaults.FID_NUM_GEN, "num_real": defaults.FID50K_NUM_REAL,
              "xflip": False, "truncation_psi": 1.0, "noise_mode": "random"},
    takes_features=True,
    needs=("generator", "data"), weights=(defaults.INCEPTION_STATE_DICT,),
    description="FID: 50,000 generated images vs the first 50,000 real images")
def fid50k(ctx: MetricContext) -> dict:
    return generator_fid(ctx, defaults.FID50K_NUM_REAL)


def source_gaussian(ctx: MetricContext, source: str | Path, num: int | None):
    """(mu, sigma, num) of a folder, .h5 or statistics file."""
    source = Path(source)
    if sampling.data_kind(source) == "stats":
        mu, sigma, meta = load_gaussian(source, ctx.covariance)
        if uses_inception(ctx):
            runner.require_stats_file_matches(meta, ctx, source)
        else:
            require_same_network(meta, ctx, source)
        return mu, sigma, meta.get("num")
    stats = source_stats(ctx, source, num)
    return (*gaussian_of(stats, ctx.covariance), stats.num)


def source_stats(ctx: MetricContext, source: str | Path, num: int | None) -> FeatureStats:
    """Moments of a folder / .h5 in the context's feature space (Inception by default)."""
    if uses_inception(ctx):
        return runner.source_features(ctx, source, num, label=Path(source).name)
    from eval.embedding_passes import source_embeddings

    return source_embeddings(ctx, ctx.features, source, num, label=Path(source).name)


def require_same_network(meta: dict, ctx: MetricContext, path: Path) -> None:
    """A statistics file of another feature network, file or mode is refused, naming both."""
    from eval.embedding_passes import extractor

    network = extractor(ctx, ctx.features)
    ours = {"feature_network": ctx.features, "network": network.sha256, "mode": network.mode}
    for key, value in ours.items():
        if meta.get(key) != value:
            raise FfhqToolsError(f"{path}: statistics were computed with {key} "
                                 f"{meta.get(key)}, this run uses {value}")


def fid_between(first: str | Path, second: str | Path, ctx: MetricContext | None = None,
                num: int | None = None) -> dict:
    """FID between two image sources (folders, .h5 files, .npz statistics), like pytorch-fid.

    Returns {"fid", "num": [n1, n2], "mode", "covariance", "weights"}.
    """
    from eval.feature_checks import check_spread, rank_warning, warn
    from ffhq_tools.weights import custom_weights

    ctx = ctx or MetricContext()
    for source in (first, second):
        sampling.check_source(source)
    mu1, sigma1, n1 = source_gaussian(ctx, first, num)
    mu2, sigma2, n2 = source_gaussian(ctx, second, num)
    warnings = []
    for source, sigma, n in ((first, sigma1, n1), (second, sigma2, n2)):
        check_spread(sigma, str(source), ctx.weights_used)
        message = rank_warning(n if isinstance(n, int) else None, sigma.shape[0], str(source))
        if message:
            warn(message)
            warnings.append(message)
    value = frechet_distance(mu1, sigma1, mu2, sigma2, labels=(str(first), str(second)))
    row = {"fid": value, "num": [n1, n2], "mode": ctx.used.get("preprocessing", ctx.mode),
           "features": ctx.features or ctx.feature_network, "covariance": ctx.covariance,
           "weights": dict(ctx.weights_used), "sources": [str(first), str(second)]}
    custom = custom_weights(ctx.weights_used)
    if custom:
        row["custom_weights"] = custom
    if warnings:
        row["warnings"] = warnings
    return row

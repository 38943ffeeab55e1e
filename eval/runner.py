"""Feature loops shared by the Inception metrics: generator -> features, real data ->
statistics (cached), and running a list of metrics into a run directory."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from eval import defaults, sampling
from eval.features import InceptionExtractor, load_inception
from eval.registry import MetricContext, compute_metric
from eval.stats import FeatureStats, StatsError, cache_path, fingerprint
from ffhq_tools.errors import FfhqToolsError

_EXTRACTORS: dict[tuple, InceptionExtractor] = {}


def inception(ctx: MetricContext) -> InceptionExtractor:
    """The context's Inception, loaded once per (file, device, mode); SHA-256 recorded."""
    resolved = ctx.resolve_weights(ctx.feature_network)
    key = (ctx.feature_network, resolved.sha256, str(ctx.device), ctx.mode)
    if key not in _EXTRACTORS:
        _EXTRACTORS.clear()
        _EXTRACTORS[key] = load_inception(ctx)
    return _EXTRACTORS[key]


def _progress(ctx: MetricContext, total: int, desc: str):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="img", file=sys.stderr,
                disable=not ctx.progress or ctx.rank != 0, leave=False)


def generated_features(ctx: MetricContext, num: int, capture: bool = False,
                       want_probs: bool = False):
    """(FeatureStats of `num` generated images, class probabilities or None), all ranks."""
    extractor = inception(ctx)
    stats = FeatureStats(defaults.INCEPTION_FEATURE_DIM, capture, ctx.device, "generated images")
    probs = FeatureStats(defaults.INCEPTION_NUM_CLASSES, True, ctx.device, "class probabilities")
    with _progress(ctx, num, "generated") as bar:
        for batch in sampling.iterate_generated(ctx.generator, num, ctx.batch_size, ctx.seed,
                                                ctx.device):
            pool, batch_probs = extractor(batch, want_probs=want_probs)
            stats.update(pool)
            if want_probs:
                probs.update(batch_probs)
            bar.update(batch.shape[0] * ctx.world_size)
    stats.all_reduce()
    if want_probs:
        probs.all_reduce()
    return stats, (probs.features().astype(np.float64) if want_probs else None)


def real_resolution(ctx: MetricContext) -> int | None:
    """The HDF5 level matching the generator's resolution, when the file has it."""
    if ctx.data is None or sampling.data_kind(ctx.data) != "h5":
        return None
    levels = sampling.h5_levels(ctx.data)
    wanted = getattr(ctx.generator, "img_resolution", None)
    return wanted if wanted in levels else None


def source_features(ctx: MetricContext, source: str | Path, num: int | None,
                    capture: bool = False, xflip: bool = False, label: str = "real") \
        -> FeatureStats:
    """Statistics of up to `num` images (None: all) of a folder / .h5, through the cache."""
    source = Path(source)
    resolution = real_resolution(ctx) if source == ctx.data else None
    available = sampling.real_count(source, resolution)
    if available < 2:
        raise StatsError(f"{source}: {available} image(s); statistics need at least 2")
    count = available if num is None else min(num, available)
    extractor = inception(ctx)
    fields = {"what": "inception-stats/v1", "data": fingerprint(source),
              "network": extractor.sha256, "feature_network": ctx.feature_network,
              "mode": ctx.mode, "num": count, "xflip": xflip, "resolution": resolution,
              "capture": capture}
    path = cache_path(ctx.stats_cache, fields)
    if path.is_file():
        return FeatureStats.load(path, label=f"{source} (cached {path.name})")
    stats = FeatureStats(defaults.INCEPTION_FEATURE_DIM, capture, ctx.device, str(source))
    shard = (ctx.rank, ctx.world_size) if ctx.world_size > 1 else None
    with _progress(ctx, count * (2 if xflip else 1), label) as bar:
        for batch in sampling.iterate_real(source, count, ctx.batch_size, resolution, xflip,
                                           shard=shard):
            stats.update(extractor(batch)[0])
            bar.update(batch.shape[0] * ctx.world_size)
    stats.all_reduce()
    if ctx.rank == 0:
        stats.save(path, ctx.covariance, {**fields, "source": str(source)})
    return stats


def real_features(ctx: MetricContext, num: int | None, capture: bool = False,
                  xflip: bool = False) -> FeatureStats:
    """Statistics of the context's real data; records num_real used."""
    stats = source_features(ctx, ctx.data, num, capture, xflip)
    ctx.use("num_real", stats.num)
    return stats


def run_metrics(names: list[str], ctx: MetricContext, run_dir: Path | None = None) -> list[dict]:
    """Compute each metric; append each row to run_dir/metric-<name>.jsonl when given."""
    from ffhq_tools.atomic import append_jsonl

    rows = []
    for name in names:
        row = compute_metric(name, ctx)
        if run_dir is not None and ctx.rank == 0:
            append_jsonl(Path(run_dir) / f"metric-{name}.jsonl", row)
        rows.append(row)
    return rows


def require_stats_file_matches(meta: dict, ctx: MetricContext, path: Path) -> None:
    """A statistics file made with another network or mode must not be mixed in silently."""
    for key, ours in (("mode", ctx.mode), ("network", None)):
        theirs = meta.get(key)
        if theirs is None:
            continue
        if key == "network":
            ours = inception(ctx).sha256
        if theirs != ours:
            raise FfhqToolsError(f"{path}: statistics were computed with {key} {theirs}, "
                                 f"this run uses {ours}")

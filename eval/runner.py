"""Feature loops shared by the Inception metrics: generator -> features, real data ->
statistics (cached), and running a list of metrics into a run directory."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from eval import defaults, sampling
from eval.features import InceptionExtractor, load_inception
from eval.registry import MetricContext, compute_metric
from eval.stats import (
    FeatureStats,
    StatsError,
    cache_key,
    cache_path,
    default_cache_dir,
    fingerprint,
)
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


CHECKPOINT_EVERY_IMAGES = 2048


def _partial_paths(ctx: MetricContext, num: int, capture: bool, want_probs: bool,
                   extractor: InceptionExtractor):
    """Where partial generated statistics are checkpointed, or None without a checkpoint hash."""
    sha = (ctx.generator_info or {}).get("sha256")
    if not sha:
        return None
    key = cache_key({"what": "generated-partial/v1", "generator": sha, "seed": ctx.seed,
                     "num": num, "batch": ctx.batch_size, "network": extractor.sha256,
                     "mode": ctx.mode, "capture": capture, "probs": want_probs,
                     "rank": ctx.rank, "world": ctx.world_size})
    folder = Path(ctx.stats_cache or default_cache_dir()) / "partial"
    return folder / f"{key}-pool.npz", folder / f"{key}-probs.npz"


def _resume(paths, stats: FeatureStats, probs: FeatureStats, want_probs: bool):
    """(stats, probs, batches done) from a partial checkpoint, or the empty ones and 0."""
    if paths is None or not paths[0].is_file() or (want_probs and not paths[1].is_file()):
        return stats, probs, 0
    batches = _batches_done(paths[0])
    if want_probs and _batches_done(paths[1]) != batches:
        return stats, probs, 0  # killed between the two writes: start over
    stats = FeatureStats.load(paths[0], stats.label)
    if want_probs:
        probs = FeatureStats.load(paths[1], probs.label)
    return stats, probs, batches


def _batches_done(path: Path) -> int:
    with np.load(path) as saved:
        return int(json.loads(str(saved["meta"]))["batches"])


def _checkpoint(paths, stats: FeatureStats, probs: FeatureStats, batches: int,
                want_probs: bool) -> None:
    if want_probs:
        probs.save(paths[1], defaults.DEFAULT_COVARIANCE, {"batches": batches})
    stats.save(paths[0], defaults.DEFAULT_COVARIANCE, {"batches": batches})


def generated_features(ctx: MetricContext, num: int, capture: bool = False,
                       want_probs: bool = False):
    """(FeatureStats of `num` generated images, class probabilities or None), all ranks.

    With a checkpoint hash in ctx.generator_info, partial statistics are saved every
    ~2048 images, so an interrupted run resumes where it stopped.
    """
    extractor = inception(ctx)
    stats = FeatureStats(defaults.INCEPTION_FEATURE_DIM, capture, ctx.device, "generated images")
    probs = FeatureStats(defaults.INCEPTION_NUM_CLASSES, True, ctx.device, "class probabilities")
    paths = _partial_paths(ctx, num, capture, want_probs, extractor)
    stats, probs, done = _resume(paths, stats, probs, want_probs)
    every = max(1, CHECKPOINT_EVERY_IMAGES // ctx.batch_size)
    with _progress(ctx, num, "generated") as bar:
        bar.update(stats.num * ctx.world_size)
        batches = sampling.iterate_generated(ctx.generator, num, ctx.batch_size, ctx.seed,
                                             ctx.device, skip_batches=done)
        for count, batch in enumerate(batches, start=done + 1):
            pool, batch_probs = extractor(batch, want_probs=want_probs)
            stats.update(pool)
            if want_probs:
                probs.update(batch_probs)
            bar.update(batch.shape[0] * ctx.world_size)
            if paths is not None and count % every == 0:
                _checkpoint(paths, stats, probs, count, want_probs)
    stats.all_reduce()
    if want_probs:
        probs.all_reduce()
    for path in paths or ():
        path.unlink(missing_ok=True)
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

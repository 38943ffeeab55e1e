"""Feature loops shared by the Inception metrics: generator -> features, real data ->
statistics (cached), and running a list of metrics into a run directory."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch

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


def _barrier() -> None:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.barrier()


def _progress(ctx: MetricContext, total: int, desc: str):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="img", file=sys.stderr,
                disable=not ctx.progress or ctx.rank != 0, leave=False)


CHECKPOINT_EVERY_IMAGES = 2048


def _partial_paths(ctx: MetricContext, num: int, capture: bool, want_probs: bool,
                   extractor: InceptionExtractor) -> list[Path]:
    """Where partial generated statistics are checkpointed, or [] without a checkpoint hash."""
    sha = (ctx.generator_info or {}).get("sha256")
    if not sha:
        return []
    key = cache_key({"what": "generated-partial/v2", "generator": sha, "seed": ctx.seed,
                     "num": num, "network": extractor.sha256, "mode": ctx.mode,
                     "capture": capture, "probs": want_probs})
    folder = Path(ctx.stats_cache or default_cache_dir()) / "partial"
    return _layout_partials(folder / key, ctx, ("-pool", "-probs") if want_probs else ("-pool",))


def _layout_partials(base: Path, ctx: MetricContext, parts: tuple[str, ...]) -> list[Path]:
    """This rank's partial files `<base>.partial-b<batch>-of<processes>-r<rank><part>.npz`.

    The batch size and the number of processes decide each rank's share, so a partial of
    another layout is refused, naming it, rather than mixed in or silently left behind.
    """
    layout = f"{base.name}.partial-b{ctx.batch_size}-of{ctx.world_size}-"
    others = sorted(p for p in base.parent.glob(f"{base.name}.partial-*.npz")
                    if not p.name.startswith(layout))
    if others:
        more = f" (and {len(others) - 1} more)" if len(others) > 1 else ""
        raise StatsError(f"{others[0]}{more}: partial statistics of this work from a run with "
                         "another batch size or number of processes (see the name: b<batch "
                         "size>-of<processes>); resume with those settings, or delete the "
                         "files to start over")
    return [base.with_name(f"{layout}r{ctx.rank}{part}.npz") for part in parts]


def _resume(paths: list[Path], fresh: list[FeatureStats],
            device) -> tuple[list[FeatureStats], int]:
    """(statistics, batches done) from the partial checkpoints at `paths` (one per statistics
    object), or the `fresh` statistics and 0 when one is missing or they disagree."""
    if not paths or not all(path.is_file() for path in paths):
        return fresh, 0
    counts = {_batches_done(path) for path in paths}
    if len(counts) != 1:
        return fresh, 0  # killed between two writes: start over
    return [FeatureStats.load(path, stats.label, device)
            for path, stats in zip(paths, fresh, strict=True)], counts.pop()


def _batches_done(path: Path) -> int:
    with np.load(path) as saved:
        return int(json.loads(str(saved["meta"]))["batches"])


def _checkpoint_due(batches: int, last: int, every: int, captured: bool) -> bool:
    """Every `every` batches; with captured features (rewritten whole at each checkpoint) also
    at least 1/8 of the batches done apart, so the bytes written stay within ~9x the final
    file instead of growing with the square of the image count."""
    return batches - last >= (max(every, batches // 8) if captured else every)


def _checkpoint(paths: list[Path], tracked: list[FeatureStats], batches: int) -> None:
    for path, stats in zip(paths, tracked, strict=True):
        stats.save(path, defaults.DEFAULT_COVARIANCE, {"batches": batches})


def generated_features(ctx: MetricContext, num: int, capture: bool = False,
                       want_probs: bool = False):
    """(FeatureStats of `num` generated images, class probabilities or None), all ranks.

    With a checkpoint hash in ctx.generator_info, partial statistics are saved every
    ~2048 images, so an interrupted run resumes where it stopped.
    """
    extractor = inception(ctx)
    stats = FeatureStats(defaults.INCEPTION_FEATURE_DIM, capture, ctx.device, "generated images")
    probs = FeatureStats(defaults.INCEPTION_NUM_CLASSES, True, ctx.device, "class probabilities")
    tracked = [stats, probs] if want_probs else [stats]
    paths = _partial_paths(ctx, num, capture, want_probs, extractor)
    tracked, done = _resume(paths, tracked, ctx.device)
    stats, probs = tracked[0], tracked[-1] if want_probs else probs
    every, last = max(1, CHECKPOINT_EVERY_IMAGES // ctx.batch_size), done
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
            if paths and _checkpoint_due(count, last, every, capture or want_probs):
                _checkpoint(paths, tracked, count)
                last = count
    stats.all_reduce(rows_per_batch=ctx.batch_size)
    if want_probs:
        probs.all_reduce(rows_per_batch=ctx.batch_size)
    for path in paths:
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
    """Statistics of up to `num` images (None: all) of a folder / .h5, through the cache.

    Partial statistics are saved beside the cache entry every ~2048 images per rank (with
    captured features at least 1/8 of the work apart), so a killed pass resumes where it
    stopped; they are removed once the cache file is written.
    """
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
    (partial,) = _layout_partials(path.with_suffix(""), ctx, ("",))
    stats = _stream_real(ctx, source, count, resolution, xflip, capture, partial, label)
    if ctx.rank == 0:
        stats.save(path, ctx.covariance, {**fields, "source": str(source)})
    _barrier()  # the cache file exists before any rank drops its partial
    partial.unlink(missing_ok=True)
    return stats


def _stream_real(ctx: MetricContext, source: Path, count: int, resolution: int | None,
                 xflip: bool, capture: bool, partial: Path, label: str) -> FeatureStats:
    """Statistics of this rank's share, resumed from and checkpointed to `partial` at batch
    boundaries (every batch of `batch_size` source images yields exactly `per_batch` images,
    except the very last one), then reduced over ranks."""
    extractor = inception(ctx)
    fresh = FeatureStats(defaults.INCEPTION_FEATURE_DIM, capture, ctx.device, str(source))
    (stats,), done = _resume([partial], [fresh], ctx.device)
    per_batch = ctx.batch_size * (2 if xflip else 1)
    if stats.num != done * per_batch:
        raise StatsError(f"{partial}: holds {stats.num} images, not the {done * per_batch} of "
                         f"{done} batches; delete it to start over")
    every, last = max(1, CHECKPOINT_EVERY_IMAGES // ctx.batch_size), done
    shard = (ctx.rank, ctx.world_size) if ctx.world_size > 1 else None
    with _progress(ctx, count * (2 if xflip else 1), label) as bar:
        bar.update(stats.num * ctx.world_size)
        for batch in sampling.iterate_real(source, count, ctx.batch_size, resolution, xflip,
                                           shard=shard, skip_batches=done):
            stats.update(extractor(batch)[0])
            bar.update(batch.shape[0] * ctx.world_size)
            batches, rest = divmod(stats.num, per_batch)
            if rest == 0 and _checkpoint_due(batches, last, every, capture):
                _checkpoint([partial], [stats], batches)
                last = batches
    stats.all_reduce(rows_per_batch=per_batch)
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

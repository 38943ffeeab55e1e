"""One pass of a feature network over images, resumable: generated images (partials keyed by
the checkpoint) and real data (cached by dataset fingerprint, partials beside the entry).

An `Extraction` names the network and what a pass keeps of each of its outputs (moments,
captured rows or both), so the Inception metrics and precision/recall's VGG16 share the same
loops, checkpoints, cache and torch.distributed reduction.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from eval import defaults, sampling
from eval.registry import MetricContext
from eval.stats import (
    FeatureStats,
    StatsError,
    cache_key,
    cache_path,
    default_cache_dir,
    fingerprint,
    gather_blocks,
)

CHECKPOINT_EVERY_IMAGES = 2048


@dataclass(frozen=True)
class Kept:
    """What a pass keeps of one network output; `name` tells its partial file apart."""
    name: str
    dim: int
    capture: bool = False
    moments: bool = True

    def fresh(self, device, label: str) -> FeatureStats:
        return FeatureStats(self.dim, self.capture, device, label, self.moments)


@dataclass(frozen=True)
class Extraction:
    """`network` maps a uint8 NCHW batch to one (N, dim) tensor per entry of `kept`; `key`
    names the network and its settings in cache and partial keys."""
    network: Callable[[torch.Tensor], tuple[torch.Tensor, ...]]
    key: dict
    kept: tuple[Kept, ...]

    @property
    def captures(self) -> bool:
        return any(kept.capture for kept in self.kept)


def progress_bar(ctx: MetricContext, total: int, desc: str):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="img", file=sys.stderr,
                disable=not ctx.progress or ctx.rank != 0, leave=False)


def layout_partials(base: Path, ctx: MetricContext, parts: tuple[str, ...]) -> list[Path]:
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


def checkpoint_due(batches: int, last: int, every: int, captured: bool) -> bool:
    """Every `every` batches; with captured features (rewritten whole at each checkpoint) also
    at least 1/8 of the batches done apart, so the bytes written stay within ~9x the final
    file instead of growing with the square of the image count."""
    return batches - last >= (max(every, batches // 8) if captured else every)


def _checkpoint(paths: list[Path], tracked: list[FeatureStats], batches: int) -> None:
    for path, stats in zip(paths, tracked, strict=True):
        stats.save(path, defaults.DEFAULT_COVARIANCE, {"batches": batches})


def generator_partials(ctx: MetricContext, fields: dict, parts: tuple[str, ...] = ("",)) \
        -> list[Path]:
    """This rank's partial files for work on the context's generator, under
    `<stats cache>/partial/`, keyed by the checkpoint's SHA-256, the seed and `fields` (all
    that decides the results); [] when the generator has no checkpoint hash."""
    sha = (ctx.generator_info or {}).get("sha256")
    if not sha:
        return []
    key = cache_key({"generator": sha, "seed": ctx.seed, **fields})
    folder = Path(ctx.stats_cache or default_cache_dir()) / "partial"
    return layout_partials(folder / key, ctx, parts)


def generator_partial(ctx: MetricContext, fields: dict) -> Path | None:
    """The one partial file of `generator_partials`, or None without a checkpoint hash."""
    paths = generator_partials(ctx, fields)
    return paths[0] if paths else None


def _generated_partials(ctx: MetricContext, num: int, extraction: Extraction) -> list[Path]:
    return generator_partials(ctx, {"partial": "generated/v2", "num": num,
                                    "features": extraction.key},
                              tuple(f"-{kept.name}" for kept in extraction.kept))


@torch.no_grad()
def generated_pass(ctx: MetricContext, num: int, extraction: Extraction,
                   label: str = "generated") -> list[FeatureStats]:
    """One FeatureStats per kept output over `num` generated images, reduced over ranks.

    With a checkpoint hash in ctx.generator_info, partials are saved every ~2048 images, so
    an interrupted run resumes where it stopped.
    """
    tracked = [kept.fresh(ctx.device, label) for kept in extraction.kept]
    paths = _generated_partials(ctx, num, extraction)
    tracked, done = _resume(paths, tracked, ctx.device)
    every, last = max(1, CHECKPOINT_EVERY_IMAGES // ctx.batch_size), done
    with progress_bar(ctx, num, label) as bar:
        bar.update(tracked[0].num * ctx.world_size)
        batches = sampling.iterate_generated(ctx.generator, num, ctx.batch_size, ctx.seed,
                                             ctx.device, skip_batches=done)
        for count, batch in enumerate(batches, start=done + 1):
            for stats, features in zip(tracked, extraction.network(batch), strict=True):
                stats.update(features)
            bar.update(batch.shape[0] * ctx.world_size)
            if paths and checkpoint_due(count, last, every, extraction.captures):
                _checkpoint(paths, tracked, count)
                last = count
    for stats in tracked:
        stats.all_reduce(rows_per_batch=ctx.batch_size)
    for path in paths:
        path.unlink(missing_ok=True)
    return tracked


def real_resolution(ctx: MetricContext) -> int | None:
    """The HDF5 level matching the generator's resolution, when the file has it."""
    if ctx.data is None or sampling.data_kind(ctx.data) != "h5":
        return None
    levels = sampling.h5_levels(ctx.data)
    wanted = getattr(ctx.generator, "img_resolution", None)
    return wanted if wanted in levels else None


def cached_pass(ctx: MetricContext, source: str | Path, num: int | None,
                extraction: Extraction, xflip: bool = False, label: str = "real") -> FeatureStats:
    """Statistics of up to `num` images (None: all) of a folder / .h5, through the cache.

    Partial statistics are saved beside the cache entry every ~2048 images per rank (with
    captured features at least 1/8 of the work apart), so a killed pass resumes where it
    stopped; they are removed once the cache file is written.
    """
    if len(extraction.kept) != 1:
        raise ValueError("a cached pass keeps exactly one network output")
    source = Path(source)
    resolution = real_resolution(ctx) if source == ctx.data else None
    available = sampling.real_count(source, resolution)
    if available < 2:
        raise StatsError(f"{source}: {available} image(s); statistics need at least 2")
    count = available if num is None else min(num, available)
    fields = {**extraction.key, "data": fingerprint(source), "num": count, "xflip": xflip,
              "resolution": resolution}
    path = cache_path(ctx.stats_cache, fields)
    if path.is_file():
        return FeatureStats.load(path, label=f"{source} (cached {path.name})")
    (partial,) = layout_partials(path.with_suffix(""), ctx, ("",))
    stats = _stream_real(ctx, source, count, resolution, xflip, extraction, partial, label)
    if ctx.rank == 0:
        stats.save(path, ctx.covariance, {**fields, "source": str(source)})
    sampling.barrier()  # the cache file exists before any rank drops its partial
    partial.unlink(missing_ok=True)
    return stats


@torch.no_grad()
def _stream_real(ctx: MetricContext, source: Path, count: int, resolution: int | None,
                 xflip: bool, extraction: Extraction, partial: Path, label: str) -> FeatureStats:
    """Statistics of this rank's share, resumed from and checkpointed to `partial` at batch
    boundaries (every batch of `batch_size` source images yields exactly `per_batch` images,
    except the very last one), then reduced over ranks."""
    (stats,), done = _resume([partial], [extraction.kept[0].fresh(ctx.device, str(source))],
                             ctx.device)
    per_batch = ctx.batch_size * (2 if xflip else 1)
    if stats.num != done * per_batch:
        raise StatsError(f"{partial}: holds {stats.num} images, not the {done * per_batch} of "
                         f"{done} batches; delete it to start over")
    every, last = max(1, CHECKPOINT_EVERY_IMAGES // ctx.batch_size), done
    shard = (ctx.rank, ctx.world_size) if ctx.world_size > 1 else None
    with progress_bar(ctx, count * (2 if xflip else 1), label) as bar:
        bar.update(stats.num * ctx.world_size)
        for batch in sampling.iterate_real(source, count, ctx.batch_size, resolution, xflip,
                                           shard=shard, skip_batches=done):
            stats.update(extraction.network(batch)[0])
            bar.update(batch.shape[0] * ctx.world_size)
            batches, rest = divmod(stats.num, per_batch)
            if rest == 0 and checkpoint_due(batches, last, every, extraction.captures):
                _checkpoint([partial], [stats], batches)
                last = batches
    stats.all_reduce(rows_per_batch=per_batch)
    return stats


class RankResults:
    """Per-batch result arrays of this rank's share of a sampling loop, resumable.

    Global batch i of the loop belongs to rank i % world. `batches` yields this rank's batches
    that the checkpoint at `path` (None: no checkpoint) does not hold yet; `add` appends one
    batch's arrays (one row per item) and saves them all every ~2048 items (at least 1/8 of
    the work apart: the bytes written stay within ~9x the final file); `gathered` returns every
    rank's rows in one-process order and removes the checkpoint.
    """

    def __init__(self, path: Path | None, names: tuple[str, ...], batch_size: int):
        self.path, self.names, self.batch_size = path, names, batch_size
        self.rank, self.world = sampling.dist_info()
        self.every = max(1, CHECKPOINT_EVERY_IMAGES // batch_size)
        self.parts: dict[str, list[np.ndarray]] = {name: [] for name in names}
        self.done = 0
        if path is not None and path.is_file():
            self._load()
        self.saved = self.done

    def _load(self) -> None:
        try:
            with np.load(self.path, allow_pickle=False) as saved:
                self.parts = {name: [saved[name]] for name in self.names}
                self.done = int(saved["batches"])
        except (OSError, ValueError, KeyError) as exc:
            raise StatsError(f"{self.path}: unreadable partial results ({exc}); delete it to "
                             "start over") from exc

    def batches(self, num: int, bar=None):
        """(global batch index, item count) of this rank's pending batches; `bar` advances
        over every batch of every rank."""
        for index, start in enumerate(range(0, num, self.batch_size)):
            count = min(self.batch_size, num - start)
            if index % self.world == self.rank and index // self.world >= self.done:
                yield index, count
            if bar is not None:
                bar.update(count)

    def add(self, **arrays: np.ndarray) -> None:
        for name in self.names:
            self.parts[name].append(np.asarray(arrays[name]))
        self.done += 1
        if self.path is not None and checkpoint_due(self.done, self.saved, self.every, True):
            self._save()
            self.saved = self.done

    def _save(self) -> None:
        from ffhq_tools.atomic import atomic_path

        with atomic_path(self.path) as tmp, open(tmp, "wb") as f:
            np.savez(f, batches=np.int64(self.done),
                     **{name: np.concatenate(parts) for name, parts in self.parts.items()})

    def gathered(self) -> dict[str, np.ndarray]:
        out = {name: np.concatenate(gather_blocks(parts, self.batch_size))
               for name, parts in self.parts.items()}
        if self.path is not None:  # every rank holds all results now: the partial can go
            self.path.unlink(missing_ok=True)
        return out

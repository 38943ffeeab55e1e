"""The Inception metrics' feature passes (generated images -> features, real data ->
cached statistics) and running a list of metrics into a run directory."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from eval import defaults
from eval.features import InceptionExtractor, load_inception
from eval.passes import Extraction, Kept, cached_pass, generated_pass
from eval.registry import MetricContext, compute_metric
from eval.stats import FeatureStats
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


def inception_extraction(ctx: MetricContext, capture: bool = False,
                         want_probs: bool = False) -> Extraction:
    """Inception pool features (moments, rows when `capture`) and optionally the class
    probabilities (rows only)."""
    extractor = inception(ctx)
    kept = (Kept("pool", defaults.INCEPTION_FEATURE_DIM, capture),)
    if want_probs:
        kept += (Kept("probs", defaults.INCEPTION_NUM_CLASSES, capture=True, moments=False),)

    def network(batch: torch.Tensor) -> tuple[torch.Tensor, ...]:
        pool, probs = extractor(batch, want_probs=want_probs)
        return (pool, probs) if want_probs else (pool,)

    key = {"what": "inception-stats/v1", "network": extractor.sha256,
           "feature_network": ctx.feature_network, "mode": ctx.mode, "capture": capture}
    return Extraction(network, {**key, "probs": True} if want_probs else key, kept)


def generated_features(ctx: MetricContext, num: int, capture: bool = False,
                       want_probs: bool = False) -> tuple[FeatureStats, np.ndarray | None]:
    """(FeatureStats of `num` generated images, float32 class probabilities or None), all
    ranks; resumable (see `eval.passes.generated_pass`)."""
    tracked = generated_pass(ctx, num, inception_extraction(ctx, capture, want_probs))
    return tracked[0], (tracked[1].features() if want_probs else None)


def source_features(ctx: MetricContext, source: str | Path, num: int | None,
                    capture: bool = False, xflip: bool = False, label: str = "real") \
        -> FeatureStats:
    """Inception statistics of up to `num` images (None: all) of a folder / .h5, through the
    cache; resumable (see `eval.passes.cached_pass`)."""
    return cached_pass(ctx, source, num, inception_extraction(ctx, capture), xflip, label)


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

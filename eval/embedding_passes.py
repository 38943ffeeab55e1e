"""The DINOv2 / CLIP feature passes: an `eval.passes.Extraction` per feature network, so these
networks share the Inception metrics' resumable loops, statistics cache (keyed by the
network's SHA-256 and preprocessing mode) and torch.distributed reduction."""

from __future__ import annotations

from pathlib import Path

import torch

from eval.features.embedders import Embedder, get_spec, load_embedder
from eval.passes import Extraction, Kept, cached_pass, generated_pass
from eval.registry import MetricContext
from eval.stats import FeatureStats

_LOADED: dict[tuple, Embedder] = {}


def embedder(ctx: MetricContext, name: str) -> Embedder:
    """Feature network `name`, loaded once per (file, device, mode); SHA-256 recorded in ctx."""
    spec = get_spec(name)
    mode = ctx.embedding_mode or spec.default_mode
    resolved = ctx.resolve_weights(name)
    key = (name, resolved.sha256, str(ctx.device), mode)
    if key not in _LOADED:
        _LOADED.clear()
        _LOADED[key] = load_embedder(name, lambda _: resolved, ctx.device, mode)
    ctx.use("feature_network", name)
    ctx.use("preprocessing", mode)
    return _LOADED[key]


def embedding_extraction(ctx: MetricContext, name: str, capture: bool) -> Extraction:
    """Moments of network `name`'s features, and the rows themselves when `capture`."""
    network = embedder(ctx, name)

    def features(batch: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return (network(batch)[name],)

    key = {"what": "embedding-stats/v1", "feature_network": name, "network": network.sha256,
           "mode": network.mode, "capture": capture}
    return Extraction(features, key, (Kept(name, network.spec.dim, capture),))


def source_embeddings(ctx: MetricContext, name: str, source: str | Path, num: int | None,
                      capture: bool = False, label: str = "real") -> FeatureStats:
    """Statistics of up to `num` images (None: all) of a folder / .h5, through the cache."""
    return cached_pass(ctx, source, num, embedding_extraction(ctx, name, capture),
                       label=f"{label} ({name})")


def real_embeddings(ctx: MetricContext, name: str, num: int | None,
                    capture: bool = False) -> FeatureStats:
    """Statistics of the context's real data; records num_real used."""
    stats = source_embeddings(ctx, name, ctx.data, num, capture)
    ctx.use("num_real", stats.num)
    return stats


def generated_embeddings(ctx: MetricContext, name: str, num: int,
                         capture: bool = False) -> FeatureStats:
    """Statistics of `num` generated images (resumable); records num_gen used."""
    (stats,) = generated_pass(ctx, num, embedding_extraction(ctx, name, capture),
                              f"generated ({name})")
    ctx.use("num_gen", stats.num)
    return stats

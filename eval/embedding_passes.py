"""Feature passes of any registered network (`eval.features.networks`): an
`eval.passes.Extraction` per network, so every feature space shares the Inception metrics'
resumable loops, statistics cache (keyed by the network's name, SHA-256 and preprocessing
mode) and torch.distributed reduction."""

from __future__ import annotations

from pathlib import Path

import torch

from eval import defaults
from eval.features.networks import INCEPTION, VGG16, FeatureExtractor, get_network, load_extractor
from eval.passes import Extraction, Kept, cached_pass, generated_pass
from eval.registry import MetricContext
from eval.stats import FeatureStats
from ffhq_tools.errors import FfhqToolsError

_LOADED: dict[tuple, FeatureExtractor] = {}


def chosen_network(ctx: MetricContext, default: str) -> str:
    """The network a metric uses: `--features` when given, else the protocol's `default`."""
    return ctx.features or default


def mode_for(ctx: MetricContext, name: str) -> str:
    """The preprocessing mode of network `name` in this context (checked against it)."""
    network = get_network(name)
    if network.family == INCEPTION:
        if ctx.embedding_mode is not None:
            raise FfhqToolsError(f"--mode {ctx.embedding_mode}: feature network {name} takes "
                                 f"{', '.join(network.modes)}")
        return network.check_mode(ctx.mode)
    if ctx.mode != defaults.DEFAULT_MODE:
        raise FfhqToolsError(f"--mode {ctx.mode}: feature network {name} takes "
                             f"{', '.join(network.modes)}")
    if network.family == VGG16:
        return network.check_mode(None)
    return network.check_mode(ctx.embedding_mode)


def extractor(ctx: MetricContext, name: str) -> FeatureExtractor:
    """Feature network `name`, loaded once per (file, device, mode); SHA-256 recorded in ctx."""
    mode = mode_for(ctx, name)
    resolved = ctx.resolve_weights(name)
    key = (name, resolved.sha256, str(ctx.device), mode)
    if key not in _LOADED:
        _LOADED.clear()
        _LOADED[key] = load_extractor(name, lambda _: resolved, ctx.device, mode)
    ctx.use("feature_network", name)
    ctx.use("preprocessing", mode)
    return _LOADED[key]


def embedding_extraction(ctx: MetricContext, name: str, capture: bool) -> Extraction:
    """Moments of network `name`'s features, and the rows themselves when `capture`."""
    network = extractor(ctx, name)

    def features(batch: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return (network(batch)[name],)

    key = {"what": "embedding-stats/v1", "feature_network": name, "network": network.sha256,
           "mode": network.mode, "capture": capture}
    return Extraction(features, key, (Kept(name, network.dim, capture),))


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

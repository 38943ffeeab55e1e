"""Improved precision and recall (Kynkaanniemi et al. 2019): `pr50k3`, `pr50k3_full`.

VGG16 4096-d features of generated and real images, k = 3 nearest-neighbour radii excluding
self, Euclidean distances (compared squared: same sets), computed in bounded-memory blocks by
`eval.knn`. Real features are cached by dataset fingerprint, network SHA-256 and count.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

from eval import knn, sampling
from eval.features import vgg16
from eval.registry import MetricContext, register_metric
from ffhq_tools.atomic import atomic_path

NEIGHBOURHOOD = 3
NUM_GEN = 50_000
PR50K3_NUM_REAL = 50_000
PR50K3_FULL_MAX_REAL = 200_000
DISTANCE = "euclidean (compared squared, float32, mean-centred blocks)"


def precision_recall_features(real_features, gen_features, k: int = NEIGHBOURHOOD,
                              row_batch: int = knn.DEFAULT_ROW_BATCH,
                              col_batch: int = knn.DEFAULT_COL_BATCH, device="cpu",
                              progress: bool = False) -> dict:
    """{"precision", "recall"} of generated vs real feature matrices ([N, D] each)."""
    result = knn.precision_recall(real_features, gen_features, k, row_batch=row_batch,
                                  col_batch=col_batch, device=device, progress=progress)
    return {"precision": result.precision, "recall": result.recall}


def _bar(ctx: MetricContext, total: int, desc: str):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="img", file=sys.stderr,
                disable=not ctx.progress or ctx.rank != 0, leave=False)


def _gather(parts: list[torch.Tensor], dim: int) -> np.ndarray:
    local = torch.cat(parts).cpu().numpy() if parts else np.zeros((0, dim), np.float32)
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return local
    gathered: list = [None] * torch.distributed.get_world_size()
    torch.distributed.all_gather_object(gathered, local)
    return np.concatenate(gathered)


@torch.no_grad()
def _features(ctx: MetricContext, network, batches, total: int, desc: str) -> np.ndarray:
    parts = []
    with _bar(ctx, total, desc) as bar:
        for batch in batches:
            parts.append(network(batch.to(ctx.device)).float().cpu())
            bar.update(batch.shape[0] * ctx.world_size)
    return _gather(parts, vgg16.FEATURE_DIM)


def _real_resolution(ctx: MetricContext) -> int | None:
    if sampling.data_kind(ctx.data) != "h5":
        return None
    wanted = getattr(ctx.generator, "img_resolution", None)
    return wanted if wanted in sampling.h5_levels(ctx.data) else None


def _real_features(ctx: MetricContext, network, source: str, sha256: str,
                   num: int) -> np.ndarray:
    from eval.stats import cache_key, default_cache_dir, fingerprint

    resolution = _real_resolution(ctx)
    count = min(num, sampling.real_count(ctx.data, resolution))
    fields = {"what": "vgg16-features/v1", "data": fingerprint(ctx.data), "network": sha256,
              "source": source, "num": count, "resolution": resolution}
    path = Path(ctx.stats_cache or default_cache_dir()) / f"pr-{cache_key(fields)}.npy"
    if path.is_file():
        return np.load(path)
    shard = (ctx.rank, ctx.world_size) if ctx.world_size > 1 else None
    batches = sampling.iterate_real(ctx.data, count, ctx.batch_size, resolution, shard=shard)
    features = _features(ctx, network, batches, count, "real (VGG16)")
    if ctx.rank == 0:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            np.save(f, features)
    return features


def _pr(ctx: MetricContext, default_real: int) -> dict:
    num_gen = ctx.count("num_gen", ctx.num_gen)
    max_real = ctx.max_real if ctx.max_real is not None else default_real
    source = vgg16.preferred_source(ctx.weights_overrides)
    network = vgg16.load_feature_network(ctx.resolve_weights, source, ctx.device)
    real = _real_features(ctx, network, source, ctx.weights_used[source], max_real)
    generated = sampling.iterate_generated(ctx.generator, num_gen, ctx.batch_size, ctx.seed,
                                           ctx.device)
    gen = _features(ctx, network, generated, num_gen, "generated (VGG16)")
    ctx.use("num_real", int(real.shape[0]))
    ctx.use("num_gen", int(gen.shape[0]))
    ctx.use("feature_network", source)
    ctx.use("distance", DISTANCE)
    return precision_recall_features(real, gen, ctx.protocol["nhood_size"], device=ctx.device,
                                     progress=ctx.progress and ctx.rank == 0)


_PROTOCOL = {"num_gen": NUM_GEN, "nhood_size": NEIGHBOURHOOD,
             "row_batch_size": knn.DEFAULT_ROW_BATCH, "col_batch_size": knn.DEFAULT_COL_BATCH,
             "truncation_psi": 1.0, "noise_mode": "random"}


@register_metric(
    "pr50k3", protocol={**_PROTOCOL, "max_real": PR50K3_NUM_REAL},
    needs=("generator", "data"), weights=(vgg16.TORCHVISION, vgg16.TORCHSCRIPT),
    description="Precision/recall: 50,000 generated vs 50,000 real VGG16 features, k = 3")
def pr50k3(ctx: MetricContext) -> dict:
    return _pr(ctx, PR50K3_NUM_REAL)


@register_metric(
    "pr50k3_full", protocol={**_PROTOCOL, "max_real": PR50K3_FULL_MAX_REAL},
    needs=("generator", "data"), weights=(vgg16.TORCHVISION, vgg16.TORCHSCRIPT),
    description="Precision/recall: 50,000 generated vs up to 200,000 real VGG16 features, k = 3")
def pr50k3_full(ctx: MetricContext) -> dict:
    return _pr(ctx, PR50K3_FULL_MAX_REAL)

"""Improved precision and recall (Kynkaanniemi et al. 2019): `pr50k3`, `pr50k3_full`.

VGG16 4096-d features of generated and real images, k = 3 nearest-neighbour radii excluding
self, Euclidean distances (compared squared: same sets), computed in bounded-memory blocks by
`eval.knn`. Real features are cached by dataset fingerprint, network SHA-256 and count; both
feature passes resume after a kill (`eval.passes`).
"""

from __future__ import annotations

import torch

from eval import knn
from eval.features import vgg16
from eval.passes import Extraction, Kept, cached_pass, generated_pass
from eval.registry import MetricContext, register_metric

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


def vgg16_extraction(ctx: MetricContext, network, source: str, sha256: str) -> Extraction:
    """VGG16 fc2 rows only: k-NN radii need the features themselves, never their moments."""
    def features(batch: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return (network(batch.to(ctx.device)).float(),)

    return Extraction(features, {"what": "vgg16-features/v2", "network": sha256,
                                 "source": source},
                      (Kept("vgg16", vgg16.FEATURE_DIM, capture=True, moments=False),))


def _pr_in(ctx: MetricContext, network: str, default_real: int) -> dict:
    """Precision/recall in the space of `--features` network (not VGG16)."""
    from eval.feature_pairs import captured_pair

    gen, real = captured_pair(ctx, network, default_real)
    ctx.use("distance", DISTANCE)
    return precision_recall_features(real, gen, ctx.protocol["nhood_size"], device=ctx.device,
                                     progress=ctx.progress and ctx.rank == 0)


def _pr(ctx: MetricContext, default_real: int) -> dict:
    if ctx.features is not None and ctx.features not in vgg16.SOURCES:
        return _pr_in(ctx, ctx.features, default_real)
    num_gen = ctx.count("num_gen", ctx.num_gen)
    max_real = ctx.max_real if ctx.max_real is not None else default_real
    source = ctx.features or vgg16.preferred_source(ctx.weights_overrides)
    network = vgg16.load_feature_network(ctx.resolve_weights, source, ctx.device)
    extraction = vgg16_extraction(ctx, network, source, ctx.weights_used[source])
    real = cached_pass(ctx, ctx.data, max_real, extraction, label="real (VGG16)").features()
    (gen,) = generated_pass(ctx, num_gen, extraction, "generated (VGG16)")
    gen = gen.features()
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
    takes_features=True,
    needs=("generator", "data"), weights=(vgg16.TORCHVISION, vgg16.TORCHSCRIPT),
    weight_options=((vgg16.TORCHSCRIPT,), (vgg16.TORCHVISION,)),
    description="Precision/recall: 50,000 generated vs 50,000 real VGG16 features, k = 3")
def pr50k3(ctx: MetricContext) -> dict:
    return _pr(ctx, PR50K3_NUM_REAL)


@register_metric(
    "pr50k3_full", protocol={**_PROTOCOL, "max_real": PR50K3_FULL_MAX_REAL},
    takes_features=True,
    needs=("generator", "data"), weights=(vgg16.TORCHVISION, vgg16.TORCHSCRIPT),
    weight_options=((vgg16.TORCHSCRIPT,), (vgg16.TORCHVISION,)),
    description="Precision/recall: 50,000 generated vs up to 200,000 real VGG16 features, k = 3")
def pr50k3_full(ctx: MetricContext) -> dict:
    return _pr(ctx, PR50K3_FULL_MAX_REAL)

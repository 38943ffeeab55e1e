"""Metrics in DINOv2 and CLIP feature space (dgm-eval, clean-fid conventions):
`fd_dinov2_50k`, `fd_dinov2b_50k`, `fid_clip50k`, `kd_dinov2_50k`, `prdc_dinov2_10k`,
`fd_inf`, `authpct` and `fld`. The distances are the pure functions of `eval.frechet`,
`eval.kid`, `eval.prdc`, `eval.fd_infinity` and `eval.memorisation`; the features come from
`eval.embedding_passes` (cached, resumable, distributed like the Inception passes)."""

from __future__ import annotations

import numpy as np

from eval import defaults
from eval.embedding_passes import (
    chosen_network,
    generated_embeddings,
    real_embeddings,
    source_embeddings,
)
from eval.fd_infinity import fd_infinity
from eval.feature_pairs import captured_pair, frechet_in, gaussian, require_images
from eval.kid import kid_from_features
from eval.memorisation import authpct, feature_likelihood
from eval.prdc import prdc
from eval.registry import MetricContext, register_metric

_SAMPLING = {"truncation_psi": 1.0, "noise_mode": "random"}
_NEEDS = ("generator", "data")


_FD = {"num_gen": defaults.FD_DINOV2_NUM_GEN, "num_real": "all", **_SAMPLING}


@register_metric(
    "fd_dinov2_50k", protocol={**_FD, "feature_network": defaults.DINOV2_VIT_L},
    takes_features=True,
    needs=_NEEDS, weights=(defaults.DINOV2_VIT_L,),
    description="FD-DINOv2 (dgm-eval): 50,000 generated vs every real image, DINOv2 ViT-L/14 "
                "class tokens")
def fd_dinov2_50k(ctx: MetricContext) -> dict:
    return {"fd": frechet_in(ctx, chosen_network(ctx, defaults.DINOV2_VIT_L))}


@register_metric(
    "fd_dinov2b_50k", protocol={**_FD, "feature_network": defaults.DINOV2_VIT_B},
    takes_features=True,
    needs=_NEEDS, weights=(defaults.DINOV2_VIT_B,),
    description="FD-DINOv2 with ViT-B/14 (about 4x cheaper, for tracking during training)")
def fd_dinov2b_50k(ctx: MetricContext) -> dict:
    return {"fd": frechet_in(ctx, chosen_network(ctx, defaults.DINOV2_VIT_B))}


@register_metric(
    "fid_clip50k", protocol={**_FD, "feature_network": defaults.CLIP_VIT_B_32},
    takes_features=True,
    needs=_NEEDS, weights=(defaults.CLIP_VIT_B_32,),
    description="CLIP-FID (clean-fid's clip_vit_b_32): 50,000 generated vs every real image")
def fid_clip50k(ctx: MetricContext) -> dict:
    return {"fid": frechet_in(ctx, chosen_network(ctx, defaults.CLIP_VIT_B_32))}


@register_metric(
    "kd_dinov2_50k",
    protocol={"num_gen": defaults.KD_NUM_GEN, "max_real": defaults.KID_MAX_REAL,
              "num_subsets": defaults.KID_NUM_SUBSETS,
              "max_subset_size": defaults.KID_MAX_SUBSET_SIZE, "degree": defaults.KID_DEGREE,
              "feature_network": defaults.DINOV2_VIT_L, **_SAMPLING},
    takes_features=True,
    needs=_NEEDS, weights=(defaults.DINOV2_VIT_L,),
    description="KD (KID in DINOv2 ViT-L/14 space): 100 subsets of <= 1,000, cubic kernel")
def kd_dinov2_50k(ctx: MetricContext) -> dict:
    network = chosen_network(ctx, defaults.DINOV2_VIT_L)
    gen, real = captured_pair(ctx, network, ctx.protocol["max_real"])
    result = kid_from_features(gen, real, ctx.protocol["num_subsets"],
                               ctx.protocol["max_subset_size"], seed=ctx.seed)
    ctx.use("subset_size", result["subset_size"])
    return {"kd": result["kid"], "kd_std": result["kid_std"]}


@register_metric(
    "prdc_dinov2_10k",
    protocol={"num_gen": defaults.PRDC_NUM, "max_real": defaults.PRDC_NUM,
              "nearest_k": defaults.PRDC_NEAREST_K, "feature_network": defaults.DINOV2_VIT_L,
              **_SAMPLING},
    takes_features=True,
    needs=_NEEDS, weights=(defaults.DINOV2_VIT_L,),
    description="Precision, recall, density, coverage (Naeem et al. 2020, k = 5): 10,000 "
                "generated vs the first 10,000 reals, DINOv2 ViT-L/14")
def prdc_dinov2_10k(ctx: MetricContext) -> dict:
    network = chosen_network(ctx, defaults.DINOV2_VIT_L)
    gen, real = captured_pair(ctx, network, ctx.protocol["max_real"])
    ctx.use("distance", "euclidean (compared squared, float32, blocked)")
    return prdc(real, gen, ctx.protocol["nearest_k"], device=ctx.device)


@register_metric(
    "fd_inf",
    protocol={"num_gen": defaults.FD_INF_NUM_GEN, "num_real": "all",
              "num_points": defaults.FD_INF_NUM_POINTS, "min_gen": defaults.FD_INF_MIN_GEN,
              "feature_network": defaults.DINOV2_VIT_L, **_SAMPLING},
    takes_features=True,
    needs=_NEEDS, weights=(defaults.DINOV2_VIT_L,),
    description="FD-infinity (Chong & Forsyth 2020, dgm-eval): FD-DINOv2 at 15 sizes N, "
                "linear fit in 1/N extrapolated to 1/N = 0")
def fd_inf(ctx: MetricContext) -> dict:
    require_images(ctx)
    num_gen = ctx.count("num_gen", ctx.num_gen)
    network = chosen_network(ctx, defaults.DINOV2_VIT_L)
    real = real_embeddings(ctx, network, ctx.max_real)
    gen = generated_embeddings(ctx, network, num_gen, capture=True)
    ctx.use("covariance", ctx.covariance)
    result = fd_infinity(gen.features(), *gaussian(real, ctx),
                         num_points=ctx.protocol["num_points"],
                         min_gen=ctx.protocol["min_gen"], seed=ctx.seed,
                         covariance=ctx.covariance)
    ctx.use("sizes", result["sizes"])
    return {"fd_inf": result["fd_inf"], "slope": result["slope"]}


@register_metric(
    "authpct",
    protocol={"num_gen": defaults.AUTHPCT_NUM_GEN, "max_real": defaults.AUTHPCT_MAX_REAL,
              "feature_network": defaults.DINOV2_VIT_L, **_SAMPLING},
    takes_features=True,
    needs=_NEEDS, weights=(defaults.DINOV2_VIT_L,),
    description="AuthPct (dgm-eval): % of generated samples farther from their nearest "
                "training sample than that sample's own nearest neighbour, DINOv2 ViT-L/14")
def authpct_metric(ctx: MetricContext) -> dict:
    network = chosen_network(ctx, defaults.DINOV2_VIT_L)
    gen, real = captured_pair(ctx, network, ctx.protocol["max_real"])
    return {"authpct": authpct(real, gen, device=ctx.device)}


def _shuffled(rows: np.ndarray, seed: int) -> np.ndarray:
    return rows[np.random.default_rng(seed).permutation(rows.shape[0])]


@register_metric(
    "fld",
    protocol={"num_gen": defaults.FLD_NUM, "max_real": defaults.FLD_NUM,
              "steps": defaults.FLD_STEPS, "lr": defaults.FLD_LR,
              "lr_milestone": defaults.FLD_LR_MILESTONE,
              "feature_network": defaults.DINOV2_VIT_L, **_SAMPLING},
    takes_features=True,
    needs=("generator", "data", "test_data"), weights=(defaults.DINOV2_VIT_L,),
    description="Feature likelihood divergence (Jiralerspong et al. 2023; dgm-eval's FLS "
                "constants): KDE on generated features fitted to training images, scored on "
                "held-out test images against a training-image baseline, DINOv2 ViT-L/14")
def fld(ctx: MetricContext) -> dict:
    require_images(ctx)
    network = chosen_network(ctx, defaults.DINOV2_VIT_L)
    per_set = ctx.max_real or ctx.protocol["max_real"]
    num_gen = ctx.count("num_gen", ctx.num_gen)
    train = real_embeddings(ctx, network, 2 * per_set, capture=True).features()
    test = source_embeddings(ctx, network, ctx.test_data, per_set, capture=True,
                             label="test").features()
    gen = generated_embeddings(ctx, network, num_gen, capture=True).features()
    size = min(per_set, train.shape[0] // 2, test.shape[0], gen.shape[0])
    train = _shuffled(train, ctx.seed)
    ctx.use("set_size", size)
    return feature_likelihood(train[:size], train[size:2 * size], test[:size], gen[:size],
                              steps=ctx.protocol["steps"], device=ctx.device)

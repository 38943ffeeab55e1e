"""Inception Score (`is50k`): exp(E_x KL(p(y|x) || p(y))) over 10 splits, softmax over the
1008 logits without the output bias, as the TF reference and stylegan2-ada compute it."""

from __future__ import annotations

import numpy as np

from eval import defaults, runner
from eval.registry import MetricContext, register_metric
from ffhq_tools.errors import FfhqToolsError


def inception_score_from_probs(probs: np.ndarray, num_splits: int = defaults.IS_NUM_SPLITS):
    """(mean, std) of exp(mean KL(p(y|x) || p(y))) over `num_splits` consecutive splits, in
    float64 one split at a time (no float64 copy of all the probabilities)."""
    probs = np.asarray(probs)
    if probs.shape[0] < num_splits:
        raise FfhqToolsError(f"Inception Score needs at least {num_splits} images "
                             f"(one per split), got {probs.shape[0]}")
    scores = []
    for split in range(num_splits):
        part = probs[split * len(probs) // num_splits:(split + 1) * len(probs) // num_splits]
        part = part.astype(np.float64)
        marginal = part.mean(axis=0, keepdims=True)
        with np.errstate(divide="ignore", invalid="ignore"):
            kl = np.where(part > 0, part * (np.log(part) - np.log(marginal)), 0.0)
        scores.append(np.exp(kl.sum(axis=1).mean()))
    return float(np.mean(scores)), float(np.std(scores))


@register_metric(
    "is50k",
    protocol={"num_gen": defaults.IS_NUM_GEN, "num_splits": defaults.IS_NUM_SPLITS,
              "truncation_psi": 1.0, "noise_mode": "random"},
    needs=("generator",), weights=(defaults.INCEPTION_STATE_DICT,),
    description="Inception Score of 50,000 generated images, 10 splits")
def is50k(ctx: MetricContext) -> dict:
    num_gen = ctx.count("num_gen", ctx.num_gen)
    _, probs = runner.generated_features(ctx, num_gen, want_probs=True)
    mean, std = inception_score_from_probs(probs, ctx.protocol["num_splits"])
    return {"is_mean": mean, "is_std": std}

"""Schedules of the training loop: progressive growing, lazy regularisation, G EMA decay.

Progressive growing (ProGAN / StyleGAN v1, TF `training_schedule`): training starts at
`start_res`; each phase trains a level for `lod_training_kimg` then fades the next level in
over `lod_transition_kimg`. lod = log2(resolution) - log2(start_res) - phase, minus the fade
fraction, clipped at 0; the minibatch and learning rate come from per-resolution tables keyed
by the resolution of the level being trained (2 ** (log2 R - floor(lod))).

Lazy regularisation (StyleGAN2, sec. B of the paper): a regulariser evaluated every k
minibatches has its loss multiplied by k, and Adam's hyperparameters are corrected with
c = k / (k + 1): lr * c and beta ** c (both betas). The public reference code uses k = 16 for
R1 (D) and k = 4 for path length (G); the lecture seed slide says 8 for G. We use the
reference code's 4 (the config's `pl_interval`).

EMA of G (ProGAN's Gs): beta = 0.5 ** (batch / (ema_kimg * 1000)), so the weight of an image
halves every `ema_kimg` thousand images; with `ema_rampup` r the half-life is capped at
r * images seen so far, which lets small runs forget their random start.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class LevelSchedule:
    """What the trainer does at one point of training."""

    lod: float
    resolution: int  # resolution of the level being trained (the finer of a fading pair)
    batch: int
    lr: float


def progressive_lod(kimg: float, resolution: int, start_res: int,
                    training_kimg: float, transition_kimg: float) -> float:
    """Level of detail at `kimg` (0 = full resolution; fractional while fading in)."""
    levels = int(math.log2(resolution)) - int(math.log2(start_res))
    phase_kimg_total = training_kimg + transition_kimg
    phase = int(math.floor(kimg / phase_kimg_total)) if phase_kimg_total > 0 else levels
    lod = float(levels - phase)
    if transition_kimg > 0:
        into_phase = kimg - phase * phase_kimg_total
        lod -= max(into_phase - training_kimg, 0.0) / transition_kimg
    return max(lod, 0.0)


def level_schedule(kimg: float, *, resolution: int, progressive: bool, start_res: int,
                   training_kimg: float, transition_kimg: float, batch: int, lr: float,
                   batch_per_res: dict | None = None, lr_per_res: dict | None = None
                   ) -> LevelSchedule:
    """lod, training resolution, minibatch and learning rate at `kimg`.

    Without progressive growing lod is 0 and batch / lr are the given ones. With it, the
    per-resolution tables (keys may be int or str, as after a JSON round trip) override them.
    """
    if not progressive:
        return LevelSchedule(0.0, resolution, batch, lr)
    lod = progressive_lod(kimg, resolution, start_res, training_kimg, transition_kimg)
    level_res = 2 ** (int(math.log2(resolution)) - int(math.floor(lod)))
    return LevelSchedule(lod, level_res, _lookup(batch_per_res, level_res, batch),
                         _lookup(lr_per_res, level_res, lr))


def _lookup(table: dict | None, res: int, default):
    if not table:
        return default
    for key, value in table.items():
        if int(key) == res:
            return value
    return default


def lod_levels(lod: float) -> tuple[int, int]:
    """(floor, ceil) of lod: the pair of levels in use. Adam restarts when it changes."""
    return int(math.floor(lod)), int(math.ceil(lod))


def lazy_ratio(interval: int) -> float:
    """c = k / (k + 1) for a regulariser run every k minibatches (1 for k <= 0: not lazy)."""
    return interval / (interval + 1) if interval and interval > 0 else 1.0


def lazy_adam(lr: float, betas: tuple[float, float], interval: int
              ) -> tuple[float, tuple[float, float]]:
    """Adam lr and betas corrected for lazy regularisation with interval k."""
    ratio = lazy_ratio(interval)
    return lr * ratio, (betas[0] ** ratio, betas[1] ** ratio)


def ema_beta(batch: int, ema_kimg: float, cur_nimg: int, ema_rampup: float | None) -> float:
    """Decay of the G EMA for one step of `batch` images after `cur_nimg` images."""
    ema_nimg = ema_kimg * 1000.0
    if ema_rampup:
        ema_nimg = min(ema_nimg, cur_nimg * ema_rampup)
    if ema_nimg <= 0:
        return 0.0
    return 0.5 ** (batch / ema_nimg)

"""Options of DualStyleGAN training (`ffhq-tools dualstylegan-train pretrain|finetune`).

Defaults are the official recipe (williamyang1991/DualStyleGAN `pretrain_dualstylegan.py`,
`finetune_dualstylegan.py` and their README command lines):
- both: Adam lr 0.002 on `res` + T_s only (lazy-regularisation corrected, betas 0, 0.99),
  R1 10 every 16 steps, path length 2 every 4 (half batch), style mixing 0.9, EMA of `res`
  with beta 0.5 ** (32 / 10,000) per step;
- pretrain: 3000 iterations at batch 4 in three stages (injection index 7, 6, 5 for
  iters / 10, iters / 10, iters), adversarial weight 0.1, VGG19 L1 (0.5, 0.5, 0.5, 0, 0)
  against G(z1, z2 mixed at the injection index), the extrinsic code from an encoder /
  projection of G(z2) every 4th step;
- finetune: 1500 iterations at batch 32, paired steps every 2nd, extrinsic jitter 0.1,
  intrinsic layers from 8 on resampled, style 0.25, contextual 0.25, perceptual 1, identity
  1, res L2 0.01; snapshots every 100 iterations from 1000 on.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from ffhq_tools.errors import FfhqToolsError
from models.identity_names import IDENTITIES  # or any object with `embed(images)`

STAGES = ("pretrain", "finetune")
PRETRAIN_INJECTION = (7, 6, 5)
CODE_SOURCES = ("projection", "encoder")  # or any object with `encode(images) -> W+`
EMA_BETA = 0.5 ** (32 / (10 * 1000))
COLOUR_RESAMPLE_FROM = 8
MIN_STYLE_IMAGES = 8

RECIPES = {
    "pretrain": dict(iters=3000, batch=4, adv_weight=0.1, paired_every=0, snap=3000,
                     snap_begin=0, code_every=4),
    "finetune": dict(iters=1500, batch=32, adv_weight=1.0, paired_every=2, snap=100,
                     snap_begin=1000, code_every=0),
}


class DualStyleGANTrainError(FfhqToolsError):
    """Bad DualStyleGAN training input: options, base checkpoint, style set, codes."""


@dataclass(frozen=True)
class DualStyleGANTrainOptions:
    stage: str
    base: str | None = None      # pretrain: StyleGAN2 checkpoint; finetune: DualStyleGAN one
    data: str | None = None      # pretrain: face .h5; finetune: the style set .h5
    exstyle: str | None = None   # finetune: extrinsic codes (exstyle_code.npy / .npz)
    instyle: str | None = None   # finetune: intrinsic codes (instyle_code.npy / .npz)
    outdir: str = "runs"
    resume: str | None = None    # a run folder: continue exactly from its newest snapshot
    iters: int | None = None
    batch: int | None = None
    lr: float = 0.002
    r1_gamma: float = 10.0
    r1_interval: int = 16
    pl_weight: float = 2.0
    pl_interval: int = 4
    pl_batch_shrink: int = 2
    pl_decay: float = 0.01
    mixing: float = 0.9
    adv_weight: float | None = None
    style_weight: float = 0.25
    cx_weight: float = 0.25
    perc_weight: float = 1.0
    id_weight: float = 1.0
    l2_weight: float = 0.01
    jitter: float = 0.1
    code_source: str = "projection"
    encoder: str | None = None  # code_source 'encoder': a pSp z+ checkpoint (encoder.pt)
    projection_steps: int = 20
    projection_lr: float = 0.1
    identity: str = "none"
    loss_resolution: int = 256
    noise_mode: str = "random"   # the generators' per-layer noise (official: random)
    snap: int | None = None
    snap_begin: int | None = None
    log_every: int = 10
    seed: int = 0
    mirror: bool = True
    vgg_weights: str | None = None  # a torchvision VGG19 state dict instead of the registry's
    identity_weights: str | None = None  # a file for the identity's registry entry
    device: str = "auto"
    threads: int | None = None
    progress: bool = True

    def __post_init__(self):
        if self.stage not in STAGES:
            raise DualStyleGANTrainError(f"stage must be one of {', '.join(STAGES)}, "
                                         f"got {self.stage!r}")
        if self.code_source not in CODE_SOURCES:
            raise DualStyleGANTrainError(f"--code-source {self.code_source!r}: expected one "
                                         f"of {', '.join(CODE_SOURCES)}")
        if self.code_source == "encoder" and not self.encoder:
            raise DualStyleGANTrainError("--code-source encoder needs --encoder FILE (the pSp "
                                         "checkpoint, DualStyleGAN's encoder.pt)")
        if self.noise_mode not in ("random", "const"):
            raise DualStyleGANTrainError(f"--noise-mode {self.noise_mode!r}: expected random "
                                         "or const")
        if self.identity not in IDENTITIES:
            raise DualStyleGANTrainError(f"--identity {self.identity!r}: expected one of "
                                         f"{', '.join(IDENTITIES)}")
        for name in ("iters", "batch", "r1_interval", "pl_interval", "log_every"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise DualStyleGANTrainError(f"--{name.replace('_', '-')} {value}: must be "
                                             "at least 1")

    def resolved(self) -> "DualStyleGANTrainOptions":
        """The stage's recipe values wherever an option was left at None."""
        recipe = RECIPES[self.stage]
        changes = {k: recipe[k] for k in ("iters", "batch", "adv_weight", "snap", "snap_begin")
                   if getattr(self, k) is None}
        return dataclasses.replace(self, **changes)

    @property
    def paired_every(self) -> int:
        return RECIPES[self.stage]["paired_every"]

    @property
    def code_every(self) -> int:
        return RECIPES[self.stage]["code_every"]

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "DualStyleGANTrainOptions":
        from models.configs import reject_unknown_fields

        reject_unknown_fields(cls, data, "DualStyleGAN training options: unknown field(s)")
        return cls(**data)


def pretrain_stages(iters: int) -> list[tuple[int, int]]:
    """[(injection index, iterations)]: 7 and 6 for iters // 10 each, then 5 for iters."""
    return [(PRETRAIN_INJECTION[0], iters // 10), (PRETRAIN_INJECTION[1], iters // 10),
            (PRETRAIN_INJECTION[2], iters)]


def stage_at(options: DualStyleGANTrainOptions, step: int) -> tuple[int, int, int | None]:
    """(stage number, step within the stage, injection index or None) of global step `step`."""
    if options.stage == "finetune":
        return 0, step, None
    start = 0
    for number, (inject, count) in enumerate(pretrain_stages(options.iters)):
        if step < start + count:
            return number, step - start, inject
        start += count
    raise DualStyleGANTrainError(f"step {step} is past the end of pretraining")


def total_steps(options: DualStyleGANTrainOptions) -> int:
    if options.stage == "finetune":
        return options.iters
    return sum(count for _, count in pretrain_stages(options.iters))

"""The augmentation probability p and its controller (`--aug ada|fixed|noaug`).

ADA (Karras et al. 2020, stylegan2-ada-pytorch training_loop.py): the overfitting heuristic
r_t = E[sign(D(real))] is measured over the real logits D produced during the last
`interval` minibatches (D main and R1 passes); after every `interval` minibatches

    p <- clamp(p + sign(r_t - target) * batch * interval / (ada_kimg * 1000), 0, 1)

so p can move from 0 to 1 in `ada_kimg` thousand images. Under torch.distributed the sums of
signs and counts are all-reduced first, so every rank holds the same p.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ffhq_tools.errors import FfhqToolsError
from models.distributed import DistEnv, sum_over_ranks

AUG_MODES = ("ada", "fixed", "noaug")
ADA_TARGET = 0.6
ADA_INTERVAL = 4
ADA_KIMG = 500.0
ADA_KIMG_TRANSFER = 100.0  # stylegan2-ada reacts faster when starting from trained networks


@dataclass(frozen=True)
class AugmentSettings:
    mode: str = "noaug"
    pipeline: str = "bgc"
    p: float = 0.0  # the starting p (ada) or the constant p (fixed)
    target: float = ADA_TARGET
    interval: int = ADA_INTERVAL
    ada_kimg: float = ADA_KIMG

    def __post_init__(self):
        if self.mode not in AUG_MODES:
            raise FfhqToolsError(f"--aug {self.mode}: expected one of {', '.join(AUG_MODES)}")
        if not 0 <= self.p <= 1:
            raise FfhqToolsError(f"--p {self.p}: must be between 0 and 1")
        if not 0 <= self.target <= 1:
            raise FfhqToolsError(f"--target {self.target}: must be between 0 and 1")
        if self.interval < 1:
            raise FfhqToolsError(f"ada interval {self.interval}: must be at least 1")
        if not self.ada_kimg > 0:
            raise FfhqToolsError(f"--ada-kimg {self.ada_kimg}: must be positive")

    @property
    def enabled(self) -> bool:
        return self.mode != "noaug"


class AdaController:
    """Collects the signs of D's real logits and adjusts p every `interval` steps."""

    def __init__(self, settings: AugmentSettings, env: DistEnv):
        self.settings, self.env = settings, env
        self.p = float(settings.p)
        self.sign_sum = torch.zeros([], dtype=torch.float64, device=env.device)
        self.sign_count = torch.zeros([], dtype=torch.float64, device=env.device)
        self.last_rt: float | None = None

    @property
    def adaptive(self) -> bool:
        return self.settings.mode == "ada"

    def observe(self, real_logits: torch.Tensor) -> None:
        if self.adaptive:
            signs = real_logits.detach().sign().double()
            self.sign_sum += signs.sum()
            self.sign_count += signs.numel()

    def after_step(self, step: int, batch: int) -> None:
        """Call with the step counter after it moved on (1 after the first step)."""
        if not self.adaptive or step % self.settings.interval:
            return
        totals = sum_over_ranks(torch.stack([self.sign_sum, self.sign_count]), self.env)
        self.sign_sum.zero_()
        self.sign_count.zero_()
        if float(totals[1]) == 0:
            return
        self.last_rt = float(totals[0] / totals[1])
        self.p = adjusted_p(self.p, self.last_rt, self.settings, batch)

    def state_dict(self) -> dict:
        return {"p": self.p, "sign_sum": float(self.sign_sum), "sign_count": float(self.sign_count),
                "last_rt": self.last_rt, "settings": {"mode": self.settings.mode,
                                                      "pipeline": self.settings.pipeline}}

    def load_state_dict(self, state: dict) -> None:
        self.p = float(state["p"])
        # Signs gathered since the last adjustment: this rank's share (the sums are all-reduced
        # at the adjustment, so rank 0 carries the stored totals and the others start at 0).
        share = 1.0 if self.env.rank == 0 else 0.0
        self.sign_sum.fill_(float(state["sign_sum"]) * share)
        self.sign_count.fill_(float(state["sign_count"]) * share)
        self.last_rt = state.get("last_rt")

    def gathered_state(self) -> dict:
        """The state with the pending sign sums of every rank (for a snapshot)."""
        totals = sum_over_ranks(torch.stack([self.sign_sum, self.sign_count]), self.env)
        state = self.state_dict()
        state["sign_sum"], state["sign_count"] = float(totals[0]), float(totals[1])
        return state


def adjusted_p(p: float, rt: float, settings: AugmentSettings, batch: int) -> float:
    step = math.copysign(1.0, rt - settings.target) if rt != settings.target else 0.0
    adjust = step * batch * settings.interval / (settings.ada_kimg * 1000)
    return min(max(p + adjust, 0.0), 1.0)

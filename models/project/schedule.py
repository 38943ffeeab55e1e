"""The projection protocol of stylegan2-ada-pytorch's projector.py, every constant in one place.

With t = step / steps:
- learning rate  lr0 * [0.5 - 0.5 cos(pi min(1, (1 - t) / rampdown))] * min(1, t / rampup);
- w noise        w_std * noise_factor * max(0, 1 - t / noise_ramp)^2, added to w each step;
- noise maps     regularised by the squared autocorrelation at one-pixel shifts over a
                 pyramid of 2x2 average pools (down to 8x8), weight 1e5, and renormalised to
                 zero mean and unit variance after every step.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F

from ffhq_tools.errors import FfhqToolsError

SPACES = ("w", "w+")
NOISE_PYRAMID_MIN = 8


@dataclass(frozen=True)
class ProjectionProtocol:
    steps: int = 1000
    w_avg_samples: int = 10_000
    w_avg_seed: int = 123
    learning_rate: float = 0.1
    betas: tuple[float, float] = (0.9, 0.999)
    lr_rampdown: float = 0.25
    lr_rampup: float = 0.05
    w_noise_factor: float = 0.05
    w_noise_ramp: float = 0.75
    noise_reg_weight: float = 1e5
    distance_resolution: int = 256
    space: str = "w"
    optimize_noise: bool = True

    def __post_init__(self):
        if self.space not in SPACES:
            raise FfhqToolsError(f"--space {self.space}: expected one of {', '.join(SPACES)}")
        if self.steps < 1:
            raise FfhqToolsError(f"--steps {self.steps}: need at least one step")
        if self.w_avg_samples < 2:
            raise FfhqToolsError(f"w_avg_samples {self.w_avg_samples}: need at least two")

    def to_dict(self) -> dict:
        data = asdict(self)
        data["betas"] = list(self.betas)
        return data


def time_fraction(step: int, protocol: ProjectionProtocol) -> float:
    return step / protocol.steps


def learning_rate(t: float, protocol: ProjectionProtocol) -> float:
    down = min(1.0, (1.0 - t) / protocol.lr_rampdown)
    ramp = (0.5 - 0.5 * math.cos(down * math.pi)) * min(1.0, t / protocol.lr_rampup)
    return protocol.learning_rate * ramp


def w_noise_scale(t: float, w_std: float, protocol: ProjectionProtocol) -> float:
    return w_std * protocol.w_noise_factor * max(0.0, 1.0 - t / protocol.w_noise_ramp) ** 2


def noise_regularization(noise: torch.Tensor) -> torch.Tensor:
    """One [1, 1, H, W] noise map: sum over pooled levels of the squared mean products with
    the map rolled by one pixel along each axis."""
    total = noise.new_zeros(())
    while True:
        total = total + (noise * torch.roll(noise, shifts=1, dims=3)).mean() ** 2
        total = total + (noise * torch.roll(noise, shifts=1, dims=2)).mean() ** 2
        if noise.shape[2] <= NOISE_PYRAMID_MIN:
            return total
        noise = F.avg_pool2d(noise, kernel_size=2)


@torch.no_grad()
def renormalize_noise_(noise: torch.Tensor, unbiased: bool = False) -> None:
    """Zero mean, unit variance in place: the population variance as ada renormalises, or
    the unbiased one (torch's `std()`, as DualStyleGAN's destylize.py and refine_exstyle.py)."""
    noise -= noise.mean()
    if unbiased:
        noise /= noise.std()
    else:
        noise *= noise.square().mean().rsqrt()

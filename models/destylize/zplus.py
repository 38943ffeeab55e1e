"""Fitting a z+ code (one z per latent layer, each through the mapping network) and the noise
maps of a generator to one target image, as DualStyleGAN's destylize.py optimises:

    loss = distance(G(z+), target) + id_weight * identity + std_weight * mean_l(std over
           layers of z+) + noise_weight * noise regularisation

with Adam (lr 0.1, the projector's cosine ramp-down / linear ramp-up), the noise maps drawn
from a seeded N(0, 1), regularised and renormalised after every step (the projector's
`models.project.schedule`, with torch's unbiased std as upstream). No noise is added to the
code (unlike the W projection). `distance` takes float NCHW in [0, 255] at the distance
resolution and returns [N], as the projector's distances do.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn

from ffhq_tools.errors import FfhqToolsError
from models.project import schedule
from models.project.projector import (
    area_downsample,
    network_dtype,
    noise_buffers,
    synthesize_with_noise,
)
from models.project.schedule import ProjectionProtocol

Distance = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
CENTRAL_Z_SAMPLES = 10_000
CENTRAL_Z_SEED = 123
MAPPING_CHUNK = 1000


@dataclass(frozen=True)
class FitSettings:
    steps: int
    learning_rate: float = 0.1
    lr_rampdown: float = 0.25
    lr_rampup: float = 0.05
    id_weight: float = 0.0
    std_weight: float = 1.0
    noise_weight: float = 1e5
    distance_resolution: int = 256

    def __post_init__(self):
        if self.steps < 1:
            raise FfhqToolsError(f"steps {self.steps}: need at least one optimisation step")

    def ramp(self) -> ProjectionProtocol:
        """The projector protocol whose learning-rate schedule this fit follows."""
        return ProjectionProtocol(steps=self.steps, learning_rate=self.learning_rate,
                                  lr_rampdown=self.lr_rampdown, lr_rampup=self.lr_rampup)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Fit:
    z: torch.Tensor  # [1, num_ws, z_dim], detached
    noise: dict[str, torch.Tensor]  # buffer name -> [1, 1, H, W], detached
    curve: list[dict]


def map_zplus(G, z: torch.Tensor, truncation: float = 1.0) -> torch.Tensor:
    """z+ [N, L, z_dim] -> w+ [N, L, w_dim], each layer's z through G's mapping; truncation
    pulls towards 0 (`truncation_latent=0`, as destylize.py renders)."""
    n, layers = z.shape[:2]
    ws = G.mapping(z.reshape(n * layers, z.shape[2]), None)[:, 0].reshape(n, layers, -1)
    return ws * truncation if truncation != 1 else ws


def render_zplus(G, z: torch.Tensor, noise: dict[str, torch.Tensor],
                 truncation: float = 1.0) -> torch.Tensor:
    """Images [N, C, H, W] in about [-1, 1] of z+ codes with the given noise maps."""
    return synthesize_with_noise(G, map_zplus(G, z, truncation), noise, network_dtype(G))


@torch.no_grad()
def central_z(G, samples: int = CENTRAL_Z_SAMPLES, seed: int = CENTRAL_Z_SEED) -> torch.Tensor:
    """The z of `samples` seeded draws whose w lies nearest the draws' mean w: [z_dim]; a
    projection in z+ starts from it on every layer (no z maps to the mean w itself)."""
    z = torch.from_numpy(np.random.RandomState(seed).randn(samples, G.z_dim))
    device, dtype = next(G.parameters()).device, network_dtype(G)
    ws = torch.cat([G.mapping(chunk.to(device, dtype), None)[:, 0].cpu()
                    for chunk in z.split(MAPPING_CHUNK)]).double()
    nearest = (ws - ws.mean(dim=0)).square().sum(dim=1).argmin()
    return z[nearest].to(dtype)


def layer_std(z: torch.Tensor) -> torch.Tensor:
    """Mean over dimensions of the (unbiased) std of z+ across layers."""
    return z.std(dim=1).mean()


def noise_penalty(noise: list[torch.Tensor]) -> torch.Tensor:
    return sum(schedule.noise_regularization(n) for n in noise)


def seeded_noise(G, seed: int, device) -> dict[str, torch.Tensor]:
    rng = torch.Generator().manual_seed(int(seed))
    dtype = network_dtype(G)
    return {name: torch.randn((1, 1, *shape), generator=rng, dtype=dtype).to(device)
            for name, shape in noise_buffers(G).items()}


def fit_zplus(G, distance: Distance, target: torch.Tensor, start: torch.Tensor,
              settings: FitSettings, *, seed: int, identity=None, desc: str = "fit z+",
              progress: bool = True) -> Fit:
    """Optimise z+ (from `start` [1, L, z_dim]) and the noise maps so that G(z+) matches
    `target` [1, C, r, r] in [-1, 1] at r = distance resolution; `identity(images in [-1, 1])
    -> scalar` is weighted by `settings.id_weight` when given."""
    from tqdm import tqdm

    if settings.id_weight and identity is None:
        raise FfhqToolsError("id_weight > 0 needs an identity network")
    device = start.device
    z = nn.Parameter(start.detach().clone())
    noise = {k: nn.Parameter(v) for k, v in seeded_noise(G, seed, device).items()}
    optimizer = torch.optim.Adam([z, *noise.values()], lr=settings.learning_rate)
    target255 = (target.detach() + 1) * (255 / 2)
    ramp = settings.ramp()
    curve = []
    for step in tqdm(range(settings.steps), desc=desc, unit="step", file=sys.stderr,
                     disable=not progress, leave=False):
        lr = schedule.learning_rate(schedule.time_fraction(step, ramp), ramp)
        for group in optimizer.param_groups:
            group["lr"] = lr
        images = area_downsample(render_zplus(G, z, dict(noise)),
                                 settings.distance_resolution)
        terms = {"distance": distance((images + 1) * (255 / 2), target255).sum(),
                 "layer_std": layer_std(z), "noise_reg": noise_penalty(list(noise.values()))}
        loss = terms["distance"] + settings.std_weight * terms["layer_std"] \
            + settings.noise_weight * terms["noise_reg"]
        if identity is not None and settings.id_weight:
            terms["identity"] = identity(images)
            loss = loss + settings.id_weight * terms["identity"]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        for n in noise.values():
            schedule.renormalize_noise_(n, unbiased=True)
        curve.append({"step": step, "lr": lr, "loss": float(loss.detach()),
                      **{k: float(v.detach()) for k, v in terms.items()}})
    return Fit(z.detach().clone(), {k: v.detach().clone() for k, v in noise.items()}, curve)

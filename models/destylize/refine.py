"""Refinement of the extrinsic style codes (DualStyleGAN's refine_exstyle.py, optional step 5).

For each exemplar, with the trained DualStyleGAN, its intrinsic code z+_i fixed and its
extrinsic code z+_e as the start: the structure layers 0..res_index and the colour layers
after them are optimised with Adam at constant learning rates 0.005 and 0.01 (noise maps 0.1,
renormalised each step) for 100 steps, on

    LPIPS(G(z+_i, map(z+_e)), exemplar) + contextual loss (VGG19 feature 2, h 0.2, cosine)
    + 1e5 x noise regularisation,

the image rendered with every interpolation weight 1, at 256 px (area) as upstream. The
feature network is handed in: `features(images in [-1, 1]) -> list of feature maps`
(relu1_1 ... relu5_1 of VGG19, as upstream's `model/vgg.py`).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch
from torch import nn

from models.destylize.zplus import Distance, noise_penalty, seeded_noise
from models.dualstylegan import DualStyleGAN
from models.dualstylegan_losses import CONTEXTUAL_BANDWIDTH, CONTEXTUAL_FEATURE, contextual_loss
from models.project import schedule
from models.project.projector import area_downsample

Features = Callable[[torch.Tensor], list[torch.Tensor]]
NOISE_PREFIX = "generator.synthesis."


@dataclass(frozen=True)
class RefineSettings:
    steps: int = 100
    colour_lr: float = 0.01
    structure_lr: float = 0.005
    noise_lr: float = 0.1
    contextual_weight: float = 1.0
    contextual_feature: int = CONTEXTUAL_FEATURE
    bandwidth: float = CONTEXTUAL_BANDWIDTH
    noise_weight: float = 1e5
    distance_resolution: int = 256

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Refined:
    code: torch.Tensor  # the refined z+_e [1, L, z_dim]
    curve: list[dict]
    first: torch.Tensor  # the image of the starting code (first step), [1, C, r, r]
    last: torch.Tensor


def render(net: DualStyleGAN, instyle: torch.Tensor, ex_z: torch.Tensor,
           noise: dict[str, torch.Tensor]) -> torch.Tensor:
    """net(z+_i, map(z+_e)) with all weights 1 and the given noise maps."""
    overrides = {NOISE_PREFIX + k: v for k, v in noise.items()}
    return torch.func.functional_call(
        net, overrides, (instyle, net.map_z(ex_z)),
        {"z_plus_latent": True, "interp_weights": [1.0] * net.num_ws, "noise_mode": "const"})


def refine_exstyle(net: DualStyleGAN, distance: Distance, features: Features,
                   target: torch.Tensor, exstyle: torch.Tensor, instyle: torch.Tensor,
                   settings: RefineSettings, *, seed: int, progress: bool = True) -> Refined:
    """Refine one exemplar's z+_e [1, L, z_dim]; target [1, C, r, r] in [-1, 1] at r =
    distance resolution; distance on [0, 255] images as the projector's."""
    from tqdm import tqdm

    split = net.res_index + 1
    structure = nn.Parameter(exstyle[:, :split].detach().clone())
    colour = nn.Parameter(exstyle[:, split:].detach().clone())
    noise = {k: nn.Parameter(v) for k, v in
             seeded_noise(net.generator, seed, exstyle.device).items()}
    optimizer = torch.optim.Adam([{"params": [colour], "lr": settings.colour_lr},
                                  {"params": [structure], "lr": settings.structure_lr},
                                  {"params": list(noise.values()), "lr": settings.noise_lr}])
    with torch.no_grad():
        real = features(target)[settings.contextual_feature]
    target255 = (target + 1) * (255 / 2)
    curve, first = [], None
    for step in tqdm(range(settings.steps), desc="refine exstyle", unit="step",
                     file=sys.stderr, disable=not progress, leave=False):
        code = torch.cat([structure, colour], dim=1)
        images = area_downsample(render(net, instyle, code, dict(noise)),
                                 settings.distance_resolution)
        if first is None:
            first = images.detach().clone()
        terms = {"distance": distance((images + 1) * (255 / 2), target255).sum(),
                 "contextual": contextual_loss(
                     features(images)[settings.contextual_feature], real, settings.bandwidth),
                 "noise_reg": noise_penalty(list(noise.values()))}
        loss = terms["distance"] + settings.contextual_weight * terms["contextual"] \
            + settings.noise_weight * terms["noise_reg"]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        for n in noise.values():
            schedule.renormalize_noise_(n, unbiased=True)
        curve.append({"step": step, "loss": float(loss.detach()),
                      **{k: float(v.detach()) for k, v in terms.items()}})
    return Refined(torch.cat([structure, colour], dim=1).detach().clone(), curve, first,
                   images.detach())

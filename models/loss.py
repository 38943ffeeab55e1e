"""GAN losses and regularisers as functions of the networks' outputs.

Every function returns per-sample terms (shape [N]); the trainer takes the mean, multiplies by
the lazy-regularisation interval and accumulates gradients. Nothing here draws from the global
random generator: callers pass the random tensors in, so training is reproducible and the
terms are identical whether a batch is split over ranks or not.

Definitions follow the papers:
- non-saturating logistic (Goodfellow et al. 2014) with R1 (Mescheder et al. 2018) for FFHQ,
  gamma / 2 * ||grad_x D(x)||^2 on reals;
- WGAN-GP (Gulrajani et al. 2017) as used by ProGAN: D(fake) - D(real)
  + lambda * (||grad D(x_hat)|| - 1)^2 + drift * D(real)^2 with lambda 10, drift 0.001;
- path length regularisation (StyleGAN2): (||J_w^T y||_2 - a)^2 with y ~ N(0, I) / sqrt(H W)
  and a the running mean of the lengths (decay 0.01).
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

WGAN_LAMBDA = 10.0
WGAN_TARGET = 1.0
WGAN_DRIFT = 0.001


def generator_logistic_ns(fake_logits: torch.Tensor) -> torch.Tensor:
    """-log sigmoid(D(G(z))): the non-saturating generator loss."""
    return F.softplus(-fake_logits).flatten()


def discriminator_logistic(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """-log sigmoid(D(x)) - log(1 - sigmoid(D(G(z))))."""
    return (F.softplus(fake_logits) + F.softplus(-real_logits)).flatten()


def r1_penalty(real_images: torch.Tensor, real_logits: torch.Tensor) -> torch.Tensor:
    """||grad_x D(x)||^2 per sample; `real_images` must require grad and produce the logits."""
    (grad,) = torch.autograd.grad(real_logits.sum(), real_images, create_graph=True)
    return grad.square().sum(dim=[1, 2, 3])


def generator_wgan(fake_logits: torch.Tensor) -> torch.Tensor:
    return (-fake_logits).flatten()


def discriminator_wgan(real_logits: torch.Tensor, fake_logits: torch.Tensor,
                       drift: float = WGAN_DRIFT) -> torch.Tensor:
    """D(fake) - D(real) + drift * D(real)^2 (the drift keeps logits near zero)."""
    real, fake = real_logits.flatten(), fake_logits.flatten()
    return fake - real + drift * real.square()


def gradient_penalty(discriminate: Callable[[torch.Tensor], torch.Tensor],
                     real_images: torch.Tensor, fake_images: torch.Tensor,
                     mix: torch.Tensor, target: float = WGAN_TARGET) -> torch.Tensor:
    """(||grad D(x_hat)|| - target)^2 / target^2 at x_hat = real + mix * (fake - real).

    `mix` has shape [N] with values in [0, 1] (uniform in WGAN-GP); the caller multiplies by
    lambda.
    """
    mix = mix.to(real_images.dtype).view(-1, 1, 1, 1)
    mixed = torch.lerp(real_images.detach(), fake_images.detach(), mix).requires_grad_(True)
    logits = discriminate(mixed)
    (grad,) = torch.autograd.grad(logits.sum(), mixed, create_graph=True)
    norms = grad.flatten(1).norm(dim=1)
    return (norms - target).square() / target**2


def path_lengths(images: torch.Tensor, ws: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """||J_w^T y|| per sample, with y = noise / sqrt(H W); J taken through `images` from `ws`.

    Lengths are averaged over the num_ws copies of w (sum over w_dim, mean over layers) as the
    reference implementation does.
    """
    height, width = images.shape[2], images.shape[3]
    scaled = noise / (height * width) ** 0.5
    (grad,) = torch.autograd.grad((images * scaled).sum(), ws, create_graph=True)
    return grad.square().sum(dim=2).mean(dim=1).sqrt()


def path_length_penalty(lengths: torch.Tensor, pl_mean: torch.Tensor, decay: float,
                        batch_mean: torch.Tensor | None = None
                        ) -> tuple[torch.Tensor, torch.Tensor]:
    """Returns ((length - a)^2 per sample, updated a) with a <- lerp(a, mean length, decay).

    `batch_mean` lets distributed callers pass the mean over every rank's lengths so `a` stays
    identical everywhere; by default it is the local mean.
    """
    mean = lengths.detach().mean() if batch_mean is None else batch_mean
    new_mean = pl_mean.lerp(mean.to(pl_mean.dtype), decay)
    return (lengths - new_mean).square(), new_mean.detach()

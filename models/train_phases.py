"""One optimiser step of GAN training, split into phases as in the StyleGAN2 reference.

Phases: G main (adversarial loss), G reg (path length, every `pl_interval` steps), D main
(adversarial loss), D reg (R1 or the WGAN-GP gradient penalty, every `r1_interval` steps).
With an interval of 1 the regulariser runs every step inside the main phase ("G both",
"D both"). Regularisers are multiplied by their interval (lazy regularisation) and the Adam
hyperparameters of lazy phases are corrected (see `schedule.lazy_adam`).

w_avg (the truncation centre) is updated by every mapping of the first latent in G main,
G reg and D main, as in the reference trainers (not by the style-mixing second latent).

All random numbers of a phase (latents, the style-mixing crossover, path-length noise, the
WGAN-GP mixing factors) come from `StepRandom`, seeded by (seed, step, phase) and drawn for
the global batch then sliced by accumulation round and rank. Only the generator's per-layer
noise images use the global torch generator (their state is saved in snapshots).
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from torch import nn

from models import loss as losses
from models.distributed import DistEnv, mean_over_ranks

PHASE_CODES = {"Gmain": 1, "Greg": 2, "Dmain": 3, "Dreg": 4}
# Independent streams for the augmentation of each kind of image D sees in a phase.
AUG_STREAMS = {"fake": 1, "real": 2}


class StepRandom:
    """Reproducible random tensors for one (step, phase), identical on every rank.

    Per-sample tensors are drawn for the whole global batch of the step (rounds x ranks x
    per-rank samples) and sliced at (round, rank), so the samples do not depend on how the
    batch is split into ranks and accumulation rounds. Scalars (the mixing crossover) are one
    per step and phase.
    """

    def __init__(self, seed: int, step: int, phase: str, env: DistEnv, round_idx: int = 0,
                 rounds: int = 1, stream: int = 0):
        self.seed, self.step, self.phase = seed, step, phase
        entropy = [int(seed), int(step), PHASE_CODES[phase]] + ([int(stream)] if stream else [])
        words = np.random.SeedSequence(entropy).generate_state(2, dtype=np.uint32)
        # On the training device, so large draws (path-length noise at 1024px) stay cheap;
        # CPU and CUDA generators give different (each reproducible) numbers.
        self.device = env.device
        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed(int(words[0]) << 31 ^ int(words[1]))
        self.env, self.round_idx, self.rounds = env, round_idx, rounds

    def child(self, stream: str) -> "StepRandom":
        """An independent generator of the same (step, phase, round, rank) slicing."""
        return StepRandom(self.seed, self.step, self.phase, self.env, self.round_idx,
                          self.rounds, AUG_STREAMS[stream])

    def _slice(self, full: torch.Tensor, per_rank: int) -> torch.Tensor:
        start = (self.round_idx * self.env.world_size + self.env.rank) * per_rank
        return full[start:start + per_rank]

    def normal(self, per_rank: int, *shape: int) -> torch.Tensor:
        """This (round, rank)'s rows of a global N(0, 1) draw."""
        total = per_rank * self.env.world_size * self.rounds
        full = torch.randn((total, *shape), generator=self.generator, device=self.device)
        return self._slice(full, per_rank)

    def uniform(self, per_rank: int, *shape: int) -> torch.Tensor:
        total = per_rank * self.env.world_size * self.rounds
        full = torch.rand((total, *shape), generator=self.generator, device=self.device)
        return self._slice(full, per_rank)

    def scalar(self) -> float:
        return float(torch.rand((), generator=self.generator, device=self.device))

    def indices(self, per_rank: int, high: int) -> torch.Tensor:
        """This (round, rank)'s rows of a global uniform draw of indices in [0, high)."""
        total = per_rank * self.env.world_size * self.rounds
        full = torch.randint(0, high, (total,), generator=self.generator, device=self.device)
        return self._slice(full, per_rank)

    def integer(self, low: int, high: int) -> int:
        """Uniform in [low, high)."""
        return int(torch.randint(low, high, (), generator=self.generator, device=self.device))


@dataclass
class LossSettings:
    loss: str  # "logistic-ns-r1" | "wgan-gp"
    r1_gamma: float
    gp_lambda: float
    drift_epsilon: float
    pl_weight: float
    pl_decay: float
    pl_batch_shrink: int
    mixing_prob: float
    label_table: torch.Tensor | None = None  # conditional training: labels fakes are drawn from


@dataclass
class Augmentation:
    """What stands between an image and D: the augmentation pipe (None: none) and a callback
    receiving D's logits for reals (the ADA overfitting heuristic)."""

    pipe: Callable[[torch.Tensor, StepRandom], torch.Tensor] | None = None
    observe_real: Callable[[torch.Tensor], None] | None = None

    def judge(self, D, images: torch.Tensor, c, rand: StepRandom, stream: str,
              precision: str = "fp32") -> torch.Tensor:
        """D's logits (float32) for the augmented images; augmentation runs in float32."""
        if self.pipe is not None:
            images = self.pipe(images, rand.child(stream))
        with autocast_context(rand.env.device, precision):
            return D(images, c).float()

    def seen_real(self, logits: torch.Tensor) -> None:
        if self.observe_real is not None:
            self.observe_real(logits)


NO_AUGMENTATION = Augmentation()


def autocast_context(device: torch.device, precision: str):
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


def mixing_layers(G: nn.Module) -> int:
    """Number of ws entries the current level uses (fewer while growing progressively)."""
    lod = float(getattr(G, "lod", 0.0))
    return max(G.num_ws - 2 * int(math.floor(lod)), 1)


def generate(G: nn.Module, rand: StepRandom, per_rank: int, settings: LossSettings,
             update_w_avg: bool, precision: str = "fp32"):
    """(images, ws, labels) with style mixing at the config's probability; for conditional
    training the labels are drawn from the training set's labels (else None).

    The mapping network always runs in float32 (w_avg is a float32 running mean); only the
    synthesis network runs under autocast when `precision` asks for it.
    """
    z = rand.normal(per_rank, G.z_dim)
    c = None
    if settings.label_table is not None:
        c = settings.label_table[rand.indices(per_rank, len(settings.label_table))]
    ws = G.mapping(z, c, update_w_avg=update_w_avg)
    mixing_prob = settings.mixing_prob
    if mixing_prob > 0:
        layers = mixing_layers(G)
        mix = rand.scalar() < mixing_prob and layers > 1
        cutoff = rand.integer(1, layers) if layers > 1 else layers
        z2 = rand.normal(per_rank, G.z_dim)
        if mix:
            ws2 = G.mapping(z2, c, update_w_avg=False)
            ws = torch.cat([ws[:, :cutoff], ws2[:, cutoff:]], dim=1)
    with autocast_context(rand.env.device, precision):
        images = G.synthesis(ws, noise_mode="random")
    return images.float(), ws, c


def generator_main(G, D, settings: LossSettings, rand: StepRandom, per_rank: int,
                   precision: str, aug: Augmentation = NO_AUGMENTATION
                   ) -> tuple[torch.Tensor, dict]:
    fakes, _, c = generate(G, rand, per_rank, settings, True, precision)
    logits = aug.judge(D, fakes, c, rand, "fake", precision)
    if settings.loss == "wgan-gp":
        terms = losses.generator_wgan(logits)
    else:
        terms = losses.generator_logistic_ns(logits)
    return terms, {"Loss/G/loss": terms.detach().mean(), "Loss/scores/fake": logits.detach().mean()}


def generator_path_length(G, settings: LossSettings, rand: StepRandom, per_rank: int,
                          pl_mean: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, dict]:
    """Path-length terms (already times pl_weight) and the updated running mean."""
    shrunk = max(per_rank // settings.pl_batch_shrink, 1)
    images, ws, _ = generate(G, rand, shrunk, settings, update_w_avg=True)
    noise = rand.normal(shrunk, *images.shape[1:])
    lengths = losses.path_lengths(images, ws, noise)
    batch_mean = mean_over_ranks(lengths.mean(), rand.env)
    penalty, new_mean = losses.path_length_penalty(lengths, pl_mean, settings.pl_decay,
                                                   batch_mean)
    # Touch the image so every synthesis parameter takes part in the graph.
    terms = penalty * settings.pl_weight + images[:, 0, 0, 0] * 0
    return terms, new_mean, {"Loss/pl_penalty": penalty.detach().mean(),
                             "Loss/pl_mean": new_mean.detach()}


def discriminator_main(G, D, settings: LossSettings, rand: StepRandom, reals: torch.Tensor,
                       real_c: torch.Tensor | None, precision: str,
                       aug: Augmentation = NO_AUGMENTATION) -> tuple[torch.Tensor, dict]:
    per_rank = reals.shape[0]
    with torch.no_grad():
        fakes, _, fake_c = generate(G, rand, per_rank, settings, True, precision)
    fake_logits = aug.judge(D, fakes, fake_c, rand, "fake", precision)
    real_logits = aug.judge(D, reals, real_c, rand, "real", precision)
    aug.seen_real(real_logits)
    if settings.loss == "wgan-gp":
        terms = losses.discriminator_wgan(real_logits, fake_logits, settings.drift_epsilon)
    else:
        terms = losses.discriminator_logistic(real_logits, fake_logits)
    return terms, {"Loss/D/loss": terms.detach().mean(),
                   "Loss/scores/real": real_logits.detach().mean(),
                   "Loss/signs/real": real_logits.detach().sign().mean(),
                   "Loss/signs/fake": fake_logits.detach().sign().mean()}


def discriminator_reg(G, D, settings: LossSettings, rand: StepRandom, reals: torch.Tensor,
                      real_c: torch.Tensor | None, aug: Augmentation = NO_AUGMENTATION
                      ) -> tuple[torch.Tensor, dict]:
    """R1 * gamma / 2 for the logistic loss; lambda * gradient penalty for WGAN-GP (the
    interpolated images are judged with the reals' labels). Gradients are taken with respect
    to the images before augmentation, through the pipe."""
    per_rank = reals.shape[0]
    if settings.loss == "wgan-gp":
        with torch.no_grad():
            fakes, _, _ = generate(G, rand, per_rank, settings, update_w_avg=False)
        mix = rand.uniform(per_rank)
        penalty = losses.gradient_penalty(
            lambda x: aug.judge(D, x, real_c, rand, "real"), reals, fakes, mix)
        return penalty * settings.gp_lambda, {"Loss/D/gp": penalty.detach().mean()}
    reals = reals.detach().requires_grad_(True)
    logits = aug.judge(D, reals, real_c, rand, "real")
    aug.seen_real(logits)
    penalty = losses.r1_penalty(reals, logits)
    terms = penalty * (settings.r1_gamma / 2) + logits.flatten() * 0
    return terms, {"Loss/r1_penalty": penalty.detach().mean()}

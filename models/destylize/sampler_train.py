"""Training the two extrinsic style code samplers (DualStyleGAN's train_sampler.py, GLANN's
ICP): a network T (`CodeSampler`: 128 -> 128 -> 128 -> layers x dim) maps N(0, I) noise onto
the exemplars' codes, the structure sampler on layers 0..res_index, the colour sampler on the
rest (7 x 512 and 11 x 512 at 1024 px).

The codes are augmented to about 1000 rows (each repeated 1000 // N times, at least once,
plus N(0, 0.05) jitter). Each epoch draws 2 x (rows // 128) batches of noise, maps them with T
(train mode), pairs every code with the noise whose T-image is its nearest neighbour (L2),
and fits T to those pairs in batches of 128 (MSE; a fresh Adam per epoch, betas (0.5, 0.999),
weight decay 1e-5, lr 1e-3 x 0.5^(epoch // 50)), for 500000 // rows epochs.
"""

from __future__ import annotations

import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from ffhq_tools.atomic import atomic_path
from models.destylize.pipeline import DestylizeError
from models.dualstylegan_codes import SAMPLER_FORMAT, CodeSampler, CodeSet

AUGMENTED_ROWS = 1000
JITTER = 0.05
TOTAL_SAMPLES = 500_000


@dataclass(frozen=True)
class SamplerSettings:
    batch_size: int = 128
    learning_rate: float = 1e-3
    decay_epochs: int = 50
    decay_rate: float = 0.5
    betas: tuple[float, float] = (0.5, 0.999)
    weight_decay: float = 1e-5
    noise_dim: int = 128
    epochs: int | None = None  # None: 500000 // rows, as upstream

    def to_dict(self) -> dict:
        return {**asdict(self), "betas": list(self.betas)}


def epoch_lr(epoch: int, settings: SamplerSettings) -> float:
    return settings.learning_rate * settings.decay_rate ** (epoch // settings.decay_epochs)


def augmented(codes: np.ndarray, gen: torch.Generator) -> torch.Tensor:
    """[N, L, D] codes -> [~1000, L * D] jittered copies."""
    flat = torch.from_numpy(codes.reshape(len(codes), -1)).double()
    repeated = flat.repeat(max(1, AUGMENTED_ROWS // len(flat)), 1)
    return repeated + JITTER * torch.randn(repeated.shape, generator=gen, dtype=torch.float64)


def nearest(points: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
    """Index of each point's nearest candidate (squared L2)."""
    return torch.cdist(points, candidates).argmin(dim=1)


def train_epoch(net: CodeSampler, data: torch.Tensor, epoch: int, settings: SamplerSettings,
                gen: torch.Generator) -> float:
    size = settings.batch_size
    batches = len(data) // size
    if batches < 1:
        raise DestylizeError(f"{len(data)} augmented codes: fewer than one batch of {size}")
    order = torch.randperm(len(data), generator=gen)
    net.train()
    optimizer = torch.optim.Adam(net.parameters(), lr=epoch_lr(epoch, settings),
                                 betas=settings.betas, weight_decay=settings.weight_decay)
    noise = torch.randn(2 * batches * size, net.noise_dim, generator=gen)
    with torch.no_grad():
        images = torch.cat([net(chunk) for chunk in noise.split(size)])
    partner = nearest(data.float(), images)
    total = 0.0
    for i in range(batches):
        idx = order[i * size:(i + 1) * size]
        loss = torch.nn.functional.mse_loss(net(noise[partner[idx]]), data[idx].float())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        total += float(loss.detach())
    return total / batches


def train_sampler(data: torch.Tensor, settings: SamplerSettings, seed: int,
                  progress: bool = True, desc: str = "sampler") -> tuple[CodeSampler, list]:
    from tqdm import tqdm

    torch.manual_seed(seed)
    net = CodeSampler(data.shape[1], settings.noise_dim)
    gen = torch.Generator().manual_seed(seed)
    epochs = settings.epochs or max(1, TOTAL_SAMPLES // len(data))
    errors = [train_epoch(net, data, e, settings, gen)
              for e in tqdm(range(epochs), desc=desc, unit="epoch", file=sys.stderr,
                            disable=not progress, leave=False)]
    return net.eval(), errors


def train_samplers(codes: CodeSet, structure_layers: int, settings: SamplerSettings, *,
                   seed: int = 0, progress: bool = True) -> tuple[dict[str, CodeSampler], dict]:
    """{"structure", "color"} samplers of a code set's layers [:structure_layers] and the rest,
    with each epoch's mean error."""
    layers = codes.codes.shape[1]
    if not 0 < structure_layers < layers:
        raise DestylizeError(f"{codes.source}: {layers} layers cannot be split at "
                             f"{structure_layers}")
    gen = torch.Generator().manual_seed(seed)
    data = augmented(codes.codes, gen).reshape(-1, layers, codes.codes.shape[2])
    parts = {"color": data[:, structure_layers:], "structure": data[:, :structure_layers]}
    samplers, errors = {}, {}
    for i, (part, values) in enumerate(parts.items()):
        samplers[part], errors[part] = train_sampler(values.reshape(len(values), -1), settings,
                                                     seed + 1 + i, progress, part)
    return samplers, errors


def save_samplers(path: str | Path, samplers: dict[str, CodeSampler], source: str) -> Path:
    """Our sampler file (what `load_samplers` reads), weights-only."""
    path = Path(path)
    payload = {"format": SAMPLER_FORMAT, "source": source,
               **{part: net.state_dict() for part, net in samplers.items()}}
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return path

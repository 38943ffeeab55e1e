"""Numbers to compare an imported checkpoint with its official code (`import-checkpoint --verify`).

Each seed's latent is drawn as stylegan2-ada's `generate.py` draws it,
`np.random.RandomState(seed).randn(1, z_dim)`, and rendered with constant noise, so the same
seeds give the same images in the official code (README: "Verifying an import" has the
snippets for stylegan2-ada-pytorch and rosinality). Statistics are of the raw [-1, 1] output and
of the uint8 image as the official scripts save it (`(x * 127.5 + 128).clamp(0, 255)`).
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from models.checkpoint import load_checkpoint
from models.generate import class_labels, to_uint8


@dataclass(frozen=True)
class SeedStats:
    network: str
    seed: int
    mean: float
    std: float
    min: float
    max: float
    uint8_mean: float
    uint8_md5: str
    d_logit: float | None

    def as_dict(self) -> dict:
        return asdict(self)


def seed_latent(seed: int, z_dim: int) -> torch.Tensor:
    return torch.from_numpy(np.random.RandomState(seed).randn(1, z_dim)).float()


def verify_checkpoint(path: str | Path, seeds=(0, 1, 2, 3), truncation_psi: float = 1.0,
                      class_index: int | None = None) -> list[SeedStats]:
    ckpt = load_checkpoint(path)
    rows = []
    generators = [("G_ema", ckpt.G_ema), ("G", ckpt.G)] if ckpt.G_ema is not None \
        else [("G", ckpt.G)]
    if ckpt.D is not None:
        ckpt.D.eval()
    with torch.no_grad():
        for name, G in generators:
            G.eval()
            c = class_labels(G, 1, (0 if class_index is None else class_index) if G.c_dim
                             else None)
            for seed in seeds:
                image = G(seed_latent(seed, G.z_dim), c, truncation_psi=truncation_psi,
                          noise_mode="const")
                pixels = to_uint8(image)
                logit = None if ckpt.D is None else float(ckpt.D(image, c).flatten()[0])
                rows.append(SeedStats(name, seed, float(image.mean()), float(image.std()),
                                      float(image.min()), float(image.max()),
                                      float(pixels.mean()),
                                      hashlib.md5(pixels.tobytes()).hexdigest(), logit))
    return rows


def format_table(rows: list[SeedStats]) -> str:
    lines = [f"{'net':<6} {'seed':>4} {'mean':>10} {'std':>10} {'min':>10} {'max':>10} "
             f"{'uint8 mean':>10} {'D logit':>10}  uint8 md5"]
    for r in rows:
        logit = "-" if r.d_logit is None else f"{r.d_logit:10.5f}"
        lines.append(f"{r.network:<6} {r.seed:>4} {r.mean:10.6f} {r.std:10.6f} {r.min:10.5f} "
                     f"{r.max:10.5f} {r.uint8_mean:10.4f} {logit:>10}  {r.uint8_md5}")
    return "\n".join(lines)

"""Shared pieces of the projection tests: a tiny StyleGAN2 whose images stay inside [-1, 1]
(so quantised targets are reachable), a fast perceptual-style distance and a checkpoint."""

from __future__ import annotations

import numpy as np
import torch

RESOLUTION = 16


def tiny_config(latent_dim: int | None = None):
    """The `tiny` config, with z_dim = w_dim = latent_dim when given (512: pSp's codes)."""
    from models.configs import get_config

    config = get_config("tiny")
    return config if latent_dim is None else config.replace(z_dim=latent_dim, w_dim=latent_dim)


def tiny_generator(seed: int = 0, noise_strength: float = 0.1, resolution: int = RESOLUTION,
                   latent_dim: int | None = None):
    """The `tiny` config with its toRGB weights scaled by 0.3: image std ~0.33, under 2% of
    pixels beyond [-1, 1] (the default random init saturates a third of them)."""
    from models.configs import build_networks

    torch.manual_seed(seed)
    G, D = build_networks(tiny_config(latent_dim), resolution)
    with torch.no_grad():
        for name, p in G.named_parameters():
            if "noise_strength" in name:
                p.fill_(noise_strength)
            if "torgb.weight" in name:
                p.mul_(0.3)
    return G.eval().requires_grad_(False), D


class FeatureDistance(torch.nn.Module):
    """Squared feature differences of a fixed random two-layer conv net plus the mean squared
    pixel difference, per image: [0, 255] NCHW pairs -> [N] (a cheap stand-in for LPIPS)."""

    def __init__(self, seed: int = 1):
        super().__init__()
        torch.manual_seed(seed)
        self.net = torch.nn.Sequential(torch.nn.Conv2d(3, 16, 3, padding=1), torch.nn.ReLU(),
                                       torch.nn.Conv2d(16, 16, 3, padding=1)).requires_grad_(False)

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        a, b = a / 127.5 - 1, b / 127.5 - 1
        net = self.net.to(a.dtype)
        return (net(a) - net(b)).square().mean(dim=(1, 2, 3)) + (a - b).square().mean(
            dim=(1, 2, 3))


def render_uint8(G, ws: torch.Tensor) -> np.ndarray:
    from models.generate import to_uint8

    with torch.no_grad():
        return to_uint8(G.synthesis(ws, noise_mode="const"))


def save_tiny_checkpoint(path, G, D, resolution: int = RESOLUTION, config: str = "tiny",
                         latent_dim: int | None = None):
    from models.checkpoint import save_checkpoint
    from models.configs import get_config

    model = tiny_config(latent_dim) if config == "tiny" else get_config(config)
    save_checkpoint(path, config={"model": model.to_dict(), "resolution": resolution},
                    G=G, D=D)
    return path

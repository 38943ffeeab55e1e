"""The generator contract: what metrics, projection and figures may rely on, for every network
family (ProGAN, StyleGAN, StyleGAN2, imported checkpoints) and every adapter that stands in
for a generator (`eval.mixed_latents.MixedLatentGenerator`, ...).

`ImageGenerator` is enough for FID / KID / IS / precision-recall; `StyleGenerator` adds the
W space that PPL-W, separability and projection need. `check_generator` runs one sample
through a module and reports every way it breaks the contract.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch

NOISE_MODES = ("random", "const", "none")


@runtime_checkable
class ImageGenerator(Protocol):
    """G(z [N, z_dim], c [N, c_dim] | None, truncation_psi, truncation_cutoff, noise_mode)
    -> images [N, img_channels, img_resolution, img_resolution], nominally in [-1, 1]."""

    z_dim: int
    c_dim: int
    img_resolution: int
    img_channels: int

    def __call__(self, z: torch.Tensor, c: torch.Tensor | None = None,
                 truncation_psi: float = 1.0, truncation_cutoff: int | None = None,
                 noise_mode: str = "random") -> torch.Tensor: ...


@runtime_checkable
class StyleGenerator(ImageGenerator, Protocol):
    """An ImageGenerator with a W space: mapping(z, c, psi, cutoff) -> ws [N, num_ws, w_dim];
    synthesis(ws, noise_mode=...) -> images; G(z, ...) == synthesis(mapping(z, ...))."""

    w_dim: int
    num_ws: int
    has_mapping: bool
    mapping: torch.nn.Module
    synthesis: torch.nn.Module


def has_w_space(G) -> bool:
    return isinstance(G, StyleGenerator) and bool(getattr(G, "has_mapping", False))


def check_generator(G, batch: int = 2) -> list[str]:
    """Contract violations of G (empty when it conforms), from one seeded forward pass."""
    if not isinstance(G, ImageGenerator):
        return [f"{type(G).__name__} lacks z_dim / c_dim / img_resolution / img_channels"]
    problems = []
    gen = torch.Generator().manual_seed(0)
    z = torch.randn(batch, G.z_dim, generator=gen)
    c = torch.eye(G.c_dim)[torch.arange(batch) % G.c_dim] if G.c_dim else None
    shape = (batch, G.img_channels, G.img_resolution, G.img_resolution)
    with torch.no_grad():
        for mode in NOISE_MODES:
            images = G(z, c, truncation_psi=1.0, truncation_cutoff=None, noise_mode=mode)
            if tuple(images.shape) != shape:
                problems.append(f"noise_mode={mode}: images {tuple(images.shape)}, "
                                f"expected {shape}")
        const = [G(z, c, noise_mode="const") for _ in range(2)]
        if not torch.equal(*const):
            problems.append("noise_mode='const' is not deterministic")
        if has_w_space(G):
            ws = G.mapping(z, c, 1.0, None)
            if tuple(ws.shape) != (batch, G.num_ws, G.w_dim):
                problems.append(f"mapping gives {tuple(ws.shape)}, expected "
                                f"{(batch, G.num_ws, G.w_dim)}")
            elif not torch.allclose(G.synthesis(ws, noise_mode="const"), const[0], atol=1e-5):
                problems.append("G(z) differs from synthesis(mapping(z))")
    return problems

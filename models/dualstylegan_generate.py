"""Random DualStyleGAN portraits, as the official `generate.py` makes them, and style
interpolation between two exemplars.

Intrinsic codes: one z per seed (`np.random.RandomState(seed).randn(z_dim)`, as `generate`
draws them), mapped and truncated towards 0 (`truncation_latent=0` upstream; 0.5 by default
there). Extrinsic codes: exemplars of the exstyle file by id, or drawn by the ICP samplers
(`sampler.pt`): per style seed, one 128-d noise for the structure sampler (the first
res_index + 1 layers) and one for the colour sampler (the rest), concatenated to a z+ code. Every
extrinsic code goes to W+ by its space (z+ through the base mapping, w+ as is).

Grids: rows are intrinsic seeds, columns exemplars; a header row shows each exemplar as the
model renders it, a header column each content without the extrinsic path. Interpolation
lerps the two exemplars' W+ codes, (1 - t) a + t b, so the first and last frames are exactly
the two exemplars' renders.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import torch

from ffhq_tools.errors import FfhqToolsError
from models.dualstylegan import DualStyleGAN
from models.dualstylegan_codes import Code, CodeSampler, CodeSpace
from models.generate import make_grid, seed_latents, to_uint8
from models.stylize import as_tensor, render_exemplar, to_w_plus

DEFAULT_TRUNCATION = 0.5  # the official generate.py


def sampled_exemplars(net: DualStyleGAN, samplers: dict[str, CodeSampler],
                      seeds: Sequence[int], where: str = "--sampler") -> list[Code]:
    """z+ codes [1, num_ws, z_dim] from the structure and colour samplers, one per seed."""
    z_dim, structure = net.generator.z_dim, net.res_index + 1
    layers = {"structure": structure, "color": net.num_ws - structure}
    for part, count in layers.items():
        out_dim = samplers[part].lin_out.out_features
        if out_dim != count * z_dim:
            raise FfhqToolsError(f"{where}: the {part} sampler makes {out_dim} values, but "
                                 f"this model needs {count} layers x {z_dim}")
    codes = []
    for seed in seeds:
        noise = np.random.RandomState(seed).randn(2, samplers["structure"].noise_dim)
        noise = torch.from_numpy(noise).float()
        with torch.no_grad():
            parts = [samplers[part](noise[i:i + 1]).reshape(1, count, z_dim)
                     for i, (part, count) in enumerate(layers.items())]
        codes.append(Code(f"sampled-{seed}", torch.cat(parts, dim=1).numpy(),
                          CodeSpace.Z_PLUS))
    return codes


def intrinsic_ws(net: DualStyleGAN, seeds: Sequence[int], truncation: float) -> torch.Tensor:
    """w+ [N, num_ws, w_dim] of the seeds' z, truncated towards 0."""
    z = seed_latents(list(seeds), net.generator.z_dim).to(next(net.parameters()).device)
    with torch.no_grad():
        return net.intrinsic_ws(z, truncation=truncation, truncation_latent=0.0)


def exemplar_w(net: DualStyleGAN, code: Code) -> torch.Tensor:
    with torch.no_grad():
        return to_w_plus(net, as_tensor(code.values, net), code.space)


def render(net: DualStyleGAN, ws: torch.Tensor, ex_w: torch.Tensor, weights: Sequence[float],
           noise_mode: str) -> torch.Tensor:
    with torch.no_grad():
        return net.synthesize(ws, ex_w, interp_weights=weights, noise_mode=noise_mode)


def _rendered(net: DualStyleGAN, ws: torch.Tensor, ex_w: torch.Tensor,
              weights: Sequence[float], noise_mode: str, batch: int) -> np.ndarray:
    return np.concatenate([to_uint8(render(net, ws[i:i + batch], ex_w, weights, noise_mode))
                           for i in range(0, len(ws), batch)])


def random_grid(net: DualStyleGAN, seeds: Sequence[int], exemplars: list[Code],
                weights: Sequence[float], truncation: float = DEFAULT_TRUNCATION,
                noise_mode: str = "const", batch: int = 8) -> np.ndarray:
    """HWC uint8 grid of (1 + seeds) x (1 + exemplars) images: a header row of the exemplars
    as the model renders them, a header column of the contents without the extrinsic path
    (all weights 0), then content x exemplar."""
    if not exemplars:
        raise FfhqToolsError("no exemplars to render (--style-ids or --style-seeds)")
    ws = intrinsic_ws(net, seeds, truncation)
    exemplar_ws = [exemplar_w(net, code) for code in exemplars]
    blank = np.zeros((net.img_resolution, net.img_resolution, net.img_channels), np.uint8)
    header = [blank] + [to_uint8(render_exemplar(net, code, noise_mode))[0]
                        for code in exemplars]
    columns = [_rendered(net, ws, exemplar_ws[0], [0.0] * net.num_ws, noise_mode, batch)]
    columns += [_rendered(net, ws, ex, weights, noise_mode, batch) for ex in exemplar_ws]
    cells = header + [column[i] for i in range(len(seeds)) for column in columns]
    return make_grid(cells, len(exemplars) + 1)


def style_interpolation(net: DualStyleGAN, seeds: Sequence[int], start: Code, end: Code,
                        frames: int, weights: Sequence[float],
                        truncation: float = DEFAULT_TRUNCATION,
                        noise_mode: str = "const") -> Iterator[np.ndarray]:
    """`frames` HWC uint8 frames, each a row of the seeds' portraits in the style
    (1 - t) start + t end (W+), t from 0 to 1."""
    if frames < 2:
        raise FfhqToolsError(f"--frames {frames}: must be at least 2")
    ws = intrinsic_ws(net, seeds, truncation)
    a, b = exemplar_w(net, start), exemplar_w(net, end)
    for t in np.linspace(0.0, 1.0, frames):
        ex_w = (1 - float(t)) * a + float(t) * b
        yield make_grid(to_uint8(render(net, ws, ex_w, weights, noise_mode)), len(seeds))

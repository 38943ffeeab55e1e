"""FID with images mixed from several latents: `fid50k_latents1` .. `fid50k_latents4`.

StyleGAN Table 2 measures FID "by randomizing 1..4 latents and the crossover points between
them" at test time. Protocol (otherwise `fid50k`: 50,000 generated vs the first 50,000 reals,
psi = 1, random noise): each image draws n latents z_0 .. z_{n-1}, maps each through the
mapping network, and draws n - 1 distinct crossover layers uniformly without replacement from
1 .. num_ws - 1, sorted; w_i drives the layers from crossover i - 1 (layer 0 for i = 0) up to
crossover i (the last layer for i = n - 1). With n = 1 the images are exactly `fid50k`'s.

`MixedLatentGenerator` wraps a generator behind the same contract the metric samplers use
(z_dim, c_dim, img_resolution, `G(z, c, truncation_psi=, noise_mode=)`). z_0 is the z the
sampler gives; the extra latents and the crossovers of an image come from a torch.Generator
seeded by the SHA-256 of that image's z_0 (float32 bytes), so they depend on nothing else:
not on the batch, the batch size, resumption or the number of ranks.
"""

from __future__ import annotations

import dataclasses
import hashlib

import numpy as np
import torch
from torch import nn

from eval import defaults
from eval.fid import generator_fid
from eval.registry import MetricContext, register_metric
from ffhq_tools.errors import FfhqToolsError
from models.generate import crossover_ws

MAX_LATENTS = 4
SEED_TAG = b"ffhq-tools/mixed-latents/v1"
CROSSOVER_RULE = ("n-1 distinct layers drawn uniformly without replacement from 1..num_ws-1, "
                  "sorted; latent i drives layers [crossover i-1, crossover i)")
LATENT_SEEDING = ("per image: torch.Generator seeded by SHA-256 of its first z (float32 "
                  "bytes); draws the n-1 extra z, then a permutation for the crossovers")


def image_seed(z_row: np.ndarray) -> int:
    """The seed of one image's extra latents and crossovers: SHA-256 of its z (float32)."""
    digest = hashlib.sha256(SEED_TAG + np.ascontiguousarray(z_row, dtype="<f4").tobytes())
    return int.from_bytes(digest.digest()[:8], "little") & (2**63 - 1)


def draw_mixing(z: torch.Tensor, num_latents: int, num_ws: int):
    """(extra z [N, n-1, z_dim], crossovers [N, n-1] int64), both on z's device."""
    rows = z.detach().to("cpu", torch.float32).numpy()
    count = num_latents - 1
    extra = torch.empty(len(rows), count, z.shape[1])
    crossovers = torch.empty(len(rows), count, dtype=torch.int64)
    for i, row in enumerate(rows):
        rng = torch.Generator().manual_seed(image_seed(row))
        extra[i] = torch.randn(count, z.shape[1], generator=rng)
        crossovers[i] = (torch.randperm(num_ws - 1, generator=rng)[:count] + 1).sort().values
    return extra.to(device=z.device, dtype=z.dtype), crossovers.to(z.device)


def check_mixable(G, num_latents: int) -> None:
    if not 1 <= num_latents <= MAX_LATENTS:
        raise FfhqToolsError(f"num_latents must be 1..{MAX_LATENTS} (got {num_latents})")
    if not (hasattr(G, "mapping") and hasattr(G, "synthesis") and hasattr(G, "num_ws")):
        raise FfhqToolsError(f"{type(G).__name__}: mixing latents needs a style-based generator "
                             "with a mapping and a synthesis network")
    if not getattr(G, "use_styles", True):
        raise FfhqToolsError("mixing latents needs a style-based generator; this one has a "
                             "traditional input (ProGAN / traditional configs)")
    if num_latents > G.num_ws:
        raise FfhqToolsError(f"{num_latents} latents need {num_latents - 1} distinct crossover "
                             f"layers, but the generator has only {G.num_ws} layers of styles")


class MixedLatentGenerator(nn.Module):
    """A generator whose every image mixes `num_latents` latents at random crossover layers."""

    def __init__(self, G: nn.Module, num_latents: int):
        super().__init__()
        check_mixable(G, num_latents)
        self.generator = G
        self.num_latents = num_latents
        self.z_dim, self.c_dim, self.w_dim = G.z_dim, G.c_dim, G.w_dim
        self.num_ws, self.img_resolution = G.num_ws, G.img_resolution
        self.img_channels = G.img_channels

    def mixed_ws(self, z: torch.Tensor, c=None, truncation_psi: float = 1.0,
                 truncation_cutoff: int | None = None):
        """(per-layer ws [N, num_ws, w_dim], crossovers [N, n-1]) for the images of z."""
        G = self.generator
        ws = G.mapping(z, c, truncation_psi, truncation_cutoff)
        if self.num_latents == 1:
            return ws, torch.empty(len(z), 0, dtype=torch.int64, device=z.device)
        extra, crossovers = draw_mixing(z, self.num_latents, self.num_ws)
        count = self.num_latents - 1
        extra_c = None if c is None else c.repeat_interleave(count, dim=0)
        extra_ws = G.mapping(extra.reshape(-1, self.z_dim), extra_c, truncation_psi,
                             truncation_cutoff)
        stacked = torch.cat([ws[:, None], extra_ws.reshape(len(z), count, *ws.shape[1:])], dim=1)
        return crossover_ws(stacked, crossovers), crossovers

    def forward(self, z, c=None, truncation_psi=1.0, truncation_cutoff=None,
                noise_mode="random"):
        ws, _ = self.mixed_ws(z, c, truncation_psi, truncation_cutoff)
        return self.generator.synthesis(ws, noise_mode=noise_mode)


def mixed_generator_info(info: dict, num_latents: int) -> dict:
    """The wrapped generator's identity: its own hash, so partial (resume) statistics of
    different latent counts, or of plain fid50k, never mix."""
    info = dict(info or {})
    if info.get("sha256"):
        tag = f"{info['sha256']}+{SEED_TAG.decode()}+n={num_latents}"
        info["sha256"] = hashlib.sha256(tag.encode()).hexdigest()
    return info


def mixed_latents_fid(ctx: MetricContext, num_latents: int) -> dict:
    """{"fid"} of ctx.generator with `num_latents` mixed latents per image (fid50k counts)."""
    wrapped = MixedLatentGenerator(ctx.generator, num_latents)
    ctx.use("num_ws", wrapped.num_ws)
    lod = float(getattr(ctx.generator, "lod", 0.0))
    if lod > 0:
        ctx.notes["growing"] = (f"generator still growing (lod {lod}): crossovers are drawn over "
                                "all num_ws layers, including ones not used yet")
    inner = dataclasses.replace(ctx, generator=wrapped,
                                generator_info=mixed_generator_info(ctx.generator_info,
                                                                    num_latents))
    return generator_fid(inner, defaults.FID50K_NUM_REAL)


def _register(num_latents: int) -> None:
    def metric(ctx: MetricContext) -> dict:
        return mixed_latents_fid(ctx, num_latents)

    register_metric(
        f"fid50k_latents{num_latents}",
        protocol={"num_gen": defaults.FID_NUM_GEN, "num_real": defaults.FID50K_NUM_REAL,
                  "xflip": False, "truncation_psi": 1.0, "noise_mode": "random",
                  "num_latents": num_latents, "crossover": CROSSOVER_RULE,
                  "latent_seeding": LATENT_SEEDING},
        needs=("generator", "data"), weights=(defaults.INCEPTION_STATE_DICT,),
        description=f"FID as fid50k, every image mixed from {num_latents} latent(s) at "
                    f"{num_latents - 1} random distinct crossover layer(s) in 1..num_ws-1 "
                    "(StyleGAN Table 2)")(metric)


for _n in range(1, MAX_LATENTS + 1):
    _register(_n)

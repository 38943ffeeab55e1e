"""`train --compile`: torch.compile for the main G and D passes of training.

G's synthesis network and D are compiled in place (`nn.Module.compile`), so parameter names,
snapshots and G_ema are unchanged. The mapping network stays eager: it is small and updates
w_avg in place. Compiled random ops draw from torch's own generator as eager code does
(inductor's `fallback_random`), so the noise images, the saved RNG states and an exact resume
mean the same with and without `--compile`.

The regularisation passes (R1, path length) differentiate a gradient (double backward), which
compiled graphs do not support; they run the same modules eagerly (`eager_passes`).
Progressive growing changes the graph with every level and fade value, so it is refused.
Generated kernels are cached in our cache folder (`inductor/`), not in /tmp, unless
TORCHINDUCTOR_CACHE_DIR says otherwise.
"""

from __future__ import annotations

import contextlib
import os

import torch
from torch import nn

from ffhq_tools.errors import FfhqToolsError

BACKEND = "inductor"


def check_compilable(progressive: bool) -> None:
    if progressive:
        raise FfhqToolsError("--compile: progressive growing changes the networks' graph at "
                             "every level and fade step; use it with the StyleGAN2 configs")


def compile_networks(G: nn.Module, D: nn.Module, progressive: bool) -> None:
    check_compilable(progressive)
    synthesis = getattr(G, "synthesis", None)
    if not isinstance(synthesis, nn.Module):
        raise FfhqToolsError(f"--compile: {type(G).__name__} has no synthesis network module")
    from ffhq_tools.weights import cache_dir

    os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(cache_dir() / "inductor"))
    import torch._inductor.config as inductor_config

    inductor_config.fallback_random = True
    synthesis.compile(backend=BACKEND)
    D.compile(backend=BACKEND)


def eager_passes(enabled: bool):
    """Run compiled modules eagerly inside (the double-backward regularisers)."""
    if not enabled:
        return contextlib.nullcontext()
    return torch.compiler.set_stance("force_eager")

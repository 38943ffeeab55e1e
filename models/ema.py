"""Exponential moving average of the generator (ProGAN's Gs, StyleGAN's G_ema)."""

from __future__ import annotations

import torch
from torch import nn


@torch.no_grad()
def update_ema(ema: nn.Module, source: nn.Module, beta: float) -> None:
    """ema <- lerp(source, ema, beta) for parameters; buffers (w_avg, ...) copied as they are."""
    for p_ema, p in zip(ema.parameters(), source.parameters(), strict=True):
        p_ema.copy_(p.detach().lerp(p_ema, beta))
    for b_ema, b in zip(ema.buffers(), source.buffers(), strict=True):
        b_ema.copy_(b.detach())

"""3x3 convolution forward + backward at the trainer's 32 px / 128 ch shapes: oneDNN (what
torch uses on CPU, and what both our trainer and stylegan2-ada call) against torch's own
im2col + GEMM path (`torch.backends.mkldnn.flags(enabled=False)`), same tensors, one thread,
contiguous and channels_last. Prints CPU milliseconds per call and oneDNN's speed-up.
"""

from __future__ import annotations

import time

import torch
import torch.nn.functional as F

SHAPES = [(16, 128, 4), (16, 128, 8), (16, 128, 16), (16, 128, 32), (32, 128, 8),
          (32, 128, 16), (32, 128, 32)]
REPEATS = 20


def _cpu_ms(fn) -> float:
    fn()
    start = time.process_time()
    for _ in range(REPEATS):
        fn()
    return (time.process_time() - start) / REPEATS * 1e3


def _step(x: torch.Tensor, w: torch.Tensor, onednn: bool):
    def run():
        with torch.backends.mkldnn.flags(enabled=onednn):
            y = F.conv2d(x, w, padding=1)
            y.backward(torch.ones_like(y))
    return run


def main() -> None:
    torch.set_num_threads(1)
    torch.manual_seed(0)
    print("batch channels px layout | oneDNN ms | im2col ms | oneDNN speed-up", flush=True)
    for batch, channels, px in SHAPES:
        for layout in (torch.contiguous_format, torch.channels_last):
            x = torch.randn(batch, channels, px, px).contiguous(memory_format=layout)
            x.requires_grad_()
            w = torch.randn(channels, channels, 3, 3, requires_grad=True)
            onednn, im2col = _cpu_ms(_step(x, w, True)), _cpu_ms(_step(x, w, False))
            name = "channels_last" if layout is torch.channels_last else "contiguous"
            print(f"{batch} {channels} {px} {name} | {onednn:.2f} | {im2col:.2f} | "
                  f"{im2col / onednn:.2f}x", flush=True)

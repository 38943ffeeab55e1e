"""Network throughput on this machine: StyleGAN2 config-F-shaped G and D forward+backward
images/s at 64 and 256 px (full and half width), the grouped (fused) modulated conv against
the naive per-sample loop and the activation-scaling form, float32 against bfloat16 autocast.

`.venv/bin/python -m bench bench_models` (a few minutes on 2 shared CPU cores; set
BENCH_MODELS_ALL=1 to add the full-width 256 px network, several minutes more). "Half width"
is channel_base 16384 / channel_max 256 (StyleGAN2 configs A-E have channel_base 16384 with
channel_max 512; halving both halves every layer).
"""

from __future__ import annotations

import os
import time

import torch

from models.configs import build_networks, get_config
from models.layers import resample_conv2d, setup_filter
from models.stylegan2 import modulated_conv2d


def timed(fn, repeats: int) -> float:
    """CPU seconds per call (all threads of this process): on a shared machine wall time
    mostly measures the other tenants, CPU time measures the work."""
    fn()  # warm-up
    start = time.process_time()
    for _ in range(repeats):
        fn()
    return (time.process_time() - start) / repeats


def g_step(G, batch: int, autocast: bool):
    z = torch.randn(batch, G.z_dim)

    def step():
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            loss = G(z).float().square().mean()
        loss.backward()
    return step


def d_step(D, batch: int, autocast: bool):
    img = torch.randn(batch, D.img_channels, D.img_resolution, D.img_resolution)

    def step():
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            loss = torch.nn.functional.softplus(-D(img)).float().mean()
        loss.backward()
    return step


NETWORK_CASES = ((64, "full", 2), (64, "half", 2), (256, "half", 1))
FULL_256 = ((256, "full", 1),)  # BENCH_MODELS_ALL=1: several more minutes on 2 shared cores


def bench_networks() -> None:
    print("forward+backward images per CPU-second, stylegan2-F shapes (skip G, resnet D), "
          "trained mode")
    print(f"{'res':>4} {'width':>5} {'batch':>5} {'net':>3} {'float32':>9} "
          f"{'bf16 autocast':>14} {'ratio':>6}")
    cases = NETWORK_CASES + (FULL_256 if os.environ.get("BENCH_MODELS_ALL") else ())
    for res, width, batch in cases:
        torch.manual_seed(0)
        config = get_config("stylegan2-F").replace(
            channel_base=32768 if width == "full" else 16384,
            channel_max=512 if width == "full" else 256)
        G, D = build_networks(config, res)
        for net, make_step, module in (("G", g_step, G), ("D", d_step, D)):
            fp32 = batch / timed(make_step(module, batch, False), 1)
            bf16 = batch / timed(make_step(module, batch, True), 1)
            print(f"{res:>4} {width:>5} {batch:>5} {net:>3} {fp32:>9.3f} {bf16:>14.3f} "
                  f"{bf16 / fp32:>5.2f}x", flush=True)


def naive_modulated_conv(x, weight, styles, up, f):
    outs = []
    for i in range(x.shape[0]):
        w = weight * styles[i][None, :, None, None]
        w = w * (w.square().sum(dim=[1, 2, 3], keepdim=True) + 1e-8).rsqrt()
        outs.append(resample_conv2d(x[i: i + 1], w, f, up=up))
    return torch.cat(outs)


def modconv_step(kind, x, weight, styles, up, f):
    def step():
        if kind == "naive":
            y = naive_modulated_conv(x, weight, styles, up, f)
        else:
            y = modulated_conv2d(x, weight, styles, up=up, resample_filter=f,
                                 fused=kind == "grouped")
        y.square().mean().backward()
    return step


def bench_modulated_conv() -> None:
    print("modulated 3x3 conv forward+backward, batch 4, CPU ms")
    print(f"{'shape':>22} {'naive loop':>11} {'grouped':>8} {'act-scaled':>11} "
          f"{'grouped speed-up':>17}")
    f = setup_filter([1, 3, 3, 1])
    for n, c, res, up in ((4, 512, 8, 1), (4, 128, 32, 1), (4, 256, 16, 2)):
        torch.manual_seed(0)
        x = torch.randn(n, c, res, res, requires_grad=True)
        weight = torch.randn(c, c, 3, 3, requires_grad=True)
        styles = torch.randn(n, c, requires_grad=True)

        naive, grouped, scaled = (
            timed(modconv_step(kind, x, weight, styles, up, f), 2) * 1000
            for kind in ("naive", "grouped", "scaled"))
        shape = f"{n}x{c}x{res}^2 up{up}"
        print(f"{shape:>22} {naive:>11.1f} {grouped:>8.1f} {scaled:>11.1f} "
              f"{naive / grouped:>16.2f}x", flush=True)


def main() -> None:
    torch.set_num_threads(max(1, torch.get_num_threads()))
    bench_modulated_conv()
    bench_networks()


if __name__ == "__main__":
    main()

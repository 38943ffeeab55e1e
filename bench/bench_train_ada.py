"""Our G+D training step against stylegan2-ada-pytorch's networks at equal shapes on CPU.

The peer is a checkout of NVlabs/stylegan2-ada-pytorch outside the repository
(FFHQ_BENCH_ADA, default ./stylegan2-ada-pytorch), imported through sys.path in this process only.
Both sides are stylegan2-F-shaped (channel_base 32768, 8 mapping layers, skip G, resnet D,
mbstd 4, no conv clamp, float32) and are driven by the same step code: G main (softplus on
D(G(z))), D main (fake + real), and in the `reg` variant also an R1 step on the reals and a
path-length step, each with Adam. Our networks run the trainer's memory format
(channels_last when BENCH_TRAIN_ADA_CL=1, the default; ada's reference ops run contiguous).
The two sides take turns in one process (ROUNDS interleaved blocks, fastest block kept), so
a shared machine's load drifts cancel in the ratio; times are CPU seconds of the process
(one thread by default, so the other tenants' load does not count). Memory per image =
(peak RSS at batch 16 - at batch 8) / 8, each in its own child process. With
BENCH_TRAIN_ADA_COMPILE=1 a third side joins the turns: ours under `train --compile`
(models.train_compile: G's synthesis and D compiled, the regularisers eager), its compile
time spent in the warm-up. With BENCH_TRAIN_ADA_FUSED=1 another: ours with the modulation
fused into one grouped convolution of per-sample weights (the trainer's default, as ada's,
scales the activations around one shared convolution).

    .venv/bin/python -m bench bench_train_ada
"""

from __future__ import annotations

import os
import resource
import sys
import time
from pathlib import Path

from bench.memory import in_spawned_child

ADA = Path(os.environ.get("FFHQ_BENCH_ADA", "stylegan2-ada-pytorch"))
CASES = (  # (resolution, channel_max, batch)
    (32, 128, 16),
    (64, 256, 8),
)
VARIANTS = ("main", "reg")
WARMUP_STEPS, BLOCK_STEPS = 1, 1
ROUNDS = int(os.environ.get("BENCH_TRAIN_ADA_ROUNDS", "4"))
THREADS = int(os.environ.get("BENCH_TRAIN_ADA_THREADS", "1"))
ONLY_RES = int(os.environ.get("BENCH_TRAIN_ADA_RES", "0"))  # run one resolution's row
CHANNELS_LAST = os.environ.get("BENCH_TRAIN_ADA_CL", "1") == "1"
COMPILE = os.environ.get("BENCH_TRAIN_ADA_COMPILE", "0") == "1"
FUSED = os.environ.get("BENCH_TRAIN_ADA_FUSED", "0") == "1"
SIDES = ("ours", "ada") + (("ours-compiled",) if COMPILE else ()) + (("ours-fused",) if FUSED
                                                                     else ())


def ours(resolution: int, channel_max: int):
    import torch

    from models.configs import build_networks, get_config

    torch.manual_seed(0)
    G, D = build_networks(get_config("stylegan2-F"), resolution, channel_max=channel_max)
    return G.train(), D.train()


def peer(resolution: int, channel_max: int):
    import torch

    sys.path.insert(0, str(ADA))
    from training.networks import Discriminator, Generator

    torch.manual_seed(0)
    common = dict(channel_base=32768, channel_max=channel_max, num_fp16_res=0, conv_clamp=None)
    G = Generator(z_dim=512, c_dim=0, w_dim=512, img_resolution=resolution, img_channels=3,
                  mapping_kwargs=dict(num_layers=8), synthesis_kwargs=common)
    D = Discriminator(c_dim=0, img_resolution=resolution, img_channels=3,
                      epilogue_kwargs=dict(mbstd_group_size=4), **common)
    return G.train(), D.train()


class Step:
    """One training step of (G, D) with the losses of StyleGAN2 (shared by both sides)."""

    def __init__(self, G, D, batch: int, resolution: int, channels_last: bool,
                 compiled: bool = False):
        import torch

        self.G, self.D, self.batch, self.channels_last = G, D, batch, channels_last
        self.compiled = compiled
        self.opt_g = torch.optim.Adam(G.parameters(), lr=0.002, betas=(0.0, 0.99))
        self.opt_d = torch.optim.Adam(D.parameters(), lr=0.002, betas=(0.0, 0.99))
        gen = torch.Generator().manual_seed(1)
        self.reals = torch.rand(batch, 3, resolution, resolution, generator=gen) * 2 - 1
        self.pl_mean = torch.zeros([])
        if channels_last:
            self.reals = self.reals.contiguous(memory_format=torch.channels_last)

    def _z(self):
        import torch

        return torch.randn(self.batch, 512)

    def _update(self, opt, loss) -> None:
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    def _phase(self, module) -> None:
        """Only the trained module's parameters need gradients (as both trainers do)."""
        self.G.requires_grad_(module is self.G)
        self.D.requires_grad_(module is self.D)

    def run(self, reg: bool) -> None:
        import torch
        import torch.nn.functional as F

        G, D = self.G, self.D
        self._phase(G)
        self._update(self.opt_g, F.softplus(-D(G(self._z(), None), None)).mean())
        with torch.no_grad():
            fake = G(self._z(), None)
        self._phase(D)
        loss_d = F.softplus(D(fake, None)).mean() + F.softplus(-D(self.reals, None)).mean()
        self._update(self.opt_d, loss_d)
        if reg:
            from models.train_compile import eager_passes

            with eager_passes(self.compiled):  # double backward: eager, as the trainer does
                self._r1()
                self._phase(G)
                self._path_length()

    def _r1(self) -> None:
        import torch

        real = self.reals.detach().requires_grad_(True)
        (grad,) = torch.autograd.grad(self.D(real, None).sum(), real, create_graph=True)
        self._update(self.opt_d, grad.square().sum([1, 2, 3]).mean() * 5.0)

    def _path_length(self) -> None:
        import torch

        ws = self.G.mapping(self._z(), None)
        img = self.G.synthesis(ws)
        noise = torch.randn_like(img) / (img.shape[2] * img.shape[3]) ** 0.5
        (grad,) = torch.autograd.grad((img * noise).sum(), ws, create_graph=True)
        lengths = grad.square().sum(2).mean(1).sqrt()
        self.pl_mean = self.pl_mean.lerp(lengths.mean().detach(), 0.01)
        self._update(self.opt_g, (lengths - self.pl_mean).square().mean() * 2.0)


def _block(step: Step, reg: bool, steps: int) -> float:
    """CPU sec/kimg of `steps` steps (process time: with one thread it counts this process's
    work, not the time other tenants held the cores)."""
    start = time.process_time()
    for _ in range(steps):
        step.run(reg)
    return (time.process_time() - start) / (steps * step.batch / 1000)


def _build(side: str, resolution: int, channel_max: int, batch: int) -> Step:
    import torch

    G, D = (peer if side == "ada" else ours)(resolution, channel_max)
    cl = CHANNELS_LAST and side != "ada"
    if cl:
        G, D = G.to(memory_format=torch.channels_last), D.to(memory_format=torch.channels_last)
    if side == "ours-fused":
        G.synthesis.fused_modconv = True
    if side == "ours-compiled":
        from models.train_compile import compile_networks

        compile_networks(G, D, progressive=False)
    return Step(G, D, batch, resolution, cl, compiled=side == "ours-compiled")


def _speeds(resolution: int, channel_max: int, batch: int, queue) -> None:
    import torch

    torch.set_num_threads(THREADS)
    steps = {side: _build(side, resolution, channel_max, batch) for side in SIDES}
    best = {}
    for step in steps.values():
        for variant in VARIANTS:
            _block(step, variant == "reg", WARMUP_STEPS)
    for _ in range(ROUNDS):
        for variant in VARIANTS:
            for side, step in steps.items():
                key = (side, variant)
                best[key] = min(best.get(key, float("inf")),
                                _block(step, variant == "reg", BLOCK_STEPS))
    queue.put(best)


def _peak_rss(side: str, resolution: int, channel_max: int, batch: int, queue) -> None:
    import torch

    torch.set_num_threads(THREADS)
    step = _build(side, resolution, channel_max, batch)
    _block(step, True, 2)
    queue.put(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)


def main() -> None:
    if not (ADA / "training" / "networks.py").is_file():
        raise SystemExit(f"no stylegan2-ada-pytorch checkout at {ADA} (set FFHQ_BENCH_ADA)")
    print(f"best of {ROUNDS} interleaved blocks of {BLOCK_STEPS} steps, {THREADS} thread(s), "
          f"ours channels_last={CHANNELS_LAST}, load average {os.getloadavg()}", flush=True)
    for res, cmax, batch in CASES:
        if ONLY_RES and res != ONLY_RES:
            continue
        speeds = in_spawned_child(_speeds, res, cmax, batch)
        for variant in VARIANTS:
            o, a = speeds[("ours", variant)], speeds[("ada", variant)]
            print(f"{res}px ch {cmax} batch {batch} {variant:4s}: ours {o:8.1f} sec/kimg, "
                  f"ada {a:8.1f} sec/kimg, ours {a / o:4.2f}x", flush=True)
            for side in SIDES[2:]:
                c = speeds[(side, variant)]
                print(f"{res}px ch {cmax} batch {batch} {variant:4s}: {side} {c:8.1f} sec/kimg, "
                      f"{a / c:4.2f}x ada, {o / c:4.2f}x ours", flush=True)
        if os.environ.get("BENCH_TRAIN_ADA_MEMORY", "1") == "1":
            for side in ("ours", "ada"):
                full = in_spawned_child(_peak_rss, side, res, cmax, 16)
                half = in_spawned_child(_peak_rss, side, res, cmax, 8)
                print(f"{res}px ch {cmax} {side}: peak RSS {full / 2**20:.0f} MiB at batch 16, "
                      f"~{(full - half) / 8 / 2**20:.1f} MiB per image", flush=True)
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()

"""Projection speed (issue 14): optimisation steps per CPU-second for one target and for a
batch of 8, at 64 px (`tiny`) and 256 px (StyleGAN2 half width: channel_base 16384,
channel_max 256), ours against stylegan2-ada-pytorch's `projector.project` on the same network.

`.venv/bin/python -m bench bench_project`. The peer needs a checkout of
NVlabs/stylegan2-ada-pytorch outside the repository: FFHQ_BENCH_ADA=/path (default
./stylegan2-ada-pytorch); without one only our numbers are printed. Its Generator is built with the
same shapes and gets our weights (the parameter names are the same), so both optimise the same
network; the distance is the same architecture-exact LPIPS VGG16 (random trunk, lpips' shipped
linear layers) for both, handed to ada as its `vgg16.pt` call signature (`return_lpips=True`).
ada projects one image per run, so its batch-of-8 rate is its single rate. Times are CPU
seconds of this process with one thread (`time.process_time`; the machine is shared).
Per-step time = (time of a BENCH_PROJECT_STEPS-step run - time of a 1-step run) / (steps - 1)
for both (default 4 steps); w statistics use 100 samples for both.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

from eval.features.lpips import load_lin_weights, lpips_from_state_dicts
from models.configs import build_networks, get_config
from models.project import EmbeddingDistance, ProjectionProtocol, Projector

ADA = Path(os.environ.get("FFHQ_BENCH_ADA", "stylegan2-ada-pytorch"))
STEPS = max(2, int(os.environ.get("BENCH_PROJECT_STEPS", "4")))
W_SAMPLES = 100
CASES = (("tiny", 64, dict()), ("stylegan2-F", 256, dict(channel_base=16384, channel_max=256)))


class LpipsFeatures(torch.nn.Module):
    """LPIPS VGG16 as NVIDIA's vgg16.pt returns it: per image one vector whose squared
    difference sums to the LPIPS distance (unit-normalised stage features scaled by
    sqrt(lin / HW); lpips' linear weights are non-negative)."""

    def __init__(self, lpips):
        super().__init__()
        self.lpips = lpips

    def forward(self, images, resize_images: bool = True, return_lpips: bool = False):
        from eval.features.lpips import unit_normalize

        stages = self.lpips.stage_features(images / 127.5 - 1)
        parts = []
        for features, lin in zip(stages, self.lpips.lins, strict=True):
            scale = (lin.weight.clamp_min(0) / (features.shape[2] * features.shape[3])).sqrt()
            parts.append((unit_normalize(features) * scale).flatten(1))
        return torch.cat(parts, dim=1)


def random_lpips():
    from eval.features.vgg16 import empty_vgg16
    from ffhq_tools import weights

    generator = torch.Generator().manual_seed(0)
    state = {}
    for name, tensor in empty_vgg16().state_dict().items():
        if name.startswith("classifier"):
            state[name] = torch.zeros(tensor.shape)
        elif name.endswith("bias"):
            state[name] = torch.randn(tensor.shape, generator=generator) * 0.01
        else:
            state[name] = torch.randn(tensor.shape, generator=generator) * (
                2 / tensor[0].numel()) ** 0.5
    lins = load_lin_weights(weights.resolve("lpips-vgg-lin").path)
    return LpipsFeatures(lpips_from_state_dicts(state, lins))


def network(name: str, resolution: int, changes: dict):
    torch.manual_seed(0)
    config = get_config(name).replace(**changes) if changes else get_config(name)
    G, _ = build_networks(config, resolution)
    with torch.no_grad():
        for key, p in G.named_parameters():
            if "noise_strength" in key:
                p.fill_(0.1)
    return config, G.eval().requires_grad_(False)


def targets(G, count: int) -> list[np.ndarray]:
    from models.generate import generate_images

    return [img for _, img in generate_images(G, list(range(count)), batch_size=1)]


def per_step(run) -> float:
    """CPU seconds per step: a STEPS-step run minus a one-step run, over STEPS - 1 (so set-up,
    target features and the final evaluation cancel out for both projectors)."""
    start = time.process_time()
    run(1)
    one = time.process_time() - start
    start = time.process_time()
    run(STEPS)
    return (time.process_time() - start - one) / (STEPS - 1)


def ours_rate(G, features, images: list[np.ndarray]) -> float:
    distance = EmbeddingDistance(lambda x: features(x, resize_images=False, return_lpips=True))

    def run(steps: int) -> None:
        protocol = ProjectionProtocol(steps=steps, w_avg_samples=W_SAMPLES)
        Projector(G, distance, protocol).project(images, progress=False)

    return len(images) / per_step(run)


def ada_generator(config, resolution: int, G):
    sys.path.insert(0, str(ADA))
    from training.networks import Generator

    ada = Generator(z_dim=config.z_dim, c_dim=0, w_dim=config.w_dim,
                    img_resolution=resolution, img_channels=3,
                    mapping_kwargs=dict(num_layers=config.mapping_layers),
                    synthesis_kwargs=dict(channel_base=config.channel_base,
                                          channel_max=config.channel_max, num_fp16_res=0,
                                          conv_clamp=None))
    # ada's up-sampling convs run conv_transpose2d on the unflipped kernel (its legacy.py flips
    # TF's Conv0_up weights on import); ours flip in the layer, as TF does
    state = {k: v.flip([2, 3]) if k.endswith("conv0.weight") else v
             for k, v in G.state_dict().items()}
    ada.load_state_dict(state, strict=False)
    return ada.eval().requires_grad_(False)


@contextlib.contextmanager
def ada_vgg(features):
    """ada's project() opens NVIDIA's URL and loads it; hand it our module instead."""
    import dnnlib

    saved = (dnnlib.util.open_url, torch.jit.load)
    dnnlib.util.open_url = lambda url, *a, **k: contextlib.nullcontext(url)
    torch.jit.load = lambda f, *a, **k: features
    try:
        yield
    finally:
        dnnlib.util.open_url, torch.jit.load = saved


def ada_rate(ada_G, features, image: np.ndarray) -> float:
    import projector as ada_projector

    target = torch.from_numpy(image.transpose(2, 0, 1).copy())

    def run(steps: int) -> None:
        with ada_vgg(features):
            ada_projector.project(ada_G, target, num_steps=steps, w_avg_samples=W_SAMPLES,
                                  device=torch.device("cpu"))

    return 1 / per_step(run)


def same_images(G, ada_G) -> float:
    ws = G.mapping(torch.randn(2, G.z_dim), None)
    with torch.no_grad():
        return float((G.synthesis(ws, noise_mode="const")
                      - ada_G.synthesis(ws, noise_mode="const")).abs().max())


def main() -> None:
    torch.set_num_threads(1)
    features = random_lpips()
    have_ada = (ADA / "projector.py").is_file()
    if not have_ada:
        print(f"stylegan2-ada-pytorch not found at {ADA} (FFHQ_BENCH_ADA): ours only")
    print(f"target-steps per CPU-second ({STEPS}-step minus 1-step runs), one thread")
    print(f"{'res':>4} {'network':>12} {'ours x1':>9} {'ours x8':>9} {'ada x1':>9} "
          f"{'x8 vs x1':>9} {'x1 vs ada':>10} {'x8 vs ada':>10}")
    for name, resolution, changes in CASES:
        config, G = network(name, resolution, changes)
        images = targets(G, 8)
        one = ours_rate(G, features, images[:1])
        eight = ours_rate(G, features, images)
        peer = float("nan")
        if have_ada:
            ada_G = ada_generator(config, resolution, G)
            print(f"  ({name} {resolution}px: ada's G renders ours to "
                  f"{same_images(G, ada_G):.1e})", flush=True)
            peer = ada_rate(ada_G, features, images[0])
        print(f"{resolution:>4} {name:>12} {one:>9.3f} {eight:>9.3f} {peer:>9.3f} "
              f"{eight / one:>8.2f}x {one / peer:>9.2f}x {eight / peer:>9.2f}x", flush=True)

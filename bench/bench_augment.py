"""Cost of the ADA augmentation on CPU: a whole G+D training step with and without it, and the
pipe alone per image (forward + backward, as D's losses use it).

The trainers (same seed, data and networks) share one process and take turns in interleaved
blocks of steps; a variant's time is its fastest block (the machine is shared).

    .venv/bin/python -m bench bench_augment
"""

from __future__ import annotations

import time

CASE = ("tiny", 32, 32)  # config, resolution, channel_max
VARIANTS = (("noaug", None, 0.0), ("fixed bgc p=0.5", "bgc", 0.5),
            ("fixed bgcfnc p=0.5", "bgcfnc", 0.5), ("fixed bgc p=1", "bgc", 1.0))
BATCH, WARMUP_STEPS, BLOCK_STEPS, ROUNDS, THREADS = 16, 2, 4, 3, 1
PIPE_SIZES = (32, 64, 256)


def _trainer(pipeline: str | None, p: float):
    import torch

    from models.augment_control import AugmentSettings
    from models.configs import build_networks, get_config
    from models.distributed import DistEnv
    from models.train_loop import LoopSettings, Trainer
    from models.train_options import TrainOptions, resolve_plan

    config, resolution, channel_max = CASE
    torch.manual_seed(0)
    model = get_config(config)
    G, D = build_networks(model, resolution, channel_max=channel_max)
    plan = resolve_plan(model, TrainOptions(config=config, data="synthetic", batch=BATCH),
                        resolution)
    images = torch.randint(0, 256, (256, 3, resolution, resolution), dtype=torch.uint8,
                           generator=torch.Generator().manual_seed(0))
    augment = AugmentSettings("fixed", pipeline=pipeline, p=p) if pipeline else \
        AugmentSettings()
    settings = LoopSettings(total_kimg=1.0, augment=augment)
    return Trainer(G, D, plan, images, DistEnv(0, 1, 0, torch.device("cpu")), None, settings)


def _steps(trainer, batches, count: int) -> float:
    start = time.perf_counter()
    for _ in range(count):
        trainer.step(next(batches))
    return time.perf_counter() - start


def _pipe_seconds_per_image(pipeline: str, size: int, batch: int = 16, repeats: int = 3):
    import torch

    from models.augment import AugmentPipe, pipeline_spec

    pipe = AugmentPipe(pipeline_spec(pipeline), p=1.0)
    x = torch.randn(batch, 3, size, size, requires_grad=True)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        pipe(x).square().mean().backward()
        best = min(best, time.perf_counter() - start)
    return best / batch


def main() -> None:
    import torch

    torch.set_num_threads(THREADS)
    trainers = {label: _trainer(pipe, p) for label, pipe, p in VARIANTS}
    iterators = {label: t.data_iterator() for label, t in trainers.items()}
    for label, t in trainers.items():
        _steps(t, iterators[label], WARMUP_STEPS)
    best = {label: float("inf") for label in trainers}
    for _ in range(ROUNDS):
        for label, t in trainers.items():
            best[label] = min(best[label], _steps(t, iterators[label], BLOCK_STEPS))
    base = best["noaug"]
    config, resolution, channel_max = CASE
    print("| config | px | channel_max | augmentation | sec/kimg | vs noaug |")
    for label, seconds in best.items():
        per_kimg = seconds / (BLOCK_STEPS * BATCH) * 1000
        print(f"| {config} | {resolution} | {channel_max} | {label} | {per_kimg:.1f} | "
              f"{seconds / base:.2f}x |")
    print("| pipeline | px | ms per image (forward + backward, p = 1, batch 16) |")
    for pipeline in ("blit", "bgc", "bgcfnc"):
        for size in PIPE_SIZES:
            ms = _pipe_seconds_per_image(pipeline, size) * 1000
            print(f"| {pipeline} | {size} | {ms:.2f} |")

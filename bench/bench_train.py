"""Training throughput on CPU: sec/kimg of `tiny` and a 32px StyleGAN2 config.

Baseline = float32, contiguous memory; variants = bf16 autocast, channels_last, both. The
four trainers (same seed, data and networks) live in one process and take turns: each round
runs a block of steps on every variant, and a variant's time is its fastest block. On a shared
machine this cancels drifts of the background load that separate runs would mistake for
speed-ups. Memory per image = (peak RSS at batch B - at B/2) / (B/2), each size measured in a
fresh child process so its peak RSS is its own.

    .venv/bin/python -m bench bench_train
"""

from __future__ import annotations

import resource
import time

from bench.memory import in_spawned_child

CASES = (  # (config, resolution, channel_max)
    ("tiny", 32, 32),
    ("stylegan2-F", 32, 64),
)
VARIANTS = (  # (label, precision, channels_last)
    ("fp32", "fp32", False),
    ("bf16", "bf16", False),
    ("fp32+channels_last", "fp32", True),
    ("bf16+channels_last", "bf16", True),
)
BATCH, WARMUP_STEPS, BLOCK_STEPS, ROUNDS, THREADS = 16, 2, 4, 4, 1


class _Images:
    def __init__(self, images):
        self.images = images

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        return self.images[i]


def _trainer(config: str, resolution: int, channel_max: int, precision: str,
             channels_last: bool, batch: int):
    import torch

    from models.configs import build_networks, get_config
    from models.distributed import DistEnv
    from models.train_loop import LoopSettings, Trainer
    from models.train_options import TrainOptions, resolve_plan

    torch.manual_seed(0)
    model = get_config(config)
    G, D = build_networks(model, resolution, channel_max=channel_max)
    plan = resolve_plan(model, TrainOptions(config=config, data="synthetic", batch=batch),
                        resolution)
    gen = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (256, 3, resolution, resolution), dtype=torch.uint8,
                           generator=gen)
    settings = LoopSettings(total_kimg=1.0, precision=precision, channels_last=channels_last)
    trainer = Trainer(G, D, plan, _Images(images), DistEnv(0, 1, 0, torch.device("cpu")), None,
                      settings)
    return trainer, trainer.data_iterator()


def _block(trainer, batches, steps: int) -> float:
    """sec/kimg of `steps` steps."""
    start, nimg = time.perf_counter(), trainer.state.cur_nimg
    for _ in range(steps):
        trainer.step(next(batches))
    return (time.perf_counter() - start) / ((trainer.state.cur_nimg - nimg) / 1000)


def _speeds(config: str, resolution: int, channel_max: int, queue) -> None:
    import torch

    torch.set_num_threads(THREADS)
    runs = {label: _trainer(config, resolution, channel_max, precision, cl, BATCH)
            for label, precision, cl in VARIANTS}
    for trainer, batches in runs.values():
        _block(trainer, batches, WARMUP_STEPS)
    best = {label: float("inf") for label in runs}
    for _ in range(ROUNDS):
        for label, (trainer, batches) in runs.items():
            best[label] = min(best[label], _block(trainer, batches, BLOCK_STEPS))
    queue.put(best)


def _peak_rss(config: str, resolution: int, channel_max: int, batch: int, queue) -> None:
    import torch

    torch.set_num_threads(THREADS)
    trainer, batches = _trainer(config, resolution, channel_max, "fp32", False, batch)
    _block(trainer, batches, WARMUP_STEPS + BLOCK_STEPS)
    queue.put(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)


def main() -> None:
    print(f"batch {BATCH}, best of {ROUNDS} interleaved blocks of {BLOCK_STEPS} steps after "
          f"{WARMUP_STEPS} warm-up, {THREADS} thread(s), lazy R1 / path length as configured")
    for config, res, cmax in CASES:
        full = in_spawned_child(_peak_rss, config, res, cmax, BATCH)
        half = in_spawned_child(_peak_rss, config, res, cmax, BATCH // 2)
        per_image = (full - half) / (BATCH // 2)
        print(f"{config} {res}px channel_max {cmax}: peak RSS {full / 2**20:.0f} MiB at batch "
              f"{BATCH}, ~{per_image / 2**20:.1f} MiB per image (fp32)", flush=True)
        speeds = in_spawned_child(_speeds, config, res, cmax)
        for label, speed in speeds.items():
            print(f"  {label:20s} {speed:8.2f} sec/kimg   speed vs fp32: "
                  f"{speeds['fp32'] / speed:5.2f}x", flush=True)


if __name__ == "__main__":
    main()

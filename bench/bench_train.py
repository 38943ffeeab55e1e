"""Training throughput on CPU: sec/kimg of `tiny` and a 32px StyleGAN2 config.

Baseline = float32, contiguous memory; variants = bf16 autocast, channels_last, both. Every
variant runs in a fresh child process (so its peak RSS is its own) with the same seed, data
and steps; the time is the fastest of several blocks of steps (the machine is shared, the
minimum is the least disturbed); memory per image = (peak RSS at batch B - at B/2) / (B/2).

    .venv/bin/python -m bench bench_train
"""

from __future__ import annotations

import multiprocessing as mp
import resource
import time

CASES = (  # (config, resolution, channel_max)
    ("tiny", 32, 32),
    ("stylegan2-F", 32, 64),
)
VARIANTS = (  # (label, precision, channels_last)
    ("fp32", "fp32", False),
    ("bf16", "bf16", False),
    ("fp32+channels_last", "fp32", True),
    ("bf16+channels_last", "bf16", True),
    ("fp32 again", "fp32", False),  # exposes drift of the shared machine's load over the run
)
BATCH, WARMUP_STEPS, BLOCK_STEPS, BLOCKS, THREADS = 16, 2, 4, 3, 1


def _measure(config: str, resolution: int, channel_max: int, precision: str,
             channels_last: bool, batch: int, queue) -> None:
    import torch

    from models.configs import build_networks, get_config
    from models.distributed import DistEnv
    from models.train_loop import LoopSettings, Trainer
    from models.train_options import TrainOptions, resolve_plan

    torch.set_num_threads(THREADS)
    torch.manual_seed(0)
    model = get_config(config)
    G, D = build_networks(model, resolution, channel_max=channel_max)
    options = TrainOptions(config=config, data="synthetic", batch=batch)
    plan = resolve_plan(model, options, resolution)
    images = torch.randint(0, 256, (256, 3, resolution, resolution), dtype=torch.uint8)
    dataset = torch.utils.data.TensorDataset(images)
    settings = LoopSettings(total_kimg=1.0, precision=precision, channels_last=channels_last)
    trainer = Trainer(G, D, plan, _Images(dataset), DistEnv(0, 1, 0, torch.device("cpu")), None,
                      settings)
    batches = trainer.data_iterator()
    for _ in range(WARMUP_STEPS):
        trainer.step(next(batches))
    best = float("inf")
    for _ in range(BLOCKS):
        start, nimg = time.perf_counter(), trainer.state.cur_nimg
        for _ in range(BLOCK_STEPS):
            trainer.step(next(batches))
        kimg = (trainer.state.cur_nimg - nimg) / 1000
        best = min(best, (time.perf_counter() - start) / kimg)
    queue.put((best, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024))


class _Images:
    def __init__(self, dataset):
        self.dataset = dataset

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, i):
        return self.dataset[i][0]


def run_case(config, resolution, channel_max, precision, channels_last, batch=BATCH):
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_measure, args=(config, resolution, channel_max, precision,
                                              channels_last, batch, queue))
    proc.start()
    result = queue.get()
    proc.join()
    return result


def main() -> None:
    print(f"batch {BATCH}, best of {BLOCKS} blocks of {BLOCK_STEPS} steps after "
          f"{WARMUP_STEPS} warm-up, {THREADS} thread(s), lazy R1 / path length as configured")
    for config, res, cmax in CASES:
        base_speed, base_rss = run_case(config, res, cmax, "fp32", False)
        _, half_rss = run_case(config, res, cmax, "fp32", False, batch=BATCH // 2)
        per_image = (base_rss - half_rss) / (BATCH // 2)
        print(f"{config} {res}px channel_max {cmax}: peak RSS {base_rss / 2**20:.0f} MiB, "
              f"~{per_image / 2**20:.1f} MiB per image of batch (fp32)")
        for label, precision, channels_last in VARIANTS:
            speed = base_speed if label == "fp32" else \
                run_case(config, res, cmax, precision, channels_last)[0]
            print(f"  {label:20s} {speed:8.2f} sec/kimg   speed vs fp32: "
                  f"{base_speed / speed:5.2f}x", flush=True)


if __name__ == "__main__":
    main()

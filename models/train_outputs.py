"""What a training run writes (rank 0 only): tick lines, stats.jsonl, TensorBoard events when
installed, snapshots, image grids from fixed seeds, and metric-<name>.jsonl.
"""

from __future__ import annotations

import math
import numbers
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ffhq_tools.atomic import append_jsonl, atomic_path
from models.generate import to_uint8


def save_grid(images: torch.Tensor | np.ndarray, path: Path) -> None:
    """Tile NCHW images (float in [-1, 1], or uint8) into one PNG, written atomically."""
    if isinstance(images, torch.Tensor) and images.is_floating_point():
        array = to_uint8(images)
    else:
        array = np.asarray(images).transpose(0, 2, 3, 1)
    n, h, w, c = array.shape
    cols = math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    canvas = np.zeros((rows * h, cols * w, c), dtype=np.uint8)
    for i, img in enumerate(array):
        r, k = divmod(i, cols)
        canvas[r * h:(r + 1) * h, k * w:(k + 1) * w] = img
    picture = Image.fromarray(canvas[..., 0] if c == 1 else canvas)
    with atomic_path(path, suffix=".png") as tmp:
        picture.save(tmp, format="PNG")


def _tensorboard_writer(run_dir: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    return SummaryWriter(str(run_dir))


class Outputs:
    def __init__(self, trainer):
        self.t = trainer
        self.run_dir: Path = trainer.run_dir
        generator = torch.Generator().manual_seed(trainer.settings.seed)
        self.grid_z = torch.randn([trainer.settings.grid_size, trainer.G.z_dim],
                                  generator=generator)
        table = trainer.loss_settings.label_table  # conditional: the first items' labels
        self.grid_c = None if table is None else \
            table[torch.arange(trainer.settings.grid_size) % len(table)]
        self.writer = None
        self.started = time.time()

    def start(self) -> None:
        self.writer = _tensorboard_writer(self.run_dir)
        if self.writer is None:
            print("tensorboard is not installed: no event files "
                  "(pip install 'ffhq-tools[tensorboard]')")
        if self.t.state.cur_nimg == 0:
            count = min(self.t.settings.grid_size, len(self.t.dataset))
            items = [self.t.dataset[i] for i in range(count)]
            reals = [np.asarray(x[0] if isinstance(x, (tuple, list)) else x) for x in items]
            save_grid(np.stack(reals), self.run_dir / "reals.png")
            save_grid(self.fakes(), self.run_dir / "fakes_init.png")

    @torch.no_grad()
    def fakes(self) -> torch.Tensor:
        G = self.t.G_ema
        images = []
        for i, z in enumerate(self.grid_z):
            c = None if self.grid_c is None else self.grid_c[i:i + 1]
            images.append(G(z[None].to(self.t.env.device), c, noise_mode="const"))
        return torch.cat(images)

    def tick(self, tick: int, stats: dict, seconds: float, tick_nimg: int) -> None:
        t = self.t
        level = t.level_at(t.state.cur_nimg)
        kimg = t.state.cur_nimg / 1000
        tick_kimg = max(tick_nimg / 1000, 1e-9)
        memory = self._memory()
        record = {"tick": tick, "kimg": kimg, "lod": level.lod, "resolution": level.resolution,
                  "batch": level.batch, "sec_per_tick": seconds,
                  "sec_per_kimg": seconds / tick_kimg,
                  "memory_bytes": memory, "total_time_s": t.state.elapsed_s,
                  "timestamp": time.time(), **stats}
        append_jsonl(self.run_dir / "stats.jsonl", record)
        self._scalars("", {**stats, "Timing/sec_per_kimg": record["sec_per_kimg"]})
        losses = " ".join(f"{k.split('/', 1)[1]} {v:.4g}" for k, v in sorted(stats.items())
                          if k.startswith("Loss/"))
        if "Progress/augment" in stats:
            losses = f"augment {stats['Progress/augment']:.3f} {losses}"
        print(f"tick {tick:<5d} kimg {kimg:<9.3f} lod {level.lod:<5.2f} res {level.resolution:<5d}"
              f" time {_duration(t.state.elapsed_s):<10s} sec/tick {seconds:<7.2f} "
              f"sec/kimg {record['sec_per_kimg']:<8.2f} mem {memory / 2**30:<6.2f}GiB {losses}",
              flush=True)

    def _scalars(self, prefix: str, values: dict) -> None:
        """TensorBoard scalars at the current image count (numbers only), when it is installed."""
        if self.writer is None:
            return
        for key, value in values.items():
            if isinstance(value, numbers.Real) and not isinstance(value, bool):
                tag = f"{prefix}/{key}" if prefix else key
                self.writer.add_scalar(tag, value, global_step=self.t.state.cur_nimg)
        self.writer.flush()

    def _memory(self) -> int:
        """Peak memory of this tick on CUDA (the peak is reset), of the process on CPU."""
        from models.train_state import memory_bytes

        device = self.t.env.device
        peak = memory_bytes(device)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        return peak

    def snapshot(self, rng_states: list[dict], augment_state: dict | None = None) -> Path:
        from models.checkpoint import save_checkpoint

        t = self.t
        kimg = t.state.cur_nimg / 1000
        path = self.run_dir / f"network-snapshot-{kimg:010.3f}.pt"
        save_checkpoint(path, config=t.settings.checkpoint_config, G=t.G, D=t.D, G_ema=t.G_ema,
                        optimizers=t.optimizer_states(),
                        training_state=t.training_state(rng_states, augment_state))
        save_grid(self.fakes(), self.run_dir / f"fakes{kimg:010.3f}.png")
        if t.settings.metrics and t.metric_fn is not None:
            rows = t.metric_fn(list(t.settings.metrics), path, t.G_ema)
            for name, row in rows.items():
                row = {**row, "snapshot": path.name, "kimg": kimg}
                append_jsonl(self.run_dir / f"metric-{name}.jsonl", row)
                print(f"metric {name}: {row.get('results')}", flush=True)
                self._scalars(f"Metrics/{name}", row.get("results") or {})
        return path

    def finish(self) -> None:
        if self.writer is not None:
            self.writer.close()
        print(f"done: {self.t.state.cur_nimg / 1000:.3f} kimg in "
              f"{_duration(self.t.state.elapsed_s)}; last snapshot {self.t.last_snapshot}")


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m{secs:02d}s" if hours else f"{minutes}m{secs:02d}s"

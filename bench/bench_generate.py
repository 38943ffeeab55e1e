"""Peak memory and time of `generate`: ours (streamed to disk) vs the previous flow.

Previous (reproduced below as it was): the seed list is materialised, every image is kept in
memory until the end, and one grid of all seeds is assembled and written. Ours: the
`ffhq-tools generate` verb as shipped (batches streamed to OUT/samples, grid of the first 64
written strip by strip).

Each run is its own child process (torch on one thread); peak = the child's ru_maxrss. The
networks are the `tiny` config at the given resolution (random weights): what grows with the
number of seeds is the images, whose size depends on the resolution only.

Run: .venv/bin/python -m bench bench_generate
     (BENCH_GENERATE_RUNS="256:100,256:400,1024:8,1024:32", BENCH_GENERATE_BATCH=8)
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DEFAULT_RUNS = "256:100,256:400,1024:8,1024:32"


def _previous_generate(ckpt: str, out: Path, seeds: list[int], batch: int) -> None:
    from models import generate as gen
    from models.checkpoint import load_generator
    from models.png_files import save_png

    G = load_generator(ckpt)
    out.mkdir(parents=True, exist_ok=True)
    done = {}
    for seed, img in gen.generate_images(G, seeds, batch_size=batch):
        save_png(out / f"seed{seed:04d}.png", img)
        done[seed] = img
    save_png(out / "grid.png", gen.make_grid([done[s] for s in seeds]))


def _child(kind: str, ckpt: str, out: str, count: int, batch: int) -> None:
    if kind == "previous":
        _previous_generate(ckpt, Path(out), list(range(count)), batch)
        return
    from ffhq_tools.cli import main

    code = main(["generate", ckpt, "--out", out, "--seeds", f"0-{count - 1}", "-q",
                 "--device", "cpu", "--batch", str(batch)])
    if code:
        raise SystemExit(code)


def _measure(kind: str, ckpt: Path, out: Path, count: int, batch: int) -> tuple[float, float]:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "bench.bench_generate", "--child", kind,
                             str(ckpt), str(out), str(count), str(batch)], env=env)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise RuntimeError(f"{kind} child failed with {proc.returncode}")
    return usage.ru_maxrss / 1024, time.perf_counter() - start


def _checkpoint(folder: Path, resolution: int) -> Path:
    import torch

    from models.checkpoint import save_checkpoint
    from models.configs import build_networks, get_config

    torch.manual_seed(0)
    config = get_config("tiny")
    G, _ = build_networks(config, resolution)
    return save_checkpoint(folder / f"tiny{resolution}.pt", G=G,
                           config={"model": config.to_dict(), "resolution": resolution})


def main() -> None:
    runs = [tuple(int(x) for x in item.split(":"))
            for item in os.environ.get("BENCH_GENERATE_RUNS", DEFAULT_RUNS).split(",")]
    batch = int(os.environ.get("BENCH_GENERATE_BATCH", "8"))
    print("| px | seeds | previous peak MiB | ours peak MiB | previous s | ours s |")
    print("|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory(dir=Path.cwd(), prefix=".bench-generate-") as tmp:
        tmp = Path(tmp)
        ckpts = {res: _checkpoint(tmp, res) for res in sorted({r for r, _ in runs})}
        for res, count in runs:
            old_mib, old_s = _measure("previous", ckpts[res], tmp / f"old-{res}-{count}",
                                      count, batch)
            new_mib, new_s = _measure("ours", ckpts[res], tmp / f"new-{res}-{count}", count,
                                      batch)
            print(f"| {res} | {count} | {old_mib:.0f} | {new_mib:.0f} | {old_s:.0f} | "
                  f"{new_s:.0f} |", flush=True)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        kind, ckpt, out, count, batch = sys.argv[2:7]
        _child(kind, ckpt, out, int(count), int(batch))
    else:
        main()

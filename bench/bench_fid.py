"""End-to-end folder -> FID: ours vs pytorch-fid vs torch-fidelity, identical weights.

Two folders of 256x256 PNG crops of photos; every library loads the same Inception file (an
architecture-exact network with seeded random weights and calibrated BatchNorm, placed where
the peers look for it via TORCH_HOME). Each run happens in a fresh spawned child so its peak
resident memory (ru_maxrss) is its own; the driver prints seconds, the speed-up over the
fastest peer and peak memory. `FFHQ_BENCH_FID_NUM` sets images per folder (default 200; the
issue's full size is 2000); `FFHQ_BENCH_FID_PEERS_FIRST=1` runs the peers first. Scratch
files go to runs/bench-fid/ (git-ignored).
"""

from __future__ import annotations

import os
import resource
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

ROOT = Path("runs") / "bench-fid"


def _prepare(num: int) -> tuple[Path, Path, Path]:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
    from eval_helpers import make_inception_file, photos, random_crops, write_folder

    first, second = ROOT / f"a{num}", ROOT / f"b{num}"
    sources = photos()
    if not first.is_dir():
        write_folder(first, random_crops(num, 256, 1, sources[:3]))
        write_folder(second, random_crops(num, 256, 2, sources[3:]))
    checkpoints = ROOT / "torch_home" / "hub" / "checkpoints"
    inception = checkpoints / "pt_inception-2015-12-05-6726825d.pth"
    if not inception.is_file():
        make_inception_file(checkpoints)
        (checkpoints / "weights-inception-2015-12-05-6726825d.pth").write_bytes(
            inception.read_bytes())
    return first, second, inception


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _run_ours(first: str, second: str, inception: str, cache: str, mode: str):
    from eval.fid import fid_between
    from eval.registry import MetricContext

    start = time.perf_counter()
    ctx = MetricContext(weights_overrides={"inception-fid": Path(inception)}, mode=mode,
                        progress=False, stats_cache=Path(cache) / mode)
    value = fid_between(first, second, ctx)["fid"]
    return value, time.perf_counter() - start, _peak_mib()


def run_ours_tf(first: str, second: str, inception: str, cache: str):
    return _run_ours(first, second, inception, cache, "tf")


def run_ours_pytorch_fid(first: str, second: str, inception: str, cache: str):
    return _run_ours(first, second, inception, cache, "pytorch-fid")


def run_pytorch_fid(first: str, second: str, inception: str, cache: str):
    from pytorch_fid.fid_score import calculate_fid_given_paths

    start = time.perf_counter()
    value = calculate_fid_given_paths([first, second], batch_size=50, device="cpu", dims=2048,
                                      num_workers=len(os.sched_getaffinity(0)))
    return float(value), time.perf_counter() - start, _peak_mib()


def run_torch_fidelity(first: str, second: str, inception: str, cache: str):
    import torch_fidelity

    start = time.perf_counter()
    value = torch_fidelity.calculate_metrics(input1=first, input2=second, fid=True, cuda=False,
                                             verbose=False, cache=False)
    return value["frechet_inception_distance"], time.perf_counter() - start, _peak_mib()


def _in_child(fn, *args):
    os.environ["TORCH_HOME"] = str((ROOT / "torch_home").resolve())
    with ProcessPoolExecutor(1, mp_context=get_context("spawn")) as pool:
        return pool.submit(fn, *args).result()


def main() -> None:
    num = int(os.environ.get("FFHQ_BENCH_FID_NUM", "200"))
    first, second, inception = _prepare(num)
    cache = ROOT / f"stats-{time.time_ns()}"  # fresh: no cached statistics
    args = (str(first), str(second), str(inception), str(cache))
    results = {}
    runs = (("ours tf", run_ours_tf), ("ours pytorch-fid", run_ours_pytorch_fid),
            ("pytorch-fid", run_pytorch_fid), ("torch-fidelity", run_torch_fidelity))
    if os.environ.get("FFHQ_BENCH_FID_PEERS_FIRST"):  # on a shared machine load drifts
        runs = runs[2:] + runs[:2]
    for name, fn in runs:
        results[name] = _in_child(fn, *args)
        fid, seconds, peak = results[name]
        print(f"fid {num}+{num} images 256px: {name:16s} {seconds:7.1f} s  peak RSS "
              f"{peak:6.0f} MiB  FID {fid:.6f}", flush=True)

    def rel(a: str, b: str) -> float:
        return abs(results[a][0] - results[b][0]) / abs(results[b][0])

    fastest_peer = min(results["pytorch-fid"][1], results["torch-fidelity"][1])
    print(f"agreement: ours pytorch-fid mode vs pytorch-fid "
          f"{rel('ours pytorch-fid', 'pytorch-fid'):.1e}, ours tf mode vs torch-fidelity "
          f"{rel('ours tf', 'torch-fidelity'):.1e}", flush=True)
    for name in ("ours tf", "ours pytorch-fid"):
        print(f"speed-up of {name} over the fastest peer: "
              f"{fastest_peer / results[name][1]:.2f}x", flush=True)


if __name__ == "__main__":
    main()

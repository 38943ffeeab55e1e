"""Precision/recall/density/coverage (Naeem et al. 2020, k = 5): ours vs the `prdc` package.

N = 10,000 real and 10,000 fake 1024-d features (the DINOv2 ViT-L/14 width; Gaussian, the
fake set shifted and scaled), float32, on the same arrays in this process. `prdc` builds three
full N x N scikit-learn distance matrices; ours (`eval.prdc.prdc`) blocks the squared
distances, computes the self radii on the upper block triangle only and answers all four
numbers from one real x fake pass. Prints wall time, process CPU time, extra peak RSS and the
four numbers of each (they must agree). `eval.prdc.density_coverage` (density and coverage
alone: no fake x fake distances, which only recall needs) runs against the same call, since
`prdc` has no cheaper entry for the two.

Run: .venv/bin/python -m bench bench_prdc   (BENCH_PRDC_N=10000 by default)
"""

from __future__ import annotations

import contextlib
import io
import os
import time

import numpy as np

from bench.memory import reset_peak, rss_kib

N = int(os.environ.get("BENCH_PRDC_N", "10000"))
DIM = 1024
K = 5


def features(n: int, seed: int, scale: float, shift: float) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((n, DIM), dtype=np.float32) * scale + shift).astype(np.float32)


def measure(name: str, fn) -> tuple[float, float, float, dict]:
    start_rss = reset_peak()
    wall, cpu = time.perf_counter(), time.process_time()
    result = {key: float(value) for key, value in fn().items()}
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    peak_gib = (rss_kib("VmHWM") - start_rss) / 2**20
    numbers = " ".join(f"{key[0].upper()}={value:.4f}" for key, value in sorted(result.items()))
    print(f"{name:28s} wall {wall:7.1f} s  cpu {cpu:7.1f} s  peak +{peak_gib:5.2f} GiB  "
          f"{numbers}", flush=True)
    return wall, cpu, peak_gib, result


def main() -> None:
    import torch

    from eval.prdc import density_coverage, prdc

    real, fake = features(N, 1, 1.0, 0.0), features(N, 2, 1.05, 0.02)
    print(f"N = {N} per side, D = {DIM}, k = {K}, torch threads = {torch.get_num_threads()}")
    ours = measure("ours (eval.prdc.prdc)", lambda: prdc(real, fake, K))
    ours_dc = measure("ours (density_coverage)", lambda: density_coverage(real, fake, K))
    try:
        from prdc import compute_prdc
    except ImportError:
        print("prdc not installed (pip install prdc): skipping the peer")
        return
    with contextlib.redirect_stdout(io.StringIO()):
        theirs = measure("prdc.compute_prdc", lambda: compute_prdc(real, fake, K))
    print(f"prdc.compute_prdc            wall {theirs[0]:7.1f} s  cpu {theirs[1]:7.1f} s  "
          f"peak +{theirs[2]:5.2f} GiB")
    differences = {key: abs(ours[3][key] - theirs[3][key]) for key in ours[3]}
    differences.update({f"{key} alone": abs(ours_dc[3][key] - theirs[3][key])
                        for key in ours_dc[3]})
    print(f"speed-up vs prdc: wall {theirs[0] / ours[0]:.2f}x, cpu {theirs[1] / ours[1]:.2f}x; "
          f"peak memory ours {ours[2]:.2f} GiB vs {theirs[2]:.2f} GiB; "
          f"largest difference {max(differences.values()):.2g} ({differences})")
    print(f"density/coverage alone vs prdc: wall {theirs[0] / ours_dc[0]:.2f}x, "
          f"cpu {theirs[1] / ours_dc[1]:.2f}x; peak memory {ours_dc[2]:.2f} GiB")


if __name__ == "__main__":
    main()

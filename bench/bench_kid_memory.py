"""Peak memory of KID's captured features: ours vs the previous implementation, one process.

The flow of `kid50k_full`: capture N real and N generated 2048-d feature batches, assemble
each side into one array, then the subset MMD. Ours: `eval.stats.FeatureBuffer` (what
`FeatureStats(capture=True)` stores: float32 rows in preallocated blocks, assembled while the
blocks are released) and `eval.kid.kid_from_features` (float64 per subset only, one in-place
kernel matrix at a time). Previous: a list of float32 tensors joined by `torch.cat`, both
sides converted to float64 before the subsets, three kernel matrices per subset (reproduced
below as it was). Same synthetic batches (non-negative, like Inception pool features), same
seed; the two KID values must agree.

Peak = VmHWM - VmRSS at the start, with VmHWM reset through /proc/self/clear_refs before
each side. The number of subsets does not change the peak (one subset is alive at a time);
the default is the protocol's 100 subsets of 1,000.

Run: .venv/bin/python -m bench bench_kid_memory   (BENCH_KID_N=20000, BENCH_KID_SUBSETS=100)
"""

from __future__ import annotations

import gc
import os
import time

import numpy as np
import torch

from bench.memory import reset_peak, rss_kib

DIM, BATCH = 2048, 64


def _batches(num: int, seed: int):
    """Extractor-like output: float32 tensors of BATCH rows, fresh each time."""
    rng = np.random.default_rng(seed)
    for start in range(0, num, BATCH):
        rows = min(BATCH, num - start)
        yield torch.from_numpy(np.abs(rng.standard_normal((rows, DIM), dtype=np.float32)))


def previous_capture(batches) -> np.ndarray:
    captured = [features.detach().float().cpu() for features in batches]
    return torch.cat(captured).numpy()


def _previous_kernel(x, y):
    return (x @ y.T / x.shape[1] + 1) ** 3


def _previous_mmd2(x, y):
    m = x.shape[0]
    kxx, kyy, kxy = _previous_kernel(x, x), _previous_kernel(y, y), _previous_kernel(x, y)
    within = (kxx.sum() - np.trace(kxx) + kyy.sum() - np.trace(kyy)) / (m * (m - 1))
    return float(within - 2 * kxy.sum() / (m * m))


def previous_kid(gen, real, num_subsets: int, max_subset_size: int = 1000, seed: int = 0):
    gen, real = np.asarray(gen, np.float64), np.asarray(real, np.float64)
    size = min(gen.shape[0], real.shape[0], max_subset_size)
    rng = np.random.default_rng(seed)
    values = np.array([_previous_mmd2(gen[rng.choice(gen.shape[0], size, replace=False)],
                                      real[rng.choice(real.shape[0], size, replace=False)])
                       for _ in range(num_subsets)])
    return float(values.mean())


def ours_capture(batches) -> np.ndarray:
    from eval.stats import FeatureBuffer

    buffer = FeatureBuffer(DIM)
    for features in batches:
        buffer.append(features.detach().float().cpu().numpy())  # as FeatureStats.update
    return buffer.array()


def ours_kid(gen, real, num_subsets: int):
    from eval.kid import kid_from_features

    return kid_from_features(gen, real, num_subsets=num_subsets, seed=0)["kid"]


def _measure(name: str, capture, kid, num: int, num_subsets: int):
    gc.collect()
    start_rss = reset_peak()
    wall = time.perf_counter()
    real = capture(_batches(num, 1))
    gen = capture(_batches(num, 2))
    value = kid(gen, real, num_subsets)
    wall = time.perf_counter() - wall
    peak_mib = (rss_kib("VmHWM") - start_rss) / 1024
    del real, gen
    print(f"{name:9s} peak +{peak_mib:7.1f} MiB  wall {wall:6.1f} s  KID {value:.10g}",
          flush=True)
    return peak_mib, value


def main() -> None:
    num = int(os.environ.get("BENCH_KID_N", "20000"))
    num_subsets = int(os.environ.get("BENCH_KID_SUBSETS", "100"))
    torch.set_num_threads(1)
    features_mib = 2 * num * DIM * 4 / 2**20
    print(f"{num} real + {num} generated x {DIM} features (float32: {features_mib:.1f} MiB "
          f"together), {num_subsets} subsets of {min(num, 1000)}", flush=True)
    before, kid_before = _measure("previous", previous_capture, previous_kid, num, num_subsets)
    after, kid_after = _measure("ours", ours_capture, ours_kid, num, num_subsets)
    print(f"peak memory: previous {before:.1f} MiB, ours {after:.1f} MiB, "
          f"ratio {before / after:.2f}x; KID relative difference "
          f"{abs(kid_after - kid_before) / abs(kid_before):.1e}", flush=True)


if __name__ == "__main__":
    main()

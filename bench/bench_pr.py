"""Precision/recall k-NN core: ours (blocked, symmetric, one cross pass) vs full matrices.

N = 20,000 real and 20,000 generated 4096-d features (ReLU-like random features), k = 3.
Peers, on the same tensors in this process:
- torch-fidelity's `calculate_precision_recall_full` (full cdist matrices, shared cross matrix);
- the stylegan2-ada algorithm written straightforwardly on full matrices (per direction:
  manifold x manifold distances, k-th value, probes x manifold distances).
Prints wall time, process CPU time and peak resident memory of each (peak RSS via
/proc/self/clear_refs + VmHWM) and the ratios; all three must agree on P and R.

Run: .venv/bin/python -m bench bench_pr   (BENCH_PR_N=20000 by default; BENCH_PR_THREADS=1
pins torch to one thread, which makes CPU times comparable on a shared, oversubscribed host)
"""

from __future__ import annotations

import os
import time

import torch

from bench.memory import reset_peak, rss_kib

N = int(os.environ.get("BENCH_PR_N", "20000"))
DIM = 4096
K = 3


def features(n: int, seed: int, scale: float) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    base = torch.randn(n, DIM, generator=g) * scale
    return torch.relu(base + 0.3)


def measure(name: str, fn):
    start_rss = reset_peak()
    wall, cpu = time.perf_counter(), time.process_time()
    precision, recall = fn()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    peak_gib = (rss_kib("VmHWM") - start_rss) / 2**20
    print(f"{name:34s} wall {wall:7.1f} s  cpu {cpu:7.1f} s  peak +{peak_gib:5.2f} GiB  "
          f"P={precision:.4f} R={recall:.4f}", flush=True)
    return wall, cpu, peak_gib, (round(precision, 6), round(recall, 6))


def straightforward(real: torch.Tensor, gen: torch.Tensor):
    """The stylegan2-ada algorithm on full matrices: two directions, four distance matrices."""
    results = []
    for manifold, probes in ((real, gen), (gen, real)):
        radii = torch.cdist(manifold, manifold).kthvalue(K + 1, dim=1).values
        inside = (torch.cdist(probes, manifold) <= radii.unsqueeze(0)).any(dim=1)
        results.append(inside.float().mean().item())
    return results[0], results[1]


def main() -> None:
    from eval import knn

    if os.environ.get("BENCH_PR_THREADS"):
        torch.set_num_threads(int(os.environ["BENCH_PR_THREADS"]))
    torch.manual_seed(0)
    real, gen = features(N, 1, 1.0), features(N, 2, 1.05)
    print(f"N = {N} per side, D = {DIM}, k = {K}, torch threads = {torch.get_num_threads()}")
    ours = measure("ours (eval.knn.precision_recall)",
                   lambda: _pair(knn.precision_recall(real, gen, K)))
    rows = {"ours": ours}
    try:
        from torch_fidelity.metric_prc import calculate_precision_recall_full

        rows["torch-fidelity full"] = measure(
            "torch-fidelity full matrices", lambda: calculate_precision_recall_full(gen, real, K))
    except ImportError:
        print("torch-fidelity not installed: skipping that peer")
    rows["straightforward"] = measure("straightforward full matrices",
                                      lambda: straightforward(real, gen))
    for name, row in rows.items():
        if name != "ours":
            print(f"speed-up vs {name}: wall {row[0] / ours[0]:.2f}x, cpu {row[1] / ours[1]:.2f}x; "
                  f"peak memory ours {ours[2]:.2f} GiB vs {row[2]:.2f} GiB; "
                  f"same P/R: {row[3] == ours[3]}")


def _pair(result):
    return result.precision, result.recall


if __name__ == "__main__":
    main()

"""`make bench`: run every `bench/bench_*.py` module (or those named on the command line).

Each module defines `main()`, runs ours and the peer in this one process and prints the
ratio; results are recorded by hand in BENCHMARKS.md with the command that produced them.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
import time

import bench


def main(argv: list[str]) -> int:
    names = argv or sorted(m.name for m in pkgutil.iter_modules(bench.__path__)
                           if m.name.startswith("bench_"))
    for name in names:
        print(f"== {name}", flush=True)
        start = time.perf_counter()
        importlib.import_module(f"bench.{name}").main()
        print(f"== {name} done in {time.perf_counter() - start:.1f} s", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))

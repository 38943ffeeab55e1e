"""Peak resident memory of this process from /proc (Linux): reset the high-water mark, run,
read VmHWM."""

from __future__ import annotations

import multiprocessing as mp


def rss_kib(field: str) -> int:
    """A /proc/self/status field in KiB (VmRSS: now, VmHWM: peak since the last reset)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def reset_peak() -> int:
    """Reset VmHWM to the current RSS and return that RSS (KiB)."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    return rss_kib("VmRSS")


def in_spawned_child(target, *args):
    """`target(*args, queue)` in a fresh spawned process (its own ru_maxrss); what it puts."""
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=target, args=(*args, queue))
    proc.start()
    result = queue.get()
    proc.join()
    return result

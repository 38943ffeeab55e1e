"""Seeding and device selection shared by every verb."""

from __future__ import annotations

import contextlib
import os
import random

from ffhq_tools.errors import FfhqToolsError


def seed_everything(seed: int, rank: int = 0) -> int:
    """Seed python, numpy and torch with `seed + rank`; returns the seed used."""
    import numpy as np
    import torch

    effective = int(seed) + int(rank)
    random.seed(effective)
    np.random.seed(effective % 2**32)
    torch.manual_seed(effective)
    return effective


def select_device(spec: str = "auto"):
    """`auto` picks CUDA when present; `cuda[:i]` fails clearly when it is not."""
    import torch

    spec = (spec or "auto").strip().lower()
    if spec == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        return torch.device("cpu")
    if spec == "cpu":
        return torch.device("cpu")
    if spec.startswith("cuda"):
        if not torch.cuda.is_available():
            raise FfhqToolsError(f"--device {spec}: CUDA is not available on this machine "
                                 "(use --device cpu or auto)")
        device = torch.device(spec)
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise FfhqToolsError(f"--device {spec}: only {torch.cuda.device_count()} "
                                 "CUDA device(s) present")
        return device
    raise FfhqToolsError(f"--device {spec}: expected auto, cpu, cuda or cuda:N")


def add_device_flag(parser) -> None:
    parser.add_argument("--device", default="auto", metavar="auto|cpu|cuda[:i]",
                        help="where to run (default: auto = CUDA when available)")


def default_threads() -> int:
    """The cores this process may use (its CPU affinity), shared by the ranks torchrun
    started on this machine."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    local_ranks = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    return max(int(cores or 1) // max(local_ranks, 1), 1)


def set_threads(threads: int | None) -> int:
    """torch's intra-op thread count (`--threads`, default `default_threads()`); returns it."""
    import torch

    if threads is not None and threads < 1:
        raise FfhqToolsError(f"--threads {threads}: must be at least 1")
    count = threads or default_threads()
    torch.set_num_threads(count)
    return count


@contextlib.contextmanager
def using_threads(threads: int | None):
    """`set_threads(threads)` for the block (yields the count), then the previous count."""
    import torch

    previous = torch.get_num_threads()
    try:
        yield set_threads(threads)
    finally:
        torch.set_num_threads(previous)


def add_threads_flag(parser) -> None:
    parser.add_argument("--threads", type=int,
                        help="CPU threads per process (default: the cores this process may "
                             "use)")

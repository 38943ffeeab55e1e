"""What a snapshot must hold for a run to continue exactly: counters, running means, RNG states.

RNG states are stored as plain tensors / lists so checkpoints load with weights_only=True.
Under torch.distributed every rank's states are gathered and each rank restores its own.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist

from ffhq_tools.errors import FfhqToolsError
from models.distributed import DistEnv


@dataclass
class LoopState:
    cur_nimg: int = 0
    cur_tick: int = 0
    step: int = 0
    tick_start_nimg: int = 0
    elapsed_s: float = 0.0
    lod_levels: tuple[int, int] | None = None

    def to_dict(self) -> dict:
        return {"cur_nimg": self.cur_nimg, "cur_tick": self.cur_tick, "step": self.step,
                "tick_start_nimg": self.tick_start_nimg, "elapsed_s": self.elapsed_s,
                "lod_levels": list(self.lod_levels) if self.lod_levels else None}

    @classmethod
    def from_dict(cls, data: dict) -> "LoopState":
        levels = data.get("lod_levels")
        return cls(int(data["cur_nimg"]), int(data["cur_tick"]), int(data["step"]),
                   int(data["tick_start_nimg"]), float(data["elapsed_s"]),
                   tuple(levels) if levels else None)


def capture_rng() -> dict:
    """This process's python, numpy and torch (CPU and CUDA) generator states."""
    version, internal, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "python": [version, list(internal), gauss],
        "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss),
                  float(cached)],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def gather_rng(env: DistEnv) -> list[dict]:
    """Every rank's RNG state, in rank order (only rank 0's list is complete)."""
    mine = capture_rng()
    if not env.distributed:
        return [mine]
    gathered: list = [None] * env.world_size
    dist.all_gather_object(gathered, mine)
    return gathered


def restore_rank_rng(states: list[dict], env: DistEnv) -> None:
    if len(states) != env.world_size:
        raise FfhqToolsError(f"the snapshot was written by {len(states)} rank(s) and this run "
                             f"has {env.world_size}: RNG states cannot be matched for an "
                             "exact resume (use the same number of ranks)")
    restore_rng(states[env.rank])


def memory_bytes(device: torch.device) -> int:
    """Peak memory: CUDA allocator peak on GPU, peak resident set size on CPU."""
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device))
    import resource

    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


def all_finite(*modules) -> bool:
    return all(bool(torch.isfinite(p).all()) for m in modules for p in m.parameters())

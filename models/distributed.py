"""torch.distributed for training: set-up from torchrun's environment, gradient averaging.

Launch: `torchrun --nproc_per_node K -m ffhq_tools train ...`; torchrun sets RANK, WORLD_SIZE,
LOCAL_RANK, MASTER_ADDR and MASTER_PORT. Backend: NCCL on CUDA, Gloo on CPU.

Gradients are averaged with one all-reduce of the flattened gradients per optimiser step
instead of wrapping G and D in DistributedDataParallel. A GAN step has several phases that
touch the same modules (D runs inside G's loss with its own parameters frozen; R1 and path
length need double backward through `autograd.grad`), which DDP's reducer does not support;
the explicit all-reduce gives the same result (the mean over ranks of the local mean
gradients), which is also what the stylegan2-ada reference trainer settled on.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass
from typing import Iterable

import torch
import torch.distributed as dist
from torch import nn

from ffhq_tools.errors import FfhqToolsError


@dataclass(frozen=True)
class DistEnv:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def launched_by_torchrun() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def init_distributed(device: torch.device) -> DistEnv:
    """Join the process group torchrun describes (or a single process without it).

    On CUDA every rank uses `cuda:LOCAL_RANK`; on CPU the Gloo backend is used.
    """
    if not launched_by_torchrun():
        return DistEnv(0, 1, 0, device)
    for name in ("RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        if name not in os.environ:
            raise FfhqToolsError(f"WORLD_SIZE > 1 but ${name} is not set: launch with torchrun")
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ["LOCAL_RANK"])
    if device.type == "cuda":
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
        backend = "nccl"
    else:
        backend = "gloo"
    if not dist.is_initialized():
        # Generous timeout: rank 0 alone computes metrics at snapshots while the others wait.
        dist.init_process_group(backend=backend, init_method="env://", rank=rank,
                                world_size=world, timeout=datetime.timedelta(hours=4))
    return DistEnv(rank, world, local_rank, device)


def shutdown(env: DistEnv) -> None:
    if env.distributed and dist.is_initialized():
        dist.destroy_process_group()


def barrier(env: DistEnv) -> None:
    if env.distributed:
        dist.barrier()


def average_gradients(params: Iterable[nn.Parameter], env: DistEnv) -> None:
    """Replace every gradient by its mean over ranks (missing gradients count as zero)."""
    params = [p for p in params if p.requires_grad]
    if not env.distributed or not params:
        return
    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    _average_in_place([p.grad for p in params], env)


def average_buffers(module: nn.Module, env: DistEnv) -> None:
    """Mean over ranks of every floating-point buffer (w_avg and friends), one all-reduce."""
    if env.distributed:
        _average_in_place([b for b in module.buffers() if b.is_floating_point()], env)


def _average_in_place(tensors: list[torch.Tensor], env: DistEnv) -> None:
    if not tensors:
        return
    flat = torch.cat([t.detach().flatten().float() for t in tensors])
    dist.all_reduce(flat)
    flat /= env.world_size
    offset = 0
    for t in tensors:
        count = t.numel()
        t.detach().copy_(flat[offset:offset + count].view_as(t))
        offset += count


def broadcast_module(module: nn.Module, env: DistEnv, src: int = 0) -> None:
    """Make every rank start from rank `src`'s parameters and buffers."""
    if not env.distributed:
        return
    for tensor in list(module.parameters()) + list(module.buffers()):
        dist.broadcast(tensor.data, src=src)


def mean_over_ranks(value: torch.Tensor, env: DistEnv) -> torch.Tensor:
    """Mean of a tensor over ranks (a detached copy; the input is unchanged)."""
    value = value.detach().clone()
    if env.distributed:
        dist.all_reduce(value)
        value /= env.world_size
    return value


def sum_over_ranks(value: torch.Tensor, env: DistEnv) -> torch.Tensor:
    """Sum of a tensor over ranks (a detached copy; the input is unchanged)."""
    value = value.detach().clone()
    if env.distributed:
        dist.all_reduce(value)
    return value

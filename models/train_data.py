"""Training data: a deterministic stream of (index, x-flip) shared by every rank, and its loader.

The stream is an endless sequence of positions 0, 1, 2, ...; position p belongs to epoch
p // N and maps to permutation_epoch[p % N] of the dataset (N items), with an x-flip bit drawn
from the same epoch generator. The trainer's image counter `cur_nimg` is the position of the
next minibatch, and each rank reads its own slice of every accumulation round, so:
- resuming at `cur_nimg` continues with exactly the images an uninterrupted run would read;
- K ranks with batch B read exactly the images one process with batch B reads.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch

from ffhq_tools.errors import FfhqToolsError


def _epoch_generator(seed: int, epoch: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([int(seed), int(epoch), 0x5EED]))


class ItemStream:
    """Maps stream positions to (dataset index, flip); caches one epoch's permutation."""

    def __init__(self, num_items: int, seed: int, mirror: bool):
        if num_items <= 0:
            raise FfhqToolsError("the training set is empty")
        self.num_items, self.seed, self.mirror = num_items, seed, mirror
        self._epoch = -1
        self._perm = self._flips = None

    def _load_epoch(self, epoch: int) -> None:
        if epoch != self._epoch:
            rng = _epoch_generator(self.seed, epoch)
            self._perm = rng.permutation(self.num_items)
            self._flips = rng.random(self.num_items) < 0.5
            self._epoch = epoch

    def item(self, position: int) -> tuple[int, bool]:
        epoch, offset = divmod(int(position), self.num_items)
        self._load_epoch(epoch)
        flip = bool(self._flips[offset]) if self.mirror else False
        return int(self._perm[offset]), flip

    def items(self, positions: list[int]) -> tuple[list[int], list[bool]]:
        pairs = [self.item(p) for p in positions]
        return [i for i, _ in pairs], [f for _, f in pairs]


@dataclass(frozen=True)
class StepLayout:
    """How one optimiser step's global batch splits into accumulation rounds and ranks."""

    batch: int
    batch_gpu: int
    world_size: int

    @property
    def rounds(self) -> int:
        return self.batch // (self.batch_gpu * self.world_size)

    def local_positions(self, start: int, rank: int) -> list[int]:
        """Stream positions this rank reads, round after round."""
        positions = []
        for r in range(self.rounds):
            base = start + r * self.batch_gpu * self.world_size + rank * self.batch_gpu
            positions.extend(range(base, base + self.batch_gpu))
        return positions


def step_layout(batch: int, batch_gpu: int, world_size: int) -> StepLayout:
    """Validate `--batch` / `--batch-gpu` against the number of ranks."""
    per_rank = batch // world_size
    if batch % world_size:
        raise FfhqToolsError(f"--batch {batch} is not divisible by the {world_size} ranks")
    batch_gpu = min(batch_gpu, per_rank)
    if batch_gpu <= 0 or per_rank % batch_gpu:
        raise FfhqToolsError(f"--batch-gpu {batch_gpu} must divide --batch / ranks = {per_rank}")
    return StepLayout(batch, batch_gpu, world_size)


class StepBatchSampler:
    """`batch_sampler` for a DataLoader: yields each step's local dataset indices in order.

    It replays the trainer's schedule (`layout_at(cur_nimg)`) so workers can prefetch ahead.
    """

    def __init__(self, stream: ItemStream, start_nimg: int, rank: int,
                 layout_at: Callable[[int], StepLayout]):
        self.stream, self.start_nimg, self.rank, self.layout_at = (
            stream, start_nimg, rank, layout_at)

    def __iter__(self) -> Iterator[list[int]]:
        nimg = self.start_nimg
        while True:
            layout = self.layout_at(nimg)
            indices, _ = self.stream.items(layout.local_positions(nimg, self.rank))
            yield indices
            nimg += layout.batch


def open_training_set(path: str | Path, resolution: int | None, max_size: int | None = None,
                      labels: bool = False):
    """The HDF5 training set (ffhq_tools.data.H5Dataset): uint8 CHW items at `resolution`
    (None: the largest level stored). X-flips are the trainer's (seeded per stream position),
    so the dataset is opened without its own xflip."""
    from ffhq_tools.data import H5Dataset
    from ffhq_tools.data.hints import not_a_dataset_hint

    path = Path(path)
    if not path.exists():
        raise FfhqToolsError(f"--data {path}: no such file")
    hint = not_a_dataset_hint(path)
    if hint:
        raise FfhqToolsError(f"--data {hint}")
    try:
        return H5Dataset(path, resolution, xflip=False, labels=labels, max_size=max_size)
    except FfhqToolsError as exc:
        flags = f"--data {path}" + (f" --res {resolution}" if resolution else "")
        raise FfhqToolsError(f"{flags}: {exc}") from None


def _collate_images(items):
    """Images -> uint8 NCHW tensor; (image, label) pairs -> (images, labels [N, c_dim])."""
    if isinstance(items[0], (tuple, list)):
        images = torch.stack([torch.as_tensor(np.asarray(item[0])) for item in items])
        return images, torch.stack([torch.as_tensor(item[1]) for item in items])
    return torch.stack([torch.as_tensor(np.asarray(img)) for img in items])


def dataset_labels(dataset) -> torch.Tensor:
    """Every label of an H5Dataset opened with labels=True, in item order ([N, c_dim]).

    Read in one go from the file's `labels` dataset, restricted to the items the reader keeps
    (its `max_size` subset), instead of decoding every image through __getitem__.
    """
    from ffhq_tools.data.layout import open_h5

    with open_h5(dataset.path) as f:
        labels = np.asarray(f["labels"][:], dtype=np.float32)
    return torch.from_numpy(labels[dataset._indices])


def make_loader(dataset, sampler: StepBatchSampler, workers: int, seed: int):
    """A DataLoader with its own generator: creating it must not consume the global torch
    RNG (that would shift the generator's noise inputs after a resume)."""
    return torch.utils.data.DataLoader(dataset, batch_sampler=sampler, num_workers=workers,
                                       collate_fn=_collate_images, pin_memory=False,
                                       prefetch_factor=2 if workers > 0 else None,
                                       persistent_workers=False,
                                       generator=torch.Generator().manual_seed(seed))


def prepare_reals(images: torch.Tensor, flips: list[bool], device: torch.device) -> torch.Tensor:
    """uint8 NCHW -> float32 in [-1, 1] on `device`, x-flipped where asked."""
    reals = images.to(device=device, dtype=torch.float32) / 127.5 - 1
    if any(flips):
        mask = torch.tensor(flips, device=device)
        reals = torch.where(mask.view(-1, 1, 1, 1), reals.flip(3), reals)
    return reals

"""`H5Dataset`: a torch Dataset over a packed file, opened lazily in each worker (fork-safe)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ffhq_tools.data.layout import DatasetError, level_name, levels_of, open_dataset, open_h5


class H5Dataset:
    """uint8 CHW tensors at `resolution` (a level of the file). With xflip=True the dataset is
    twice as long and indices N..2N-1 are the mirrored images (as stylegan2-ada). With
    labels=True items are (image, label float32). max_size keeps a seeded random subset
    (seed 0, in index order), like stylegan2-ada's --max-size."""

    def __init__(self, path: str | Path, resolution: int | None = None, xflip: bool = False,
                 labels: bool = False, max_size: int | None = None):
        self.path = Path(path)
        with open_dataset(self.path) as f:
            levels = levels_of(f)
            self.resolution = levels[0] if resolution is None else int(resolution)
            if self.resolution not in levels:
                raise DatasetError(f"{self.path}: no level {self.resolution}x{self.resolution} "
                                   f"(has {', '.join(str(r) for r in levels)})")
            count = f[level_name(self.resolution)].shape[0]
            self.num_channels = f[level_name(self.resolution)].shape[1]
            if labels and "labels" not in f:
                raise DatasetError(f"{self.path}: labels=True but the file has no labels")
            self.label_dim = f["labels"].shape[1] if "labels" in f else 0
        indices = np.arange(count)
        if max_size is not None and max_size < count:
            indices = np.sort(np.random.RandomState(0).permutation(count)[:max_size])
        self._indices = indices
        self.xflip = xflip
        self.labels = labels
        self._file = None
        self._pid = None

    def __len__(self) -> int:
        return len(self._indices) * (2 if self.xflip else 1)

    def _handle(self):
        if self._file is None or self._pid != os.getpid():
            self._file = open_h5(self.path)
            self._pid = os.getpid()
        return self._file

    def __getitem__(self, index: int):
        import torch

        if not 0 <= index < len(self):
            raise IndexError(index)
        flip = index >= len(self._indices)
        raw = int(self._indices[index % len(self._indices)])
        f = self._handle()
        image = f[level_name(self.resolution)][raw]
        if flip:
            image = image[:, :, ::-1]
        tensor = torch.from_numpy(np.ascontiguousarray(image))
        if self.labels:
            return tensor, torch.from_numpy(f["labels"][raw].astype(np.float32))
        return tensor

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_file"] = None  # never pickle an open HDF5 handle into a worker
        return state

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

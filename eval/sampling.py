"""Image sources for metrics: batches straight from a generator, or from real data.

Both yield uint8 NCHW tensors. Generated batches are quantised as the reference code does,
`clamp(x * 127.5 + 128, 0, 255)` truncated to uint8, and are deterministic per (seed, batch
index): the same seed and batch size give the same images on any number of ranks, because
under torch.distributed rank r takes global batches r, r + world, r + 2 world, ...
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from ffhq_tools.errors import FfhqToolsError

STATS_SUFFIXES = (".npz",)
H5_SUFFIXES = (".h5", ".hdf5")


class DataError(FfhqToolsError):
    """A real-data input (folder, HDF5 file) that cannot be used."""


def dist_info() -> tuple[int, int]:
    """(rank, world_size) of torch.distributed, or (0, 1) when it is not initialised."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def barrier() -> None:
    """Wait for every torch.distributed rank (nothing to wait for without one)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.barrier()


def batch_seed(seed: int, batch_index: int) -> int:
    return (int(seed) * 1_000_003 + int(batch_index)) % (2**63 - 1)


def quantize(images: torch.Tensor) -> torch.Tensor:
    """Generator output (about [-1, 1]) -> uint8, exactly as stylegan2-ada's metrics do."""
    return (images * 127.5 + 128).clamp(0, 255).to(torch.uint8)


def _labels_for(G, c, start: int, stop: int, device) -> torch.Tensor | None:
    c_dim = int(getattr(G, "c_dim", 0) or 0)
    if c_dim == 0:
        return None
    if c is None:
        raise FfhqToolsError(f"the generator is conditional (c_dim={c_dim}): pass labels c")
    c = torch.as_tensor(c, dtype=torch.float32)
    if c.ndim == 1:
        return c.to(device).unsqueeze(0).expand(stop - start, -1)
    return c[start:stop].to(device)


def _rank_batches(num: int, batch_size: int, rank: int, world_size: int):
    for index, start in enumerate(range(0, num, batch_size)):
        if index % world_size == rank:
            yield index, start, min(start + batch_size, num)


@torch.no_grad()
def iterate_generated(G, num: int, batch_size: int, seed: int, device, truncation_psi=1.0,
                      noise_mode: str = "random", c=None,
                      skip_batches: int = 0) -> Iterator[torch.Tensor]:
    """Yield this rank's share of `num` generated images as uint8 NCHW batches on `device`.

    `skip_batches` skips this rank's first batches without generating them (resume); the
    remaining batches are identical to an uninterrupted run's.
    """
    if num < 1 or batch_size < 1:
        raise FfhqToolsError(f"need num >= 1 and batch_size >= 1 (got {num}, {batch_size})")
    device = torch.device(device)
    rank, world_size = dist_info()
    fork_devices = [device] if device.type == "cuda" else []
    for position, (index, start, stop) in enumerate(_rank_batches(num, batch_size, rank,
                                                                   world_size)):
        if position < skip_batches:
            continue
        rng = torch.Generator().manual_seed(batch_seed(seed, index))
        z = torch.randn(stop - start, G.z_dim, generator=rng).to(device)
        labels = _labels_for(G, c, start, stop, device)
        with torch.random.fork_rng(devices=fork_devices):
            torch.manual_seed(batch_seed(seed, index) + 1)  # the synthesis noise of this batch
            images = G(z, labels, truncation_psi=truncation_psi, noise_mode=noise_mode)
        yield quantize(images)


def generated_count(num: int, batch_size: int, rank: int = 0, world_size: int = 1) -> int:
    return sum(stop - start for _, start, stop in _rank_batches(num, batch_size, rank,
                                                                world_size))


# ---- real data ----------------------------------------------------------------------------

def data_kind(data: str | Path) -> str:
    """'folder', 'h5' or 'stats' for a data path; clear error for anything else."""
    path = Path(data)
    if path.is_dir():
        return "folder"
    if not path.exists():
        raise DataError(f"{path}: no such file or folder")
    if path.suffix.lower() in H5_SUFFIXES:
        return "h5"
    if path.suffix.lower() in STATS_SUFFIXES:
        return "stats"
    raise DataError(f"{path}: expected an image folder, an HDF5 dataset (.h5) or a statistics "
                    "file (.npz)")


def h5_levels(path: str | Path) -> dict[int, str]:
    """Resolution -> dataset name for the `data{R}x{R}` levels of a ProGAN-layout HDF5 file."""
    from ffhq_tools.data.layout import open_dataset

    levels = {}
    with open_dataset(path) as f:
        for name in f.keys():
            if name.startswith("data") and "x" in name[4:]:
                side = name[4:].split("x")
                if len(side) == 2 and side[0] == side[1] and side[0].isdigit():
                    levels[int(side[0])] = name
    if not levels:
        raise DataError(f"{path}: no data{{R}}x{{R}} image datasets in this HDF5 file")
    return levels


def _h5_level(path: Path, resolution: int | None) -> str:
    levels = h5_levels(path)
    if resolution is None:
        return levels[max(levels)]
    if resolution not in levels:
        raise DataError(f"{path}: no level {resolution}x{resolution} "
                        f"(available: {', '.join(str(r) for r in sorted(levels))})")
    return levels[resolution]


def check_source(data: str | Path) -> str:
    """The kind of a data path, after opening it when it is an HDF5 file: a broken file is
    refused before any network is loaded."""
    kind = data_kind(data)
    if kind == "h5":
        h5_levels(data)
    return kind


def real_count(data: str | Path, resolution: int | None = None) -> int:
    """How many images a folder or HDF5 dataset holds."""
    kind = data_kind(data)
    if kind == "folder":
        from ffhq_tools.images import list_images

        return len(list_images(data))
    if kind == "h5":
        from ffhq_tools.data.layout import open_dataset

        with open_dataset(data) as f:
            return int(f[_h5_level(Path(data), resolution)].shape[0])
    raise DataError(f"{data}: a statistics file holds no images")


def _mine(index: int, shard: tuple[int, int] | None) -> bool:
    return shard is None or index % shard[1] == shard[0]


def _iterate_h5(path: Path, num: int, batch_size: int, resolution: int | None, shard,
                skip_batches: int):
    from ffhq_tools.data.layout import open_dataset

    with open_dataset(path) as f:
        dataset = f[_h5_level(path, resolution)]
        if dataset.dtype != np.uint8 or dataset.ndim != 4:
            raise DataError(f"{path}:{dataset.name}: expected uint8 (N, C, R, R), "
                            f"got {dataset.dtype} {dataset.shape}")
        starts = range(0, min(num, dataset.shape[0]), batch_size)
        mine = [start for index, start in enumerate(starts) if _mine(index, shard)]
        for start in mine[skip_batches:]:
            stop = min(start + batch_size, num, dataset.shape[0])
            yield torch.from_numpy(np.ascontiguousarray(dataset[start:stop]))


def _decode(path: Path, resolution: int | None) -> np.ndarray:
    from PIL import Image

    from ffhq_tools.images import open_image

    image = open_image(path)
    if resolution is not None and image.size != (resolution, resolution):
        image = image.resize((resolution, resolution), Image.Resampling.LANCZOS)
    return np.asarray(image)


def _same_size_runs(arrays: list[np.ndarray]):
    """Split decoded HWC images into runs of equal shape (mixed folders never crash)."""
    run: list[np.ndarray] = []
    for array in arrays:
        if run and array.shape != run[0].shape:
            yield run
            run = []
        run.append(array)
    if run:
        yield run


def _iterate_folder(folder: Path, num: int, batch_size: int, resolution: int | None,
                    workers: int, shard, skip_batches: int):
    from ffhq_tools.images import list_images

    files = list_images(folder)[:num]
    chunks = [files[i:i + batch_size] for i in range(0, len(files), batch_size)]
    chunks = [chunk for index, chunk in enumerate(chunks) if _mine(index, shard)][skip_batches:]
    for arrays in _prefetched(chunks, resolution, workers):
        for run in _same_size_runs(arrays):
            yield torch.from_numpy(np.stack(run)).permute(0, 3, 1, 2).contiguous()


def _prefetched(chunks: list[list[Path]], resolution: int | None, workers: int):
    """Decode chunks in threads, at most `workers + 1` chunks ahead (bounded memory)."""
    from collections import deque

    def decode(chunk):
        return [_decode(p, resolution) for p in chunk]

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        pending = deque()
        for chunk in chunks:
            pending.append(pool.submit(decode, chunk))
            if len(pending) > workers:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def iterate_real(data: str | Path, num: int, batch_size: int, resolution: int | None = None,
                 xflip: bool = False, workers: int = 2,
                 shard: tuple[int, int] | None = None,
                 skip_batches: int = 0) -> Iterator[torch.Tensor]:
    """Yield up to `num` real images (uint8 NCHW, on CPU) from an .h5 file or image folder.

    HDF5: the `data{R}x{R}` level `resolution` (default: the largest). Folders: recursive,
    sorted; every mode becomes RGB; with `resolution` each image is resized to it (Lanczos),
    otherwise images keep their size and a batch is cut where the size changes. With `xflip`
    each batch is followed by its mirror image, so 2 * num images come out. `shard=(rank,
    world_size)` keeps every world_size-th batch, starting at batch `rank`. `skip_batches`
    skips this shard's first batches of `batch_size` source images without reading them
    (resume); the rest come out exactly as in an uninterrupted run.
    """
    if num < 1 or batch_size < 1:
        raise FfhqToolsError(f"need num >= 1 and batch_size >= 1 (got {num}, {batch_size})")
    path = Path(data)
    kind = data_kind(path)
    if kind == "stats":
        raise DataError(f"{path}: a statistics file holds no images")
    batches = (_iterate_h5(path, num, batch_size, resolution, shard, skip_batches)
               if kind == "h5" else
               _iterate_folder(path, num, batch_size, resolution, workers, shard, skip_batches))
    for batch in batches:
        yield batch
        if xflip:
            yield batch.flip(3)

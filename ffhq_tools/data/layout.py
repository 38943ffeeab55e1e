"""The HDF5 dataset layout (ProGAN's h5tool, extended with provenance).

- `data{R}x{R}`: uint8 (N, C, R, R) for every power of two R from min_res to the full size,
  maxshape (None, C, R, R), one image per chunk. Level R/2 holds the 2x2 box average of level
  R computed in float and rounded at each level (as h5tool: the float chain continues, so level
  R/2^k is round(mean of 2^k x 2^k blocks of the full image)).
- optional `labels` float32 (N, L); optional `attributes` int8 (N, 40) in CelebA-HQ order.
- `metadata`: one JSON string per image (source, license, author, landmarks, md5, ...).
- file attributes: format, format_version, tool_version, options (JSON), count, resolution,
  channels and `sha256_<dataset>` = SHA-256 of each dataset's raw bytes in index order.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import numpy as np

from ffhq_tools.errors import FfhqToolsError

FORMAT = "ffhq-tools-h5"
FORMAT_VERSION = 1
LEVEL_NAME = re.compile(r"^data(\d+)x(\d+)$")
HASH_BATCH = 256


class DatasetError(FfhqToolsError):
    """A dataset file or an image going into one is not what it should be."""


def level_name(resolution: int) -> str:
    return f"data{resolution}x{resolution}"


def levels_of(h5file) -> list[int]:
    """Resolutions present in an open h5py file, largest first."""
    found = []
    for name in h5file.keys():
        match = LEVEL_NAME.match(name)
        if match and match.group(1) == match.group(2):
            found.append(int(match.group(1)))
    return sorted(found, reverse=True)


def pyramid(image: np.ndarray, resolutions: list[int]) -> dict[int, np.ndarray]:
    """CHW uint8 image -> {R: CHW uint8} for the given resolutions (largest = the image)."""
    levels = {resolutions[0]: image}
    current = image.astype(np.float64)
    for resolution in resolutions[1:]:
        current = (current[:, 0::2, 0::2] + current[:, 0::2, 1::2]
                   + current[:, 1::2, 0::2] + current[:, 1::2, 1::2]) * 0.25
        if current.shape[-1] != resolution:
            raise DatasetError(f"internal: pyramid level {current.shape[-1]} != {resolution}")
        levels[resolution] = np.uint8(np.clip(np.round(current), 0, 255))
    return levels


def resolutions_for(full: int, min_res: int) -> list[int]:
    if full < 1 or full & (full - 1):
        raise DatasetError(f"image size {full} is not a power of two")
    if min_res < 1 or min_res & (min_res - 1) or min_res > full:
        raise DatasetError(f"--min-res {min_res}: expected a power of two <= {full}")
    out, r = [], full
    while r >= min_res:
        out.append(r)
        r //= 2
    return out


def compression_args(spec: str) -> dict:
    """`none`, `lzf`, `gzip` or `gzip-N` -> h5py create_dataset keyword arguments."""
    spec = (spec or "none").lower()
    if spec == "none":
        return {}
    if spec == "lzf":
        return {"compression": "lzf"}
    match = re.fullmatch(r"gzip(?:-(\d))?", spec)
    if match:
        return {"compression": "gzip", "compression_opts": int(match.group(1) or 4)}
    raise DatasetError(f"--compression {spec}: expected none, lzf, gzip or gzip-N (N = 0..9)")


def dataset_sha256(dataset) -> str:
    """SHA-256 of a dataset's raw bytes in index order (read in batches)."""
    digest = hashlib.sha256()
    for start in range(0, dataset.shape[0], HASH_BATCH):
        digest.update(np.ascontiguousarray(dataset[start:start + HASH_BATCH]).tobytes())
    return digest.hexdigest()


def checksummed(h5file) -> list[str]:
    names = [level_name(r) for r in levels_of(h5file)]
    return names + [n for n in ("labels", "attributes") if n in h5file]


def read_metadata(h5file) -> list[dict]:
    if "metadata" not in h5file:
        return [{} for _ in range(int(h5file.attrs.get("count", 0)))]
    return [json.loads(s) for s in h5file["metadata"].asstr()[()]]


def open_h5(path: str | Path, mode: str = "r"):
    import h5py

    path = Path(path)
    if mode == "r" and not path.is_file():
        raise DatasetError(f"{path}: no such file")
    try:
        return h5py.File(path, mode)
    except OSError as exc:
        raise DatasetError(f"{path}: not a readable HDF5 file ({exc})") from exc

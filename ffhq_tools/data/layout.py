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
    """One dict per image (empty dicts when the file has no `metadata` dataset)."""
    if "metadata" not in h5file:
        levels = levels_of(h5file)
        return [{} for _ in range(h5file[level_name(levels[0])].shape[0] if levels else 0)]
    records = []
    for index, text in enumerate(h5file["metadata"].asstr()[()]):
        try:
            record = json.loads(text)
        except json.JSONDecodeError as exc:
            raise DatasetError(f"{h5file.filename}: metadata[{index}] is not JSON ({exc})") \
                from None
        if not isinstance(record, dict):
            raise DatasetError(f"{h5file.filename}: metadata[{index}] is not a JSON object")
        records.append(record)
    return records


def open_h5(path: str | Path, mode: str = "r", require_complete: bool = False):
    """An h5py File. Read mode checks the file first (`ffhq_tools.data.safety.check_file`): no
    links, external storage or foreign virtual sources, and no shape it does not store; with
    `require_complete`, an ffhq-tools file must carry its `complete` flag."""
    import h5py

    from ffhq_tools.data.safety import check_file

    path = Path(path)
    if mode == "r" and not path.is_file():
        raise DatasetError(f"{path}: no such file")
    try:
        f = h5py.File(path, mode)
    except OSError as exc:
        raise DatasetError(f"{path}: not a readable HDF5 file ({exc})") from exc
    if mode == "r":
        try:
            if require_complete and is_unfinished(f):
                raise DatasetError(f"{path}: an unfinished pack (its complete flag is not set: "
                                   "killed, or another pack was writing it); rerun the pack, or "
                                   "see info --verify")
            check_file(f, path)
        except BaseException:
            f.close()
            raise
    return f


def open_dataset(path: str | Path, require_complete: bool = True):
    """`open_h5` of a packed dataset whose structure is sound (`check_structure`); with
    `require_complete`, an ffhq-tools file must also carry its `complete` flag."""
    f = open_h5(path, require_complete=require_complete)
    try:
        check_structure(f, Path(path))
    except BaseException:
        f.close()
        raise
    return f


def is_unfinished(f) -> bool:
    """A file written by ffhq-tools whose pack never finished (foreign h5tool files have no
    flag and count as finished)."""
    return f.attrs.get("format") == FORMAT and not f.attrs.get("complete")


def check_structure(f, path: Path) -> None:
    """Levels of uint8 (N, C, R, R) with one N > 0 and C, labels / attributes / metadata of N
    rows, and finite labels."""
    import h5py

    levels = levels_of(f)
    if not levels:
        raise DatasetError(f"{path}: no data{{R}}x{{R}} datasets (not a packed dataset)")
    count = channels = None
    for r in levels:
        data = f[level_name(r)]
        where = f"{path}: {level_name(r)}"
        if not isinstance(data, h5py.Dataset) or data.ndim != 4 or data.dtype != np.uint8 \
                or data.shape[2:] != (r, r) or data.shape[1] not in (1, 3):
            raise DatasetError(f"{where} must be uint8 (N, C, {r}, {r}) with C = 1 or 3, found "
                               f"{getattr(data, 'dtype', 'a group')} {getattr(data, 'shape', '')}")
        count = data.shape[0] if count is None else count
        channels = data.shape[1] if channels is None else channels
        if data.shape[:2] != (count, channels):
            raise DatasetError(f"{where} holds {data.shape[0]} images of {data.shape[1]} "
                               f"channels, {level_name(levels[0])} {count} of {channels}")
    if count == 0:
        raise DatasetError(f"{path}: {level_name(levels[0])} is empty (0 images)")
    _check_rows(f, path, count)


def _check_rows(f, path: Path, count: int) -> None:
    import h5py

    declared = f.attrs.get("count")
    if declared is not None and int(declared) != count:
        raise DatasetError(f"{path}: attribute count = {int(declared)} but the levels hold "
                           f"{count} images")
    wanted = {"labels": 2, "attributes": 2, "metadata": 1}
    for name, ndim in wanted.items():
        if name not in f:
            continue
        data = f[name]
        if not isinstance(data, h5py.Dataset) or data.ndim != ndim or data.shape[0] != count:
            raise DatasetError(f"{path}: {name} has shape {getattr(data, 'shape', None)}, "
                               f"expected {count} rows for the {count} images")
        if name != "metadata" and data.dtype.kind not in "iuf":
            raise DatasetError(f"{path}: {name} must be numeric, found {data.dtype}")
    if "labels" in f:
        finite = np.isfinite(f["labels"][()]).all(axis=1)
        if not finite.all():
            raise DatasetError(f"{path}: labels[{int(np.argmin(finite))}] is not finite "
                               "(NaN or Inf)")

"""`export`: a level of a packed file as PNGs or a stylegan2-ada-pytorch dataset zip.

Both use stylegan2-ada's names (`00000/img00000000.png`, one folder per 1000 images) and its
`dataset.json` ({"labels": [[name, label], ...]} or {"labels": null}); `pack` reads both back,
so export -> pack is a lossless round trip of pixels and labels."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image

from ffhq_tools.atomic import atomic_path, write_bytes_atomic
from ffhq_tools.data.disk import disk_full_as_error
from ffhq_tools.data.layout import DatasetError, level_name, levels_of, open_dataset

FORMATS = ("png", "stylegan2-ada-zip")


def archive_name(index: int) -> str:
    return f"{index // 1000:05d}/img{index:08d}.png"


def _png(image_chw: np.ndarray) -> bytes:
    hwc = image_chw.transpose(1, 2, 0)
    buffer = io.BytesIO()
    Image.fromarray(hwc[:, :, 0] if hwc.shape[2] == 1 else hwc).save(buffer, format="PNG",
                                                                     compress_level=1)
    return buffer.getvalue()


def _label_value(row: np.ndarray):
    """stylegan2-ada reads a scalar label as an integer class, a vector as floats."""
    if row.size == 1 and float(row[0]).is_integer():
        return int(row[0])
    return [float(v) for v in row]


def export(h5_path: str | Path, out: str | Path, resolution: int | None = None,
           fmt: str = "png", progress: bool = True) -> int:
    """Write every image of one level; returns the number exported."""
    from tqdm import tqdm

    if fmt not in FORMATS:
        raise DatasetError(f"--format {fmt}: expected one of {', '.join(FORMATS)}")
    out = Path(out)
    if fmt != "png" and out.suffix.lower() != ".zip":
        raise DatasetError(f"--out {out}: a stylegan2-ada dataset must end in .zip")
    with open_dataset(h5_path) as f:
        levels = levels_of(f)
        resolution = resolution or levels[0]
        if resolution not in levels:
            raise DatasetError(f"--res {resolution}: {h5_path} has levels "
                               f"{', '.join(str(r) for r in levels)}")
        data = f[level_name(resolution)]
        names = [archive_name(i) for i in range(data.shape[0])]
        labels = f["labels"][()] if "labels" in f else None
        manifest = {"labels": None if labels is None else
                    [[n, _label_value(row)] for n, row in zip(names, labels, strict=True)]}
        manifest_bytes = json.dumps(manifest).encode()
        bar = tqdm(names, desc="export", unit="img", disable=not progress)
        with disk_full_as_error(out):
            _write(data, out, fmt, bar, manifest_bytes)
    return len(names)


def _write(data, out: Path, fmt: str, bar, manifest_bytes: bytes) -> None:
    """Every image of `data` as PNGs under OUT or one stylegan2-ada zip at OUT."""
    if fmt == "png":
        for index, name in enumerate(bar):
            write_bytes_atomic(out / name, _png(data[index]))
        write_bytes_atomic(out / "dataset.json", manifest_bytes)
        return
    with atomic_path(out) as tmp, zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED) as z:
        for index, name in enumerate(bar):
            z.writestr(name, _png(data[index]))
        z.writestr("dataset.json", manifest_bytes)

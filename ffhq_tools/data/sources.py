"""What `pack SRC` reads: an aligned folder (align*.jsonl give order and metadata), an align.jsonl,
a plain image folder, or a stylegan2-ada-pytorch dataset (zip or folder, `dataset.json` labels);
plus optional labels / attributes files matched by image name."""

from __future__ import annotations

import csv
import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ffhq_tools.atomic import read_jsonl
from ffhq_tools.data.layout import DatasetError
from ffhq_tools.images import IMAGE_SUFFIXES, list_images, load_rgb
from ffhq_tools.weights import CELEBAHQ_ATTRIBUTES


@dataclass(frozen=True)
class PackItem:
    name: str  # relative name, the key for labels / attributes
    location: str  # file path, or "zip:<archive>!<member>"
    metadata: dict = field(default_factory=dict)

    def load(self, max_pixels: int) -> np.ndarray:
        """HWC uint8 RGB (safe decode: EXIF, modes, bomb limit)."""
        if self.location.startswith("zip:"):
            archive, member = self.location[4:].split("!", 1)
            with zipfile.ZipFile(archive) as z:
                return load_rgb(z.read(member), max_pixels, name=f"{archive}:{member}")
        return load_rgb(self.location, max_pixels)


def _align_records(folder: Path, files: list[Path]) -> list[PackItem]:
    latest: dict[str, dict] = {}
    for path in files:
        for record in read_jsonl(path):
            latest[record["output"]] = record  # a resumed run may repeat a line: last wins
    items = []
    for output in sorted(latest):
        path = (folder / output).resolve()
        if not path.is_relative_to(folder.resolve()):
            raise DatasetError(f"{folder}: align.jsonl output {output!r} escapes the folder")
        if not path.is_file():
            raise DatasetError(f"{folder}: {output} is listed in align.jsonl but missing")
        items.append(PackItem(output, str(path), latest[output]))
    return items


def _stylegan2_labels(raw: bytes | None, where: str) -> dict[str, list[float]] | None:
    if raw is None:
        return None
    labels = json.loads(raw).get("labels")
    if labels is None:
        return None
    try:
        return {name: np.atleast_1d(np.asarray(v, dtype=np.float32)).tolist() for name, v in labels}
    except (TypeError, ValueError) as exc:
        raise DatasetError(f"{where}: dataset.json labels must be [[name, label], ...]") from exc


def items_from_zip(archive: Path) -> tuple[list[PackItem], dict | None]:
    try:
        with zipfile.ZipFile(archive) as z:
            names = sorted(n for n in z.namelist()
                           if Path(n).suffix.lower() in IMAGE_SUFFIXES and not n.endswith("/"))
            raw = z.read("dataset.json") if "dataset.json" in z.namelist() else None
    except zipfile.BadZipFile as exc:
        raise DatasetError(f"{archive}: not a zip file ({exc})") from exc
    items = [PackItem(n, f"zip:{archive}!{n}", {"source": n}) for n in names]
    return items, _stylegan2_labels(raw, str(archive))


def discover(src: str | Path) -> tuple[list[PackItem], dict | None]:
    """Items in pack order and stylegan2-ada labels (None when SRC carries none)."""
    src = Path(src)
    if src.is_file() and src.suffix.lower() == ".zip":
        return items_from_zip(src)
    if src.is_file() and src.suffix.lower() == ".jsonl":
        return _align_records(src.parent, [src]), None
    if not src.is_dir():
        raise DatasetError(f"pack SRC {src}: expected an aligned folder, align.jsonl, or a "
                           "stylegan2-ada dataset (.zip or folder)")
    records = sorted(src.glob("align*.jsonl"))
    if records:
        return _align_records(src, records), None
    labels_file = src / "dataset.json"
    labels = _stylegan2_labels(labels_file.read_bytes(), str(labels_file)) \
        if labels_file.is_file() else None
    names = [p.relative_to(src).as_posix() for p in list_images(src)]
    items = [PackItem(name, str(src / name), {"source": name}) for name in names]
    return items, labels


def read_table(path: Path, flag: str) -> dict[str, list[float]]:
    """{name: values} from CSV (first column the name, header row) or JSON ({name: values},
    or stylegan2-ada's {"labels": [[name, values], ...]})."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{flag} {path}: no such file")
    if path.suffix.lower() == ".csv":
        with open(path, newline="") as f:
            rows = list(csv.reader(f))
        table = {}
        for n, row in enumerate(rows[1:], start=2):
            try:
                table[row[0]] = [float(v) for v in row[1:]]
            except (ValueError, IndexError) as exc:
                raise DatasetError(f"{flag} {path} line {n}: {exc}") from exc
        return table
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise DatasetError(f"{flag} {path}: invalid JSON ({exc})") from exc
    if isinstance(data, dict) and isinstance(data.get("labels"), list):
        data = dict((name, value) for name, value in data["labels"])
    return {name: np.atleast_1d(np.asarray(v, dtype=np.float64)).tolist()
            for name, v in data.items()}


def match_table(items: list[PackItem], table: dict, flag: str, width: int | None = None,
                dtype=np.float32) -> np.ndarray:
    """Rows for items in order; every item must be present and rows equally long."""
    rows = []
    for item in items:
        key = item.name if item.name in table else Path(item.name).stem
        if key not in table:
            raise DatasetError(f"{flag}: no entry for image {item.name!r}")
        rows.append(table[key])
    widths = {len(r) for r in rows}
    if len(widths) > 1 or (width is not None and widths and widths != {width}):
        raise DatasetError(f"{flag}: rows must all have {width or 'the same number of'} values, "
                           f"found {sorted(widths)}")
    return np.asarray(rows, dtype=dtype).reshape(len(items), -1)


def attribute_rows(items: list[PackItem], path: Path) -> np.ndarray:
    """CelebA-HQ attributes (40 per image, -1/0/1) as int8 in the registry's order."""
    rows = match_table(items, read_table(path, "--attributes"), "--attributes",
                       width=len(CELEBAHQ_ATTRIBUTES), dtype=np.float64)
    if not np.all(np.isin(rows, (-1, 0, 1))):
        raise DatasetError(f"--attributes {path}: values must be -1, 0 or 1")
    return rows.astype(np.int8)

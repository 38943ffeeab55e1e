"""What `pack SRC` reads: an aligned folder (align*.jsonl give order and metadata), an align.jsonl,
a plain image folder, or a stylegan2-ada-pytorch dataset (zip or folder, `dataset.json` labels,
read by `ffhq_tools.data.tables`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ffhq_tools.atomic import DamagedJsonlError, read_jsonl
from ffhq_tools.data.layout import DatasetError
from ffhq_tools.data.tables import stylegan2_labels
from ffhq_tools.data.zip_source import checked_members, open_zip, read_member
from ffhq_tools.images import IMAGE_SUFFIXES, list_images, load_rgb


@dataclass(frozen=True)
class PackItem:
    name: str  # relative name, the key for labels / attributes
    location: str  # file path, or the zip archive holding `member`
    metadata: dict = field(default_factory=dict)
    member: str | None = None

    def load(self, max_pixels: int) -> np.ndarray:
        """HWC uint8 RGB (safe decode: EXIF, modes, bomb limit; zip members size-checked)."""
        if self.member is not None:
            with open_zip(Path(self.location)) as z:
                data = read_member(z, self.member, Path(self.location))
            return load_rgb(data, max_pixels, name=f"{self.location}:{self.member}")
        return load_rgb(self.location, max_pixels)


def _align_records(folder: Path, files: list[Path]) -> list[PackItem]:
    latest: dict[str, dict] = {}
    for path in files:
        for number, record in enumerate(_records(path), start=1):
            output = record.get("output") if isinstance(record, dict) else None
            if not isinstance(output, str) or not output:
                raise DatasetError(f"{path} record {number}: no \"output\" file name")
            latest[output] = record  # a resumed run may repeat a line: last wins
    items = []
    for output in sorted(latest):
        path = (folder / output).resolve()
        if not path.is_relative_to(folder.resolve()):
            raise DatasetError(f"{folder}: align.jsonl output {output!r} escapes the folder")
        if not path.is_file():
            raise DatasetError(f"{folder}: {output} is listed in align.jsonl but missing")
        items.append(PackItem(output, str(path), latest[output]))
    return items


def _records(path: Path) -> list:
    try:
        return read_jsonl(path)
    except DamagedJsonlError as exc:
        raise DatasetError(str(exc)) from None
    except OSError as exc:
        raise DatasetError(f"{path}: unreadable ({exc.strerror})") from None


def items_from_zip(archive: Path) -> tuple[list[PackItem], dict | None]:
    with open_zip(archive) as z:
        members = {info.filename for info in checked_members(z, archive)}
        names = sorted(n for n in members
                       if Path(n).suffix.lower() in IMAGE_SUFFIXES and not n.endswith("/"))
        raw = read_member(z, "dataset.json", archive) if "dataset.json" in members else None
    items = [PackItem(n, str(archive), {"source": n}, member=n) for n in names]
    return items, stylegan2_labels(raw, f"{archive}:dataset.json")


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
    labels = stylegan2_labels(labels_file.read_bytes(), str(labels_file)) \
        if labels_file.is_file() else None
    names = [p.relative_to(src).as_posix() for p in list_images(src)]
    items = [PackItem(name, str(src / name), {"source": name}) for name in names]
    return items, labels

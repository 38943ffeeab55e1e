"""Projection targets: images, folders, an aligned folder's align.jsonl, an .h5 level.

A `Target` holds a name (its output folder), where it came from and a loader that returns HWC
uint8 RGB pixels or raises `ImageRejected`. Loading is lazy, so a 70,000-image dataset costs
nothing until its targets are projected. `prepare_pixels` is the reference preprocessing:
centre crop to a square, Lanczos resize to the generator's resolution.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from ffhq_tools.errors import FfhqToolsError
from ffhq_tools.images import IMAGE_SUFFIXES, ImageRejected, list_images, load_rgb

H5_SUFFIXES = (".h5", ".hdf5")
H5_SPEC = re.compile(r"^(?P<path>.+\.(?:h5|hdf5)):(?P<level>\d+)$", re.IGNORECASE)
UNSAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass(frozen=True)
class Target:
    name: str
    source: str
    load: Callable[[], np.ndarray]


def prepare_pixels(pixels: np.ndarray, resolution: int, channels: int = 3) -> np.ndarray:
    """HWC uint8 -> centre square crop, Lanczos resize to resolution: [R, R, channels]."""
    image = Image.fromarray(pixels).convert("L" if channels == 1 else "RGB")
    w, h = image.size
    s = min(w, h)
    image = image.crop(((w - s) // 2, (h - s) // 2, (w + s) // 2, (h + s) // 2))
    image = image.resize((resolution, resolution), Image.Resampling.LANCZOS)
    array = np.asarray(image, dtype=np.uint8)
    return array[..., None] if array.ndim == 2 else array


def safe_name(text: str) -> str:
    name = UNSAFE_NAME.sub("_", text).strip("._")
    return name or "target"


def unique_names(targets: list[Target]) -> list[Target]:
    """Targets with distinct names (a repeated name gets -2, -3, ...)."""
    seen: dict[str, int] = {}
    out = []
    for target in targets:
        count = seen.get(target.name, 0) + 1
        seen[target.name] = count
        name = target.name if count == 1 else f"{target.name}-{count}"
        out.append(Target(name, target.source, target.load))
    return out


def _image_loader(path: Path) -> Callable[[], np.ndarray]:
    return lambda: load_rgb(path, name=str(path))


def _from_file(path: Path) -> list[Target]:
    return [Target(safe_name(path.stem), str(path), _image_loader(path))]


def _from_folder(folder: Path) -> list[Target]:
    images = list_images(folder)
    if not images:
        suffixes = ", ".join(sorted(IMAGE_SUFFIXES))
        raise FfhqToolsError(f"target folder {folder}: no images ({suffixes})")
    return [Target(safe_name(p.relative_to(folder).with_suffix("").as_posix()), str(p),
                   _image_loader(p)) for p in images]


def _inside(root: Path, relative: str, where: str) -> Path:
    path = (root / relative).resolve()
    if not path.is_relative_to(root.resolve()):
        raise FfhqToolsError(f"{where}: output {relative!r} points outside {root}")
    return path


def _from_align_file(path: Path) -> list[Target]:
    targets = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path} line {number}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            raise FfhqToolsError(f"{where}: not a JSON record") from None
        output = record.get("output") if isinstance(record, dict) else None
        if not isinstance(output, str):
            raise FfhqToolsError(f"{where}: no 'output' field (not an align.jsonl record)")
        image = _inside(path.parent, output, where)
        targets.append(Target(safe_name(Path(output).with_suffix("").as_posix()), str(image),
                              _image_loader(image)))
    if not targets:
        raise FfhqToolsError(f"{path}: no aligned faces listed")
    return targets


def _h5_level(path: Path, level: int | None, resolution: int) -> int:
    from ffhq_tools.data.layout import levels_of, open_h5

    with open_h5(path) as f:
        levels = levels_of(f)
    if not levels:
        raise FfhqToolsError(f"{path}: no data{{R}}x{{R}} levels")
    if level is None:
        return resolution if resolution in levels else levels[0]
    if level not in levels:
        raise FfhqToolsError(f"{path}:{level}: no such level (has "
                             f"{', '.join(str(r) for r in levels)})")
    return level


def _from_h5(path: Path, level: int | None, resolution: int) -> list[Target]:
    from ffhq_tools.data.reader import H5Dataset

    dataset = H5Dataset(path, _h5_level(path, level, resolution))

    def loader(index: int) -> Callable[[], np.ndarray]:
        def load() -> np.ndarray:
            chw = dataset[index].numpy()
            return np.repeat(chw, 3, axis=0).transpose(1, 2, 0) if chw.shape[0] == 1 \
                else chw.transpose(1, 2, 0)
        return load

    stem = safe_name(path.stem)
    return [Target(f"{stem}-{i:05d}", f"{path}[{i}]@{dataset.resolution}", loader(i))
            for i in range(len(dataset))]


def targets_from_spec(spec: str, resolution: int) -> list[Target]:
    """One command-line target: an image, a folder, an align.jsonl, FILE.h5 or FILE.h5:LEVEL."""
    match = H5_SPEC.match(spec)
    if match:
        return _from_h5(Path(match.group("path")), int(match.group("level")), resolution)
    path = Path(spec)
    if not path.exists():
        raise FfhqToolsError(f"target {spec}: no such file or folder")
    if path.is_dir():
        return _from_folder(path)
    if path.suffix.lower() in H5_SUFFIXES:
        return _from_h5(path, None, resolution)
    if path.suffix.lower() == ".jsonl":
        return _from_align_file(path)
    return _from_file(path)


def collect_targets(specs: list[str], resolution: int, limit: int | None = None
                    ) -> list[Target]:
    targets = [t for spec in specs for t in targets_from_spec(spec, resolution)]
    if limit is not None:
        targets = targets[:limit]
    return unique_names(targets)


def load_target(target: Target, resolution: int, channels: int = 3
                ) -> tuple[np.ndarray | None, dict | None]:
    """(prepared pixels, None) or (None, a rejects record) for an unreadable target."""
    try:
        return prepare_pixels(target.load(), resolution, channels), None
    except ImageRejected as exc:
        return None, {"target": target.name, "source": target.source, "reason": exc.reason,
                      "detail": exc.detail}

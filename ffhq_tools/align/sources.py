"""What `align SRC` works on: a photo folder, a crawl manifest / FFHQ `ffhq-dataset-v2.json`
(entries with `in_the_wild.file_path`, optional `in_the_wild.face_landmarks`, `metadata`), and
landmarks given in a JSON or CSV file.

A manifest path is resolved inside the manifest's folder (or `--images-root`) and must stay
there: absolute paths, `..` escapes and URL schemes are refused, never followed.
"""

from __future__ import annotations

import csv
import json
import re
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np

from ffhq_tools.errors import FfhqToolsError
from ffhq_tools.images import list_image_entries
from ffhq_tools.safe_paths import check_relative_name

FFHQ_KEY = re.compile(r"[0-9]{1,9}")


@dataclass(frozen=True)
class AlignItem:
    key: str  # output name stem, relative to OUT, e.g. "sub/photo" or "00000/00042"
    path: Path  # the photo on disk
    source: str  # relative path (to SRC folder or the manifest's images root)
    given: tuple[np.ndarray, ...] | None = None  # landmarks per face, when known
    metadata: dict = field(default_factory=dict)  # license, author, category, country ...
    numbered: bool = False  # FFHQ naming: one face per item, no `_NN` suffix


def _inside(root: Path, relative: str, where: str) -> Path:
    first = PurePosixPath(relative).parts[0] if relative else ""
    if "://" in relative or relative.startswith(("/", "\\")) or ":" in first:
        raise FfhqToolsError(f"{where}: path {relative!r} must be relative to {root} "
                             "(absolute paths and URLs are not followed)")
    path = (root / relative).resolve()
    if not path.is_relative_to(root.resolve()):
        raise FfhqToolsError(f"{where}: path {relative!r} escapes {root}")
    return path


def _landmark_array(value, where: str) -> np.ndarray:
    array = np.asarray(value, dtype=np.float64)
    if array.shape != (68, 2):
        raise FfhqToolsError(f"{where}: expected 68 [x, y] landmarks, got shape {array.shape}")
    return array


def output_stem(key: str, where: str) -> tuple[str, bool]:
    """(output stem, numbered): FFHQ's numeric keys give `00000/00042`; any other key must be a
    safe relative name (`check_relative_name`), used as it is."""
    if FFHQ_KEY.fullmatch(key):
        number = int(key)
        return f"{number - number % 1000:05d}/{number:05d}", True
    return check_relative_name(key, f"{where} (entry key)"), False


def _manifest_entries(data) -> list[tuple[str, dict]]:
    if isinstance(data, dict) and all(isinstance(v, dict) for v in data.values()):
        entries = list(data.items())
    elif isinstance(data, list):
        entries = [(str(i), e) for i, e in enumerate(data)]
    else:
        raise FfhqToolsError("manifest: expected a JSON object of entries or a list of entries")
    return sorted(entries, key=lambda kv: (len(kv[0]), kv[0]))


def items_from_manifest(manifest: Path, images_root: Path | None = None) -> list[AlignItem]:
    """Entries in the FFHQ v2 schema: in_the_wild.file_path (+ face_landmarks), metadata."""
    try:
        data = json.loads(Path(manifest).read_text())
    except (OSError, ValueError, RecursionError) as exc:  # ValueError: bad JSON or UTF-8
        raise FfhqToolsError(f"{manifest}: not a readable JSON manifest "
                             f"({type(exc).__name__}: {str(exc)[:200]})") from exc
    root = Path(images_root) if images_root else Path(manifest).parent
    items, stems = [], {}
    for key, entry in _manifest_entries(data):
        where = f"{manifest} entry {key[:60]!r}"
        wild = entry.get("in_the_wild")
        if not isinstance(wild, dict) or not isinstance(wild.get("file_path"), str):
            raise FfhqToolsError(f"{where}: missing in_the_wild.file_path")
        path = _inside(root, wild["file_path"], where)
        given = None
        if wild.get("face_landmarks") is not None:
            given = (_landmark_array(wild["face_landmarks"], f"{where} face_landmarks"),)
        meta = dict(entry.get("metadata") or {})
        if entry.get("category"):
            meta["category"] = entry["category"]
        if wild.get("file_url"):
            meta["file_url"] = wild["file_url"]
        stem, numbered = output_stem(key, where)
        if stem in stems:
            raise FfhqToolsError(f"{where}: same output name {stem!r} as entry {stems[stem]!r}")
        stems[stem] = key
        items.append(AlignItem(stem, path, wild["file_path"], given,
                               {k: meta[k] for k in sorted(meta)}, numbered and given is not None))
    return items


def items_from_folder(folder: Path) -> list[AlignItem]:
    folder = Path(folder)
    return [AlignItem(p.relative_to(folder).with_suffix("").as_posix(), p,
                      p.relative_to(folder).as_posix()) for p in list_image_entries(folder)]


def read_given_landmarks(path: Path) -> dict[str, list[np.ndarray]]:
    """{source relative path: [68x2 per face]} from JSON ({path: [[x, y] * 68] or a list of
    such}) or CSV (columns `path`, optional `face`, then x0, y0, ..., x67, y67)."""
    path = Path(path)
    if not path.is_file():
        raise FfhqToolsError(f"--landmarks-file {path}: no such file")
    faces: dict[str, list[np.ndarray]] = {}
    if path.suffix.lower() == ".csv":
        with open(path, newline="") as f:
            reader = csv.DictReader(f)
            columns = [f"{axis}{i}" for i in range(68) for axis in "xy"]
            missing = [c for c in ["path"] + columns if c not in (reader.fieldnames or [])]
            if missing:
                raise FfhqToolsError(f"--landmarks-file {path}: missing columns {missing[:4]}...")
            for n, row in enumerate(reader, start=2):
                try:
                    values = [float(row[c]) for c in columns]
                except ValueError as exc:
                    raise FfhqToolsError(f"--landmarks-file {path} line {n}: {exc}") from exc
                faces.setdefault(row["path"], []).append(np.reshape(values, (68, 2)))
        return faces
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError, RecursionError) as exc:  # ValueError: bad JSON or UTF-8
        raise FfhqToolsError(f"--landmarks-file {path}: not readable JSON "
                             f"({type(exc).__name__}: {str(exc)[:200]})") from exc
    if not isinstance(data, dict):
        raise FfhqToolsError(f"--landmarks-file {path}: expected a JSON object "
                             "{path: landmarks}")
    for name, value in data.items():
        value = np.asarray(value, dtype=np.float64)
        stack = value[None] if value.ndim == 2 else value
        faces[name] = [_landmark_array(v, f"--landmarks-file {path} entry {name}") for v in stack]
    return faces


def discover(src: Path, landmarks_file: Path | None = None,
             images_root: Path | None = None) -> list[AlignItem]:
    """Every item of SRC (a folder or a JSON manifest), with given landmarks attached."""
    src = Path(src)
    if src.is_dir():
        items = items_from_folder(src)
    elif src.is_file() and src.suffix.lower() == ".json":
        items = items_from_manifest(src, images_root)
    else:
        raise FfhqToolsError(f"align SRC {src}: expected a folder of photos or a JSON manifest")
    if landmarks_file is not None:
        given = read_given_landmarks(landmarks_file)
        items = [AlignItem(i.key, i.path, i.source, tuple(given[i.source]), i.metadata)
                 if i.source in given else AlignItem(i.key, i.path, i.source, (), i.metadata)
                 for i in items]
    return items

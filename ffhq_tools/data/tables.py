"""Per-image tables for `pack`: labels (CSV, JSON, stylegan2-ada `dataset.json`) and CelebA-HQ
attributes, matched to images by name.

Every value is a finite number (null, NaN, Inf and values beyond float32 are refused), a name
appears once, and every name in a table is one of the images being packed, so a label is never
silently dropped or doubled.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

from ffhq_tools.data.layout import DatasetError
from ffhq_tools.weights import CELEBAHQ_ATTRIBUTES

FLOAT32_MAX = float(np.finfo(np.float32).max)


def label_row(value, where: str) -> list[float]:
    """A number or a flat list of numbers, each finite within float32."""
    try:
        row = np.atleast_1d(np.asarray(value, dtype=np.float64))
    except (TypeError, ValueError):
        raise DatasetError(f"{where}: {str(value)[:60]} is not a number or list of numbers") \
            from None
    if row.ndim != 1:
        raise DatasetError(f"{where}: {str(value)[:60]} is not a number or list of numbers")
    if not np.all(np.abs(row) <= FLOAT32_MAX):  # NaN fails the comparison too
        raise DatasetError(f"{where}: {str(value)[:60]} is not finite (null, NaN, Inf or beyond "
                           "float32)")
    return row.tolist()


def _unique_rows(pairs, where: str) -> dict[str, list[float]]:
    table: dict[str, list[float]] = {}
    for name, value in pairs:
        if not isinstance(name, str):
            raise DatasetError(f"{where}: image name {name!r} is not a string")
        if name in table:
            raise DatasetError(f"{where}: {name!r} is labelled twice")
        table[name] = label_row(value, f"{where} {name!r}")
    return table


def _json(raw: bytes | str, where: str):
    def no_duplicate_keys(pairs):
        keys = [k for k, _ in pairs]
        for key in keys:
            if keys.count(key) > 1:
                raise DatasetError(f"{where}: key {key!r} appears twice")
        return dict(pairs)

    try:
        return json.loads(raw, object_pairs_hook=no_duplicate_keys)
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise DatasetError(f"{where} is not valid JSON ({str(exc)[:80]})") from None


def stylegan2_labels(raw: bytes | None, where: str) -> dict[str, list[float]] | None:
    """stylegan2-ada's `dataset.json`: {"labels": [[name, label], ...] or null}."""
    if raw is None:
        return None
    data = _json(raw, where)
    if not isinstance(data, dict):
        raise DatasetError(f"{where}: must be an object {{\"labels\": ...}}")
    labels = data.get("labels")
    if labels is None:
        return None
    if not isinstance(labels, list) or not all(isinstance(p, list) and len(p) == 2
                                               for p in labels):
        raise DatasetError(f"{where}: labels must be [[name, label], ...]")
    return _unique_rows(labels, where)


def read_table(path: Path, flag: str) -> dict[str, list[float]]:
    """{name: values} from CSV (first column the name, header row) or JSON ({name: values},
    or stylegan2-ada's {"labels": [[name, values], ...]})."""
    path = Path(path)
    where = f"{flag} {path}"
    if not path.is_file():
        raise DatasetError(f"{where}: no such file")
    if path.suffix.lower() == ".csv":
        with open(path, newline="") as f:
            rows = list(csv.reader(f))
        pairs = []
        for n, row in enumerate(rows[1:], start=2):
            try:
                pairs.append((row[0], [float(v) for v in row[1:]]))
            except (ValueError, IndexError) as exc:
                raise DatasetError(f"{where} line {n}: {exc}") from exc
        return _unique_rows(pairs, where)
    data = _json(path.read_bytes(), where)
    if isinstance(data, dict) and isinstance(data.get("labels"), list):
        return stylegan2_labels(path.read_bytes(), where)
    if not isinstance(data, dict):
        raise DatasetError(f"{where}: expected an object {{name: values}} or a stylegan2-ada "
                           "dataset.json")
    return _unique_rows(data.items(), where)


def check_names(names: list[str], table: dict, flag: str) -> None:
    """Every table entry names one of the images (by name, or by file stem)."""
    known = set(names) | {Path(n).stem for n in names}
    for key in table:
        if key not in known:
            raise DatasetError(f"{flag}: labels name {key!r}, which is not an image of SRC")


def match_table(items, table: dict, flag: str, width: int | None = None,
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


def attribute_rows(items, path: Path) -> np.ndarray:
    """CelebA-HQ attributes (40 per image, -1/0/1) as int8 in the registry's order."""
    rows = match_table(items, read_table(path, "--attributes"), "--attributes",
                       width=len(CELEBAHQ_ATTRIBUTES), dtype=np.float64)
    if not np.all(np.isin(rows, (-1, 0, 1))):
        raise DatasetError(f"--attributes {path}: values must be -1, 0 or 1")
    return rows.astype(np.int8)

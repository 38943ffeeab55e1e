"""`info`: what a packed file holds (counts, levels, labels, license / category / country tables
as FFHQ's download script prints them) and `--verify`: checksums and pyramid consistency."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np

from ffhq_tools.data.layout import (
    FORMAT,
    checksummed,
    dataset_sha256,
    is_unfinished,
    level_name,
    levels_of,
    open_dataset,
    read_metadata,
)


def dataset_info(path: str | Path, require_complete: bool = True) -> dict:
    """Summary of a packed file; an unfinished ffhq-tools file is refused unless
    `require_complete` is False (as for `info --verify`, which reports it)."""
    with open_dataset(path, require_complete) as f:
        levels = levels_of(f)
        full = f[level_name(levels[0])]
        metadata = read_metadata(f)
        return {
            "path": str(path),
            "format": f.attrs.get("format", "h5tool"),
            "format_version": int(f.attrs.get("format_version", 0)),
            "count": int(full.shape[0]),
            "channels": int(full.shape[1]),
            "resolution": levels[0],
            "levels": levels,
            "compression": full.compression or "none",
            "virtual": bool(full.is_virtual),
            "labels": list(f["labels"].shape[1:]) if "labels" in f else None,
            "attributes": "attributes" in f,
            "complete": bool(f.attrs.get("complete", False)),
            "options": json.loads(f.attrs["options"]) if "options" in f.attrs else None,
            "tables": {key: dict(Counter(_field(m, key) for m in metadata).most_common())
                       for key in ("category", "license", "country")},
        }


def _field(meta: dict, key: str) -> str:
    value = meta.get(key) or (meta.get("metadata") or {}).get(key)
    return value if value else "<Unknown>"


def format_tables(info: dict) -> str:
    """FFHQ-style tables: name, images, % of all."""
    lines = []
    total = max(info["count"], 1)
    for key, counts in info["tables"].items():
        width = max([len(key)] + [len(str(k)) for k in counts])
        lines += ["", f"{key.capitalize():{width}s}  Images  % of all", "-" * (width + 18)]
        lines += [f"{name:{width}s}  {n:6d}  {100.0 * n / total:8.2f}"
                  for name, n in counts.items()]
    return "\n".join(lines)


def unfinished_problem(path: str | Path) -> str | None:
    """Why `path` is an unfinished pack, or None (read from the attributes alone)."""
    import h5py

    try:
        with h5py.File(path, "r") as f:
            if is_unfinished(f):
                return ("unfinished pack: the complete flag is not set (killed, or another pack "
                        "was writing it), so it has no checksums; rerun the pack")
    except OSError:
        pass  # open_dataset names the problem
    return None


def verify(path: str | Path, pyramid_samples: int = 16) -> list[str]:
    """Problems found (empty when the file is sound): missing/mismatching checksums, levels that
    are not the box averages of the full image (checked on `pyramid_samples` images)."""
    unfinished = unfinished_problem(path)
    if unfinished:
        return [unfinished]
    problems = []
    with open_dataset(path, require_complete=False) as f:
        if f.attrs.get("format") != FORMAT:
            problems.append("not written by ffhq-tools (no checksums to verify)")
        for name in checksummed(f):
            expected = f.attrs.get(f"sha256_{name}")
            if expected is None:
                problems.append(f"{name}: no recorded SHA-256")
            elif dataset_sha256(f[name]) != expected:
                problems.append(f"{name}: SHA-256 mismatch (the data changed after packing)")
        levels = levels_of(f)
        full = f[level_name(levels[0])]
        count = full.shape[0]
        for index in np.unique(np.linspace(0, count - 1, min(pyramid_samples, count)).astype(int)):
            image = full[index].astype(np.float64)
            for r in levels[1:]:
                k = levels[0] // r
                expected = image.reshape(image.shape[0], r, k, r, k).mean(axis=(2, 4))
                if np.abs(f[level_name(r)][index] - np.round(expected)).max() > 0:
                    problems.append(f"{level_name(r)}[{index}]: not the box average of the "
                                    "full-resolution image")
    return problems

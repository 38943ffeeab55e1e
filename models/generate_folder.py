"""A generate output folder: what made it, its samples streamed to disk, and its grid.

Layout:
    OUT/options.json     the settings that made every image (see SETTINGS_KEYS) + seeds so far
    OUT/samples/         only samples (seed0000.png ... or proj00.png ...), so `fid OUT/samples`
                         reads nothing else
    OUT/grid.png         the first GRID_MAX_IMAGES samples, written strip by strip
    OUT/figures/         style mixing, noise variation, truncation sweep, interpolation

Each PNG carries the same settings (plus its own seed or code index) in a tEXt chunk.
A folder made with other settings is refused, so images of two checkpoints, psis, noise
modes or classes never mix; a rerun with the same settings keeps every intact image whose
metadata matches and renders the rest.
"""

from __future__ import annotations

import json
import math
import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

from ffhq_tools import __version__
from ffhq_tools.atomic import write_json_atomic
from ffhq_tools.errors import FfhqToolsError
from models.generate import SeedRanges, batched, map_seeds, render
from models.png_files import inspect_png, load_png, save_png, write_png_strips

FORMAT = "ffhq-tools-generate"
VERSION = 1
GRID_MAX_IMAGES = 64
PNG_WRITERS = min(4, os.cpu_count() or 1)
LATENTS = "z = np.random.RandomState(seed).randn(z_dim) per seed"
QUANTISATION = "uint8 = clamp(x * 127.5 + 128, 0, 255)"


class FolderMismatchError(FfhqToolsError):
    """An output folder holds images made with other settings (or foreign files)."""


@dataclass(frozen=True)
class SampleSettings:
    """Everything an image depends on besides its seed (or code index)."""

    checkpoint_sha256: str
    resolution: int
    img_channels: int
    truncation_psi: float = 1.0
    truncation_cutoff: int | None = None
    noise_mode: str = "const"
    class_idx: int | None = None
    projected_w_sha256: tuple[str, ...] = ()

    @property
    def source(self) -> str:
        return "projected_w" if self.projected_w_sha256 else "seeds"

    def as_dict(self) -> dict:
        values = asdict(self)
        values["projected_w_sha256"] = list(self.projected_w_sha256)
        values["source"] = self.source
        return values


@dataclass(frozen=True)
class SampleItem:
    """One sample: its file name and the number that picks it (seed or code index)."""

    name: str
    seed: int | None = None
    code_index: int | None = None

    @property
    def noise_seed(self) -> int:
        return self.seed if self.seed is not None else self.code_index


def seed_items(seeds: Iterable[int]) -> Iterator[SampleItem]:
    return (SampleItem(name=f"seed{s:04d}.png", seed=s) for s in seeds)


def code_items(count: int) -> Iterator[SampleItem]:
    return (SampleItem(name=f"proj{i:02d}.png", code_index=i) for i in range(count))


@dataclass
class SampleCounts:
    new: int = 0
    kept: int = 0
    repaired: list[str] = field(default_factory=list)

    @property
    def total(self) -> int:
        return self.new + self.kept


def _differences(theirs: dict, ours: dict) -> list[str]:
    return [f"{key} {theirs.get(key)!r} there, {ours.get(key)!r} now"
            for key in sorted(set(theirs) | set(ours)) if theirs.get(key) != ours.get(key)]


class SampleFolder:
    """An output folder opened for one set of settings (created, or checked to match)."""

    def __init__(self, root: Path, settings: SampleSettings, record: dict):
        self.root = Path(root)
        self.settings = settings
        self.samples = self.root / "samples"
        self.figures = self.root / "figures"
        self.grid = self.root / "grid.png"
        self.options_path = self.root / "options.json"
        self._record = record
        self._open()

    # -- options.json ----------------------------------------------------------------------
    def _open(self) -> None:
        if self.root.exists() and not self.root.is_dir():
            raise FolderMismatchError(f"--out {self.root}: exists and is not a folder")
        self.root.mkdir(parents=True, exist_ok=True)
        if not self.options_path.exists():
            foreign = sorted(p.name for p in self.root.iterdir() if not p.name.startswith("."))
            if foreign:
                raise FolderMismatchError(
                    f"--out {self.root}: not empty and has no options.json (not a generate "
                    f"folder, or one made by an older ffhq-tools: {', '.join(foreign[:3])}); "
                    "pass an empty or new --out, or omit --out for a fresh numbered folder")
            self._create_options()
        self._check_options()

    def _create_options(self) -> None:
        options = {"format": FORMAT, "version": VERSION, "settings": self.settings.as_dict(),
                   "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                   "tool_version": __version__, "latents": LATENTS,
                   "quantisation": QUANTISATION, "seeds": None, "codes": None,
                   "layout": {"samples": "samples/", "grid": "grid.png",
                              "figures": "figures/"}, **self._record}
        payload = (json.dumps(options, indent=2, sort_keys=True) + "\n").encode()
        try:  # exclusive create: of two runs started at once, one writes, the other checks
            fd = os.open(self.options_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            return
        with os.fdopen(fd, "wb") as f:
            f.write(payload)

    def read_options(self) -> dict:
        try:
            options = json.loads(self.options_path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise FolderMismatchError(f"{self.options_path}: unreadable ({exc}); pass another "
                                      "--out") from None
        if not isinstance(options, dict) or options.get("format") != FORMAT:
            raise FolderMismatchError(f"{self.options_path}: not a generate folder's options "
                                      f"(no '{FORMAT}' marker); pass another --out")
        return options

    def _check_options(self) -> None:
        theirs = self.read_options().get("settings")
        ours = self.settings.as_dict()
        if theirs != ours:
            diffs = _differences(theirs if isinstance(theirs, dict) else {}, ours)
            raise FolderMismatchError(
                f"--out {self.root}: made with other settings ({'; '.join(diffs)}); images of "
                "different settings are never mixed: pass another --out, or omit --out for a "
                "fresh numbered folder")

    def record_seeds(self, seeds: SeedRanges) -> None:
        options = self.read_options()
        known = options.get("seeds")
        merged = seeds if not known else seeds.union(_parse_recorded(known))
        options["seeds"] = merged.spec()
        write_json_atomic(self.options_path, options)

    def record_codes(self, files: list[dict]) -> None:
        options = self.read_options()
        options["codes"] = files
        write_json_atomic(self.options_path, options)

    # -- PNG provenance --------------------------------------------------------------------
    def provenance(self, item: SampleItem | None = None, extra: dict | None = None) -> dict:
        """The PNG text record: settings, tool version, and the item's seed / code index
        (or, for figures, what the figure shows)."""
        values = {"format": FORMAT, "tool_version": __version__, **self.settings.as_dict()}
        if item is not None:
            values.update({"seed": item.seed, "code_index": item.code_index})
        values.update(extra or {})
        return values

    def status(self, item: SampleItem) -> str:
        """'missing', 'ok', or 'damaged' (unreadable); FolderMismatchError when the file is
        intact but records other settings or another seed."""
        path = self.samples / item.name
        if not path.exists():
            return "missing"
        res = self.settings.resolution
        intact, found = inspect_png(path, (res, res), self.settings.img_channels)
        if not intact:
            return "damaged"
        found = found or {}
        expected = self.provenance(item)
        keys = [k for k in expected if k != "tool_version"]
        if any(found.get(k) != expected[k] for k in keys):
            diffs = _differences({k: found.get(k) for k in keys}, {k: expected[k] for k in keys})
            raise FolderMismatchError(f"{path}: made with other settings ({'; '.join(diffs)}); "
                                      "remove it or pass another --out")
        return "ok"


def _parse_recorded(spec: str) -> SeedRanges:
    from models.generate import parse_seeds

    return parse_seeds(spec, flag="options.json seeds")


def seeds_to_ws(G, settings: SampleSettings) -> Callable[[list[SampleItem]], torch.Tensor]:
    return lambda items: map_seeds(G, [item.seed for item in items], settings.truncation_psi,
                                   settings.truncation_cutoff, settings.class_idx)


def codes_to_ws(codes: torch.Tensor) -> Callable[[list[SampleItem]], torch.Tensor]:
    return lambda items: codes[[item.code_index for item in items]]


class PngWriters:
    """PNG encoding on a few threads (zlib releases the GIL) while the next batch renders;
    at most `limit` images wait, so memory stays at about two batches."""

    def __init__(self, limit: int, workers: int = PNG_WRITERS):
        self.limit = max(1, limit)
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="png")
        self.pending: deque[Future] = deque()

    def submit(self, path: Path, image: np.ndarray, provenance: dict) -> None:
        self.pending.append(self.pool.submit(save_png, path, image, provenance))
        while len(self.pending) > self.limit:
            self.pending.popleft().result()

    def __enter__(self) -> PngWriters:
        return self

    def __exit__(self, kind, exc, tb) -> None:
        try:
            while self.pending:
                future = self.pending.popleft()
                if kind is None:
                    future.result()
        finally:
            self.pool.shutdown(wait=True)


def write_samples(G, folder: SampleFolder, items: Iterable[SampleItem],
                  ws_for: Callable[[list[SampleItem]], torch.Tensor], batch_size: int,
                  on_batch: Callable[[int], None] | None = None, rerender: bool = False
                  ) -> SampleCounts:
    """Render every item that is not already on disk intact (every item with `rerender`),
    `batch_size` per pass, and write each PNG as soon as its batch is done: memory holds
    about two batches, whatever the count."""
    counts = SampleCounts()
    folder.samples.mkdir(exist_ok=True)
    with PngWriters(limit=batch_size) as writers:
        for chunk in batched(items, batch_size):
            todo = _to_render(folder, chunk, counts, rerender)
            if todo:
                images = render(G, ws_for(todo), folder.settings.noise_mode,
                                [item.noise_seed for item in todo])
                for item, image in zip(todo, images, strict=True):
                    writers.submit(folder.samples / item.name, image.copy(),
                                   folder.provenance(item))
                counts.new += len(todo)
            if on_batch is not None:
                on_batch(len(chunk))
    return counts


def _to_render(folder: SampleFolder, chunk: list[SampleItem], counts: SampleCounts,
               rerender: bool) -> list[SampleItem]:
    todo = []
    for item in chunk:
        state = folder.status(item)
        if state == "ok" and not rerender:
            counts.kept += 1
            continue
        if state == "damaged":
            counts.repaired.append(item.name)
        todo.append(item)
    return todo


def grid_shape(count: int, cols: int | None) -> tuple[int, int]:
    cols = min(cols or int(math.ceil(math.sqrt(count))), count)
    return int(math.ceil(count / cols)), cols


def write_grid(folder: SampleFolder, items: list[SampleItem], cols: int | None = None) -> Path:
    """grid.png from the samples on disk, one row of cells in memory at a time."""
    if not items:
        raise FfhqToolsError("grid: no samples")
    items = items[:GRID_MAX_IMAGES]
    rows, cols = grid_shape(len(items), cols)
    res, channels = folder.settings.resolution, folder.settings.img_channels

    def strips() -> Iterator[np.ndarray]:
        for r in range(rows):
            strip = np.zeros((res, cols * res, channels), np.uint8)
            for k, item in enumerate(items[r * cols: (r + 1) * cols]):
                strip[:, k * res: (k + 1) * res] = load_png(folder.samples / item.name)
            yield strip

    names = [item.name for item in items]
    return write_png_strips(folder.grid, cols * res, rows * res, channels, strips(),
                            folder.provenance(extra={"figure": "grid", "cells": names,
                                                     "cols": cols}))

"""Destylize a style set into an output folder, one exemplar at a time, resumably.

OUT/options.json freezes the options (a rerun with others is refused). OUT/<exemplar>/ gets
codes.npz (z_e, z_hat, z_i, each float32 [1, L, z_dim]), noise.npz, preview.png (target |
G(z+_e) | G'(z^+_e) | destylized | G(z+_i)), losses.jsonl and, last, result.json (with
`codes_from`: where z_e and z_i came from, "encoder", "projection" or "init"): an exemplar
with result.json is done and skipped on a rerun; a killed exemplar starts again. After each
exemplar the set's files are rewritten: exstyle_code.npy / instyle_code.npy (upstream's
layout: `np.save` of {file name: [1, L, z_dim] array}), exstyle_code.npz / instyle_code.npz
(ours, read without pickle) and losses.jsonl (every exemplar's rows).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ffhq_tools.atomic import atomic_path, write_json_atomic
from ffhq_tools.images import ImageRejected
from ffhq_tools.runs import freeze_folder_options
from models.destylize.pipeline import BOTH_STARTS, DestylizeError, Destylizer, ExemplarResult
from models.dualstylegan_codes import CodeSet, write_codes
from models.project.outputs import save_npz, save_png
from models.project.targets import Target, prepare_pixels

OPTIONS_FILE = "options.json"
RESULT_FILE = "result.json"
CODES_FILE = "codes.npz"
EXSTYLE, INSTYLE = "exstyle_code", "instyle_code"
SHOW_BAD = 3


@dataclass
class Exemplar:
    target: Target
    key: str  # the code files' entry: the image file name, as upstream keys them


@dataclass
class DestylizeSummary:
    done: list[dict] = field(default_factory=list)
    skipped: int = 0


def exemplar_key(target: Target) -> str:
    source = Path(target.source)
    return target.name + source.suffix if source.is_file() else target.name


def exemplars_of(targets: list[Target]) -> list[Exemplar]:
    keys = [exemplar_key(t) for t in targets]
    if len(set(keys)) != len(keys):
        keys = [t.name for t in targets]
    return [Exemplar(t, k) for t, k in zip(targets, keys, strict=True)]


def checked_pixels(target: Target, resolution: int, min_size: int) -> np.ndarray:
    """The exemplar at G's resolution; refuses unreadable, non-square or too small images."""
    try:
        pixels = target.load()
    except ImageRejected as exc:
        raise DestylizeError(f"exemplar {target.source}: {exc}") from None
    h, w = pixels.shape[:2]
    if h != w:
        raise DestylizeError(f"exemplar {target.source}: {w}x{h} is not an FFHQ-aligned face "
                             "(aligned faces are square); align the style set first: "
                             "ffhq-tools align RAW_DIR ALIGNED_DIR")
    if h < min_size:
        raise DestylizeError(f"exemplar {target.source}: {w}x{h} is smaller than the "
                             f"{min_size} px the distance compares at; use larger exemplars")
    return prepare_pixels(pixels, resolution)


def check_exemplars(exemplars: list[Exemplar], resolution: int, min_size: int) -> None:
    """Every exemplar is readable and usable, before any optimisation starts."""
    problems = []
    for exemplar in exemplars:
        try:
            checked_pixels(exemplar.target, resolution, min_size)
        except DestylizeError as exc:
            problems.append(str(exc))
    if problems:
        more = f" (and {len(problems) - SHOW_BAD} more)" if len(problems) > SHOW_BAD else ""
        raise DestylizeError(f"{len(problems)} unusable exemplar(s): "
                             + "; ".join(problems[:SHOW_BAD]) + more)


def freeze_options(out: Path, options: dict) -> None:
    freeze_folder_options(out / OPTIONS_FILE, options, "destylized", DestylizeError)


def init_code(init: CodeSet | None, exemplar: Exemplar) -> np.ndarray | None:
    if init is None:
        return None
    for name in (exemplar.key, exemplar.target.name, Path(exemplar.key).stem):
        if name in init.names:
            i = init.names.index(name)
            return init.codes[i:i + 1]
    raise DestylizeError(f"--init {init.source}: no code named {exemplar.key!r} (codes are "
                         "keyed by the exemplar's file name)")


def write_rows(path: Path, rows: list[dict]) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in rows))


def loss_rows(exemplar: Exemplar, result: ExemplarResult) -> list[dict]:
    return [{"exemplar": exemplar.key, "stage": stage, **row}
            for stage, rows in result.curves.items() for row in rows]


def write_exemplar(folder: Path, exemplar: Exemplar, result: ExemplarResult) -> dict:
    folder.mkdir(parents=True, exist_ok=True)
    save_npz(folder / CODES_FILE, z_e=result.z_e, z_hat=result.z_hat, z_i=result.z_i)
    if result.noise:
        save_npz(folder / "noise.npz", **result.noise)
    save_png(folder / "preview.png", np.concatenate(result.previews, axis=1))
    write_rows(folder / "losses.jsonl", loss_rows(exemplar, result))
    summary = {"exemplar": exemplar.key, "source": exemplar.target.source,
               "codes_from": result.sources,
               "final": {stage: rows[-1] for stage, rows in result.curves.items()}}
    write_json_atomic(folder / RESULT_FILE, summary)
    return summary


def save_official(path: Path, codes: dict[str, np.ndarray]) -> None:
    """np.save of a dict, the layout upstream's scripts np.load(allow_pickle=True)."""
    with atomic_path(path, suffix=".npy") as tmp, open(tmp, "wb") as f:
        np.save(f, np.array(codes, dtype=object), allow_pickle=True)


def write_set(out: Path, finished: list[Exemplar]) -> None:
    keys, ex, ins, rows = [], [], [], []
    for exemplar in finished:
        folder = out / exemplar.target.name
        with np.load(folder / CODES_FILE, allow_pickle=False) as data:
            ex.append(data["z_e"])
            ins.append(data["z_i"])
        keys.append(exemplar.key)
        rows += [json.loads(line) for line in (folder / "losses.jsonl").read_text()
                 .splitlines() if line.strip()]
    for stem, codes in ((EXSTYLE, ex), (INSTYLE, ins)):
        save_official(out / f"{stem}.npy", dict(zip(keys, codes, strict=True)))
        write_codes(out / f"{stem}.npz", CodeSet(keys, np.concatenate(codes), stem))
    write_rows(out / "losses.jsonl", rows)


def destylize_set(destylizer: Destylizer, targets: list[Target], out: str | Path, *,
                  seed: int, options: dict, init: CodeSet | None = None,
                  progress: bool = True) -> DestylizeSummary:
    """Destylize every exemplar into OUT (see the module docstring)."""
    from tqdm import tqdm

    out = Path(out)
    G = destylizer.G
    exemplars = exemplars_of(targets)
    if not exemplars:
        raise DestylizeError("no exemplars given")
    if init is not None and destylizer.encoder is not None:
        raise DestylizeError(BOTH_STARTS)
    min_size = min(G.img_resolution, destylizer.protocol.distance_resolution)
    check_exemplars(exemplars, G.img_resolution, min_size)
    for exemplar in exemplars:
        init_code(init, exemplar)
    out.mkdir(parents=True, exist_ok=True)
    freeze_options(out, {**options, "seed": int(seed)})
    summary, finished = DestylizeSummary(), []
    bar = tqdm(exemplars, desc="destylize", unit="exemplar", disable=not progress)
    for exemplar in bar:
        folder = out / exemplar.target.name
        if (folder / RESULT_FILE).is_file():
            summary.done.append(json.loads((folder / RESULT_FILE).read_text()))
            summary.skipped += 1
        else:
            pixels = checked_pixels(exemplar.target, G.img_resolution, min_size)
            result = destylizer.run(pixels, seed, z_e=init_code(init, exemplar),
                                    name=exemplar.key, progress=progress)
            summary.done.append(write_exemplar(folder, exemplar, result))
        finished.append(exemplar)
        write_set(out, finished)
    return summary

"""Project many targets into an output folder, in batches, resumably.

OUT/options.json freezes the run's options (a rerun with other options is refused);
OUT/<target>/ gets the per-target files (see models.project.outputs) and, while it runs,
state.pt (its checkpoint). A target with result.json is done and skipped on a rerun; one with
state.pt continues from its checkpointed step. Unreadable targets go to OUT/rejects.jsonl.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ffhq_tools.atomic import append_jsonl, read_jsonl
from ffhq_tools.runs import freeze_folder_options
from models.project.outputs import write_outputs
from models.project.projector import ProjectionError, Projector
from models.project.targets import Target, load_target

STATE_FILE = "state.pt"
RESULT_FILE = "result.json"
OPTIONS_FILE = "options.json"
REJECTS_FILE = "rejects.jsonl"


@dataclass
class RunSummary:
    done: list[dict] = field(default_factory=list)
    skipped: int = 0
    rejects: list[dict] = field(default_factory=list)


def freeze_options(out: Path, options: dict) -> None:
    freeze_folder_options(out / OPTIONS_FILE, options, "projected", ProjectionError)


def _finished(out: Path, target: Target) -> dict | None:
    path = out / target.name / RESULT_FILE
    return json.loads(path.read_text()) if path.is_file() else None


def _known_rejects(out: Path) -> set[str]:
    return {r["target"] for r in read_jsonl(out / REJECTS_FILE)}


def project_targets(projector: Projector, targets: list[Target], out: str | Path, *,
                    seed: int, options: dict, batch_size: int = 4, checkpoint_every: int = 100,
                    video: str | None = None, progress: bool = True,
                    on_step: Callable[[int], None] | None = None) -> RunSummary:
    """Project every target into OUT/<name>/; `options` (JSON) are frozen in OUT."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    freeze_options(out, {**options, "seed": int(seed)})
    summary = RunSummary()
    rejected = _known_rejects(out)
    todo = []
    for target in targets:
        finished = _finished(out, target)
        if finished is not None:
            summary.done.append(finished)
            summary.skipped += 1
        elif target.name not in rejected:
            todo.append(target)
    G = projector.G
    for start in range(0, len(todo), batch_size):
        loaded = []
        for target in todo[start:start + batch_size]:
            pixels, reject = load_target(target, G.img_resolution, G.img_channels)
            if reject is not None:
                append_jsonl(out / REJECTS_FILE, reject)
                summary.rejects.append(reject)
            else:
                loaded.append((target, pixels))
        if not loaded:
            continue
        results = projector.project(
            [p for _, p in loaded], seed=seed,
            checkpoints=[out / t.name / STATE_FILE for t, _ in loaded],
            checkpoint_every=checkpoint_every, stamp=options, keep_trajectory=video is not None,
            on_step=on_step, progress=progress)
        for (target, pixels), result in zip(loaded, results, strict=True):
            folder = out / target.name
            row = write_outputs(folder, projector, pixels, result,
                                {"target": target.name, "source": target.source}, video)
            (folder / STATE_FILE).unlink(missing_ok=True)
            summary.done.append(row)
    return summary

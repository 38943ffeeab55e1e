"""Score checkpoints with the metrics a paper table needs and append the rows to a leaderboard.

    from leaderboards.score import ScoreSettings, score_checkpoints
    outcome = score_checkpoints(["run/network-snapshot-000100.000.pt"], data="ffhq.h5",
                                settings=ScoreSettings(board="leaderboard.csv", dataset="FFHQ"),
                                table="stylegan2-table1")

Every metric result is appended at once (a killed run keeps what it finished) to the
leaderboard CSV and, in full (per-attribute tables and notes included), to the records JSONL
beside it. A rerun skips metrics already on the board for the same checkpoint SHA-256, dataset,
mode and seed, so an interrupted `score` resumes.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

from ffhq_tools.atomic import append_jsonl
from ffhq_tools.errors import FfhqToolsError, WeightsError
from leaderboards.board import append_rows, read_board, rows_from_result
from leaderboards.layouts import get_layout

SNAPSHOT_KIMG = re.compile(r"network-snapshot-(\d+(?:\.\d+)?)\.")


@dataclass
class ScoreSettings:
    board: Path
    dataset: str
    device: str = "auto"
    seed: int = 0
    num_gen: int | None = None
    max_real: int | None = None
    batch_size: int = 32
    mode: str | None = None
    weights_overrides: dict = field(default_factory=dict)
    stats_cache: Path | None = None
    progress: bool = True
    skip_missing_weights: bool = False  # the demo lists them as skipped; `score` fails
    features: str | None = None  # --features: network of every metric that takes one
    test_data: Path | None = None  # held-out reals (fld)
    note: str = ""
    rank: int = 0        # under torchrun every rank computes its slice, rank 0 writes
    world_size: int = 1
    exemplar: object = None  # models.dualstylegan_exemplar.ExemplarChoice for DualStyleGANs


@dataclass
class Skipped:
    metric: str
    weights: str  # the registry entry that is missing
    fix: str      # the command that provides it


MISSING_ENTRY = re.compile(r"weights '([^']+)'")
FETCH_COMMAND = re.compile(r"ffhq-tools weights fetch \S+")


def skipped_for(metric: str, error: Exception, overrides: dict | None = None) -> Skipped:
    """The missing entry and the command that fetches it, from a WeightsError's message.

    A metric that needs a whole family of files (`ls`: 40 classifiers) is named by its range.
    """
    from eval.registry import get_metric
    from ffhq_tools.weights import is_available

    text = str(error)
    entry = MISSING_ENTRY.search(text)
    fetch = FETCH_COMMAND.search(text)
    name = entry.group(1) if entry else "?"
    fix = fetch.group(0) if fetch else f"--weights {name}=PATH"
    missing = [w for w in get_metric(metric).weights if not is_available(w, overrides)]
    if len(missing) > 2 and name == missing[0]:
        name = f"{missing[0]} .. {missing[-1]} ({len(missing)} files)"
        fix = f"{fix} .. {missing[-1]} (every name: ffhq-tools weights list)"
    return Skipped(metric, name, fix)


@dataclass
class ScoreOutcome:
    rows: list[dict] = field(default_factory=list)
    records: list[dict] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    reused: list[str] = field(default_factory=list)


def records_path(board: str | Path) -> Path:
    board = Path(board)
    return board.with_name(board.stem + ".records.jsonl")


def metrics_for_table(table: str, config: str) -> list[str]:
    """The registered protocols a table needs for a checkpoint of `config`."""
    layout = get_layout(table)
    rows = layout.rows_for_config(config)
    if not rows:
        known = ", ".join(dict.fromkeys(r.config for r in layout.rows if r.config))
        raise FfhqToolsError(f"config '{config}' is not a row of table {table} (rows: {known}); "
                             "pass --config NAME to score the checkpoint as one of them")
    needed = [p for row in rows for p in layout.protocols(row)]
    unregistered = [c.label for row in rows for c in layout.columns if not c.protocol_for(row)]
    if unregistered:
        print(f"note: table {table} columns {', '.join(dict.fromkeys(unregistered))} have no "
              "registered metric protocol and stay empty", file=sys.stderr)
    return list(dict.fromkeys(needed))


def load_metrics() -> None:
    """Register every metric module listed by the registry (face-space metrics included)."""
    from eval.registry import load_builtin_metrics

    load_builtin_metrics()


def _already_scored(board: Path, info: dict, metric: str, settings: ScoreSettings) -> bool:
    if not board.is_file():
        return False
    frame = read_board(board)
    same = frame[(frame["checkpoint_sha256"] == info["sha256"]) & (frame["metric"] == metric)
                 & (frame["config"] == info["config"]) & (frame["dataset"] == settings.dataset)
                 & (frame["seed"] == settings.seed)]
    if settings.mode:
        same = same[same["mode"] == settings.mode]
    if settings.num_gen is not None:
        same = same[same["num_gen"] == settings.num_gen]
    if settings.max_real is not None:  # the row records min(max_real, reals available)
        same = same[same["num_real"] <= settings.max_real]
    return not same.empty


def _decided_by_rank0(value: bool, settings: ScoreSettings) -> bool:
    if settings.world_size == 1:
        return value
    import torch.distributed as dist

    box = [value]
    dist.broadcast_object_list(box, src=0)
    return bool(box[0])


def score_generator(G, info: dict, data: str | Path | None, metrics: list[str],
                    settings: ScoreSettings) -> ScoreOutcome:
    """Run `metrics` on generator `G` (info: path, sha256, config, kimg) and record them."""
    from eval import registry
    from ffhq_tools.runtime import select_device

    load_metrics()
    for metric in metrics:
        registry.get_metric(metric)  # unknown names fail before any work
    outcome = ScoreOutcome()
    device = select_device(settings.device)
    for metric in metrics:
        done = settings.rank == 0 and _already_scored(Path(settings.board), info, metric,
                                                      settings)
        if _decided_by_rank0(done, settings):
            outcome.reused.append(metric)
            continue
        ctx = registry.MetricContext(
            generator=G, generator_info=dict(info), data=Path(data) if data else None,
            device=device, seed=settings.seed, num_gen=settings.num_gen,
            max_real=settings.max_real, batch_size=settings.batch_size,
            weights_overrides=dict(settings.weights_overrides), stats_cache=settings.stats_cache,
            progress=settings.progress and settings.rank == 0, rank=settings.rank,
            world_size=settings.world_size, features=settings.features,
            test_data=settings.test_data)
        _set_mode(ctx, settings.mode)
        try:
            record = registry.compute_metric(metric, ctx)
        except WeightsError as exc:
            if not settings.skip_missing_weights:
                raise
            outcome.skipped.append(skipped_for(metric, exc, settings.weights_overrides))
            continue
        except registry.MetricInputError as exc:
            if not settings.skip_missing_weights or "--test-data" not in str(exc):
                raise
            outcome.skipped.append(Skipped(metric, "held-out real images",
                                           "--test-data DATA (images G never saw)"))
            continue
        rows = rows_from_result(record, checkpoint=str(info["path"]),
                                checkpoint_sha256=info["sha256"], config=info["config"],
                                kimg=info.get("kimg"), dataset=settings.dataset,
                                data_path=str(data or ""), note=settings.note)
        if settings.rank == 0:
            append_jsonl(records_path(settings.board), {**record, "dataset": settings.dataset})
            append_rows(settings.board, rows)
            outcome.records.append(record)
            outcome.rows += rows
    return outcome


def _set_mode(ctx, mode: str | None) -> None:
    """--mode names an Inception or a DINOv2 / CLIP convention; None: each network's own."""
    from eval import defaults

    if mode in defaults.EMBEDDING_MODES:
        ctx.embedding_mode = mode
    elif mode:
        ctx.mode = mode


def metric_weights_status(overrides: dict | None = None) -> list[dict]:
    """Every registered metric with its weights entries and whether they are on this machine
    (offline): "ready", or the entries still to fetch."""
    from eval.registry import get_metric, list_metrics

    load_metrics()
    status = []
    for name in list_metrics():
        spec = get_metric(name)
        missing = spec.missing_weights(overrides)
        status.append({"metric": name, "weights": ", ".join(spec.weights) or "-",
                       "status": "ready" if not missing else "missing " + ", ".join(missing)})
    return status


def checkpoint_info(path: str | Path, config_name: str | None = None) -> dict:
    """Path, SHA-256, config name and kimg of one of our checkpoints.

    kimg is the one recorded in the checkpoint; older files without it fall back to the
    `network-snapshot-<kimg>.pt` name the trainer gives them, else None.
    """
    from models.checkpoint import checkpoint_info as stored_info
    from models.checkpoint_hints import require_checkpoint_file

    path = require_checkpoint_file(path, "checkpoint")
    info = stored_info(path)
    if info.get("kimg") is None:
        match = SNAPSHOT_KIMG.search(path.name)
        info["kimg"] = float(match.group(1)) if match else None
    info["own_config"] = info.get("config")
    info["config"] = config_name or info.get("config")
    if not info["config"]:
        raise FfhqToolsError(f"checkpoint {path}: its config has no model name; pass --config")
    return info


def score_checkpoints(checkpoints: list[str | Path], data: str | Path | None,
                      settings: ScoreSettings, table: str | None = None,
                      metrics: list[str] | None = None,
                      config_name: str | None = None) -> ScoreOutcome:
    """Score each checkpoint with `metrics`, or with what `table` needs for its config."""
    if bool(table) == bool(metrics):
        raise FfhqToolsError("give exactly one of --table NAME or --metrics A,B")
    import dataclasses

    from ffhq_tools.runtime import select_device
    from models.distributed import init_distributed, shutdown

    env = init_distributed(select_device(settings.device))
    settings = dataclasses.replace(settings, rank=env.rank, world_size=env.world_size,
                                   device=str(env.device))
    try:
        return _score_each(checkpoints, data, settings, table, metrics, config_name, env.device)
    finally:
        shutdown(env)


def _listed(names: list[str], sep: str = ", ") -> str:
    return sep.join(names) if len(names) <= 3 else \
        f"{names[0]} .. {names[-1]} ({len(names)} files)"


def check_weights_first(wanted: list[str], settings: ScoreSettings) -> None:
    """Every network file the whole run will need, checked before anything is computed, so a
    missing file never leaves a half-filled board."""
    from eval.registry import get_metric

    load_metrics()
    missing = {m: get_metric(m).missing_weights(settings.weights_overrides) for m in wanted}
    missing = {m: names for m, names in missing.items() if names}
    if missing:
        lines = "; ".join(f"{m} needs {_listed(names)}" for m, names in missing.items())
        files = _listed(sorted({n for names in missing.values() for n in names}), " ")
        raise WeightsError(f"weights missing, nothing was computed: {lines}. Provide them with "
                           f"`ffhq-tools weights fetch {files}` (or `weights import "
                           "PATH`, or --weights NAME=PATH)")


def _score_each(checkpoints, data, settings, table, metrics, config_name,
                device) -> ScoreOutcome:
    from models.checkpoint import load_generator
    from models.dualstylegan_exemplar import ExemplarChoice, with_fixed_exemplar

    total = ScoreOutcome()
    plan = []
    for path in checkpoints:
        info = checkpoint_info(path, config_name)
        plan.append((path, info, metrics or metrics_for_table(table, info["config"])))
    if not settings.skip_missing_weights:
        check_weights_first([m for *_, wanted in plan for m in wanted], settings)
    for path, info, wanted in plan:
        G, info = with_fixed_exemplar(load_generator(path, device=device), info,
                                      settings.exemplar or ExemplarChoice(), path)
        outcome = score_generator(G, info, data, wanted, settings)
        total.rows += outcome.rows
        total.records += outcome.records
        total.skipped += outcome.skipped
        total.reused += [f"{path}: {m}" for m in outcome.reused]
    return total

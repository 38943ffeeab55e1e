"""The leaderboard: one CSV file, one row per (checkpoint, dataset, metric protocol, result).

A protocol such as `pr50k3` yields several results (`pr50k3_precision`, `pr50k3_recall`); each
gets its own row so pandas pivots see one number per cell. Every row carries its provenance
(checkpoint SHA-256, feature-network SHA-256s, preprocessing mode, counts, seed, versions,
device, date, wall time) so numbers from different weights never meet unmarked.

Appends are crash-safe: the rows are encoded first and written with one `write` call on a file
opened with O_APPEND, then fsynced, under an exclusive `flock` so concurrent `score` processes
never interleave. A writer killed mid-write can leave a torn last line without its newline;
readers ignore it and the next append cuts it off before writing.
"""

from __future__ import annotations

import csv
import datetime as _dt
import fcntl
import io
import json
import os
import re
from pathlib import Path

from ffhq_tools.errors import FfhqToolsError

COLUMNS = (
    "date", "checkpoint", "checkpoint_sha256", "config", "kimg", "dataset", "data_path",
    "metric", "result", "value", "num_real", "num_gen", "feature_network", "weights_sha256",
    "mode", "seed", "device", "wall_time_s", "ffhq_tools_version", "torch_version",
    "protocol", "note",
)
NUMERIC_COLUMNS = ("kimg", "value", "num_real", "num_gen", "seed", "wall_time_s")


class LeaderboardError(FfhqToolsError):
    """A leaderboard file is malformed or a row is missing a field."""


def _encode(rows: list[dict]) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    for row in rows:
        unknown = set(row) - set(COLUMNS)
        if unknown:
            raise LeaderboardError(f"leaderboard row has unknown fields {sorted(unknown)}")
        writer.writerow(["" if row.get(c) is None else row.get(c) for c in COLUMNS])
    return buffer.getvalue().encode()


def _header() -> bytes:
    return (",".join(COLUMNS) + "\n").encode()


def _create(path: Path) -> None:
    """Create `path` holding only the header, atomically and without clobbering a racer."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.{os.getpid()}.new")
    temp.write_bytes(_header())
    try:
        os.link(temp, path)
    except FileExistsError:
        pass
    finally:
        temp.unlink(missing_ok=True)


def _cut_torn_tail(fd: int) -> None:
    size = os.fstat(fd).st_size
    if size == 0:
        return
    tail_start = max(0, size - 65536)
    tail = os.pread(fd, size - tail_start, tail_start)
    if tail.endswith(b"\n"):
        return
    last_newline = tail.rfind(b"\n")
    if last_newline < 0 and tail_start > 0:
        raise LeaderboardError("leaderboard has a torn line longer than 64 KiB; repair it by hand")
    os.ftruncate(fd, tail_start + last_newline + 1)


def check_header(path: Path) -> None:
    with open(path, "rb") as f:
        first = f.readline()
    if first != _header():
        raise LeaderboardError(
            f"{path}: header is not a leaderboard header of this version (expected "
            f"{','.join(COLUMNS)}); write to a new file with --board")


def append_rows(path: str | Path, rows: list[dict]) -> int:
    """Append rows to the leaderboard at `path` (created with a header when missing)."""
    path = Path(path)
    data = _encode(rows)
    if not path.exists():
        _create(path)
    check_header(path)
    fd = os.open(path, os.O_RDWR | os.O_APPEND)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        _cut_torn_tail(fd)
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)  # also releases the lock
    return len(rows)


def read_board(path: str | Path):
    """The leaderboard as a DataFrame; a torn last line (killed writer) is ignored."""
    import pandas as pd

    path = Path(path)
    if not path.is_file():
        raise LeaderboardError(f"no leaderboard at {path} (create one with `ffhq-tools score`)")
    check_header(path)
    text = path.read_text()
    if not text.endswith("\n"):
        text = text[: text.rfind("\n") + 1]
    frame = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False)
    for column in NUMERIC_COLUMNS:
        try:
            frame[column] = pd.to_numeric(frame[column].mask(frame[column] == ""),
                                          errors="raise")
        except (TypeError, ValueError) as exc:
            raise LeaderboardError(f"{path}: column '{column}' holds a non-number ({exc})") \
                from None
    return frame


def format_weights(weights: dict[str, str]) -> tuple[str, str]:
    """(feature_network, weights_sha256) columns from {entry: sha256}."""
    names = sorted(weights)
    return "+".join(names), ";".join(f"{n}={weights[n]}" for n in names)


def parse_weights(cell: str) -> dict[str, str]:
    if not cell:
        return {}
    pairs = (item.partition("=") for item in cell.split(";"))
    return {name: digest for name, _, digest in pairs}


def qualified_result(metric: str, key: str) -> str:
    """A result's leaderboard name: the protocol's name for its main value, else
    `<protocol>_<extra>` (metrics return generic keys such as `fid`, `is_mean`, `precision`).

    fid50k/fid -> fid50k; ppl_zfull/ppl -> ppl_zfull; is50k/is_mean -> is50k_mean;
    kid50k_full/kid_std -> kid50k_full_std; pr50k3/precision -> pr50k3_precision;
    ls/ls_z -> ls_z; fd_dlib_face/fd_dlib_face -> fd_dlib_face.
    """
    if key.startswith(metric):
        return key
    family = re.match(r"[a-z]*", metric).group()
    if key == family:
        return metric
    if family and key.startswith(family + "_"):
        return metric + key[len(family):]
    return f"{metric}_{key}"


def _count(protocol: dict, *keys: str):
    for key in keys:
        if protocol.get(key) is not None:
            return protocol[key]
    return None


def _custom_note(result: dict) -> str:
    custom = result.get("custom_weights") or {}
    return "; ".join(f"{name}: {why}" for name, why in sorted(custom.items()))


def rows_from_result(result: dict, *, checkpoint: str, checkpoint_sha256: str, config: str,
                     kimg: float | None, dataset: str, data_path: str,
                     note: str = "") -> list[dict]:
    """Leaderboard rows from one `eval.registry.compute_metric` record (one per result value)."""
    for field in ("metric", "results"):
        if field not in result:
            raise LeaderboardError(f"metric record lacks '{field}': {sorted(result)}")
    protocol = dict(result.get("protocol") or {})
    resolution = (result.get("network") or {}).get("resolution")
    if resolution is not None:
        protocol.setdefault("resolution", resolution)
    feature_network, weights_sha256 = format_weights(result.get("weights") or {})
    shared = {
        "date": result.get("date") or _dt.datetime.now(_dt.timezone.utc).isoformat(
            timespec="seconds"),
        "checkpoint": checkpoint, "checkpoint_sha256": checkpoint_sha256, "config": config,
        "kimg": kimg, "dataset": dataset, "data_path": data_path, "metric": result["metric"],
        "num_real": _count(protocol, "num_real", "max_real", "num_reals"),
        "num_gen": _count(protocol, "num_gen", "num_samples"),
        "feature_network": feature_network, "weights_sha256": weights_sha256,
        "mode": result.get("mode") or "", "seed": result.get("seed"),
        "device": result.get("device") or "", "wall_time_s": result.get("total_time_s"),
        "ffhq_tools_version": result.get("ffhq_tools", ""),
        "torch_version": result.get("torch", ""),
        "protocol": json.dumps(protocol, sort_keys=True, separators=(",", ":")),
        "note": "; ".join(filter(None, [note, _custom_note(result)])),
    }
    rows = []
    for name, value in result["results"].items():
        if not isinstance(value, (int, float)):
            continue  # per-attribute tables and other structured extras stay in the jsonl
        rows.append({**shared, "result": qualified_result(result["metric"], name),
                     "value": float(value)})
    if not rows:
        raise LeaderboardError(f"metric '{result['metric']}' returned no numeric results")
    return rows

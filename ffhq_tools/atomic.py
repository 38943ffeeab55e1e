"""Write-to-temp-then-rename, so a killed process never leaves a partial file at a final path."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
from pathlib import Path
from typing import Iterator

from ffhq_tools.errors import FfhqToolsError


@contextlib.contextmanager
def atomic_path(final: str | Path, suffix: str = "") -> Iterator[Path]:
    """Yield a temp path beside `final`; on success it replaces `final`, on error it is removed.
    The file gets the permissions of any new file (0666 less the umask: 0644 usually), not
    mkstemp's 0600."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp_path = _create_temp(final, suffix)
    try:
        yield tmp_path
        os.replace(tmp_path, final)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


def _create_temp(final: Path, suffix: str) -> Path:
    """A new empty `.NAME.<16 hex>SUFFIX.part` beside `final`, created exclusively (NAME cut to
    its first 200 bytes, so that a final name of up to 255 bytes still has a temp name)."""
    name = final.name.encode("utf-8", "surrogateescape")[:200].decode("utf-8", "ignore")
    while True:
        tmp = final.parent / f".{name}.{secrets.token_hex(8)}{suffix}.part"
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            return tmp
        except FileExistsError:
            continue


def write_bytes_atomic(final: str | Path, data: bytes) -> None:
    with atomic_path(final) as tmp:
        tmp.write_bytes(data)


def write_json_atomic(final: str | Path, obj: object) -> None:
    write_bytes_atomic(final, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode())


def append_jsonl(path: str | Path, record: dict | list[dict]) -> None:
    """Append one record (or a list of them) as JSON lines with a single write, fsynced."""
    records = record if isinstance(record, list) else [record]
    if not records:
        return
    payload = "".join(json.dumps(r, sort_keys=True) + "\n" for r in records).encode()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, payload)
        os.fsync(fd)
    finally:
        os.close(fd)


class DamagedJsonlError(FfhqToolsError):
    """A JSON-lines file with a damaged line before its last one (a torn last line is what a
    killed writer leaves, and is skipped)."""


def read_jsonl(path: str | Path) -> list[dict]:
    """Read JSON lines (objects), ignoring a torn last line left by a killed writer."""
    records = []
    path = Path(path)
    if not path.exists():
        return records
    if path.is_dir():
        raise DamagedJsonlError(f"{path}: a folder, not a JSON-lines file")
    lines = path.read_bytes().split(b"\n")
    while lines and not lines[-1].strip():
        lines.pop()
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line.decode("utf-8"))
        except (ValueError, RecursionError) as exc:  # bad JSON or UTF-8
            if number == len(lines):
                break
            raise DamagedJsonlError(f"{path} line {number}: damaged ({type(exc).__name__}: "
                                    f"{str(exc)[:120]}); remove or repair the line") from None
        if not isinstance(record, dict):
            raise DamagedJsonlError(f"{path} line {number}: expected a JSON object, found "
                                    f"{type(record).__name__}")
        records.append(record)
    return records

"""Numbered run directories `runs/NNNNN-<desc>/` with frozen options and a captured log.

Numbers are claimed by creating `<root>/.claims/NNNNN` with mkdir, which is atomic, so two
processes that start at once never get the same number.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import sys
from pathlib import Path
from typing import Iterator, TextIO

from ffhq_tools.atomic import write_json_atomic
from ffhq_tools.errors import FfhqToolsError

RUN_NAME = re.compile(r"^(\d{5,})-")
DESC_UNSAFE = re.compile(r"[^A-Za-z0-9._+-]+")
SNAPSHOT_GLOB = "network-snapshot-*.pt"


def newest_snapshot(folder: str | Path, pattern: str = SNAPSHOT_GLOB) -> Path | None:
    """The last snapshot in `folder` by name (snapshot names are zero-padded), or None."""
    return max(Path(folder).glob(pattern), default=None)


def _used_numbers(root: Path) -> set[int]:
    used = set()
    for folder in (root, root / ".claims"):
        if folder.is_dir():
            for child in folder.iterdir():
                match = RUN_NAME.match(child.name + "-")
                if match:
                    used.add(int(match.group(1)))
    return used


def sanitize_desc(desc: str) -> str:
    return DESC_UNSAFE.sub("_", desc).strip("_") or "run"


def next_run_dir(root: str | Path, desc: str) -> Path:
    """The folder `create_run_dir` would create now (nothing is created; another run starting
    meanwhile takes the number and this one gets the next)."""
    root = Path(root)
    number = max(_used_numbers(root), default=-1) + 1
    return root / f"{number:05d}-{sanitize_desc(desc)}"


def create_run_dir(root: str | Path, desc: str) -> Path:
    """Create and return the next `root/NNNNN-desc` folder."""
    root = Path(root)
    claims = root / ".claims"
    claims.mkdir(parents=True, exist_ok=True)
    number = max(_used_numbers(root), default=-1) + 1
    while True:
        try:
            os.mkdir(claims / f"{number:05d}")
            break
        except FileExistsError:
            number += 1
    run_dir = root / f"{number:05d}-{sanitize_desc(desc)}"
    run_dir.mkdir()
    return run_dir


def write_options(run_dir: str | Path, options: dict) -> Path:
    """Freeze the resolved options of a run; refuses to overwrite an existing file."""
    path = Path(run_dir) / "options.json"
    if path.exists():
        raise FfhqToolsError(f"{path} already exists: options of a run are frozen")
    write_json_atomic(path, options)
    os.chmod(path, 0o444)
    return path


def freeze_folder_options(path: Path, options: dict, made: str,
                          error: type[FfhqToolsError] = FfhqToolsError) -> None:
    """Write `options` to `path`, or, when it exists, refuse options that differ from it (a
    resumable output folder continues only the work it was started with)."""
    if path.is_file():
        saved = json.loads(path.read_text())
        for key in sorted(set(saved) | set(options)):
            if saved.get(key) != options.get(key):
                raise error(f"{path}: this folder was {made} with {key}={saved.get(key)!r}, "
                            f"now {options.get(key)!r}; use another --out or the same options")
        return
    write_json_atomic(path, options)


def read_options(run_dir: str | Path) -> dict:
    path = Path(run_dir) / "options.json"
    if not path.is_file():
        raise FfhqToolsError(f"{run_dir}: not a run directory (no options.json)")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise FfhqToolsError(f"{path}: not a JSON options file ({exc})") from None


class _Tee:
    def __init__(self, stream: TextIO, log: TextIO):
        self.stream, self.log = stream, log

    def write(self, text: str) -> int:
        self.log.write(text)
        self.log.flush()
        return self.stream.write(text)

    def flush(self) -> None:
        self.stream.flush()
        self.log.flush()

    def isatty(self) -> bool:
        return self.stream.isatty()

    def fileno(self) -> int:
        return self.stream.fileno()

    def __getattr__(self, name):
        return getattr(self.stream, name)


@contextlib.contextmanager
def capture_log(run_dir: str | Path, filename: str = "log.txt") -> Iterator[Path]:
    """Copy everything printed to stdout and stderr into `run_dir/log.txt`; an error that ends
    the run is written there too (the CLI prints it only after the block has exited)."""
    path = Path(run_dir) / filename
    with open(path, "a", encoding="utf-8") as log:
        saved = sys.stdout, sys.stderr
        sys.stdout, sys.stderr = _Tee(sys.stdout, log), _Tee(sys.stderr, log)
        try:
            yield path
        except KeyboardInterrupt:
            log.write("interrupted (Ctrl-C)\n")
            raise
        except Exception as exc:
            kind = "" if isinstance(exc, FfhqToolsError) else f"{type(exc).__name__}: "
            log.write(f"error: {kind}{exc}\n")
            raise
        finally:
            sys.stdout, sys.stderr = saved

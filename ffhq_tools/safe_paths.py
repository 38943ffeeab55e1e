"""Output names taken from input files: checked relative names, and paths that stay inside OUT.

A name that comes from a manifest, an archive or a table is only ever used as a path below an
output folder after `check_relative_name` accepted it, and every path is checked again with
`contained` at the moment it is written (which also catches symlinks planted inside OUT).
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path, PurePosixPath

from ffhq_tools.errors import FfhqToolsError

MAX_NAME_CHARS = 200  # leaves room for suffixes such as `_00.png` under the usual 255-byte limit
MAX_PART_BYTES = 200
CONTROL = re.compile(r"[\x00-\x1f\x7f]")
DRIVE = re.compile(r"^[A-Za-z]:")


class UnsafePathError(FfhqToolsError):
    """A name from an input file would leave the output folder or is not a usable file name."""


def check_relative_name(name: object, where: str) -> str:
    """`name` if it is a plain relative POSIX name (`sub/photo`): no absolute path, drive, `..`,
    `.`, empty part, backslash, NUL or control character, and at most MAX_NAME_CHARS long."""
    if not isinstance(name, str) or not name:
        raise UnsafePathError(f"{where}: name {name!r} must be a non-empty string")
    if len(name) > MAX_NAME_CHARS:
        raise UnsafePathError(f"{where}: name {name[:40]!r}... is {len(name)} characters "
                              f"(at most {MAX_NAME_CHARS})")
    if CONTROL.search(name) or "\\" in name:
        raise UnsafePathError(f"{where}: name {name!r} refused: control character or backslash")
    if name.startswith("/") or DRIVE.match(name):
        raise UnsafePathError(f"{where}: name {name!r} refused: absolute path")
    parts = name.split("/")
    if any(part in ("", ".", "..") for part in parts):
        raise UnsafePathError(f"{where}: name {name!r} refused: empty, '.' or '..' part "
                              "(a name must stay inside the output folder)")
    if any(len(part.encode("utf-8", "surrogateescape")) > MAX_PART_BYTES for part in parts):
        raise UnsafePathError(f"{where}: name {name!r} refused: a part longer than "
                              f"{MAX_PART_BYTES} bytes")
    return name


def fitted_name(relative: str) -> str:
    """`relative` with its last part cut to MAX_PART_BYTES when longer: the first bytes (whole
    characters) plus `~` and 12 hex digits of the SHA-256 of the whole name, so long names stay
    distinct and the result (plus a `_00.png`) fits a file system's 255 bytes."""
    head, _, last = relative.rpartition("/")
    encoded = last.encode("utf-8", "surrogateescape")
    if len(encoded) <= MAX_PART_BYTES:
        return relative
    digest = hashlib.sha256(relative.encode("utf-8", "surrogateescape")).hexdigest()[:12]
    kept = encoded[:MAX_PART_BYTES - 13].decode("utf-8", "ignore")
    return f"{head}/{kept}~{digest}" if head else f"{kept}~{digest}"


def contained(root: str | Path, relative: str) -> Path:
    """`root / relative`, refusing it when it resolves (symlinks followed) outside root."""
    root = Path(root)
    target = root / relative
    if PurePosixPath(relative).is_absolute() or not target.resolve().is_relative_to(
            root.resolve()):
        raise UnsafePathError(f"{target}: resolves to {target.resolve()}, outside the output "
                              f"folder {root.resolve()}; refusing to write it")
    return target

"""A full disk stops a writer with `disk full: PATH` and leaves its last complete state.

HDF5 cannot recover from a failed write: the library's next flush or close crashes the process
(a segfault, so neither the error nor the partial file survives). Writers therefore check the
room left before each block of writes (`require_room`) and stop cleanly while the file is still
consistent; `disk_full_as_error` turns the OSErrors of plain file writes into the same message.
The room is the free space for unprivileged users and, when set, the file size limit
(RLIMIT_FSIZE), whichever is smaller.
"""

from __future__ import annotations

import contextlib
import errno
import os
import resource
from pathlib import Path
from typing import Iterator

from ffhq_tools.data.layout import DatasetError

DISK_FULL_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}


class DiskFullError(DatasetError):
    """No room left for the file being written."""


def room(path: Path) -> int:
    """Bytes that `path` (existing or about to be created) can still grow by."""
    stats = os.statvfs(path.parent)
    free = stats.f_bavail * stats.f_frsize
    soft, _ = resource.getrlimit(resource.RLIMIT_FSIZE)
    if soft != resource.RLIM_INFINITY:
        free = min(free, soft - (path.stat().st_size if path.exists() else 0))
    return free


def require_room(path: Path, needed: int, what: str) -> None:
    available = room(path)
    if available < needed:
        raise DiskFullError(f"disk full: {path} needs about {needed} more bytes for {what}, "
                            f"{max(available, 0)} can be written; free some space and rerun "
                            "(finished work is kept)")


@contextlib.contextmanager
def disk_full_as_error(path: Path) -> Iterator[None]:
    try:
        yield
    except OSError as exc:
        if exc.errno in DISK_FULL_ERRNOS:
            where = exc.filename or path
            raise DiskFullError(f"disk full: {where} ({exc.strerror}); free some space and "
                                "rerun (finished work is kept)") from None
        raise

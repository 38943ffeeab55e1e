"""Worker processes that die with their parent.

A pool worker blocked on its task queue never notices a parent killed with SIGKILL (it holds
both ends of the queue's pipe), and a busy one goes on writing outputs nobody will record.
`die_with_parent` asks Linux to send the worker SIGKILL when its parent dies
(prctl PR_SET_PDEATHSIG) and, everywhere, starts a watchdog thread that exits the worker
once its parent process id changes (the orphan was re-parented).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import sys
import threading

PR_SET_PDEATHSIG = 1
WATCHDOG_SECONDS = 0.5
ORPHAN_EXIT_CODE = 70


def die_with_parent(parent_pid: int) -> None:
    """Call first thing in a worker process; `parent_pid` is the pid of the process that
    started the pool (os.getpid() there)."""
    if sys.platform.startswith("linux"):
        _request_parent_death_signal()
    if os.getppid() != parent_pid:  # the parent died before the request took effect
        os._exit(ORPHAN_EXIT_CODE)
    watchdog = threading.Thread(target=_watch_parent, args=(parent_pid,),
                                name="parent-watchdog", daemon=True)
    watchdog.start()


def _request_parent_death_signal() -> None:
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"prctl(PR_SET_PDEATHSIG): {os.strerror(errno)}")


def _watch_parent(parent_pid: int) -> None:
    stop = threading.Event()
    while not stop.wait(WATCHDOG_SECONDS):
        if os.getppid() != parent_pid:
            os._exit(ORPHAN_EXIT_CODE)

"""Ending a GET from outside: a per-file deadline, and a stop signal shared by every download
thread (Ctrl-C).

A socket read timeout only bounds the gap between two bytes, so a server that trickles one
byte every half second holds a read forever. Both mechanisms here shut the watched sockets
down instead, which makes a read blocked in another thread return at once.
"""

from __future__ import annotations

import socket
import threading


class FetchCancelled(Exception):
    """The crawl is stopping (Ctrl-C): the file did not fail, it was not finished."""


class StopSignal:
    """Shared by the download threads. `stop()` aborts every fetch in flight and makes every
    later one (and every wait) raise FetchCancelled."""

    def __init__(self):
        self.event = threading.Event()
        self._lock = threading.Lock()
        self._watches: set[FetchWatch] = set()

    def stop(self) -> None:
        with self._lock:
            self.event.set()
            watches = list(self._watches)
        for watch in watches:
            watch.abort("cancelled")

    def check(self) -> None:
        if self.event.is_set():
            raise FetchCancelled("the crawl is stopping")

    def sleep(self, seconds: float) -> None:
        """Sleep, waking (with FetchCancelled) as soon as the signal is set."""
        if self.event.wait(seconds):
            self.check()

    def _add(self, watch: "FetchWatch") -> None:
        with self._lock:
            self.check()
            self._watches.add(watch)

    def _remove(self, watch: "FetchWatch") -> None:
        with self._lock:
            self._watches.discard(watch)


class FetchWatch:
    """The connections of one GET; aborted (sockets shut down) when `seconds` have passed
    since it started or when the stop signal is set. `reason` says which, None while alive."""

    def __init__(self, seconds: float | None, stop: StopSignal | None = None):
        self.seconds, self.reason = seconds, None
        self._stop = stop
        self._lock = threading.Lock()
        self._conns: list = []
        self._timer = None
        if stop is not None:
            stop._add(self)
        if seconds is not None:
            self._timer = threading.Timer(seconds, self.abort, args=("deadline",))
            self._timer.daemon = True
            self._timer.start()

    def watch(self, conn) -> None:
        """Add a connected http.client connection (shut down at once when already aborted)."""
        with self._lock:
            self._conns.append(conn)
            aborted = self.reason is not None
        if aborted:
            _shut_down(conn)

    def abort(self, reason: str) -> None:
        with self._lock:
            if self.reason is None:
                self.reason = reason
            conns = list(self._conns)
        for conn in conns:
            _shut_down(conn)

    def finish(self) -> bool:
        """Stop watching; True when the GET was never aborted."""
        if self._timer is not None:
            self._timer.cancel()
        if self._stop is not None:
            self._stop._remove(self)
        with self._lock:
            self._conns.clear()
            return self.reason is None


def _shut_down(conn) -> None:
    sock = getattr(conn, "sock", None)
    if sock is None:
        return
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass  # already closed by its own thread

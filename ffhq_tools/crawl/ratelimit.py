"""Politeness: a global request-rate limit, per-host concurrency and Retry-After pauses.
(Backoff with jitter between attempts is `ffhq_tools.download.backoff_delay`.)"""

from __future__ import annotations

import contextlib
import threading
import time
from typing import Iterator


class RateLimiter:
    """At most `rate` acquisitions per second across all threads (evenly spaced); None = off.
    Waits end early once `stop` is set."""

    def __init__(self, rate: float | None, stop: threading.Event | None = None):
        if rate is not None and rate <= 0:
            raise ValueError("rate must be positive or None")
        self._stop = stop or threading.Event()
        self.interval = None if rate is None else 1.0 / rate
        self._next = 0.0
        self._lock = threading.Lock()

    def acquire(self) -> None:
        if self.interval is None:
            return
        with self._lock:
            now = time.monotonic()
            slot = max(now, self._next)
            self._next = slot + self.interval
        if slot > now:
            self._stop.wait(slot - now)


class HostGate:
    """At most `per_host` requests in flight per host, and no request to a host before the end
    of a pause it asked for (Retry-After). Pauses end early once `stop` is set."""

    def __init__(self, per_host: int, stop: threading.Event | None = None):
        if per_host < 1:
            raise ValueError("per_host must be >= 1")
        self._stop = stop or threading.Event()
        self.per_host = per_host
        self._semaphores: dict[str, threading.Semaphore] = {}
        self._not_before: dict[str, float] = {}
        self._lock = threading.Lock()

    def _semaphore(self, host: str) -> threading.Semaphore:
        with self._lock:
            if host not in self._semaphores:
                self._semaphores[host] = threading.BoundedSemaphore(self.per_host)
            return self._semaphores[host]

    def pause(self, host: str, seconds: float) -> None:
        with self._lock:
            until = time.monotonic() + seconds
            self._not_before[host] = max(self._not_before.get(host, 0.0), until)

    def _wait_for_pause(self, host: str) -> None:
        while True:
            with self._lock:
                remaining = self._not_before.get(host, 0.0) - time.monotonic()
            if remaining <= 0 or self._stop.wait(remaining):
                return

    @contextlib.contextmanager
    def slot(self, host: str) -> Iterator[None]:
        semaphore = self._semaphore(host)
        self._wait_for_pause(host)
        with semaphore:
            self._wait_for_pause(host)
            yield

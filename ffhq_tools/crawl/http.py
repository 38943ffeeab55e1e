"""One HTTP(S) GET with separate connect/read timeouts, a size cap, http(s)-only redirects,
keep-alive reuse, the environment's http_proxy / https_proxy / no_proxy (like urllib), and
errors that say whether a retry can help and how long the server asked us to wait. A
per-file deadline bounds the whole GET (a read timeout only bounds the gap between bytes), and
a StopSignal ends every GET in flight at once."""

from __future__ import annotations

import base64
import email.utils
import hashlib
import http.client
import io
import re
import socket
import threading
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import BinaryIO, Callable

from ffhq_tools import __version__
from ffhq_tools.crawl.deadline import FetchCancelled, FetchWatch, StopSignal

RETRYABLE_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})
REDIRECT_STATUS = frozenset({301, 302, 303, 307, 308})
CHUNK = 1 << 16
_SECRET_PARAMS = re.compile(r"((?:api_key|apikey|key|token|secret)=)[^&#]*", re.IGNORECASE)


def redact(url: str) -> str:
    """The URL with every credential-like query value replaced by '***'."""
    return _SECRET_PARAMS.sub(r"\1***", url)


@dataclass(frozen=True)
class HttpSettings:
    connect_timeout: float = 10.0
    read_timeout: float = 30.0
    file_timeout: float | None = 600.0  # the whole GET, redirects and body included
    max_bytes: int = 256 * 1024 * 1024
    max_redirects: int = 5
    user_agent: str = f"ffhq-tools/{__version__}"


class FetchError(Exception):
    """A failed GET. `retryable` says whether another attempt may succeed; `retry_after` is the
    server's Retry-After in seconds (None when absent)."""

    def __init__(self, reason: str, retryable: bool = True, retry_after: float | None = None):
        super().__init__(reason)
        self.reason, self.retryable, self.retry_after = reason, retryable, retry_after


@dataclass(frozen=True)
class FetchResult:
    url: str
    size: int
    md5: str
    content_type: str


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def check_scheme(url: str) -> urllib.parse.SplitResult:
    parts = urllib.parse.urlsplit(url)
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise FetchError(f"refused non-http(s) URL {redact(url)!r}", retryable=False)
    return parts


class ConnectionPool:
    """Idle keep-alive connections by (scheme, host, port), one set per thread: http.client
    connections are not thread-safe, and reusing them saves a TCP (and TLS) handshake per file."""

    def __init__(self):
        self._local = threading.local()

    def _idle(self) -> dict:
        if not hasattr(self._local, "idle"):
            self._local.idle = {}
        return self._local.idle

    def take(self, key: tuple):
        return self._idle().pop(key, None)

    def give(self, key: tuple, conn) -> None:
        old = self._idle().pop(key, None)
        if old is not None:
            old.close()
        self._idle()[key] = conn


def _pool_key(parts: urllib.parse.SplitResult) -> tuple:
    return (parts.scheme.lower(), parts.hostname, parts.port)


def proxy_for(parts: urllib.parse.SplitResult) -> urllib.parse.SplitResult | None:
    """The http:// proxy that http_proxy / https_proxy / no_proxy name for this URL, if any."""
    proxies = urllib.request.getproxies_environment()
    proxy = proxies.get(parts.scheme.lower())
    if not proxy or urllib.request.proxy_bypass_environment(parts.hostname or "", proxies):
        return None
    proxy_parts = urllib.parse.urlsplit(proxy if "://" in proxy else f"http://{proxy}")
    if proxy_parts.scheme.lower() != "http" or not proxy_parts.hostname:
        raise FetchError(f"{parts.scheme}_proxy {redact(proxy)!r}: only http:// proxies are "
                         f"supported", retryable=False)
    return proxy_parts


def _proxy_headers(proxy: urllib.parse.SplitResult | None) -> dict:
    if proxy is None or proxy.username is None:
        return {}
    user = urllib.parse.unquote(proxy.username)
    password = urllib.parse.unquote(proxy.password or "")
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Proxy-Authorization": f"Basic {token}"}


def _connect(parts: urllib.parse.SplitResult, settings: HttpSettings,
             proxy: urllib.parse.SplitResult | None, watch: FetchWatch):
    https = parts.scheme.lower() == "https"
    cls = http.client.HTTPSConnection if https else http.client.HTTPConnection
    if proxy is None:
        conn = cls(parts.hostname, parts.port, timeout=settings.connect_timeout)
    else:
        conn = cls(proxy.hostname, proxy.port or 8080, timeout=settings.connect_timeout)
        if https:  # CONNECT tunnel; TLS (and certificate checks) end to end
            conn.set_tunnel(parts.hostname, parts.port or 443, headers=_proxy_headers(proxy))
    try:
        conn.connect()
    except BaseException:
        conn.close()
        raise
    watch.watch(conn)
    conn.sock.settimeout(settings.read_timeout)
    return conn


def _send(conn, parts: urllib.parse.SplitResult, settings: HttpSettings,
          proxy: urllib.parse.SplitResult | None):
    headers = {"User-Agent": settings.user_agent, "Accept-Encoding": "identity"}
    if proxy is not None and parts.scheme.lower() == "http":  # absolute-form via the proxy
        target = urllib.parse.urlunsplit((parts.scheme, parts.netloc, parts.path or "/",
                                          parts.query, ""))
        headers.update(_proxy_headers(proxy))
    else:
        target = urllib.parse.urlunsplit(("", "", parts.path or "/", parts.query, ""))
    conn.request("GET", target, headers=headers)
    return conn.getresponse()


def _request(parts: urllib.parse.SplitResult, settings: HttpSettings,
             pool: ConnectionPool | None, watch: FetchWatch):
    """Send the GET on an idle pooled connection if there is one (a fresh one when the server
    has closed it meanwhile), else on a new connection; return (connection, response)."""
    proxy = proxy_for(parts)
    conn = pool.take(_pool_key(parts)) if pool is not None else None
    if conn is not None:
        watch.watch(conn)
        try:
            return conn, _send(conn, parts, settings, proxy)
        except ConnectionError:  # includes RemoteDisconnected: the idle connection went stale
            conn.close()
        except BaseException:
            conn.close()
            raise
    conn = _connect(parts, settings, proxy, watch)
    try:
        return conn, _send(conn, parts, settings, proxy)
    except BaseException:
        conn.close()
        raise


def _open(url: str, settings: HttpSettings, pool: ConnectionPool | None, watch: FetchWatch):
    """Follow up to max_redirects http(s) redirects; return (connection, response, final url)."""
    for _ in range(settings.max_redirects + 1):
        parts = check_scheme(url)
        conn, response = _request(parts, settings, pool, watch)
        if response.status in REDIRECT_STATUS:
            location = response.getheader("Location") or ""
            conn.close()
            new_url = urllib.parse.urljoin(url, location)
            scheme = urllib.parse.urlsplit(new_url).scheme.lower()
            if scheme not in ("http", "https"):
                raise FetchError(f"redirect to non-http(s) URL {redact(new_url)!r} refused")
            url = new_url
            continue
        if response.status != 200:
            retry_after = parse_retry_after(response.getheader("Retry-After"))
            conn.close()
            raise FetchError(f"HTTP {response.status} {response.reason}".strip(),
                             retryable=response.status in RETRYABLE_STATUS,
                             retry_after=retry_after)
        return conn, response, url
    raise FetchError(f"more than {settings.max_redirects} redirects")


def fetch(url: str, out: BinaryIO, settings: HttpSettings,
          on_bytes: Callable[[int], None] | None = None,
          pool: ConnectionPool | None = None, stop: StopSignal | None = None) -> FetchResult:
    """GET `url` into the open file `out`; raise FetchError on any failure (FetchCancelled
    once `stop` is set). With a pool, the connection is kept for the next request after a
    complete 200 answer."""
    watch = FetchWatch(settings.file_timeout, stop)
    try:
        return _fetch_watched(url, out, settings, on_bytes, pool, watch)
    finally:
        watch.finish()


def _fetch_watched(url: str, out: BinaryIO, settings: HttpSettings,
                   on_bytes: Callable[[int], None] | None, pool: ConnectionPool | None,
                   watch: FetchWatch) -> FetchResult:
    try:
        conn, response, final_url = _open(url, settings, pool, watch)
    except FetchError:
        _raise_if_aborted(watch, settings, 0)
        raise
    except (OSError, http.client.HTTPException) as exc:
        _raise_if_aborted(watch, settings, 0)
        raise FetchError(_describe(exc)) from exc
    result = None
    try:
        result = _stream(conn, response, final_url, out, settings, on_bytes, watch)
        return result
    finally:
        if (result is not None and pool is not None and not response.will_close
                and watch.finish()):
            pool.give(_pool_key(urllib.parse.urlsplit(final_url)), conn)
        else:
            conn.close()


def _raise_if_aborted(watch: FetchWatch, settings: HttpSettings, received: int) -> None:
    if watch.reason == "cancelled":
        raise FetchCancelled("the crawl is stopping")
    if watch.reason == "deadline":
        raise FetchError(f"not finished within the per-file deadline of "
                         f"{settings.file_timeout:g} s ({received} bytes received; a slower "
                         f"server needs a larger --file-timeout)", retryable=False)


def _stream(conn, response, url: str, out: BinaryIO, settings: HttpSettings,
            on_bytes: Callable[[int], None] | None, watch: FetchWatch) -> FetchResult:
    length = response.getheader("Content-Length")
    expected = int(length) if length and length.isdigit() else None
    if expected is not None and expected > settings.max_bytes:
        raise FetchError(f"Content-Length {expected} exceeds the maximum file size "
                         f"{settings.max_bytes}", retryable=False)
    digest, size = hashlib.md5(), 0
    while chunk := _read_chunk(response, watch, settings, size):
        size += len(chunk)
        if size > settings.max_bytes:
            raise FetchError(f"body exceeds the maximum file size {settings.max_bytes}",
                             retryable=False)
        digest.update(chunk)
        out.write(chunk)  # a local OSError (disk full) is not a network error: let it through
        if on_bytes is not None:
            on_bytes(len(chunk))
    _raise_if_aborted(watch, settings, size)  # an aborted socket reads as a clean end
    response.close()  # read1 leaves a fully read answer open; the connection needs it closed
    if expected is not None and size != expected:
        raise FetchError(f"truncated body: {size} of {expected} bytes")
    return FetchResult(url, size, digest.hexdigest(),
                       response.getheader("Content-Type") or "")


def _read_chunk(response, watch: FetchWatch, settings: HttpSettings, received: int) -> bytes:
    """What the socket has now, up to CHUNK (read1: read(CHUNK) would wait for all of it)."""
    try:
        return response.read1(CHUNK)
    except (OSError, http.client.HTTPException) as exc:
        _raise_if_aborted(watch, settings, received)
        raise FetchError(_describe(exc)) from exc


def get_bytes(url: str, settings: HttpSettings, pool: ConnectionPool | None = None) -> bytes:
    """GET a small body (API answers) into memory."""
    buffer = io.BytesIO()
    fetch(url, buffer, settings, pool=pool)
    return buffer.getvalue()


def _describe(exc: BaseException) -> str:
    if isinstance(exc, (socket.timeout, TimeoutError)):
        return "timed out"
    if isinstance(exc, http.client.IncompleteRead):
        return f"truncated body: {len(exc.partial)} bytes then connection closed"
    if isinstance(exc, ConnectionResetError):
        return "connection reset by peer"
    return f"{type(exc).__name__}: {exc}"

"""A small, careful HTTP(S) downloader: retries with backoff, hash while streaming, progress."""

from __future__ import annotations

import hashlib
import random
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from tqdm import tqdm

from ffhq_tools.errors import FfhqToolsError

ALLOWED_SCHEMES = ("http", "https")


class DownloadError(FfhqToolsError):
    pass


def check_url(url: str) -> None:
    scheme = urllib.parse.urlsplit(url).scheme.lower()
    if scheme not in ALLOWED_SCHEMES:
        raise DownloadError(f"{url}: only http and https URLs are followed, not '{scheme}:'")


class _HttpOnlyRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req, fp, code, msg, headers, newurl):
        check_url(newurl)
        return super().redirect_request(req, fp, code, msg, headers, newurl)


_opener = urllib.request.build_opener(_HttpOnlyRedirects)


def backoff_delay(attempt: int, base: float = 1.0, cap: float = 60.0) -> float:
    """Exponential backoff with full jitter."""
    return random.uniform(0, min(cap, base * 2 ** attempt))


def download(url: str, dest: Path, retries: int = 4, timeout: float = 60.0,
             progress: bool = True, backoff_base: float = 1.0) -> str:
    """Stream `url` into `dest` and return its SHA-256; raise DownloadError after `retries`."""
    check_url(url)
    last_error = ""
    for attempt in range(retries + 1):
        if attempt:
            time.sleep(backoff_delay(attempt - 1, backoff_base))
        try:
            return _download_once(url, Path(dest), timeout, progress)
        except (urllib.error.URLError, OSError, TimeoutError) as exc:
            last_error = f"{type(exc).__name__}: {exc}"
    raise DownloadError(f"{url}: failed after {retries + 1} attempts ({last_error})")


def _download_once(url: str, dest: Path, timeout: float, progress: bool) -> str:
    digest = hashlib.sha256()
    request = urllib.request.Request(url, headers={"User-Agent": "ffhq-tools"})
    with _opener.open(request, timeout=timeout) as response, open(dest, "wb") as out:
        total = int(response.headers.get("Content-Length") or 0) or None
        with tqdm(total=total, unit="B", unit_scale=True, desc=dest.name.strip("."),
                  disable=not progress, leave=False) as bar:
            while chunk := response.read(1 << 20):
                out.write(chunk)
                digest.update(chunk)
                bar.update(len(chunk))
        if total is not None and out.tell() != total:
            raise OSError(f"truncated body: {out.tell()} of {total} bytes")
    return digest.hexdigest()

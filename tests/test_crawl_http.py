"""The single-request layer: redirects, Retry-After parsing, redaction, rate limits."""

from __future__ import annotations

import email.utils
import io
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from ffhq_tools.crawl.http import FetchError, HttpSettings, fetch, parse_retry_after, redact
from ffhq_tools.crawl.ratelimit import HostGate, RateLimiter


class Redirects(BaseHTTPRequestHandler):
    """/hop/N redirects to /hop/N-1 (relative Location); /hop/0 answers 'done'."""

    def log_message(self, *args):
        pass

    def do_GET(self):  # noqa: N802
        n = int(self.path.rsplit("/", 1)[-1])
        if n == 0:
            body = b"done"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        else:
            self.send_response(302)
            self.send_header("Location", f"/hop/{n - 1}")
            self.send_header("Content-Length", "0")
            self.end_headers()


@pytest.fixture()
def redirect_server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Redirects)
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_http_redirects_are_followed_up_to_the_limit(redirect_server):
    out = io.BytesIO()
    result = fetch(f"{redirect_server}/hop/3", out, HttpSettings(max_redirects=3))
    assert out.getvalue() == b"done" and result.url.endswith("/hop/0") and result.size == 4
    with pytest.raises(FetchError, match="more than 3 redirects"):
        fetch(f"{redirect_server}/hop/4", io.BytesIO(), HttpSettings(max_redirects=3))


def test_non_http_urls_are_refused_without_retry():
    with pytest.raises(FetchError) as info:
        fetch("file:///etc/passwd", io.BytesIO(), HttpSettings())
    assert not info.value.retryable and "non-http(s)" in info.value.reason


def test_connection_refused_is_retryable():
    with pytest.raises(FetchError) as info:
        fetch("http://127.0.0.1:9/x", io.BytesIO(), HttpSettings(connect_timeout=0.5))
    assert info.value.retryable


def test_retry_after_seconds_and_http_date():
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after(None) is None and parse_retry_after("soon") is None
    now = time.time()
    date = email.utils.formatdate(now + 30, usegmt=True)
    assert 28 <= parse_retry_after(date, now=now) <= 31
    assert parse_retry_after(email.utils.formatdate(now - 30, usegmt=True), now=now) == 0.0


def test_redact_hides_credentials():
    url = "https://api.flickr.com/services/rest/?method=x&api_key=abc123&page=2&token=t0k"
    assert redact(url) == ("https://api.flickr.com/services/rest/?method=x&api_key=***&page=2"
                           "&token=***")


def test_rate_limiter_spaces_requests():
    limiter = RateLimiter(50.0)
    start = time.monotonic()
    for _ in range(11):
        limiter.acquire()
    assert time.monotonic() - start >= 10 / 50 - 1e-3


def test_host_gate_limits_concurrency_per_host():
    gate, lock = HostGate(per_host=2), threading.Lock()
    active, peak = {"a": 0, "b": 0}, {"a": 0, "b": 0}

    def work(host):
        with gate.slot(host):
            with lock:
                active[host] += 1
                peak[host] = max(peak[host], active[host])
            time.sleep(0.02)
            with lock:
                active[host] -= 1

    threads = [threading.Thread(target=work, args=(h,)) for h in "ab" * 6]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert peak == {"a": 2, "b": 2}


def test_downloads_reuse_keep_alive_connections(tmp_path):
    from ffhq_tools.crawl.downloader import DownloadOptions, download_files
    from ffhq_tools.crawl.loopback import LoopbackServer, make_photos, manifest_for
    from ffhq_tools.crawl.manifest import manifest_specs

    photos = make_photos(30, seed=4)
    with LoopbackServer(photos) as server:
        specs = manifest_specs(manifest_for(server, photos), "in_the_wild")
        report = download_files(specs, tmp_path, DownloadOptions(workers=3, progress=False))
        assert report.count("downloaded") == 30
        assert server.connections <= 3, "one connection per worker thread"


def test_http_proxy_from_the_environment_is_used(tmp_path, monkeypatch):
    from ffhq_tools.crawl.loopback import LoopbackServer, make_photos

    photos = make_photos(2, seed=6)
    with LoopbackServer(photos) as proxy:  # answers absolute-form requests like a proxy
        monkeypatch.setenv("http_proxy", proxy.base_url)
        monkeypatch.delenv("no_proxy", raising=False)
        monkeypatch.delenv("NO_PROXY", raising=False)
        out = io.BytesIO()
        fetch(f"http://photos.example.invalid/img/{photos[1].id}.png", out, HttpSettings())
        assert out.getvalue() == photos[1].data
        monkeypatch.setenv("no_proxy", "example.invalid")
        with pytest.raises(FetchError):
            fetch(f"http://photos.example.invalid/img/{photos[1].id}.png", io.BytesIO(),
                  HttpSettings(connect_timeout=1.0))
        monkeypatch.setenv("http_proxy", "socks5://127.0.0.1:1080")
        monkeypatch.delenv("no_proxy")
        with pytest.raises(FetchError, match="only http:// proxies"):
            fetch("http://photos.example.invalid/x.png", io.BytesIO(), HttpSettings())

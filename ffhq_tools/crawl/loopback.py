"""A loopback stand-in for Flickr, for offline tests and benchmarks.

`LoopbackServer` binds 127.0.0.1 on a free port and answers `flickr.photos.search` (with the
real 4,000-result cap behaviour, error 20 "excessive photo offset"; `extras=geo` adds place
ids), `flickr.photos.licenses.getInfo` and `flickr.places.getInfo`, and serves generated PNG
photos. It can inject faults into the first request of a chosen fraction of URLs: HTTP 500 /
503, 429 with Retry-After, a connection reset, a stall past the client's read timeout, a
truncated body, wrong bytes (a different valid image), an HTML page instead of an image, and
a redirect to a file:// URL; a body trickled one byte per `trickle_seconds` (`SLOW_FAULTS`:
a read timeout never fires); and Google Drive's "Download anyway" and "Quota exceeded" pages
(`DRIVE_FAULTS`).
It records every request so tests can check what a crawler asked for.
"""

from __future__ import annotations

import io
import json
import math
import random
import socket
import struct
import threading
import time
import urllib.parse
from collections import Counter
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
from PIL import Image

FAULTS = ("500", "503", "429", "reset", "stall", "truncate", "wrong_bytes", "html",
          "file_redirect")
API_FAULTS = ("500", "503", "429", "reset")
# Google Drive's pages in place of the file (FFHQ's file_url entries are Drive links): "Download
# anyway" as a form or as an older link (both lead to ?confirm=t), and a quota page.
DRIVE_FAULTS = ("drive_form", "drive_link", "drive_quota")
SLOW_FAULTS = ("trickle",)
LICENSES = [  # id, name, url: the table flickr.photos.licenses.getInfo returns
    (0, "All Rights Reserved", ""),
    (1, "Attribution-NonCommercial-ShareAlike License",
     "https://creativecommons.org/licenses/by-nc-sa/2.0/"),
    (2, "Attribution-NonCommercial License", "https://creativecommons.org/licenses/by-nc/2.0/"),
    (4, "Attribution License", "https://creativecommons.org/licenses/by/2.0/"),
    (7, "No known copyright restrictions", "https://www.flickr.com/commons/usage/"),
    (8, "United States Government Work", "http://www.usa.gov/copyright.shtml"),
    (9, "Public Domain Dedication (CC0)", "https://creativecommons.org/publicdomain/zero/1.0/"),
    (10, "Public Domain Mark", "https://creativecommons.org/publicdomain/mark/1.0/"),
]


# flickr.places.getInfo answers: a locality with its country part, a country-level place known
# only by its URL, and a place Flickr no longer knows (error 3). Every 5th photo has no place.
PLACES = {
    "fi-helsinki": {"place_url": "/Finland/Uusimaa/Helsinki", "place_type": "locality",
                    "country": {"_content": "Finland", "place_id": "fi"}},
    "us-sf": {"place_url": "/United+States/California/San+Francisco", "place_type": "locality",
              "country": {"_content": "United States", "place_id": "us"}},
    "ca": {"place_url": "/Canada", "place_type": "country"},
    "gone": None,
}
PLACE_IDS = ("fi-helsinki", "us-sf", "ca", "gone", "")


def drive_page(kind: str, photo_id: str) -> str:
    """A page shaped like Google Drive's answer of that kind, leading back to /img/<id>.png."""
    if kind == "drive_quota":
        return ("<!DOCTYPE html><html><head><title>Google Drive - Quota exceeded</title></head>"
                "<body><p>Too many users have viewed or downloaded this file recently.</p>"
                "</body></html>")
    if kind == "drive_form":
        hidden = "".join(f'<input type="hidden" name="{name}" value="{value}">' for name, value in
                         (("id", photo_id), ("export", "download"), ("confirm", "t"),
                          ("uuid", f"u-{photo_id}")))
        body = (f'<form id="download-form" action="/img/{photo_id}.png" method="get">'
                f'<input type="submit" id="uc-download-link" value="Download anyway">{hidden}'
                "</form>")
    else:
        body = (f'<a id="uc-download-link" href="/img/{photo_id}.png?export=download&amp;'
                'confirm=t">Download anyway</a>')
    return ("<!DOCTYPE html><html><head><title>Google Drive - Virus scan warning</title></head>"
            f"<body><p>Google Drive can't scan this file for viruses.</p>{body}</body></html>")


@dataclass(frozen=True)
class FakePhoto:
    id: str
    owner: str
    ownername: str
    title: str
    license: int
    dateupload: int
    width: int
    height: int
    data: bytes
    place_id: str = ""  # geotagged photos: a key of PLACES


def make_photos(count: int, seed: int = 0, start: int = 1_500_000_000,
                span: int = 86_400 * 30) -> list[FakePhoto]:
    """`count` small PNG photos with seeded pixels, licenses, owners and upload times.

    Upload times cluster (a few busy seconds hold many photos) so date splitting is exercised."""
    rng = random.Random(seed)
    busy = [start + rng.randrange(span) for _ in range(3)]
    photos = []
    for i in range(count):
        width, height = rng.choice([(24, 16), (16, 24), (20, 20)])
        pixels = np.random.default_rng(seed * 100_003 + i).integers(
            0, 256, (height, width, 3), dtype=np.uint8)
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, format="PNG")
        when = rng.choice(busy) if rng.random() < 0.3 else start + rng.randrange(span)
        photos.append(FakePhoto(
            id=str(10_000_000 + i * 7919 % 100_000 * 10 + i % 10), owner=f"{i % 17}@N0{i % 5}",
            ownername=f"Photographer {i % 17}", title=f"portrait {i}",
            license=rng.choice([2, 4, 8, 9, 10]), dateupload=when, width=width, height=height,
            data=buffer.getvalue(), place_id=PLACE_IDS[i % len(PLACE_IDS)]))
    return photos


class LoopbackServer:
    def __init__(self, photos: list[FakePhoto], *, api_key: str = "test-key",
                 fault_rate: float = 0.0, faults: tuple[str, ...] = FAULTS,
                 api_fault_rate: float = 0.0, seed: int = 0, latency: float = 0.0,
                 stall_seconds: float = 1.0, retry_after: str = "1", result_cap: int = 4000,
                 connect_latency: float = 0.0, trickle_seconds: float = 0.5):
        self.photos = {p.id: p for p in photos}
        self.api_key, self.latency, self.connect_latency = api_key, latency, connect_latency
        self.connections = 0
        self.in_flight = self.peak_in_flight = 0
        self.stall_seconds, self.retry_after = stall_seconds, retry_after
        self.trickle_seconds = trickle_seconds
        self.trickling = 0  # bodies being trickled right now
        self.result_cap = result_cap
        rng = random.Random(seed)
        self.image_faults = {}
        for photo in photos:
            if rng.random() < fault_rate:
                self.image_faults[f"/img/{photo.id}.png"] = faults[len(self.image_faults)
                                                                   % len(faults)]
        self.api_fault_rate, self._api_rng = api_fault_rate, random.Random(seed + 1)
        self.api_faults: dict[str, str] = {}
        self.attempts: Counter[str] = Counter()
        self.requests: Counter[str] = Counter()
        self.served_ok: Counter[str] = Counter()
        self.search_log: list[dict] = []
        self.seen_keys: set[str] = set()
        self.lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._httpd.daemon_threads = True
        self._httpd.loopback = self
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.05,),
                                        daemon=True)

    @property
    def base_url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def api_base(self) -> str:
        return self.base_url + "/services/rest/"

    def image_url(self, photo: FakePhoto) -> str:
        return f"{self.base_url}/img/{photo.id}.png"

    def start(self) -> "LoopbackServer":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self) -> "LoopbackServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def fault_for(self, key: str, is_api: bool) -> str | None:
        """The fault to inject now: only on the first request of a faulty URL."""
        with self.lock:
            self.attempts[key] += 1
            if self.attempts[key] > 1:
                return None
            if is_api:
                if self._api_rng.random() < self.api_fault_rate:
                    self.api_faults[key] = API_FAULTS[len(self.api_faults) % len(API_FAULTS)]
                    return self.api_faults[key]
                return None
            return self.image_faults.get(key)

    def search(self, query: dict) -> dict:
        low, high = int(query["min_upload_date"]), int(query["max_upload_date"])
        page, per_page = int(query.get("page", 1)), min(int(query.get("per_page", 100)), 500)
        licenses = {int(x) for x in query.get("license", "").split(",") if x}
        matches = sorted((p for p in self.photos.values() if low <= p.dateupload <= high
                          and (not licenses or p.license in licenses)),
                         key=lambda p: (p.dateupload, p.id))
        with self.lock:
            self.search_log.append({"min": low, "max": high, "page": page, "per_page": per_page,
                                    "total": len(matches)})
        if (page - 1) * per_page >= self.result_cap:
            return {"stat": "fail", "code": 20, "message": "Excessive photo offset in search"}
        window = matches[:self.result_cap][(page - 1) * per_page: page * per_page]
        return {"stat": "ok", "photos": {
            "page": page, "pages": max(1, math.ceil(len(matches) / per_page)),
            "perpage": per_page, "total": len(matches),
            "photo": [self._photo_json(p, "geo" in query.get("extras", "").split(","))
                      for p in window]}}

    def _photo_json(self, p: FakePhoto, geo: bool) -> dict:
        return {"id": p.id, "owner": p.owner, "secret": "abc", "server": "1", "farm": 1,
                "title": p.title, "ispublic": 1, "license": str(p.license),
                "dateupload": str(p.dateupload), "ownername": p.ownername,
                "url_o": self.image_url(p), "width_o": p.width, "height_o": p.height,
                "o_width": str(p.width), "o_height": str(p.height),
                **({"place_id": p.place_id, "latitude": 1, "longitude": 1, "accuracy": 11}
                   if p.place_id and geo else {})}

    def place_info(self, query: dict) -> dict:
        place = PLACES.get(query.get("place_id", ""))
        with self.lock:
            self.requests[f"place:{query.get('place_id', '')}"] += 1
        if place is None:
            return {"stat": "fail", "code": 3, "message": "Place not found"}
        return {"stat": "ok", "place": {"place_id": query["place_id"], **place}}

    def licenses_info(self) -> dict:
        return {"stat": "ok", "licenses": {"license": [
            {"id": i, "name": name, "url": url} for i, name, url in LICENSES]}}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format, *args):  # noqa: A002 - silence per-request logging
        pass

    @property
    def state(self) -> LoopbackServer:
        return self.server.loopback

    def setup(self):
        super().setup()
        with self.state.lock:
            self.state.connections += 1
        if self.state.connect_latency:  # stands in for TCP + TLS handshake round trips
            time.sleep(self.state.connect_latency)

    def do_GET(self):  # noqa: N802 - http.server naming
        with self.state.lock:
            self.state.in_flight += 1
            self.state.peak_in_flight = max(self.state.peak_in_flight, self.state.in_flight)
        self._counted = True
        try:
            self._get()
        finally:
            self._leave_flight()

    def _leave_flight(self):
        """Stop counting this request as in flight. Called before the body's last bytes go out:
        a client may send its next request the moment it has them, and that request must not
        overlap this one in the count."""
        if self._counted:
            self._counted = False
            with self.state.lock:
                self.state.in_flight -= 1

    def _get(self):
        if self.state.latency:
            time.sleep(self.state.latency)
        parts = urllib.parse.urlsplit(self.path)
        with self.state.lock:
            self.state.requests[parts.path] += 1
        if parts.path == "/services/rest/":
            self._api(self.path, dict(urllib.parse.parse_qsl(parts.query)))
        elif parts.path.startswith("/img/"):
            self._image(parts.path, dict(urllib.parse.parse_qsl(parts.query)))
        else:
            self._send(404, b"not found", "text/plain")

    def _send(self, status: int, body: bytes, content_type: str, headers: dict | None = None):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self._leave_flight()
        self.wfile.write(body)

    def _api(self, key: str, query: dict):
        fault = self.state.fault_for(key, is_api=True)
        if fault is not None and self._inject(fault, b""):
            return
        with self.state.lock:
            self.state.seen_keys.add(query.get("api_key", ""))
        if query.get("api_key") != self.state.api_key:
            answer = {"stat": "fail", "code": 100, "message": "Invalid API Key (Key not found)"}
        elif query.get("method") == "flickr.photos.search":
            answer = self.state.search(query)
        elif query.get("method") == "flickr.photos.licenses.getInfo":
            answer = self.state.licenses_info()
        elif query.get("method") == "flickr.places.getInfo":
            answer = self.state.place_info(query)
        else:
            answer = {"stat": "fail", "code": 112, "message": "Method not found"}
        self._send(200, json.dumps(answer).encode(), "application/json")

    def _image(self, path: str, query: dict):
        photo = self.state.photos.get(path[len("/img/"):-len(".png")])
        if photo is None:
            self._send(404, b"no such photo", "text/plain")
            return
        drive = self.state.image_faults.get(path, "")
        if drive in DRIVE_FAULTS and (drive == "drive_quota" or query.get("confirm") != "t"):
            with self.state.lock:
                self.state.attempts[path] += 1
            self._send(200, drive_page(drive, photo.id).encode(), "text/html; charset=utf-8")
            return
        fault = None if drive in DRIVE_FAULTS else self.state.fault_for(path, is_api=False)
        if fault is not None and self._inject(fault, photo.data):
            return
        self._send(200, photo.data, "image/png")
        with self.state.lock:
            self.state.served_ok[path] += 1

    def _inject(self, fault: str, body: bytes) -> bool:
        """Send a broken answer; True when the request is finished."""
        if fault in ("500", "503"):
            self._send(int(fault), b"server error", "text/plain")
        elif fault == "429":
            self._send(429, b"slow down", "text/plain", {"Retry-After": self.state.retry_after})
        elif fault == "reset":
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()
            self.close_connection = True
        elif fault in ("stall", "truncate"):
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body[: len(body) // 2])
            if fault == "stall":
                time.sleep(self.state.stall_seconds)
            self.close_connection = True
        elif fault == "trickle":
            self._trickle(body)
        elif fault == "wrong_bytes":
            other = next(p for p in self.state.photos.values() if p.data != body)
            self._send(200, other.data, "image/png")
        elif fault == "html":
            self._send(200, b"<html><body>photo unavailable</body></html>", "image/png")
        elif fault == "file_redirect":
            self._send(302, b"", "text/plain", {"Location": "file:///etc/passwd"})
        else:
            raise ValueError(f"unknown fault {fault!r}")
        return True

    def _trickle(self, body: bytes) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "image/png")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self._leave_flight()
        with self.state.lock:
            self.state.trickling += 1
        try:
            for i in range(len(body)):
                self.wfile.write(body[i:i + 1])
                self.wfile.flush()
                time.sleep(self.state.trickle_seconds)
        finally:
            with self.state.lock:
                self.state.trickling -= 1
        self.close_connection = True

    def handle_one_request(self):
        try:
            super().handle_one_request()
        except (ConnectionError, OSError, ValueError):
            self.close_connection = True


def manifest_for(server: LoopbackServer, photos: list[FakePhoto],
                 folder: str = "in-the-wild-images") -> dict:
    """An FFHQ v2 manifest (in_the_wild section, every verification field) for these photos."""
    import hashlib

    from ffhq_tools.crawl.verify import stored_pixels_fields

    names = {i: name for i, name, _ in LICENSES}
    urls = {i: url for i, _, url in LICENSES}
    manifest = {}
    for index, photo in enumerate(photos):
        manifest[str(index)] = {
            "category": "training" if index % 5 else "validation",
            "metadata": {"photo_url": f"https://www.flickr.com/photos/{photo.owner}/{photo.id}/",
                         "photo_title": photo.title, "author": photo.ownername,
                         "country": ["", "France", "Japan"][index % 3],
                         "license": names[photo.license], "license_url": urls[photo.license],
                         "date_uploaded": time.strftime("%Y-%m-%d", time.gmtime(photo.dateupload)),
                         "date_crawled": "2026-01-01"},
            "in_the_wild": {"file_url": server.image_url(photo),
                            "file_path": f"{folder}/{index // 1000 * 1000:05d}/{index:05d}.png",
                            "file_size": len(photo.data),
                            "file_md5": hashlib.md5(photo.data).hexdigest(),
                            "pixel_size": [photo.width, photo.height],
                            "pixel_md5": stored_pixels_fields(photo.data)[1]}}
    return manifest

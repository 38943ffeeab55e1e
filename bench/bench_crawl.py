"""Manifest download throughput on the loopback server with 50 ms latency per request (and,
second scenario, 50 ms per new connection standing in for TCP + TLS handshakes):
ours (threads, per-host limit, md5 + pixel verification, atomic rename) against a plain
sequential urllib loop that verifies nothing. Prints images/s of both and the ratio."""

from __future__ import annotations

import json
import tempfile
import time
import urllib.request
from pathlib import Path

from ffhq_tools.crawl.downloader import DownloadOptions, download_manifest
from ffhq_tools.crawl.loopback import LoopbackServer, make_photos, manifest_for

IMAGES = 200
LATENCY = 0.05
WORKERS = 16


def naive_sequential(manifest: dict, out_dir: Path) -> None:
    for entry in manifest.values():
        spec = entry["in_the_wild"]
        target = out_dir / spec["file_path"]
        target.parent.mkdir(parents=True, exist_ok=True)
        with urllib.request.urlopen(spec["file_url"], timeout=30) as response:
            target.write_bytes(response.read())


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def scenario(latency: float, connect_latency: float) -> tuple[float, float]:
    """(naive seconds, ours seconds) for IMAGES files."""
    photos = make_photos(IMAGES, seed=0)
    with LoopbackServer(photos, latency=latency, connect_latency=connect_latency) as server, \
            tempfile.TemporaryDirectory(prefix=".bench-crawl-", dir=".") as scratch:
        root = Path(scratch)
        manifest = manifest_for(server, photos)
        manifest_path = root / "manifest.json"
        manifest_path.write_text(json.dumps(manifest))
        naive_s = timed(lambda: naive_sequential(manifest, root / "naive"))
        options = DownloadOptions(workers=WORKERS, per_host=WORKERS, progress=False)
        reports = []
        ours_s = timed(lambda: reports.append(
            download_manifest(manifest_path, root / "ours", options=options)))
        assert reports and not reports[0].failed
    return naive_s, ours_s


def main() -> None:
    for name, latency, connect_latency in (("50 ms per request", LATENCY, 0.0),
                                           ("50 ms per new connection", 0.0, LATENCY)):
        naive_s, ours_s = scenario(latency, connect_latency)
        print(f"{IMAGES} images, loopback, {name}")
        print(f"  naive sequential urllib : {IMAGES / naive_s:8.1f} images/s ({naive_s:.2f} s)")
        print(f"  ffhq-tools {WORKERS} workers   : {IMAGES / ours_s:8.1f} images/s "
              f"({ours_s:.2f} s), md5 + pixel size + pixel md5 verified")
        print(f"  ratio ours / naive      : {naive_s / ours_s:8.2f}x", flush=True)


if __name__ == "__main__":
    main()

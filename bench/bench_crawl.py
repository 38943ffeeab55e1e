"""Manifest download throughput on the loopback server with 50 ms latency per request:
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


def main() -> None:
    photos = make_photos(IMAGES, seed=0)
    with LoopbackServer(photos, latency=LATENCY) as server, \
            tempfile.TemporaryDirectory(prefix=".bench-crawl-", dir=".") as scratch:
        root = Path(scratch)
        manifest = manifest_for(server, photos)
        manifest_path = root / "manifest.json"
        manifest_path.write_text(json.dumps(manifest))
        naive_s = timed(lambda: naive_sequential(manifest, root / "naive"))
        options = DownloadOptions(workers=WORKERS, per_host=WORKERS, progress=False)
        report = None

        def ours():
            nonlocal report
            report = download_manifest(manifest_path, root / "ours", options=options)

        ours_s = timed(ours)
        assert report is not None and not report.failed
    print(f"{IMAGES} images, {LATENCY * 1000:.0f} ms latency per request, loopback")
    print(f"naive sequential urllib : {IMAGES / naive_s:8.1f} images/s ({naive_s:.2f} s)")
    print(f"ffhq-tools {WORKERS} workers   : {IMAGES / ours_s:8.1f} images/s ({ours_s:.2f} s), "
          f"verified md5 + pixel size + pixel md5")
    print(f"ratio ours / naive      : {naive_s / ours_s:8.2f}x")


if __name__ == "__main__":
    main()

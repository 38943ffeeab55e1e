"""kill -9 a real `ffhq-tools crawl flickr` process midway, rerun it, compare with a clean run."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.parse
from pathlib import Path

import pytest

from ffhq_tools.crawl.loopback import LoopbackServer, make_photos

KEY = "kill-test-key-abcdef"
START, SPAN = 1_500_000_000, 86_400 * 30
REPO = Path(__file__).resolve().parents[1]


def command(server: LoopbackServer, out: Path) -> list[str]:
    return [sys.executable, "-m", "ffhq_tools", "crawl", "flickr", "--text", "portrait",
            "--min-upload-date", str(START), "--max-upload-date", str(START + SPAN),
            "--out", str(out), "--api-base", server.api_base, "--per-page", "10",
            "--result-cap", "40", "--requests-per-hour", "1e9", "--workers", "2",
            "--backoff", "0.01", "--no-progress"]


def run(cmd: list[str]) -> subprocess.CompletedProcess:
    env = {**os.environ, "FLICKR_API_KEY": KEY}
    return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)


def tree(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.md5(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and p.name != "crawl-state.json"}


@pytest.mark.slow  # three subprocesses: 5-12 s on the shared 2-core machine
def test_kill_9_midway_then_rerun_matches_an_uninterrupted_run(tmp_path):
    photos = make_photos(80, seed=11, start=START, span=SPAN)
    good = {hashlib.md5(p.data).hexdigest() for p in photos}
    with LoopbackServer(photos, api_key=KEY, result_cap=40) as server:
        clean = run(command(server, tmp_path / "clean"))
        assert clean.returncode == 0, clean.stderr

        server.served_ok.clear()
        server.latency = 0.02
        env = {**os.environ, "FLICKR_API_KEY": KEY}
        proc = subprocess.Popen(command(server, tmp_path / "killed"), cwd=REPO, env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while sum(server.served_ok.values()) < 25 and time.monotonic() < deadline:
            assert proc.poll() is None, "the crawl ended before it could be killed"
            time.sleep(0.005)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        server.latency = 0.0

        images = tmp_path / "killed" / "in-the-wild-images"
        finals = [p for p in images.rglob("*") if p.is_file() and not p.name.startswith(".")]
        assert 0 < len(finals) < 80, "killed midway through the downloads"
        for path in finals:
            assert hashlib.md5(path.read_bytes()).hexdigest() in good, f"partial file {path}"
        done_before = {path.relative_to(images) for path in finals}

        manifest = json.loads((tmp_path / "killed" / "manifest.json").read_text())
        url_path = {e["in_the_wild"]["file_path"]: urllib.parse.urlsplit(
            e["in_the_wild"]["file_url"]).path for e in manifest.values()}
        requests_before = dict(server.requests)
        rerun = run(command(server, tmp_path / "killed"))
        assert rerun.returncode == 0, rerun.stderr
        again = {k for k, n in server.requests.items()
                 if k.startswith("/img/") and n > requests_before.get(k, 0)}
        verified = {url_path[f"in-the-wild-images/{p}"] for p in done_before}
        assert again and not (again & verified), "verified files are never requested again"
        assert len(again) == 80 - len(done_before)

    assert tree(tmp_path / "killed") == tree(tmp_path / "clean")
    assert KEY not in rerun.stdout + rerun.stderr + clean.stdout + clean.stderr

"""Manifest downloader against the loopback server: faults, resume, verification, safety."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import time
import urllib.parse
from pathlib import Path

import pytest

from ffhq_tools.cli import main as cli_main
from ffhq_tools.crawl.downloader import DownloadOptions, download_files, download_manifest
from ffhq_tools.crawl.http import HttpSettings
from ffhq_tools.crawl.loopback import (
    DRIVE_FAULTS,
    FAULTS,
    LoopbackServer,
    make_photos,
    manifest_for,
)
from ffhq_tools.crawl.manifest import ManifestError, manifest_specs, parse_shard, select_specs
from ffhq_tools.crawl.stats import format_stats, stats_rows

FAST = DownloadOptions(workers=8, per_host=8, attempts=8, backoff_base=0.01, backoff_cap=0.05,
                       http=HttpSettings(connect_timeout=2.0, read_timeout=5.0), progress=False)
# short read timeout only where the server stalls on purpose
STALLING = dataclasses.replace(FAST, http=HttpSettings(connect_timeout=2.0, read_timeout=0.3))


@pytest.fixture(scope="module")
def photos():
    return make_photos(200, seed=3)


def write_manifest(path: Path, manifest: dict) -> Path:
    path.write_text(json.dumps(manifest))
    return path


def tree(root: Path) -> dict[str, str]:
    """Every file under root (hidden ones included) -> md5."""
    return {str(p.relative_to(root)): hashlib.md5(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_faults_on_30_percent_of_requests_end_with_every_file_verified(tmp_path, photos):
    with LoopbackServer(photos, fault_rate=0.3, seed=1, stall_seconds=0.6,
                        retry_after="0.2") as server:
        assert set(server.image_faults.values()) == set(FAULTS)
        assert 45 <= len(server.image_faults) <= 75
        manifest = manifest_for(server, photos)
        report = download_manifest(write_manifest(tmp_path / "m.json", manifest),
                                   tmp_path / "out", "in_the_wild", STALLING)
        assert report.failed == [], [r.reason for r in report.failed]
        assert report.count("downloaded") == 200
        retried = {"/" + r.spec.url.split("/", 3)[-1] for r in report.results if r.attempts > 1}
        # a reset on a reused keep-alive connection is retried at once on a fresh one
        assert {p for p, f in server.image_faults.items() if f != "reset"} <= retried
        assert all(server.attempts[p] >= 2 for p in server.image_faults)
        assert set(server.served_ok) == {urllib.parse.urlsplit(r.spec.url).path
                                         for r in report.results}
    files = tree(tmp_path / "out")
    assert len(files) == 200, "no temp, partial or stray file may remain"
    for entry in manifest.values():
        spec = entry["in_the_wild"]
        assert files[spec["file_path"]] == spec["file_md5"]
    assert not (tmp_path / "out" / "failures.jsonl").exists()
    mode = (tmp_path / "out" / manifest["0"]["in_the_wild"]["file_path"]).stat().st_mode
    assert mode & 0o777 == 0o644


def test_rerun_requests_nothing_and_verify_existing_repairs(tmp_path, photos):
    some = photos[:20]
    with LoopbackServer(some) as server:
        manifest_path = write_manifest(tmp_path / "m.json", manifest_for(server, some))
        download_manifest(manifest_path, tmp_path / "out", options=FAST)
        before = sum(server.attempts.values())
        report = download_manifest(manifest_path, tmp_path / "out", options=FAST)
        assert report.count("present") == 20 and sum(server.attempts.values()) == before
        victim = tmp_path / "out" / json.loads(manifest_path.read_text())["3"]["in_the_wild"][
            "file_path"]
        data = bytearray(victim.read_bytes())
        data[-20] ^= 0xFF  # same size, different bytes: only --verify-existing notices
        victim.write_bytes(bytes(data))
        assert download_manifest(manifest_path, tmp_path / "out", options=FAST).count(
            "present") == 20
        options = dataclasses.replace(FAST, verify_existing=True)
        report = download_manifest(manifest_path, tmp_path / "out", options=options)
        assert report.count("downloaded") == 1 and report.count("present") == 19
        assert victim.read_bytes() == some[3].data


def test_permanent_failures_go_to_failures_jsonl_and_exit_1(tmp_path, photos, capsys):
    some = photos[:4]
    with LoopbackServer(some) as server:
        manifest = manifest_for(server, some)
        manifest["1"]["in_the_wild"]["file_url"] = server.base_url + "/img/missing.png"
        manifest["2"]["in_the_wild"]["file_md5"] = "0" * 32
        manifest["3"]["in_the_wild"]["pixel_size"] = [999, 999]
        path = write_manifest(tmp_path / "m.json", manifest)
        code = cli_main(["crawl", "manifest", str(path), "--out", str(tmp_path / "out"),
                         "--attempts", "2", "--backoff", "0.01", "--no-progress"])
        assert server.requests["/img/missing.png"] == 1, "a 404 is not retried"
    assert code == 1
    failures = {r["index"]: r for r in map(json.loads, (tmp_path / "out" / "failures.jsonl")
                                           .read_text().splitlines())}
    assert set(failures) == {"1", "2", "3"}
    assert "HTTP 404" in failures["1"]["reason"]
    assert "md5" in failures["2"]["reason"] and failures["2"]["attempts"] == 2
    assert "pixel size [" in failures["3"]["reason"]
    assert sorted(p.name for p in (tmp_path / "out").rglob("*.png")) == ["00000.png"]
    assert "4 files: 1 downloaded" in capsys.readouterr().out


def test_max_size_is_enforced_without_retry(tmp_path, photos):
    with LoopbackServer(photos[:1]) as server:
        specs = manifest_specs(manifest_for(server, photos[:1]), "in_the_wild")
        options = dataclasses.replace(FAST, http=HttpSettings(max_bytes=100))
        report = download_files(specs, tmp_path / "out", options)
        assert server.attempts[f"/img/{photos[0].id}.png"] == 1
    assert "maximum file size" in report.failed[0].reason
    assert list((tmp_path / "out").rglob("*.png")) == []


def test_google_drive_pages_are_followed_or_named(tmp_path, photos):
    """FFHQ's file_url entries are Drive links: its "Download anyway" page (form or older link)
    is followed to the file; a quota page fails at once with a reason that says so."""
    with LoopbackServer(photos[:3], fault_rate=1.0, faults=DRIVE_FAULTS) as server:
        specs = manifest_specs(manifest_for(server, photos[:3]), "in_the_wild")
        report = download_files(specs, tmp_path / "out", FAST)
        attempts = [server.attempts[f"/img/{p.id}.png"] for p in photos[:3]]
    results = report.results  # in manifest order
    for i in (0, 1):  # drive_form, drive_link: one attempt, two requests, the right bytes
        assert results[i].status == "downloaded" and results[i].attempts == 1
        assert results[i].path.read_bytes() == photos[i].data
    assert attempts[:2] == [1, 1]  # the confirm request is answered by the file
    quota = results[2]
    assert quota.status == "failed" and quota.attempts == 1 and attempts[2] == 1
    assert "Google Drive: download quota exceeded" in quota.reason
    assert not (tmp_path / "out" / specs[2].file_path).exists()


@pytest.mark.parametrize("title,content_type,expected", [
    ("Sign in - Google Accounts", "text/html; charset=utf-8", "not shared publicly"),
    ("Google Drive - Virus scan warning", "text/html", "instead of the file"),  # no link
    ("Photo unavailable", "text/html", None),  # not Drive: verification judges it
    ("Google Drive - Quota exceeded", "image/png", None),  # a file, whatever it holds
])
def test_drive_pages_without_a_file_are_named(tmp_path, title, content_type, expected):
    from ffhq_tools.crawl.drive import confirmed_url, read_drive_page
    from ffhq_tools.crawl.http import FetchError

    page_file = tmp_path / "page"
    page_file.write_text(f"<html><head><title>{title}</title></head><body></body></html>")
    page = read_drive_page(page_file, page_file.stat().st_size, content_type)
    if expected is None:
        assert page is None
    else:
        with pytest.raises(FetchError, match=expected):
            confirmed_url(page, "https://drive.google.com/uc?id=x")


def test_retry_after_pauses_the_host(tmp_path, photos):
    with LoopbackServer(photos[:1], fault_rate=1.0, faults=("429",), retry_after="1") as server:
        specs = manifest_specs(manifest_for(server, photos[:1]), "in_the_wild")
        start = time.monotonic()
        report = download_files(specs, tmp_path / "out", FAST)
        elapsed = time.monotonic() - start
    assert report.failed == [] and report.results[0].attempts == 2
    assert 1.0 <= elapsed < 15.0  # the 1 s asked for, not a backoff cap


@pytest.mark.parametrize("field,value,message", [
    ("file_path", "../escape.png", "'..' leaves the output folder"),
    ("file_path", "a/../../escape.png", "'..' leaves the output folder"),
    ("file_path", "/etc/escape.png", "absolute path"),
    ("file_path", "C:/escape.png", "absolute path"),
    ("file_url", "file:///etc/passwd", "only http(s) URLs"),
    ("file_url", "ftp://example.com/x.png", "only http(s) URLs"),
])
def test_unsafe_entries_refuse_the_whole_manifest(tmp_path, photos, capsys, field, value,
                                                  message):
    with LoopbackServer(photos[:3]) as server:
        manifest = manifest_for(server, photos[:3])
        manifest["2"]["in_the_wild"][field] = value
        path = write_manifest(tmp_path / "m.json", manifest)
        code = cli_main(["crawl", "manifest", str(path), "--out", str(tmp_path / "out"),
                         "--no-progress"])
        assert sum(server.requests.values()) == 0, "nothing is fetched from a refused manifest"
    err = capsys.readouterr().err
    assert code == 2 and message in err and "entry '2'" in err and field in err


def test_symlink_escape_is_refused(tmp_path, photos):
    outside = tmp_path / "outside"
    outside.mkdir()
    out = tmp_path / "out"
    out.mkdir()
    os.symlink(outside, out / "in-the-wild-images")
    with LoopbackServer(photos[:2]) as server:
        manifest = manifest_for(server, photos[:2])
        with pytest.raises(ManifestError, match="outside the output folder"):
            download_manifest(write_manifest(tmp_path / "m.json", manifest), out, options=FAST)
        assert sum(server.requests.values()) == 0
    assert list(outside.iterdir()) == []


def test_duplicate_paths_and_bad_fields_are_named(photos):
    base = {"file_url": "http://h/x.png", "file_path": "a/x.png"}
    with pytest.raises(ManifestError, match="entries '0' and '1' both write"):
        manifest_specs({"0": {"in_the_wild": base}, "1": {"in_the_wild": base}}, "in_the_wild")
    with pytest.raises(ManifestError, match=r"entry '0'.in_the_wild.file_md5"):
        manifest_specs({"0": {"in_the_wild": {**base, "file_md5": "xyz"}}}, "in_the_wild")
    with pytest.raises(ManifestError, match="missing section 'thumbnail'"):
        manifest_specs({"0": {"in_the_wild": base}}, "thumbs")


def test_shards_partition_and_filters_select():
    manifest = {str(i): {"category": "training" if i % 4 else "validation",
                         "metadata": {"license": "CC0" if i % 2 else "BY", "country": "X"},
                         "image": {"file_url": f"http://h/{i}.png", "file_path": f"i/{i}.png",
                                   "file_size": 10 + i}}
                for i in range(23)}
    specs = manifest_specs(manifest, "images")
    assert [s.index for s in specs[:3]] == ["0", "1", "2"]
    shards = [select_specs(specs, shard=parse_shard(f"{i}/4")) for i in range(4)]
    assert sorted(s.index for shard in shards for s in shard) == sorted(manifest)
    assert select_specs(specs, categories=["validation"], licenses=["BY"]) == [
        s for s in specs if int(s.index) % 4 == 0 and int(s.index) % 2 == 0]
    with pytest.raises(ManifestError, match="--category: no entry has 'validaton' "
                                            "\\(did you mean 'validation'"):
        select_specs(specs, categories=["validaton"])
    with pytest.raises(ManifestError, match="--license: no entry has 'CC-BY'"):
        select_specs(specs, licenses=["CC-BY"])
    with pytest.raises(ManifestError, match="--shard '4/4'"):
        parse_shard("4/4")
    rows = dict((k, (n, b)) for k, n, b in stats_rows(specs, "category"))
    assert rows["validation"] == (6, sum(10 + i for i in range(0, 23, 4)))
    assert rows["training"][0] == 17
    text = format_stats(specs)
    assert "Category" in text and "License" in text and "Country" in text


def test_stats_flag_prints_tables(tmp_path, photos, capsys):
    with LoopbackServer(photos[:10]) as server:
        path = write_manifest(tmp_path / "m.json", manifest_for(server, photos[:10]))
    assert cli_main(["crawl", "manifest", str(path), "--stats", "--category", "training"]) == 0
    out = capsys.readouterr().out
    assert "training" in out and "validation" not in out and "France" in out


@pytest.mark.parametrize("fault,reason", [
    ("500", "HTTP 500"), ("503", "HTTP 503"), ("429", "HTTP 429"),
    ("reset", "connection reset"), ("stall", "timed out"), ("truncate", "truncated body"),
    ("wrong_bytes", "verification failed: size"), ("html", "HTML/XML page instead of an image"),
    ("file_redirect", "redirect to non-http(s) URL 'file:///etc/passwd' refused"),
])
def test_each_fault_is_named_in_failures_jsonl(tmp_path, photos, fault, reason):
    options = dataclasses.replace(FAST, attempts=1, http=HttpSettings(
        connect_timeout=2.0, read_timeout=0.2))
    with LoopbackServer(photos[:2], fault_rate=1.0, faults=(fault,), stall_seconds=0.4,
                        retry_after="0") as server:
        specs = manifest_specs(manifest_for(server, photos[:1]), "in_the_wild")
        report = download_files(specs, tmp_path, options)
    assert reason in report.failed[0].reason
    record = json.loads((tmp_path / "failures.jsonl").read_text())
    assert reason in record["reason"] and record["index"] == "0"
    assert [p.name for p in tmp_path.rglob("*.png")] == []


def test_unwritable_output_stops_with_a_clear_error(tmp_path, photos, monkeypatch):
    from ffhq_tools.crawl import downloader

    class FullDisk(io.BytesIO):
        def write(self, data):
            raise OSError(28, "No space left on device")

    def open_on_full_disk(path, mode="r"):
        assert mode == "wb"
        return FullDisk()

    with LoopbackServer(photos[:3]) as server:
        specs = manifest_specs(manifest_for(server, photos[:3]), "in_the_wild")
        monkeypatch.setattr(downloader, "open", open_on_full_disk, raising=False)
        with pytest.raises(downloader.LocalWriteError, match="No space left on device"):
            download_files(specs, tmp_path, FAST)
        assert sum(server.requests.values()) <= 3, "a full disk is not retried"
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []


def test_per_host_limit_and_global_rate_hold_end_to_end(tmp_path, photos):
    with LoopbackServer(photos[:12], latency=0.05) as server:
        specs = manifest_specs(manifest_for(server, photos[:12]), "in_the_wild")
        download_files(specs, tmp_path / "a", dataclasses.replace(FAST, workers=8, per_host=2))
        assert server.peak_in_flight == 2
        start = time.monotonic()
        download_files(specs, tmp_path / "b", dataclasses.replace(FAST, workers=8,
                                                                 requests_per_second=40.0))
        assert time.monotonic() - start >= 11 / 40


def test_not_enough_disk_space_is_refused_before_downloading(tmp_path, photos, monkeypatch):
    import shutil
    from collections import namedtuple

    from ffhq_tools.crawl import downloader

    usage, real_disk_usage = namedtuple("usage", "total used free"), shutil.disk_usage
    with LoopbackServer(photos[:5]) as server:
        specs = manifest_specs(manifest_for(server, photos[:5]), "in_the_wild")
        needed = sum(len(p.data) for p in photos[:5])
        monkeypatch.setattr(downloader.shutil, "disk_usage",
                            lambda path: usage(10**9, 10**9 - needed + 1, needed - 1))
        with pytest.raises(downloader.LocalWriteError, match="5 files need .* only .* free"):
            download_files(specs, tmp_path, FAST)
        assert sum(server.requests.values()) == 0
        monkeypatch.setattr(downloader.shutil, "disk_usage", real_disk_usage)
        assert download_files(specs, tmp_path, FAST).count("downloaded") == 5

"""Flickr crawler against the loopback Flickr: splitting, paging, faults, resume, secrecy."""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ffhq_tools.cli import main as cli_main
from ffhq_tools.crawl.downloader import DownloadOptions
from ffhq_tools.crawl.flickr_api import FlickrClient, FlickrError
from ffhq_tools.crawl.flickr_crawl import build_manifest, crawl_flickr
from ffhq_tools.crawl.flickr_search import FlickrQuery, parse_upload_date, search_all
from ffhq_tools.crawl.http import HttpSettings
from ffhq_tools.crawl.loopback import LICENSES, LoopbackServer, make_photos
from ffhq_tools.errors import FfhqToolsError

KEY = "s3cr3t-flickr-key-0123456789"
START, SPAN = 1_500_000_000, 86_400 * 30
FAST_HTTP = HttpSettings(connect_timeout=2.0, read_timeout=5.0)
FAST_DOWNLOAD = DownloadOptions(workers=8, attempts=6, backoff_base=0.01, backoff_cap=0.05,
                                http=FAST_HTTP, decode=True, progress=False)


@pytest.fixture(scope="module")
def photos():
    return make_photos(200, seed=5, start=START, span=SPAN)


def client_for(server: LoopbackServer, key: str = KEY) -> FlickrClient:
    return FlickrClient(key, server.api_base, requests_per_hour=1e9, http=FAST_HTTP,
                        attempts=5, backoff_base=0.01, backoff_cap=0.05)


def query(per_page: int = 10) -> FlickrQuery:
    return FlickrQuery(min_upload_date=START, max_upload_date=START + SPAN, text="portrait",
                       per_page=per_page)


def tree(root: Path, skip: tuple[str, ...] = ()) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.md5(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and p.name not in skip}


def assert_never_past_cap(server: LoopbackServer, cap: int) -> None:
    for q in server.search_log:
        assert (q["page"] - 1) * q["per_page"] < cap, q
        if q["page"] > 1 and q["min"] < q["max"]:
            assert q["total"] <= cap, f"paged a splittable window above the cap: {q}"


def test_cli_crawl_with_api_and_download_faults(tmp_path, photos, capsys, monkeypatch):
    monkeypatch.setenv("FLICKR_API_KEY", KEY)
    faults = ("500", "503", "429", "reset", "stall", "truncate", "html", "file_redirect")
    with LoopbackServer(photos, api_key=KEY, fault_rate=0.3, faults=faults, api_fault_rate=0.3,
                        seed=2, stall_seconds=0.6, retry_after="0.2", result_cap=40) as server:
        code = cli_main([
            "crawl", "flickr", "--text", "portrait", "--min-upload-date", str(START),
            "--max-upload-date", str(START + SPAN), "--out", str(tmp_path / "out"),
            "--api-base", server.api_base, "--per-page", "10", "--result-cap", "40",
            "--requests-per-hour", "1e9", "--read-timeout", "0.3", "--backoff", "0.01",
            "--backoff-cap", "0.05", "--workers", "8", "--attempts", "8", "--no-progress"])
        assert server.api_faults, "API requests were faulted too"
        assert server.seen_keys == {KEY}
        assert_never_past_cap(server, 40)
        assert any(q["total"] > 40 for q in server.search_log), "the window had to be split"
    captured = capsys.readouterr()
    assert code == 0, captured.err
    out = tmp_path / "out"
    manifest = json.loads((out / "manifest.json").read_text())
    by_id = {p.id: p for p in photos}
    assert sorted(e["metadata"]["flickr_id"] for e in manifest.values()) == sorted(by_id)
    names = {str(i): name for i, name, _ in LICENSES}
    for entry in manifest.values():
        photo, files = by_id[entry["metadata"]["flickr_id"]], entry["in_the_wild"]
        data = (out / files["file_path"]).read_bytes()
        assert data == photo.data
        assert files["file_md5"] == hashlib.md5(data).hexdigest()
        assert files["file_size"] == len(data)
        assert files["pixel_size"] == [photo.width, photo.height]
        with Image.open(io.BytesIO(data)) as image:  # FFHQ's definition, spelled out
            assert files["pixel_md5"] == hashlib.md5(np.array(image)).hexdigest()
        assert entry["metadata"]["license"] == names[str(photo.license)]
        assert entry["metadata"]["author"] == photo.ownername
    assert len(tree(out / "in-the-wild-images")) == 200, "no partial or stray file"
    everything = b"".join(p.read_bytes() for p in out.rglob("*") if p.is_file())
    assert KEY.encode() not in everything
    assert KEY not in captured.out + captured.err


def test_splitter_never_queries_past_the_cap_and_reports_full_seconds(tmp_path):
    crowd = make_photos(60, seed=9, start=START, span=1)  # 60 photos in one second
    with LoopbackServer(crowd, api_key=KEY, result_cap=25) as server:
        photos, state = search_all(client_for(server), FlickrQuery(
            min_upload_date=START - 1000, max_upload_date=START + 1000, per_page=10),
            tmp_path, result_cap=25, progress=False)
        assert_never_past_cap(server, 25)
    capped = state.data["capped_windows"]
    assert capped and all(low == high for low, high, _ in capped)
    per_second = {}
    for p in crowd:
        per_second[p.dateupload] = per_second.get(p.dateupload, 0) + 1
    expected = sum(min(n, 25) for n in per_second.values())
    assert len(photos) == expected


class Interrupted(Exception):
    pass


class DyingClient(FlickrClient):
    """Dies (like a killed process) before its n-th search call."""

    def __init__(self, *args, die_at: int, **kwargs):
        super().__init__(*args, **kwargs)
        self.die_at, self.searches = die_at, 0

    def search(self, *args, **kwargs):
        self.searches += 1
        if self.searches == self.die_at:
            raise Interrupted
        return super().search(*args, **kwargs)


def test_interrupted_search_resumes_to_the_same_result(tmp_path, photos):
    with LoopbackServer(photos, api_key=KEY, result_cap=40) as server:
        search_all(client_for(server), query(), tmp_path / "a", 40, progress=False)
        full = len(server.search_log)
        for die_at in (2, 9, 17):
            dying = DyingClient(KEY, server.api_base, requests_per_hour=1e9, http=FAST_HTTP,
                                attempts=2, backoff_base=0.01, die_at=die_at)
            with pytest.raises(Interrupted):
                search_all(dying, query(), tmp_path / "b", 40, progress=False)
        before = len(server.search_log)
        search_all(client_for(server), query(), tmp_path / "b", 40, progress=False)
        assert len(server.search_log) - before == full - (1 + 8 + 16), "resumes"
    a = (tmp_path / "a" / "photos.jsonl").read_text()
    assert a == (tmp_path / "b" / "photos.jsonl").read_text()
    assert len(a.splitlines()) == 200


def test_torn_photo_line_from_a_killed_writer_is_dropped(tmp_path, photos):
    with LoopbackServer(photos[:30], api_key=KEY) as server:
        search_all(client_for(server), query(), tmp_path / "a", progress=False)
        lines = (tmp_path / "a" / "photos.jsonl").read_text().splitlines(keepends=True)
        (tmp_path / "b").mkdir()
        (tmp_path / "b" / "photos.jsonl").write_text("".join(lines[:10]) + lines[10][:25])
        search_all(client_for(server), query(), tmp_path / "b", progress=False)
    assert (tmp_path / "b" / "photos.jsonl").read_text() == "".join(lines)


def test_changed_query_in_same_folder_is_refused(tmp_path, photos):
    with LoopbackServer(photos[:5], api_key=KEY) as server:
        search_all(client_for(server), query(), tmp_path, progress=False)
        with pytest.raises(FfhqToolsError, match="another query"):
            search_all(client_for(server), query(per_page=20), tmp_path, progress=False)


def test_bad_key_is_a_clear_error_without_the_key(tmp_path, photos):
    with LoopbackServer(photos[:5], api_key=KEY) as server:
        with pytest.raises(FlickrError, match="error 100: Invalid API Key") as info:
            crawl_flickr(query(), tmp_path, client_for(server, key="wrong-key-987"),
                         progress=False)
    assert "wrong-key-987" not in str(info.value)


def test_manifest_is_ordered_by_id_and_dedups(photos):
    records = {p.id: {"id": p.id, "owner": p.owner, "ownername": p.ownername, "title": p.title,
                      "license": str(p.license), "dateupload": str(p.dateupload),
                      "url_o": f"http://h/{p.id}.jpg"} for p in photos[:12]}
    records["x"] = {"id": "999", "license": "4", "dateupload": "0"}  # no public original
    records["y"] = {"id": "998", "license": "4", "dateupload": "0", "url_o": "file:///etc/passwd"}
    manifest, skipped = build_manifest(records, {"4": {"name": "Attribution License",
                                                       "url": "u"}}, "2026-01-01")
    assert skipped == 2 and len(manifest) == 12
    ids = [int(manifest[str(i)]["metadata"]["flickr_id"]) for i in range(12)]
    assert ids == sorted(ids)
    assert manifest["11"]["in_the_wild"]["file_path"] == "in-the-wild-images/00000/00011.jpg"


def test_upload_dates_parse_as_utc_days():
    assert parse_upload_date("1970-01-02", "--x") == 86_400
    assert parse_upload_date("1970-01-02", "--x", end_of_day=True) == 2 * 86_400 - 1
    assert parse_upload_date("1234", "--x") == 1234
    with pytest.raises(Exception, match="--x '2020-13-01'"):
        parse_upload_date("2020-13-01", "--x")


def test_crawl_then_recrawl_keeps_verified_fields(tmp_path, photos):
    with LoopbackServer(photos[:15], api_key=KEY) as server:
        crawl_flickr(query(), tmp_path, client_for(server), download=FAST_DOWNLOAD,
                     progress=False)
        first = (tmp_path / "manifest.json").read_text()
        served = sum(server.served_ok.values())
        result = crawl_flickr(query(), tmp_path, client_for(server), download=FAST_DOWNLOAD,
                              progress=False)
        assert sum(server.served_ok.values()) == served == 15
    assert result.report.count("present") == 15
    assert (tmp_path / "manifest.json").read_text() == first


@pytest.mark.parametrize("low,high,total,cap", [(0, 99, 9000, 4000), (10, 11, 10**6, 4000),
                                                (5, 5000, 4001, 4000), (0, 6, 700, 10)])
def test_split_window_covers_the_window_exactly(low, high, total, cap):
    from ffhq_tools.crawl.flickr_search import split_window

    pieces = split_window(low, high, total, cap)
    assert pieces[0][0] == low and pieces[-1][1] == high and len(pieces) >= 2
    for (a, b), (c, _) in zip(pieces, pieces[1:], strict=False):
        assert a <= b and c == b + 1
    assert len(pieces) == min(high - low + 1, max(2, -(-total * 4 // (3 * cap))))


def test_unreachable_api_error_shows_the_request_redacted():
    client = FlickrClient(KEY, "http://127.0.0.1:9/services/rest/", requests_per_hour=1e9,
                          http=HttpSettings(connect_timeout=0.5), attempts=2,
                          backoff_base=0.01)
    with pytest.raises(FlickrError, match=r"failed after 2 attempts") as info:
        client.licenses()
    assert "api_key=***" in str(info.value) and KEY not in str(info.value)
    assert KEY not in repr(client)
    with pytest.raises(FlickrError, match="--api-base"):
        FlickrClient(KEY, "file:///etc/passwd")


def test_countries_come_from_places_once_each_and_resume(tmp_path, photos, monkeypatch):
    from ffhq_tools.crawl import flickr_crawl
    from ffhq_tools.crawl.loopback import PLACE_IDS

    monkeypatch.setattr(flickr_crawl, "PLACES_SAVE_EVERY", 1)

    class DiesInThirdPlace(FlickrClient):
        def place_country(self, place_id):
            if place_id == sorted(p for p in PLACE_IDS if p)[2]:
                raise Interrupted
            return super().place_country(place_id)

    with LoopbackServer(photos, api_key=KEY) as server:
        dying = DiesInThirdPlace(KEY, server.api_base, requests_per_hour=1e9, http=FAST_HTTP)
        with pytest.raises(Interrupted):
            crawl_flickr(query(50), tmp_path, dying, progress=False, countries=True)
        assert json.loads((tmp_path / "places.json").read_text()) == {
            "ca": "Canada", "fi-helsinki": "Finland"}  # saved before the interruption
        result = crawl_flickr(query(50), tmp_path, client_for(server), progress=False,
                              countries=True)
        lookups = {k: v for k, v in server.requests.items() if k.startswith("place:")}
    assert lookups == {f"place:{p}": 1 for p in PLACE_IDS if p}  # each place asked once
    expected = {"fi-helsinki": "Finland", "us-sf": "United States", "ca": "Canada",
                "gone": "", "": ""}
    by_id = {p.id: expected[p.place_id] for p in photos}
    manifest = json.loads(result.manifest_path.read_text())
    got = {e["metadata"]["flickr_id"]: e["metadata"]["country"] for e in manifest.values()}
    assert got == by_id and {"Finland", "United States", "Canada", ""} == set(got.values())

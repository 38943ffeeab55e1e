"""`ffhq-tools crawl flickr`: search, write an FFHQ v2 manifest, download and verify originals.

Layout of the output folder:
    crawl-state.json          resumable search state (query without the API key, licenses)
    photos.jsonl              every photo found, deduplicated by id
    places.json               Flickr place id -> country, with --countries (resumable cache)
    manifest.json             FFHQ v2 schema, entries "0".."N-1" in photo-id order
    in-the-wild-images/00000/00000.jpg ...
    failures.jsonl            downloads that failed after the last retry (if any)

The manifest is rewritten (atomically) before and after the download; after it, every
verified file's in_the_wild section carries file_size, file_md5, pixel_size and pixel_md5,
so `ffhq-tools crawl manifest` can re-download and verify the same dataset elsewhere.
"""

from __future__ import annotations

import datetime as dt
import sys
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path

from ffhq_tools.atomic import write_json_atomic
from ffhq_tools.crawl.downloader import DownloadOptions, DownloadReport, download_files
from ffhq_tools.crawl.flickr_api import FlickrClient
from ffhq_tools.crawl.flickr_search import FlickrQuery, parse_upload_date, search_all
from ffhq_tools.crawl.manifest import load_manifest, manifest_specs, resolve_inside
from ffhq_tools.crawl.verify import VerifyError, verify_file

__all__ = ["FlickrQuery", "FlickrCrawlResult", "build_manifest", "crawl_flickr",
           "parse_upload_date"]

MANIFEST_FILE = "manifest.json"
PLACES_FILE = "places.json"
PLACES_SAVE_EVERY = 50
IMAGES_FOLDER = "in-the-wild-images"
IMAGE_EXTENSIONS = {"jpg", "jpeg", "png", "gif"}
VERIFIED_FIELDS = ("file_size", "file_md5", "pixel_size", "pixel_md5")


@dataclass
class FlickrCrawlResult:
    photos: int
    skipped_without_original: int
    queries: int
    manifest_path: Path
    capped_windows: list = field(default_factory=list)
    report: DownloadReport | None = None

    @property
    def failed_downloads(self) -> int:
        return len(self.report.failed) if self.report else 0

    def summary(self) -> str:
        text = (f"{self.photos} photos in {self.manifest_path} ({self.queries} search queries; "
                f"{self.skipped_without_original} without a public original skipped)")
        if self.capped_windows:
            text += (f"; {len(self.capped_windows)} one-second windows held more than the "
                     f"result cap and were cut short")
        if self.report is not None:
            text += "\n" + self.report.summary()
        return text


def photo_extension(photo: dict) -> str:
    suffix = Path(urllib.parse.urlsplit(photo.get("url_o", "")).path).suffix.lower().lstrip(".")
    if suffix in IMAGE_EXTENSIONS:
        return "jpg" if suffix == "jpeg" else suffix
    fmt = str(photo.get("originalformat", "")).lower()
    return fmt if fmt in IMAGE_EXTENSIONS else "jpg"


def _id_key(photo: dict) -> tuple[int, str]:
    text = str(photo["id"])
    return (int(text), "") if text.isdigit() else (1 << 62, text)


def _entry(index: int, photo: dict, licenses: dict, date_crawled: str,
           countries: dict[str, str]) -> dict:
    license_info = licenses.get(str(photo.get("license", "")), {})
    uploaded = int(photo.get("dateupload", 0) or 0)
    return {
        "category": "crawled",
        "metadata": {
            "photo_url": f"https://www.flickr.com/photos/{photo.get('owner', '')}/{photo['id']}/",
            "photo_title": str(photo.get("title", "")),
            "author": str(photo.get("ownername", "")),
            "country": countries.get(str(photo.get("place_id", "")), ""),
            "license": license_info.get("name", f"flickr license {photo.get('license')}"),
            "license_url": license_info.get("url", ""),
            "date_uploaded": time.strftime("%Y-%m-%d", time.gmtime(uploaded)),
            "date_crawled": date_crawled,
            "flickr_id": str(photo["id"]),
        },
        "in_the_wild": {
            "file_url": photo["url_o"],
            "file_path": (f"{IMAGES_FOLDER}/{index // 1000 * 1000:05d}/{index:05d}."
                          f"{photo_extension(photo)}"),
        },
    }


def _has_original(photo: dict) -> bool:
    url = photo.get("url_o")
    return isinstance(url, str) and urllib.parse.urlsplit(url).scheme.lower() in ("http", "https")


def build_manifest(photos: dict[str, dict], licenses: dict[str, dict], date_crawled: str,
                   countries: dict[str, str] | None = None) -> tuple[dict, int]:
    """(manifest, photos skipped because they have no public http(s) original URL); a
    photo's country comes from `countries` (Flickr place id -> name), else stays empty."""
    usable = sorted((p for p in photos.values() if _has_original(p)), key=_id_key)
    manifest = {str(i): _entry(i, photo, licenses, date_crawled, countries or {})
                for i, photo in enumerate(usable)}
    return manifest, len(photos) - len(usable)


def lookup_countries(client: FlickrClient, photos: dict[str, dict], out_dir: Path,
                     progress: bool = True) -> dict[str, str]:
    """Flickr place id -> country for every geotagged photo: one flickr.places.getInfo per
    distinct place, cached in OUT/places.json (saved every 50 lookups, so a rerun resumes)."""
    from tqdm import tqdm

    path = out_dir / PLACES_FILE
    countries: dict[str, str] = load_manifest(path) if path.exists() else {}
    wanted = sorted({str(p["place_id"]) for p in photos.values()
                     if p.get("place_id") and str(p["place_id"]) not in countries})
    with tqdm(wanted, desc="countries", unit="place", file=sys.stderr,
              disable=not progress or not wanted) as bar:
        for done, place_id in enumerate(bar, start=1):
            countries[place_id] = client.place_country(place_id)
            if done % PLACES_SAVE_EVERY == 0:
                write_json_atomic(path, countries)
    if wanted or not path.exists():
        write_json_atomic(path, countries)
    return countries


def carry_over_verification(manifest: dict, previous: dict) -> None:
    """Keep verified fields of a previous run's entries that still describe the same file."""
    before = {(e["in_the_wild"].get("file_url"), e["in_the_wild"].get("file_path")):
              e["in_the_wild"] for e in previous.values()
              if isinstance(e, dict) and isinstance(e.get("in_the_wild"), dict)}
    for entry in manifest.values():
        files = entry["in_the_wild"]
        old = before.get((files["file_url"], files["file_path"]))
        if old and all(k in old for k in VERIFIED_FIELDS):
            files.update({k: old[k] for k in VERIFIED_FIELDS})


def record_verification(manifest: dict, report: DownloadReport, out_dir: Path) -> None:
    """Write the verified fields of every file now on disk into the manifest."""
    for result in report.results:
        files = manifest[result.spec.index]["in_the_wild"]
        if result.record is not None:
            files.update(result.record.to_fields())
        elif result.status == "present" and not all(k in files for k in VERIFIED_FIELDS):
            try:
                files.update(verify_file(result.path, result.spec, decode=True).to_fields())
            except VerifyError:
                continue


def crawl_flickr(query: FlickrQuery, out_dir: str | Path, client: FlickrClient,
                 result_cap: int = 4000, download: DownloadOptions | None = None,
                 progress: bool = True, countries: bool = False) -> FlickrCrawlResult:
    """Search (resuming any earlier run in out_dir), look up the countries of geotagged photos
    (with `countries`), write the manifest, download (unless download is None) and record the
    verified fields."""
    out_dir = Path(out_dir)
    photos, state = search_all(client, query, out_dir, result_cap, progress)
    if state.data["licenses"] is None:
        state.data["licenses"] = client.licenses()
    if state.data["date_crawled"] is None:
        state.data["date_crawled"] = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d")
    state.save()
    places = lookup_countries(client, photos, out_dir, progress) if countries else None
    manifest, skipped = build_manifest(photos, state.data["licenses"],
                                       state.data["date_crawled"], places)
    manifest_path = out_dir / MANIFEST_FILE
    resolve_inside(out_dir, MANIFEST_FILE)
    if manifest_path.exists():
        carry_over_verification(manifest, load_manifest(manifest_path))
    write_json_atomic(manifest_path, manifest)
    result = FlickrCrawlResult(len(manifest), skipped, state.data["queries"], manifest_path,
                               list(state.data["capped_windows"]))
    if download is None:
        return result
    specs = manifest_specs(manifest, "in_the_wild", source=str(manifest_path))
    result.report = download_files(specs, out_dir, download)
    record_verification(manifest, result.report, out_dir)
    write_json_atomic(manifest_path, manifest)
    return result

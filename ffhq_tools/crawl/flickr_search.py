"""Exhaustive, resumable `flickr.photos.search` over an upload-date window.

Flickr serves at most 4,000 results per query, so a window whose total passes the cap is cut
into consecutive inclusive pieces (about total / (0.75 cap) of them, at least two) and each
piece is split again while it is still too full; only then is it paged, and no page past the
cap is ever requested. A one-second window above the cap cannot be split: its first `cap`
results are kept and the window is listed in `capped_windows`. The work list (pending windows and
the page in progress) lives in `crawl-state.json`, rewritten atomically after every query;
photos go to `photos.jsonl` before the state moves on, so a killed crawl resumes at the query
it was doing and duplicates (same photo id) are dropped.
"""

from __future__ import annotations

import calendar
import datetime as dt
import json
import math
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

from tqdm import tqdm

from ffhq_tools.atomic import append_jsonl, read_jsonl, write_json_atomic
from ffhq_tools.crawl.flickr_api import SEARCH_EXTRAS, FlickrClient
from ffhq_tools.errors import FfhqToolsError

STATE_FILE = "crawl-state.json"
PHOTOS_FILE = "photos.jsonl"
PHOTO_FIELDS = ("id", "owner", "ownername", "title", "license", "dateupload", "url_o",
                "o_width", "o_height", "originalformat", "place_id")


@dataclass(frozen=True)
class FlickrQuery:
    min_upload_date: int
    max_upload_date: int
    text: str = ""
    tags: str = ""
    licenses: tuple[str, ...] = ("2", "4", "8", "9", "10")
    per_page: int = 500

    def __post_init__(self):
        if self.min_upload_date > self.max_upload_date:
            raise FfhqToolsError("--min-upload-date is after --max-upload-date")
        if not 1 <= self.per_page <= 500:
            raise FfhqToolsError(f"--per-page {self.per_page}: Flickr allows 1..500")
        bad = [x for x in self.licenses if not x.isdigit()]
        if bad:
            raise FfhqToolsError(f"--licenses: {bad} are not Flickr license ids (e.g. 2,4,8,9,10)")

    def params(self) -> dict:
        params = {"license": ",".join(self.licenses), "sort": "date-posted-asc",
                  "content_type": "1", "media": "photos", "extras": SEARCH_EXTRAS,
                  "per_page": str(self.per_page)}
        if self.text:
            params["text"] = self.text
        if self.tags:
            params["tags"] = self.tags
        return params

    def to_dict(self) -> dict:
        return {**asdict(self), "licenses": list(self.licenses)}


def parse_upload_date(text: str, flag: str, end_of_day: bool = False) -> int:
    """Unix seconds from 'YYYY-MM-DD' (UTC; start or end of that day) or from an integer."""
    text = str(text).strip()
    if text.isdigit():
        return int(text)
    try:
        day = dt.date.fromisoformat(text)
    except ValueError as exc:
        raise FfhqToolsError(f"{flag} {text!r}: expected YYYY-MM-DD or unix seconds") from exc
    start = calendar.timegm(day.timetuple())
    return start + 86_399 if end_of_day else start


class SearchState:
    """The resumable work list of one crawl folder."""

    def __init__(self, path: Path, data: dict):
        self.path, self.data = path, data

    @classmethod
    def open(cls, out_dir: Path, query: FlickrQuery, result_cap: int) -> "SearchState":
        path = out_dir / STATE_FILE
        if path.exists():
            try:
                data = json.loads(path.read_text())
            except (OSError, ValueError) as exc:
                raise FfhqToolsError(f"{path}: unreadable crawl state ({exc})") from exc
            if data.get("query") != query.to_dict() or data.get("result_cap") != result_cap:
                raise FfhqToolsError(f"{path}: this folder holds a crawl with another query "
                                     f"({data.get('query')}); use a new --out")
            return cls(path, data)
        data = {"query": query.to_dict(), "result_cap": result_cap, "search_done": False,
                "pending": [[query.min_upload_date, query.max_upload_date]], "current": None,
                "queries": 0, "capped_windows": [], "licenses": None, "date_crawled": None}
        state = cls(path, data)
        state.save()
        return state

    def save(self) -> None:
        write_json_atomic(self.path, self.data)


def slim_photo(photo: dict) -> dict:
    return {k: photo[k] for k in PHOTO_FIELDS if k in photo}


def _drop_torn_tail(path: Path) -> None:
    """Cut a last line a killed writer left without its newline, so appends stay parseable."""
    if not path.exists() or path.stat().st_size == 0:
        return
    data = path.read_bytes()
    if not data.endswith(b"\n"):
        with open(path, "r+b") as f:
            f.truncate(data.rfind(b"\n") + 1)


def load_photos(out_dir: Path) -> dict[str, dict]:
    """Photo id -> record, first occurrence wins."""
    _drop_torn_tail(out_dir / PHOTOS_FILE)
    photos: dict[str, dict] = {}
    for record in read_jsonl(out_dir / PHOTOS_FILE):
        photos.setdefault(str(record["id"]), record)
    return photos


def split_window(low: int, high: int, total: int, cap: int) -> list[list[int]]:
    """Cut [low, high] into consecutive inclusive windows that would each hold about 3/4 of the
    cap if uploads were uniform (at least 2 pieces, at most one per second); pieces that are
    still too full are split again when their turn comes."""
    pieces = min(max(2, math.ceil(total / (0.75 * cap))), high - low + 1)
    bounds = [low + (high - low + 1) * i // pieces for i in range(pieces + 1)]
    return [[bounds[i], bounds[i + 1] - 1] for i in range(pieces)]


def _last_page(total: int, cap: int, per_page: int) -> int:
    return max(1, math.ceil(min(total, cap) / per_page))


def search_all(client: FlickrClient, query: FlickrQuery, out_dir: Path, result_cap: int = 4000,
               progress: bool = True) -> tuple[dict[str, dict], SearchState]:
    """Run (or resume) the whole search; return (photo id -> record, the finished state)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    state = SearchState.open(out_dir, query, result_cap)
    photos = load_photos(out_dir)
    data = state.data
    bar = tqdm(desc="search", unit="query", file=sys.stderr, disable=not progress,
               initial=data["queries"])
    with bar:
        while not data["search_done"]:
            if data["current"] is None:
                if not data["pending"]:
                    data["search_done"] = True
                    state.save()
                    break
                low, high = data["pending"].pop()
                data["current"] = [low, high, 1]
            _step(client, query, state, photos, out_dir, result_cap)
            bar.set_postfix_str(f"{len(photos)} photos, {len(data['pending'])} windows queued",
                                refresh=False)
            bar.update(1)
    return photos, state


def _step(client: FlickrClient, query: FlickrQuery, state: SearchState, photos: dict,
          out_dir: Path, cap: int) -> None:
    data = state.data
    low, high, page = data["current"]
    result = client.search(query.params(), low, high, page)
    data["queries"] += 1
    if page == 1 and result.total > cap and high > low:
        data["pending"] += reversed(split_window(low, high, result.total, cap))
        data["current"] = None
        state.save()
        return
    new = []
    for photo in result.photos:
        key = str(photo.get("id", ""))
        if key and key not in photos:
            photos[key] = slim_photo(photo)
            new.append(photos[key])
    append_jsonl(out_dir / PHOTOS_FILE, new)
    if page >= _last_page(result.total, cap, query.per_page) or not result.photos:
        if result.total > cap:
            data["capped_windows"].append([low, high, result.total])
        data["current"] = None
    else:
        data["current"] = [low, high, page + 1]
    state.save()

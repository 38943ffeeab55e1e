"""A small Flickr REST client: `flickr.photos.search`, `flickr.photos.licenses.getInfo` and
`flickr.places.getInfo` (a geotagged photo's country),
with a requests-per-hour limit, retries with backoff and Retry-After, and an API key that
never appears in an error, a log line or a file (URLs are shown redacted)."""

from __future__ import annotations

import json
import time
import urllib.parse
from dataclasses import dataclass, field

from ffhq_tools.crawl.http import (
    ConnectionPool,
    FetchError,
    HttpSettings,
    check_scheme,
    get_bytes,
    redact,
)
from ffhq_tools.crawl.ratelimit import RateLimiter
from ffhq_tools.download import backoff_delay
from ffhq_tools.errors import FfhqToolsError

DEFAULT_API_BASE = "https://api.flickr.com/services/rest/"
SEARCH_EXTRAS = "license,date_upload,owner_name,url_o,o_dims,original_format,geo"
PLACE_NOT_FOUND = 3  # flickr.places.getInfo's error code
RETRYABLE_CODES = frozenset({0, 105, 106, 201})  # unknown, unavailable, write failed, timeout


class FlickrError(FfhqToolsError):
    def __init__(self, message: str, code: int | None = None):
        super().__init__(message)
        self.code = code


class FlickrOffsetError(FlickrError):
    """Error 20: the query asked for a result beyond the 4,000-result cap."""


@dataclass(frozen=True)
class SearchPage:
    photos: list[dict]
    page: int
    pages: int
    total: int


@dataclass
class FlickrClient:
    api_key: str = field(repr=False)
    api_base: str = DEFAULT_API_BASE
    requests_per_hour: float = 3600.0
    http: HttpSettings = field(default_factory=HttpSettings)
    attempts: int = 6
    backoff_base: float = 1.0
    backoff_cap: float = 60.0
    max_retry_after: float = 600.0
    calls: int = 0

    def __post_init__(self):
        if not self.api_key:
            raise FlickrError("empty Flickr API key")
        try:
            check_scheme(self.api_base)
        except FetchError as exc:
            raise FlickrError(f"--api-base: {exc.reason}") from exc
        self._limiter = RateLimiter(self.requests_per_hour / 3600.0)
        self._pool = ConnectionPool()

    def _url(self, method: str, params: dict) -> str:
        query = {"method": method, **params, "api_key": self.api_key, "format": "json",
                 "nojsoncallback": "1"}
        return self.api_base + "?" + urllib.parse.urlencode(query)

    def call(self, method: str, params: dict) -> dict:
        """One API method; returns the decoded answer with stat 'ok' or raises FlickrError."""
        url, last, attempt = self._url(method, params), "", 0
        for attempt in range(1, self.attempts + 1):
            if attempt > 1:
                time.sleep(backoff_delay(attempt - 2, self.backoff_base, self.backoff_cap))
            self._limiter.acquire()
            self.calls += 1
            try:
                answer = json.loads(get_bytes(url, self.http, self._pool))
            except FetchError as exc:
                last = exc.reason
                if exc.retry_after is not None:
                    time.sleep(min(exc.retry_after, self.max_retry_after))
                if not exc.retryable:
                    break
                continue
            except ValueError:
                last = "answer is not JSON"
                continue
            if not isinstance(answer, dict):
                last = "answer is not a JSON object"
                continue
            if answer.get("stat") == "ok":
                return answer
            code, message = answer.get("code"), answer.get("message", "")
            if code == 20:
                raise FlickrOffsetError(f"{method}: Flickr error 20: {message}", code)
            if code not in RETRYABLE_CODES:
                raise FlickrError(f"{method}: Flickr error {code}: {message}", code)
            last = f"Flickr error {code}: {message}"
        raise FlickrError(f"{method}: failed after {attempt} attempts ({last}); "
                          f"request {redact(url)}")

    def search(self, params: dict, min_upload_date: int, max_upload_date: int,
               page: int) -> SearchPage:
        answer = self.call("flickr.photos.search", {
            **params, "min_upload_date": str(min_upload_date),
            "max_upload_date": str(max_upload_date), "page": str(page)})
        photos = answer.get("photos")
        if not isinstance(photos, dict) or not isinstance(photos.get("photo", []), list):
            raise FlickrError("flickr.photos.search: answer has no 'photos' list")
        return SearchPage(photos=photos.get("photo", []), page=int(photos.get("page", page)),
                          pages=int(photos.get("pages", 0)), total=int(photos.get("total", 0)))

    def licenses(self) -> dict[str, dict]:
        """Flickr license id (as a string) -> {'name', 'url'}."""
        answer = self.call("flickr.photos.licenses.getInfo", {})
        rows = (answer.get("licenses") or {}).get("license")
        if not isinstance(rows, list):
            raise FlickrError("flickr.photos.licenses.getInfo: answer has no 'license' list")
        return {str(row["id"]): {"name": str(row.get("name", "")), "url": str(row.get("url", ""))}
                for row in rows if isinstance(row, dict) and "id" in row}

    def place_country(self, place_id: str) -> str:
        """The country of a Flickr place ("" when Flickr does not know the place): the name of
        its `country` part, else the first segment of its place URL (/Canada/Quebec/Montreal)."""
        try:
            answer = self.call("flickr.places.getInfo", {"place_id": place_id})
        except FlickrError as exc:
            if exc.code == PLACE_NOT_FOUND:
                return ""
            raise
        place = answer.get("place")
        if not isinstance(place, dict):
            raise FlickrError("flickr.places.getInfo: answer has no 'place'")
        country = place.get("country")
        if isinstance(country, dict) and str(country.get("_content", "")).strip():
            return str(country["_content"]).strip()
        first = str(place.get("place_url", "")).strip("/").split("/")[0]
        return urllib.parse.unquote_plus(first)

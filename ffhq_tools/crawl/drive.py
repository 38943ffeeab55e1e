"""Google Drive's HTML pages in place of a file. FFHQ's manifests point at Drive
(`https://drive.google.com/uc?id=...`), which may answer with a page instead of the bytes:

- "Virus scan warning" (files it will not scan): a "Download anyway" form (`download-form`,
  hidden id / export / confirm / uuid fields) or, in older pages, a link with
  `export=download&confirm=...`; following it gives the file;
- "Quota exceeded" (too many downloads of the file lately): nothing to follow, try later;
- a sign-in page (the file is not shared publicly).
"""

from __future__ import annotations

import html.parser
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path

from ffhq_tools.crawl.http import FetchError

MAX_PAGE_BYTES = 512 << 10  # Drive's pages are a few KiB to ~100 KiB


@dataclass
class DrivePage:
    title: str = ""
    forms: dict[str, tuple[str, list[tuple[str, str]]]] = field(default_factory=dict)
    download_links: set[str] = field(default_factory=set)

    @property
    def quota_exceeded(self) -> bool:
        return "quota exceeded" in self.title.lower()

    @property
    def sign_in(self) -> bool:
        return self.title.lower().startswith("sign in") or "google accounts" in self.title.lower()

    def confirm_url(self, base_url: str) -> str | None:
        """The "Download anyway" target, absolute, or None when the page has none (or two)."""
        if "download-form" in self.forms:
            action, fields = self.forms["download-form"]
            target = urllib.parse.urljoin(base_url, action)
            return f"{target}?{urllib.parse.urlencode(fields)}" if fields else target
        if len(self.download_links) == 1:
            return urllib.parse.urljoin(base_url, next(iter(self.download_links)))
        return None


class _PageParser(html.parser.HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.page = DrivePage()
        self._in_title = False
        self._form: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {name: value or "" for name, value in attrs}
        if tag == "title":
            self._in_title = True
        elif tag == "form":
            self._form = values.get("id", "")
            self.page.forms[self._form] = (values.get("action", ""), [])
        elif tag == "input" and self._form is not None and values.get("type") == "hidden":
            if values.get("name"):
                self.page.forms[self._form][1].append((values["name"], values.get("value", "")))
        for value in values.values():
            if "export=download" in value:
                self.page.download_links.add(value)

    def handle_endtag(self, tag: str) -> None:
        if tag == "title":
            self._in_title = False
        elif tag == "form":
            self._form = None

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.page.title += data.strip()


def read_drive_page(path: Path, size: int, content_type: str) -> DrivePage | None:
    """The Drive page a download wrote to `path`, or None when it is not a small HTML answer
    with a Google Drive / Google Accounts title."""
    if size > MAX_PAGE_BYTES or not content_type.lower().startswith("text/html"):
        return None
    parser = _PageParser()
    parser.feed(path.read_bytes().decode("utf-8", errors="replace"))
    parser.close()
    title = parser.page.title.lower()
    return parser.page if title.startswith(("google drive", "sign in", "google accounts")) \
        else None


def confirmed_url(page: DrivePage, url: str) -> str:
    """Where to fetch the file after Drive answered `url` with `page`; FetchError (naming the
    page) when there is nothing to follow."""
    if page.quota_exceeded:
        raise FetchError("Google Drive: download quota exceeded for this file (too many "
                         "downloads lately); rerun later, finished files are kept",
                         retryable=False)
    if page.sign_in:
        raise FetchError("Google Drive asks to sign in: the file is not shared publicly",
                         retryable=False)
    target = page.confirm_url(url)
    if target is None:
        raise FetchError(f"Google Drive answered with a page ({page.title!r}) instead of "
                         "the file")
    if urllib.parse.urlsplit(target).scheme.lower() not in ("http", "https"):
        raise FetchError(f"Google Drive's download link {target!r} is not http(s)",
                         retryable=False)
    return target

"""Download the files of an FFHQ-schema manifest: threads, per-host limits, a global rate
limit, retries with backoff and Retry-After, verification before a file reaches its final
path, resume by skipping what is already there, and failures.jsonl for what never worked."""

from __future__ import annotations

import errno
import shutil
import sys
import threading
import time
import urllib.parse
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from ffhq_tools.atomic import append_jsonl, atomic_path
from ffhq_tools.crawl.deadline import StopSignal
from ffhq_tools.crawl.drive import confirmed_url, read_drive_page
from ffhq_tools.crawl.http import (
    ConnectionPool,
    FetchError,
    FetchResult,
    HttpSettings,
    fetch,
    redact,
)
from ffhq_tools.crawl.manifest import (
    FileSpec,
    load_manifest,
    manifest_specs,
    path_conflicts,
    resolve_inside,
    select_specs,
)
from ffhq_tools.crawl.ratelimit import HostGate, RateLimiter
from ffhq_tools.crawl.stats import human_bytes
from ffhq_tools.crawl.verify import FileRecord, VerifyError, verify_file
from ffhq_tools.download import backoff_delay
from ffhq_tools.errors import FfhqToolsError


class LocalWriteError(FfhqToolsError):
    """The output folder cannot be written (disk full, permissions): retrying will not help."""


# Local errors that concern one file's path only (a name too long, a folder where the file
# goes, a file where a folder goes): that file fails, the others go on.
ONE_FILE_ERRNOS = frozenset({errno.ENAMETOOLONG, errno.EISDIR, errno.ENOTDIR, errno.EEXIST})


@dataclass(frozen=True)
class DownloadOptions:
    workers: int = 32
    per_host: int = 16
    requests_per_second: float | None = None
    attempts: int = 10
    backoff_base: float = 1.0
    backoff_cap: float = 60.0
    max_retry_after: float = 600.0
    http: HttpSettings = field(default_factory=HttpSettings)
    verify_existing: bool = False
    decode: bool = False
    progress: bool = True


@dataclass
class FileResult:
    """status: 'downloaded' (this run), 'present' (already on disk) or 'failed'."""

    spec: FileSpec
    path: Path
    status: str
    attempts: int = 0
    reason: str = ""
    record: FileRecord | None = None


@dataclass
class DownloadReport:
    results: list[FileResult]
    failures_path: Path
    bytes_downloaded: int
    seconds: float

    def count(self, status: str) -> int:
        return sum(r.status == status for r in self.results)

    @property
    def failed(self) -> list[FileResult]:
        return [r for r in self.results if r.status == "failed"]

    def summary(self) -> str:
        text = (f"{len(self.results)} files: {self.count('downloaded')} downloaded, "
                f"{self.count('present')} already present, {self.count('failed')} failed; "
                f"{self.bytes_downloaded / 1e6:.1f} MB in {self.seconds:.1f} s")
        if self.failed:
            text += f"; reasons in {self.failures_path}"
        return text


def failures_file_name(shard: tuple[int, int] | None) -> str:
    return "failures.jsonl" if shard is None else f"failures-{shard[0]}-of-{shard[1]}.jsonl"


def remove_stale_temps(finals: list[Path]) -> int:
    """Delete temp files (.NAME.XXXX.part) a killed run left beside these final paths."""
    names_by_dir: dict[Path, set[str]] = defaultdict(set)
    for final in finals:
        names_by_dir[final.parent].add(final.name)
    removed = 0
    for folder, names in names_by_dir.items():
        if not folder.is_dir():
            continue
        for entry in folder.iterdir():
            name = entry.name
            if not (name.startswith(".") and name.endswith(".part")):
                continue
            if name[1:-len(".part")].rsplit(".", 1)[0] in names and not entry.is_symlink():
                entry.unlink(missing_ok=True)
                removed += 1
    return removed


def check_disk_space(specs: list[FileSpec], finals: list[Path], out_dir: Path) -> None:
    """Refuse to start when the files still missing (known sizes) cannot fit on the disk."""
    missing = [(s, f) for s, f in zip(specs, finals, strict=True) if not f.exists()]
    needed = sum(s.file_size or 0 for s, _ in missing)
    free = shutil.disk_usage(out_dir).free
    if needed > free:
        raise LocalWriteError(f"{out_dir}: {len(missing)} files need {human_bytes(needed)} but "
                              f"only {human_bytes(free)} is free; free space or use --shard")


class _Worker:
    def __init__(self, out_dir: Path, options: DownloadOptions, failures_path: Path):
        self.out_dir, self.options, self.failures_path = out_dir, options, failures_path
        self.stop = StopSignal()
        self.gate = HostGate(options.per_host, self.stop.event)
        self.limiter = RateLimiter(options.requests_per_second, self.stop.event)
        self.pool = ConnectionPool()
        self.bytes = 0
        self._lock = threading.Lock()

    def _count(self, n: int) -> None:
        with self._lock:
            self.bytes += n

    def run(self, spec: FileSpec, final: Path) -> FileResult:
        self.stop.check()
        if final.is_file():
            present = self._existing(spec, final)
            if present is not None:
                return present
        reason, attempt = "", 0
        for attempt in range(1, self.options.attempts + 1):
            if attempt > 1:
                self.stop.sleep(backoff_delay(attempt - 2, self.options.backoff_base,
                                              self.options.backoff_cap))
            try:
                record = self._attempt(spec, final)
                return FileResult(spec, final, "downloaded", attempt, record=record)
            except FetchError as exc:
                reason = exc.reason
                if exc.retry_after is not None:
                    self.gate.pause(spec.host, min(exc.retry_after, self.options.max_retry_after))
                if not exc.retryable:
                    break
            except VerifyError as exc:
                reason = f"verification failed: {exc.reason}"
            except OSError as exc:  # network errors arrive as FetchError: this is local disk
                if exc.errno in ONE_FILE_ERRNOS:
                    reason = f"cannot write {spec.file_path}: {exc.strerror}"
                    break
                raise LocalWriteError(f"{final}: cannot write ({exc.strerror or exc}); "
                                      f"stopping, nothing partial is left behind") from exc
        return self._fail(spec, final, attempt, reason)

    def _existing(self, spec: FileSpec, final: Path) -> FileResult | None:
        if not self.options.verify_existing:
            if spec.file_size is None or final.stat().st_size == spec.file_size:
                return FileResult(spec, final, "present")
            return None
        try:
            record = verify_file(final, spec, decode=self.options.decode)
        except VerifyError:
            return None
        return FileResult(spec, final, "present", record=record)

    def _attempt(self, spec: FileSpec, final: Path) -> FileRecord:
        with atomic_path(final) as tmp:
            result = self._fetch(spec.url, tmp)
            record = verify_file(tmp, spec, size=result.size, md5=result.md5,
                                 decode=self.options.decode)
            resolve_inside(self.out_dir, spec.file_path)
        return record

    def _fetch(self, url: str, tmp: Path) -> FetchResult:
        """GET `url` into tmp; a Google Drive "Download anyway" page is followed once."""
        result = self._get(url, tmp)
        page = read_drive_page(tmp, result.size, result.content_type)
        if page is None:
            return result
        result = self._get(confirmed_url(page, result.url), tmp)
        page = read_drive_page(tmp, result.size, result.content_type)
        if page is not None:
            raise FetchError(f"Google Drive answered its own download link with a page "
                             f"({page.title!r}) instead of the file")
        return result

    def _get(self, url: str, tmp: Path) -> FetchResult:
        with open(tmp, "wb") as out, self.gate.slot(urllib.parse.urlsplit(url).netloc.lower()):
            self.limiter.acquire()
            return fetch(url, out, self.options.http, self._count, self.pool, self.stop)

    def _fail(self, spec: FileSpec, final: Path, attempts: int, reason: str) -> FileResult:
        append_jsonl(self.failures_path, {
            "index": spec.index, "file_url": redact(spec.url), "file_path": spec.file_path,
            "reason": reason, "attempts": attempts,
            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
        return FileResult(spec, final, "failed", attempts, reason)


def download_files(specs: list[FileSpec], out_dir: str | Path,
                   options: DownloadOptions = DownloadOptions(),
                   failures_name: str = "failures.jsonl") -> DownloadReport:
    """Download and verify every spec into out_dir; never raises for a single bad file."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    finals = [resolve_inside(out_dir, spec.file_path) for spec in specs]
    remove_stale_temps(finals)
    check_disk_space(specs, finals, out_dir)
    failures_path = out_dir / failures_name
    failures_path.unlink(missing_ok=True)
    worker = _Worker(out_dir, options, failures_path)
    start = time.monotonic()
    results: list[FileResult | None] = [None] * len(specs)
    conflicts = path_conflicts(specs)
    for position, reason in conflicts.items():
        results[position] = worker._fail(specs[position], finals[position], 0, reason)
    bar = tqdm(total=len(specs), unit="file", desc="download", file=sys.stderr,
               disable=not options.progress, dynamic_ncols=True)
    failed = len(conflicts)
    with bar, ThreadPoolExecutor(max_workers=max(1, options.workers)) as pool:
        futures = {pool.submit(worker.run, spec, final): i
                   for i, (spec, final) in enumerate(zip(specs, finals, strict=True))
                   if i not in conflicts}
        bar.update(len(conflicts))
        try:
            for future in as_completed(futures):
                result = future.result()
                results[futures[future]] = result
                failed += result.status == "failed"
                elapsed = max(time.monotonic() - start, 1e-9)
                bar.set_postfix_str(f"{human_bytes(worker.bytes)}, "
                                    f"{human_bytes(worker.bytes / elapsed)}/s, {failed} failed",
                                    refresh=False)
                bar.update(1)
        except BaseException:  # Ctrl-C: end the GETs in flight; their temp files are removed
            worker.stop.stop()
            pool.shutdown(wait=True, cancel_futures=True)
            raise
    return DownloadReport([r for r in results if r is not None], failures_path, worker.bytes,
                          time.monotonic() - start)


def download_manifest(manifest_path: str | Path, out_dir: str | Path, what: str = "in_the_wild",
                      options: DownloadOptions = DownloadOptions(),
                      categories: list[str] | None = None, licenses: list[str] | None = None,
                      shard: tuple[int, int] | None = None) -> DownloadReport:
    """`ffhq-tools crawl manifest` as a function: validate the whole manifest, select, download."""
    specs = manifest_specs(load_manifest(manifest_path), what, source=str(manifest_path))
    chosen = select_specs(specs, categories, licenses, shard)
    return download_files(chosen, out_dir, options, failures_file_name(shard))

"""FFHQ v2 manifest schema: load, validate, select and turn entries into download specs.

A manifest is a JSON object keyed by index ("0".."69999"); each entry has `category`,
`metadata` {photo_url, photo_title, author, country, license, license_url, date_uploaded,
date_crawled} and one section per file kind (`image`, `thumbnail`, `in_the_wild`) with
{file_url, file_path, file_size, file_md5, pixel_size, pixel_md5, ...}. Our own crawls write
the same schema, with the verification fields filled in once the files are verified.

Every `file_path` must stay inside the output folder and every `file_url` must be http(s):
a manifest that breaks either rule is refused as a whole before anything is downloaded.
"""

from __future__ import annotations

import difflib
import json
import os
import re
import urllib.parse
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from ffhq_tools.errors import FfhqToolsError

WHAT_SECTIONS = {"in_the_wild": "in_the_wild", "images": "image", "thumbs": "thumbnail"}
ALLOWED_SCHEMES = ("http", "https")
_MD5 = re.compile(r"^[0-9a-fA-F]{32}$")
MAX_NAME_BYTES = 255  # NAME_MAX of ext4, xfs, btrfs, NTFS, APFS
TEMP_NAME_EXTRA = len(".") + len(".0123456789abcdef.part")  # ffhq_tools.atomic's temp names
MAX_FILE_NAME_BYTES = MAX_NAME_BYTES - TEMP_NAME_EXTRA
MAX_PATH_BYTES = 1024  # relative to the output folder; Linux's PATH_MAX is 4096 in all


class ManifestError(FfhqToolsError):
    """The manifest file is unreadable or an entry breaks the schema or the safety rules."""


@dataclass(frozen=True)
class FileSpec:
    """One file to fetch: where from, where to, and what it must look like once downloaded."""

    index: str
    url: str
    file_path: str
    file_size: int | None = None
    file_md5: str | None = None
    pixel_size: tuple[int, int] | None = None
    pixel_md5: str | None = None
    category: str = ""
    license: str = ""
    country: str = ""

    @property
    def host(self) -> str:
        return urllib.parse.urlsplit(self.url).netloc.lower()


def load_manifest(path: str | Path) -> dict:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ManifestError(f"{path}: cannot read manifest ({exc.strerror or exc})") from None
    except UnicodeDecodeError as exc:
        raise ManifestError(f"{path}: not UTF-8 text (byte {exc.start}: "
                            f"{exc.object[exc.start:exc.start + 1]!r})") from None
    try:
        manifest = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ManifestError(f"{path}: not valid JSON (line {exc.lineno}: {exc.msg})") from None
    except RecursionError:
        raise ManifestError(f"{path}: JSON nested too deeply to be a manifest") from None
    if not isinstance(manifest, dict):
        raise ManifestError(f"{path}: expected a JSON object keyed by index, "
                            f"got {type(manifest).__name__}")
    return manifest


def check_url(url: object, where: str) -> str:
    if not isinstance(url, str) or not url:
        raise ManifestError(f"{where}: file_url must be a non-empty string")
    parts = urllib.parse.urlsplit(url)
    if parts.scheme.lower() not in ALLOWED_SCHEMES or not parts.netloc:
        raise ManifestError(f"{where}: file_url {url!r} refused: only http(s) URLs with a host "
                            f"are followed")
    return url


def check_relative_path(file_path: object, where: str) -> str:
    """A manifest path must be relative, use '/' separators and never climb with '..'."""
    if not isinstance(file_path, str) or not file_path.strip():
        raise ManifestError(f"{where}: file_path must be a non-empty string")
    if "\x00" in file_path or "\\" in file_path:
        raise ManifestError(f"{where}: file_path {file_path!r} refused: NUL or backslash")
    pure = PurePosixPath(file_path)
    if pure.is_absolute() or re.match(r"^[A-Za-z]:", file_path):
        raise ManifestError(f"{where}: file_path {file_path!r} refused: absolute path")
    if any(part == ".." for part in pure.parts):
        raise ManifestError(f"{where}: file_path {file_path!r} refused: '..' leaves the "
                            f"output folder")
    if pure.name in ("", ".") or pure.name.startswith("."):
        raise ManifestError(f"{where}: file_path {file_path!r} refused: needs a visible "
                            f"file name")
    _check_name_lengths(pure, where)
    return file_path


def _check_name_lengths(pure: PurePosixPath, where: str) -> None:
    """Refuse names the file system cannot hold (ENAMETOOLONG), the temp file's included."""
    for part in pure.parts[:-1]:
        if len(part.encode("utf-8", "surrogatepass")) > MAX_NAME_BYTES:
            raise ManifestError(f"{where}: file_path folder {part[:40]!r}... refused: longer "
                                f"than {MAX_NAME_BYTES} bytes")
    if len(pure.name.encode("utf-8", "surrogatepass")) > MAX_FILE_NAME_BYTES:
        raise ManifestError(f"{where}: file name {pure.name[:40]!r}... refused: longer than "
                            f"{MAX_FILE_NAME_BYTES} bytes (the file system's limit is "
                            f"{MAX_NAME_BYTES}, less room for the download's temp name)")
    if len(str(pure).encode("utf-8", "surrogatepass")) > MAX_PATH_BYTES:
        raise ManifestError(f"{where}: file_path refused: longer than {MAX_PATH_BYTES} bytes")


def resolve_inside(root: str | Path, file_path: str) -> Path:
    """`root / file_path`, refusing anything (symlinks included) that resolves outside root."""
    root_real = Path(os.path.realpath(root))
    target = Path(root) / file_path
    target_real = Path(os.path.realpath(target))
    if target_real != root_real and root_real not in target_real.parents:
        raise ManifestError(f"{file_path}: resolves to {target_real}, outside the output folder "
                            f"{root_real} (symlink escape)")
    if target.is_symlink():
        raise ManifestError(f"{file_path}: is a symlink inside the output folder; refusing to "
                            f"overwrite it")
    return target


def _optional_int(value: object, where: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ManifestError(f"{where}: expected a non-negative integer, got {value!r}")
    return value


def _optional_md5(value: object, where: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not _MD5.match(value):
        raise ManifestError(f"{where}: expected 32 hex digits, got {value!r}")
    return value.lower()


def _optional_size(value: object, where: str) -> tuple[int, int] | None:
    if value is None:
        return None
    ok = (isinstance(value, list) and len(value) == 2
          and all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value))
    if not ok:
        raise ManifestError(f"{where}: expected [width, height], got {value!r}")
    return (value[0], value[1])


def entry_spec(index: str, entry: object, section: str, source: str) -> FileSpec:
    """Validate one manifest entry and return the spec of its `section` file."""
    where = f"{source}: entry {index!r}"
    if not isinstance(entry, dict):
        raise ManifestError(f"{where}: expected an object, got {type(entry).__name__}")
    files = entry.get(section)
    if not isinstance(files, dict):
        raise ManifestError(f"{where}: missing section {section!r}")
    metadata = entry.get("metadata") or {}
    if not isinstance(metadata, dict):
        raise ManifestError(f"{where}: metadata must be an object")
    fw = f"{where}.{section}"
    return FileSpec(
        index=str(index),
        url=check_url(files.get("file_url"), fw),
        file_path=check_relative_path(files.get("file_path"), fw),
        file_size=_optional_int(files.get("file_size"), f"{fw}.file_size"),
        file_md5=_optional_md5(files.get("file_md5"), f"{fw}.file_md5"),
        pixel_size=_optional_size(files.get("pixel_size"), f"{fw}.pixel_size"),
        pixel_md5=_optional_md5(files.get("pixel_md5"), f"{fw}.pixel_md5"),
        category=str(entry.get("category", "")),
        license=str(metadata.get("license", "")),
        country=str(metadata.get("country", "")),
    )


def _index_key(index: str) -> tuple[int, int | str]:
    return (0, int(index)) if index.isdigit() else (1, index)


def manifest_specs(manifest: dict, what: str, source: str = "manifest") -> list[FileSpec]:
    """Every entry's spec for `what` (in_the_wild | images | thumbs), in index order.

    Raises ManifestError for the first bad entry and for two entries sharing one file_path."""
    if what not in WHAT_SECTIONS:
        raise ManifestError(f"--what {what!r}: choose one of {', '.join(WHAT_SECTIONS)}")
    section = WHAT_SECTIONS[what]
    specs = [entry_spec(index, manifest[index], section, source)
             for index in sorted(manifest, key=_index_key)]
    seen: dict[str, str] = {}
    for spec in specs:
        key = os.path.normcase(os.path.normpath(spec.file_path))
        if key in seen:
            raise ManifestError(f"{source}: entries {seen[key]!r} and {spec.index!r} both write "
                                f"{spec.file_path!r}")
        seen[key] = spec.index
    return specs


def path_conflicts(specs: list[FileSpec]) -> dict[int, str]:
    """{position in specs: reason} for every spec whose file_path is a folder of an earlier
    spec's file, or has an earlier spec's file as one of its folders (`sub` and `sub/x.png`):
    only one of them can exist, and the later entry (in index order) is the one that fails."""
    files: dict[str, str] = {}
    folders: dict[str, str] = {}
    conflicts = {}
    for position, spec in enumerate(specs):
        key = os.path.normcase(os.path.normpath(spec.file_path))
        parents = [str(p) for p in PurePosixPath(key).parents if str(p) != "."]
        clash = next((p for p in parents if p in files), None)
        if clash is not None:
            conflicts[position] = (f"file_path {spec.file_path!r} needs folder {clash!r}, "
                                   f"which entry {files[clash]!r} writes as a file")
        elif key in folders:
            conflicts[position] = (f"file_path {spec.file_path!r} is a folder of entry "
                                   f"{folders[key]!r}'s file")
        else:
            files[key] = spec.index
            for parent in parents:
                folders.setdefault(parent, spec.index)
    return conflicts


def parse_shard(text: str) -> tuple[int, int]:
    """'i/n' -> (i, n) with 0 <= i < n."""
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text or "")
    if not match:
        raise ManifestError(f"--shard {text!r}: expected i/n, e.g. 0/8")
    i, n = int(match.group(1)), int(match.group(2))
    if n < 1 or i >= n:
        raise ManifestError(f"--shard {text!r}: need 0 <= i < n")
    return i, n


def _check_known(wanted: list[str] | None, present: set[str], flag: str) -> None:
    unknown = sorted(set(wanted or ()) - present)
    if unknown:
        hints = [f"{u!r} (did you mean {', '.join(map(repr, close))}?)" if close else repr(u)
                 for u in unknown
                 for close in [difflib.get_close_matches(u, sorted(present), n=2)]]
        raise ManifestError(f"{flag}: no entry has {', '.join(hints)}; the manifest has "
                            f"{', '.join(map(repr, sorted(present)))}")


def select_specs(specs: list[FileSpec], categories: list[str] | None = None,
                 licenses: list[str] | None = None,
                 shard: tuple[int, int] | None = None) -> list[FileSpec]:
    """Filter by category / license (exact names) and keep shard i of n (round robin).

    A category or license that no entry has is an error (a typo would select nothing)."""
    _check_known(categories, {s.category for s in specs}, "--category")
    _check_known(licenses, {s.license for s in specs}, "--license")
    chosen = [s for s in specs
              if (not categories or s.category in categories)
              and (not licenses or s.license in licenses)]
    if shard is not None:
        i, n = shard
        chosen = chosen[i::n]
    return chosen

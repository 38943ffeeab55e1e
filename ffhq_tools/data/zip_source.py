"""Reading a stylegan2-ada dataset zip without trusting it: every member is checked from the
central directory before anything is decompressed (unique name, not encrypted, a supported
compression method, at most MAX_MEMBER_BYTES, at most MAX_RATIO times its compressed size),
then read in blocks with the same cap, so a member that lies about its size cannot grow
memory, and a bad CRC is a clear error naming the member."""

from __future__ import annotations

import lzma
import zipfile
import zlib
from collections import Counter
from pathlib import Path

from ffhq_tools.data.layout import DatasetError

MAX_MEMBER_BYTES = 256 * 2**20
MAX_RATIO = 100  # PNG / JPEG members barely compress; a bomb reaches 1000:1
RATIO_FLOOR_BYTES = 2**20  # small members may compress well (dataset.json, flat test images)
BLOCK_BYTES = 2**20
METHODS = {zipfile.ZIP_STORED: "stored", zipfile.ZIP_DEFLATED: "deflate",
           zipfile.ZIP_BZIP2: "bzip2", zipfile.ZIP_LZMA: "lzma"}


def checked_members(z: zipfile.ZipFile, archive: Path) -> list[zipfile.ZipInfo]:
    """The archive's members, each checked (see the module docstring)."""
    infos = z.infolist()
    for name, count in Counter(info.filename for info in infos).items():
        if count > 1:
            raise DatasetError(f"{archive}: member {name!r} appears {count} times (which copy "
                               "is the image?)")
    for info in infos:
        check_member(info, archive)
    return infos


def check_member(info: zipfile.ZipInfo, archive: Path) -> None:
    where = f"{archive}:{info.filename}"
    if info.flag_bits & 0x1:
        raise DatasetError(f"{where}: the member is encrypted; re-zip without a password")
    if info.compress_type not in METHODS:
        raise DatasetError(f"{where}: unknown compression method {info.compress_type} "
                           f"(expected one of {', '.join(METHODS.values())})")
    if info.file_size > MAX_MEMBER_BYTES:
        raise DatasetError(f"{where}: {info.file_size} bytes uncompressed, over the "
                           f"{MAX_MEMBER_BYTES}-byte limit for one member")
    ratio = info.file_size / max(info.compress_size, 1)
    if info.file_size > RATIO_FLOOR_BYTES and ratio > MAX_RATIO:
        raise DatasetError(f"{where}: compressed {ratio:.0f}:1 (over {MAX_RATIO}:1: a zip bomb?); "
                           "store images uncompressed in the zip")


def read_member(z: zipfile.ZipFile, name: str, archive: Path) -> bytes:
    """A checked member's bytes, read in blocks and never past its declared size."""
    where = f"{archive}:{name}"
    try:
        info = z.getinfo(name)
        check_member(info, archive)
        blocks, total = [], 0
        with z.open(info) as stream:
            while block := stream.read(BLOCK_BYTES):
                total += len(block)
                if total > info.file_size:
                    raise DatasetError(f"{where}: decompresses past its declared "
                                       f"{info.file_size} bytes")
                blocks.append(block)
    except KeyError:
        raise DatasetError(f"{where}: no such member") from None
    except (zipfile.BadZipFile, EOFError, OSError, RuntimeError, NotImplementedError,
            zlib.error, lzma.LZMAError) as exc:
        raise DatasetError(f"{where}: unreadable member ({exc})") from None
    return b"".join(blocks)


def open_zip(archive: Path) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise DatasetError(f"{archive}: not a zip file ({exc})") from None

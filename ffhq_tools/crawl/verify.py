"""Check a downloaded file against its manifest spec: byte size, file MD5, image signature,
and (when asked or when the spec gives them) pixel size and pixel MD5.

pixel_size and pixel_md5 follow FFHQ's definition exactly: `list(image.size)` ([width,
height]) and md5(np.array(image)) of the pixels as stored - no mode conversion, no EXIF
rotation - so NVIDIA's own script accepts our manifests and we accept every FFHQ file,
grayscale or palette ones included. (Alignment later decodes with `ffhq_tools.images`.)
"""

from __future__ import annotations

import io
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from ffhq_tools.crawl.manifest import FileSpec
from ffhq_tools.hashing import md5_file, pixel_md5
from ffhq_tools.images import DEFAULT_MAX_PIXELS, sniff_format


class VerifyError(Exception):
    """The bytes on disk do not match the spec; `reason` is one short line."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class FileRecord:
    """What a verified file looks like, in manifest field names."""

    file_size: int
    file_md5: str
    pixel_size: list[int] | None = None
    pixel_md5: str | None = None

    def to_fields(self) -> dict:
        return {k: v for k, v in asdict(self).items() if v is not None}


def stored_pixels_fields(source: Path | bytes,
                         max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple[list[int], str]:
    """([width, height], pixel md5) of an image as stored, by FFHQ's definition."""
    try:
        with Image.open(io.BytesIO(source) if isinstance(source, bytes) else source) as image:
            width, height = image.size
            if width * height > max_pixels:
                raise VerifyError(f"decompression bomb: {width}x{height} exceeds {max_pixels} "
                                  f"pixels")
            image.load()
            return [width, height], pixel_md5(np.asarray(image))
    except VerifyError:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError,
            Image.DecompressionBombError) as exc:
        reason = "truncated or corrupt" if "truncated" in str(exc).lower() else "undecodable"
        raise VerifyError(f"{reason} image ({exc})") from exc


def verify_file(path: Path, spec: FileSpec, *, size: int | None = None, md5: str | None = None,
                decode: bool = False, max_pixels: int = DEFAULT_MAX_PIXELS) -> FileRecord:
    """Verify `path` (size and md5 may be passed in when already known from streaming)."""
    with open(path, "rb") as f:
        head = f.read(16)
    if sniff_format(head) is None:
        if head.lstrip()[:1] == b"<":
            raise VerifyError("got an HTML/XML page instead of an image (error, quota or "
                              "login page?)")
        raise VerifyError("not an image (unknown file signature)")
    size = path.stat().st_size if size is None else size
    if spec.file_size is not None and size != spec.file_size:
        raise VerifyError(f"size {size} bytes, manifest says {spec.file_size}")
    md5 = md5_file(path) if md5 is None else md5
    if spec.file_md5 is not None and md5 != spec.file_md5:
        raise VerifyError(f"md5 {md5}, manifest says {spec.file_md5}")
    if not (decode or spec.pixel_size is not None or spec.pixel_md5 is not None):
        return FileRecord(size, md5)
    width_height, digest = stored_pixels_fields(path, max_pixels)
    if spec.pixel_size is not None and tuple(width_height) != tuple(spec.pixel_size):
        raise VerifyError(f"pixel size {width_height}, manifest says {list(spec.pixel_size)}")
    if spec.pixel_md5 is not None and digest != spec.pixel_md5:
        raise VerifyError(f"pixel md5 {digest}, manifest says {spec.pixel_md5}")
    return FileRecord(size, md5, width_height, digest)

"""Check a downloaded file against its manifest spec: byte size, file MD5, image signature,
and (when asked or when the spec gives them) pixel size and pixel MD5.

pixel_size is [width, height] and pixel_md5 the MD5 of the decoded HWC uint8 RGB pixels as
`ffhq_tools.images.load_rgb` returns them (EXIF orientation applied). For FFHQ's own files
(RGB PNGs without EXIF) this is exactly the reference definition, md5(np.array(image)).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from ffhq_tools.crawl.manifest import FileSpec
from ffhq_tools.hashing import md5_file, pixel_md5
from ffhq_tools.images import DEFAULT_MAX_PIXELS, ImageRejected, load_rgb, sniff_format


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
    try:
        pixels = load_rgb(path, max_pixels=max_pixels, name=spec.file_path)
    except ImageRejected as exc:
        raise VerifyError(f"{exc.reason}" + (f" ({exc.detail})" if exc.detail else "")) from exc
    width_height = [int(pixels.shape[1]), int(pixels.shape[0])]
    if spec.pixel_size is not None and tuple(width_height) != tuple(spec.pixel_size):
        raise VerifyError(f"pixel size {width_height}, manifest says {list(spec.pixel_size)}")
    digest = pixel_md5(pixels)
    if spec.pixel_md5 is not None and digest != spec.pixel_md5:
        raise VerifyError(f"pixel md5 {digest}, manifest says {spec.pixel_md5}")
    return FileRecord(size, md5, width_height, digest)

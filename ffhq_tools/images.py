"""Safe image decoding: format sniffing, a decompression-bomb limit checked before decoding,
EXIF orientation, and every mode (L, LA, P, CMYK, RGBA, I;16, I, F) turned into 8-bit RGB."""

from __future__ import annotations

import contextlib
import errno
import io
import os
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ffhq_tools.errors import FfhqToolsError

DEFAULT_MAX_PIXELS = 256 * 1024 * 1024
MAGIC = (
    (b"\xff\xd8\xff", "JPEG"),
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"BM", "BMP"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
)
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".gif", ".bmp", ".tif", ".tiff", ".webp"}


class ImageRejected(FfhqToolsError):
    """An input that is not a decodable image; `reason` is a short machine-friendly tag."""

    def __init__(self, source: str, reason: str, detail: str = ""):
        self.source, self.reason, self.detail = source, reason, detail
        super().__init__(f"{source}: {reason}" + (f" ({detail})" if detail else ""))


def sniff_format(head: bytes) -> str | None:
    """The image format from the first bytes of a file, or None when it is not an image."""
    for magic, name in MAGIC:
        if head.startswith(magic):
            return name
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WEBP"
    return None


def to_rgb8(image: Image.Image) -> Image.Image:
    mode = image.mode
    if mode == "RGB":
        return image
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        array = np.asarray(image, dtype=np.float64)
        peak = 65535.0 if mode.startswith("I;16") or array.max() > 255 else 255.0
        array = np.clip(np.rint(array * (255.0 / peak)), 0, 255).astype(np.uint8)
        return Image.fromarray(array, "L").convert("RGB")
    if mode == "F":
        array = np.asarray(image, dtype=np.float64)
        scale = 255.0 if array.max() <= 1.0 else 1.0
        return Image.fromarray(np.clip(np.rint(array * scale), 0, 255).astype(np.uint8),
                               "L").convert("RGB")
    if mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    return image.convert("RGB")


def _require_regular_file(path: Path, label: str) -> None:
    try:
        path.stat()
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise ImageRejected(label, "symlink loop") from None
        if path.is_symlink():
            raise ImageRejected(label, "dangling symlink", f"-> {os.readlink(path)}") from None
        raise ImageRejected(label, "unreadable", str(exc)) from None
    if path.is_dir():
        raise ImageRejected(label, "not a file", "a folder named like an image")


@contextlib.contextmanager
def _pil_limit(max_pixels: int):
    """PIL's own bomb limit set to ours while a file is opened (it warns above the limit and
    refuses at twice it): `max_pixels` alone decides, and PIL's refusals of frames or
    layers beyond it still count as decompression bombs."""
    saved = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = max_pixels
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            yield
    finally:
        Image.MAX_IMAGE_PIXELS = saved


def open_image(source: str | Path | bytes, max_pixels: int = DEFAULT_MAX_PIXELS,
               name: str | None = None) -> Image.Image:
    """Decode to an 8-bit RGB PIL image with EXIF orientation applied, or raise ImageRejected."""
    label = name or (str(source) if not isinstance(source, bytes) else "<bytes>")
    return decode_image(read_image_bytes(source, label), max_pixels, label)


def read_image_bytes(source: str | Path | bytes, label: str) -> bytes:
    """The bytes of a regular file (or `source` itself) that start like an image."""
    if not isinstance(source, bytes):
        _require_regular_file(Path(source), label)
    try:
        data = source if isinstance(source, bytes) else Path(source).read_bytes()
    except OSError as exc:
        raise ImageRejected(label, "unreadable", str(exc)) from exc
    if not data:
        raise ImageRejected(label, "empty file")
    if sniff_format(data[:16]) is None:
        raise ImageRejected(label, "not an image", "unknown file signature")
    return data


def check_pixel_count(size: tuple[int, int], max_pixels: int, label: str) -> None:
    width, height = size
    if width * height > max_pixels:
        raise ImageRejected(label, "decompression bomb",
                            f"{width}x{height} exceeds {max_pixels} pixels")


def decode_image(data: bytes, max_pixels: int, label: str) -> Image.Image:
    """`open_image` of bytes already read."""
    try:
        with _pil_limit(max_pixels), Image.open(io.BytesIO(data)) as image:
            check_pixel_count(image.size, max_pixels, label)
            image.load()
            image = ImageOps.exif_transpose(image)
            return to_rgb8(image)
    except ImageRejected:
        raise
    except Image.DecompressionBombError as exc:
        raise ImageRejected(label, "decompression bomb", str(exc)) from exc
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        reason = "truncated or corrupt" if "truncated" in str(exc).lower() else "undecodable"
        raise ImageRejected(label, reason, str(exc)) from exc


def load_rgb(source: str | Path | bytes, max_pixels: int = DEFAULT_MAX_PIXELS,
             name: str | None = None) -> np.ndarray:
    """Decode to a HWC uint8 RGB array (see `open_image`)."""
    return np.asarray(open_image(source, max_pixels, name))


def list_image_entries(folder: str | Path) -> list[Path]:
    """`list_images` plus what is named like an image but is no readable file (a folder, a
    dangling symlink, a symlink loop): for callers that report each as a reject."""
    folder = Path(folder)
    return sorted(p for p in folder.rglob("*")
                  if p.suffix.lower() in IMAGE_SUFFIXES
                  and (p.is_file() or p.is_dir() or p.is_symlink())
                  and not any(part.startswith(".") for part in p.relative_to(folder).parts))


def list_images(folder: str | Path) -> list[Path]:
    """Image files below `folder` (recursive, sorted, hidden files skipped)."""
    folder = Path(folder)
    return sorted(p for p in folder.rglob("*")
                  if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
                  and not any(part.startswith(".") for part in p.relative_to(folder).parts))

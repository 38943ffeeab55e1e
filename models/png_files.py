"""PNG files with provenance text chunks: single images through PIL, and large grids written
strip by strip (only one row of cells is ever in memory).

The provenance is one tEXt chunk, `ffhq-tools`, holding compact JSON; `read_png_provenance`
returns it (or None) without decoding the pixels.
"""

from __future__ import annotations

import json
import struct
import zlib
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from ffhq_tools.atomic import atomic_path

TEXT_KEY = "ffhq-tools"
SIGNATURE = b"\x89PNG\r\n\x1a\n"
COLOR_TYPES = {1: 0, 3: 2, 4: 6}  # channels -> PNG colour type (grey, RGB, RGBA)
IDAT_BYTES = 1 << 20


def _chunk(kind: bytes, data: bytes) -> bytes:
    crc = zlib.crc32(data, zlib.crc32(kind)) & 0xFFFFFFFF
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)


def _text_chunk(provenance: dict) -> bytes:
    body = json.dumps(provenance, sort_keys=True, separators=(",", ":"))
    return _chunk(b"tEXt", TEXT_KEY.encode("latin-1") + b"\0" + body.encode("latin-1"))


def save_png(path: str | Path, image: np.ndarray, provenance: dict | None = None,
             compress_level: int = 6) -> Path:
    """One HWC uint8 image, written atomically, with the provenance chunk."""
    from PIL import Image
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    if provenance is not None:
        info.add_text(TEXT_KEY, json.dumps(provenance, sort_keys=True, separators=(",", ":")))
    pil = Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image)
    with atomic_path(path, suffix=".png") as tmp:
        pil.save(tmp, format="PNG", pnginfo=info, compress_level=compress_level)
    return Path(path)


def write_png_strips(path: str | Path, width: int, height: int, channels: int,
                     strips: Iterable[np.ndarray], provenance: dict | None = None) -> Path:
    """Write a PNG of `height` x `width` from horizontal strips [h_i, width, channels] uint8
    whose heights sum to `height`, compressing as it goes."""
    if channels not in COLOR_TYPES:
        raise ValueError(f"PNG strips: {channels} channels (expected 1, 3 or 4)")
    rows_written = 0
    compressor = zlib.compressobj(6)
    with atomic_path(path, suffix=".png") as tmp, open(tmp, "wb") as f:
        f.write(SIGNATURE)
        f.write(_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8,
                                            COLOR_TYPES[channels], 0, 0, 0)))
        if provenance is not None:
            f.write(_text_chunk(provenance))
        pending = b""
        for strip in strips:
            if strip.shape[1:] != (width, channels) or strip.dtype != np.uint8:
                raise ValueError(f"PNG strips: got {strip.shape} {strip.dtype}, expected "
                                 f"[h, {width}, {channels}] uint8")
            rows = np.ascontiguousarray(strip).reshape(len(strip), width * channels)
            filtered = np.concatenate([np.zeros((len(rows), 1), np.uint8), rows], axis=1)
            pending += compressor.compress(filtered.tobytes())
            rows_written += len(strip)
            if len(pending) >= IDAT_BYTES:
                f.write(_chunk(b"IDAT", pending))
                pending = b""
        if rows_written != height:
            raise ValueError(f"PNG strips: {rows_written} rows for a height of {height}")
        f.write(_chunk(b"IDAT", pending + compressor.flush()))
        f.write(_chunk(b"IEND", b""))
    return Path(path)


def _parse_provenance(text) -> dict | None:
    if not isinstance(text, str):
        return None
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None


def read_png_provenance(path: str | Path) -> dict | None:
    """The provenance chunk of a PNG (None when absent or not JSON); decodes no pixels (the
    chunk precedes the image data)."""
    from PIL import Image

    with Image.open(path) as image:
        return _parse_provenance(image.info.get(TEXT_KEY))


def inspect_png(path: str | Path, size: tuple[int, int], channels: int
                ) -> tuple[bool, dict | None]:
    """(intact, provenance) in one pass over the file without decoding pixels. Intact: PNG of
    the expected size and mode, every chunk's CRC checks and the file ends with IEND."""
    from PIL import Image

    modes = {1: "L", 3: "RGB", 4: "RGBA"}
    try:
        with Image.open(path) as image:
            provenance = _parse_provenance(image.info.get(TEXT_KEY))
            if image.format != "PNG" or image.size != size or image.mode != modes[channels]:
                return False, provenance
            image.verify()
    except (OSError, SyntaxError, ValueError, struct.error):
        return False, None
    return True, provenance


def load_png(path: str | Path) -> np.ndarray:
    """HWC uint8 (grey images get a channel axis)."""
    from PIL import Image

    with Image.open(path) as image:
        array = np.asarray(image)
    return array[..., None] if array.ndim == 2 else array

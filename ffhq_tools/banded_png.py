"""Large PNGs read in horizontal bands, so memory follows the band, not the declared size.

A 140 KB PNG can declare 12000x12000 pixels (432 MB of RGB once decoded). Alignment needs two
things from such a photo: a box-reduced copy to detect faces on, and full-resolution pixels
around each face. Both are built here band by band: the IDAT stream is inflated incrementally,
and each band's filtered scanlines are handed to PIL as a small PNG of their own whose first
row is the previous band's last reconstructed row (filter type 0). PNG filters reference only
the row above, so PIL reconstructs every band exactly as it would inside the whole image, and
the pixels are PIL's own. Colour conversion (`images.to_rgb8`) is per pixel and so per band.

Only what this can reproduce exactly is read this way: 8-bit, non-interlaced, colour types
0/2/3/4/6, and no EXIF orientation (an eXIf chunk or an EXIF text profile). Anything else is
decoded whole by `images.open_image`, under --max-pixels.
"""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass

from PIL import Image

from ffhq_tools.images import ImageRejected, to_rgb8

SIGNATURE = b"\x89PNG\r\n\x1a\n"
CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}  # PNG colour type -> samples per pixel
COPIED_CHUNKS = (b"PLTE", b"tRNS")  # what a band needs to decode as the whole file does
BAND_BYTES = 32 * 1024 * 1024
KEPT_PIXELS = 32 * 1024 * 1024  # decoded regions kept for later crops (96 MB of RGB)


@dataclass(frozen=True)
class _Header:
    width: int
    height: int
    colour_type: int
    ihdr: bytes

    @property
    def stride(self) -> int:
        return 1 + self.width * CHANNELS[self.colour_type]


def _chunks(data: bytes, label: str) -> Iterator[tuple[bytes, bytes]]:
    offset = len(SIGNATURE)
    while offset + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[offset:offset + 8])
        body = data[offset + 8:offset + 8 + length]
        crc = data[offset + 8 + length:offset + 12 + length]
        if len(body) < length or len(crc) < 4:
            raise ImageRejected(label, "truncated or corrupt", f"PNG chunk {kind!r} cut short")
        if zlib.crc32(kind + body) != struct.unpack(">I", crc)[0]:
            raise ImageRejected(label, "truncated or corrupt", f"PNG chunk {kind!r}: bad CRC")
        yield kind, body
        if kind == b"IEND":
            return
        offset += 12 + length
    raise ImageRejected(label, "truncated or corrupt", "PNG without IEND")


def _has_exif(kind: bytes, body: bytes) -> bool:
    if kind == b"eXIf":
        return True
    return kind in (b"tEXt", b"zTXt", b"iTXt") and b"exif" in body.split(b"\0", 1)[0].lower()


def _inside(box: tuple[int, int, int, int], outer: tuple[int, int, int, int]) -> bool:
    return outer[0] <= box[0] and outer[1] <= box[1] and box[2] <= outer[2] and box[3] <= outer[3]


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


class BandedPng:
    """A band-decodable PNG: `size`, `crop(box)` and `reduce(factor)` as PIL images give them
    (8-bit RGB), without ever holding the whole photo."""

    def __init__(self, header: _Header, extra: bytes, idat: list[bytes], label: str,
                 band_bytes: int | None = None):
        self.header, self.extra, self.idat, self.label = header, extra, idat, label
        self.band_rows = max(1, (band_bytes or BAND_BYTES) // header.stride)
        self._regions: list[tuple[tuple[int, int, int, int], Image.Image]] = []

    @classmethod
    def parse(cls, data: bytes, label: str, band_bytes: int | None = None) -> BandedPng | None:
        """The PNG in `data` ready for band reads, or None when it must be decoded whole."""
        if not data.startswith(SIGNATURE):
            return None
        header, extra, idat = None, b"", []
        for kind, body in _chunks(data, label):
            if kind == b"IHDR":
                width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", body)
                if depth != 8 or interlace or colour not in CHANNELS or not width or not height:
                    return None
                header = _Header(width, height, colour, body)
            elif kind in COPIED_CHUNKS:
                extra += _chunk(kind, body)
            elif kind == b"IDAT":
                idat.append(body)
            elif _has_exif(kind, body):
                return None
        return cls(header, extra, idat, label, band_bytes) if header and idat else None

    @property
    def size(self) -> tuple[int, int]:
        return self.header.width, self.header.height

    @property
    def width(self) -> int:
        return self.header.width

    @property
    def height(self) -> int:
        return self.header.height

    def _band_image(self, previous: bytes | None, filtered: bytes, rows: int) -> Image.Image:
        header = self.header
        lead = b"\0" + previous if previous is not None else b""
        ihdr = struct.pack(">II", header.width, rows + (previous is not None)) + header.ihdr[8:]
        png = (SIGNATURE + _chunk(b"IHDR", ihdr) + self.extra
               + _chunk(b"IDAT", zlib.compress(lead + filtered, 0)) + _chunk(b"IEND", b""))
        try:
            with Image.open(io.BytesIO(png)) as image:
                image.load()
                return image.copy()
        except (OSError, SyntaxError, ValueError) as exc:
            raise ImageRejected(self.label, "truncated or corrupt", str(exc)) from exc

    def bands(self, stop: int,
              rows_per_band: int | None = None) -> Iterator[tuple[int, Image.Image]]:
        """(first row, band as RGB) for consecutive bands covering rows 0 .. stop - 1."""
        rows_per_band = rows_per_band or self.band_rows
        stride, inflate = self.header.stride, zlib.decompressobj()
        pending, chunks, previous, row = b"", iter(self.idat), None, 0
        while row < stop:
            rows = min(rows_per_band, self.header.height - row)
            while len(pending) < rows * stride:
                compressed = inflate.unconsumed_tail or next(chunks, b"")
                if not compressed:
                    ends = row + len(pending) // stride
                    raise ImageRejected(self.label, "truncated or corrupt",
                                        f"PNG image data ends at row {ends}")
                try:
                    pending += inflate.decompress(compressed, rows * stride - len(pending))
                except zlib.error as exc:
                    raise ImageRejected(self.label, "truncated or corrupt", str(exc)) from exc
            filtered, pending = pending[:rows * stride], pending[rows * stride:]
            band = self._band_image(previous, filtered, rows)
            if previous is not None:
                band = band.crop((0, 1, band.width, band.height))
            previous = band.crop((0, rows - 1, band.width, rows)).tobytes()
            yield row, to_rgb8(band)
            row += rows

    def crop(self, box: tuple[int, int, int, int]) -> Image.Image:
        """`Image.crop(box)` of the decoded photo; the box lies inside it. The region decoded
        is the box grown by its own size on every side and kept (the latest regions up to
        KEPT_PIXELS), so the warp's crop after the landmark refinement's, around the same
        face, needs no second pass over the rows."""
        left, top, right, bottom = (int(v) for v in box)
        if not (0 <= left < right <= self.width and 0 <= top < bottom <= self.height):
            raise ValueError(f"crop box {box} outside the {self.width}x{self.height} photo")
        found = next((r for r in self._regions if _inside((left, top, right, bottom), r[0])),
                     None)
        if found is None:
            width, height = right - left, bottom - top
            grown = (max(0, left - width), max(0, top - height),
                     min(self.width, right + width), min(self.height, bottom + height))
            found = grown, self._decode(grown)
            self._regions.append(found)
            while len(self._regions) > 1 and sum(
                    image.width * image.height for _, image in self._regions) > KEPT_PIXELS:
                self._regions.pop(0)
        (x0, y0, _, _), region = found
        return region.crop((left - x0, top - y0, right - x0, bottom - y0))

    def _decode(self, box: tuple[int, int, int, int]) -> Image.Image:
        left, top, right, bottom = box
        out = Image.new("RGB", (right - left, bottom - top))
        for first, band in self.bands(bottom):
            last = first + band.height
            if last > top:
                y0, y1 = max(top, first), min(bottom, last)
                out.paste(band.crop((left, y0 - first, right, y1 - first)), (0, y0 - top))
        return out

    def reduce(self, factor: int) -> Image.Image:
        """`Image.reduce(factor)` of the decoded photo: bands of a multiple of `factor` rows
        reduce to exactly the rows the whole image reduces to."""
        rows = max(factor, self.band_rows // factor * factor)
        out = Image.new("RGB", (-(-self.width // factor), -(-self.height // factor)))
        for first, band in self.bands(self.height, rows):
            out.paste(band.reduce(factor), (0, first // factor))
        return out

    def full(self) -> Image.Image:
        return self.crop((0, 0, self.width, self.height))

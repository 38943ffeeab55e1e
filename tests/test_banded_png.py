"""Band-wise PNG reading against PIL decoding the whole file: crops and box reductions equal
PIL's pixel for pixel over every colour type and all five PNG row filters; files it cannot
reproduce are left to the whole-image decoder; corrupt streams are rejected by name."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from ffhq_tools.banded_png import BandedPng
from ffhq_tools.images import ImageRejected, to_rgb8

COLOUR_TYPES = {"L": 0, "RGB": 2, "P": 3, "LA": 4, "RGBA": 6}


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def _paeth(a, b, c):
    p = a + b - c
    pa, pb, pc = np.abs(p - a), np.abs(p - b), np.abs(p - c)
    return np.where((pa <= pb) & (pa <= pc), a, np.where(pb <= pc, b, c))


def _filtered_rows(samples: np.ndarray, bpp: int) -> bytes:
    """Rows filtered with types 0, 1, 2, 3, 4 in turn (PNG spec section 9.2)."""
    rows, out = samples.reshape(samples.shape[0], -1).astype(np.int64), []
    prior = np.zeros_like(rows[0])
    for index, raw in enumerate(rows):
        left = np.concatenate([np.zeros(bpp, np.int64), raw[:-bpp]])
        upper_left = np.concatenate([np.zeros(bpp, np.int64), prior[:-bpp]])
        kind = index % 5
        predicted = [0, left, prior, (left + prior) // 2, _paeth(left, prior, upper_left)][kind]
        out.append(bytes([kind]) + ((raw - predicted) % 256).astype(np.uint8).tobytes())
        prior = raw
    return b"".join(out)


def write_png(samples: np.ndarray, mode: str, extra: bytes = b"", depth: int = 8,
              interlace: int = 0, idat_pieces: int = 3) -> bytes:
    height, width = samples.shape[:2]
    bpp = 1 if samples.ndim == 2 else samples.shape[2]
    ihdr = struct.pack(">IIBBBBB", width, height, depth, COLOUR_TYPES[mode], 0, 0, interlace)
    stream = zlib.compress(_filtered_rows(samples, bpp), 6)
    step = -(-len(stream) // idat_pieces)
    idat = b"".join(_chunk(b"IDAT", stream[i:i + step]) for i in range(0, len(stream), step))
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + extra + idat
            + _chunk(b"IEND", b""))


def _samples(mode: str, shape=(53, 37), seed=0) -> tuple[np.ndarray, bytes]:
    rng = np.random.default_rng(seed)
    channels = {"L": 1, "RGB": 3, "P": 1, "LA": 2, "RGBA": 4}[mode]
    smooth = np.cumsum(rng.integers(-9, 10, (*shape, channels)), axis=1) % 256
    samples = smooth.astype(np.uint8).squeeze(-1) if channels == 1 else smooth.astype(np.uint8)
    extra = b""
    if mode == "P":
        samples = samples % 40
        extra = (_chunk(b"PLTE", rng.integers(0, 256, 40 * 3).astype(np.uint8).tobytes())
                 + _chunk(b"tRNS", bytes(range(0, 200, 10))))
    return samples, extra


def _whole(data: bytes) -> Image.Image:
    with Image.open(io.BytesIO(data)) as image:
        image.load()
        return to_rgb8(image)


@pytest.mark.parametrize("mode", list(COLOUR_TYPES))
def test_crops_and_reductions_equal_the_whole_decode(mode):
    samples, extra = _samples(mode)
    data = write_png(samples, mode, extra)
    whole = _whole(data)
    assert np.asarray(whole).std() > 20  # a photo-like spread, not a flat image
    stride = 1 + samples.shape[1] * (1 if samples.ndim == 2 else samples.shape[2])
    for band_rows in (1, 4, 7, 100):
        banded = BandedPng.parse(data, "x.png", band_bytes=band_rows * stride)
        assert banded.size == whole.size and banded.band_rows == band_rows
        for box in ((0, 0, 37, 53), (5, 9, 30, 10), (0, 13, 11, 53), (36, 52, 37, 53)):
            fresh = BandedPng.parse(data, "x.png", band_bytes=band_rows * stride)
            assert np.array_equal(np.asarray(fresh.crop(box)), np.asarray(whole.crop(box)))
            assert np.array_equal(np.asarray(banded.crop(box)), np.asarray(whole.crop(box)))
        for factor in (2, 3, 5):
            assert np.array_equal(np.asarray(banded.reduce(factor)),
                                  np.asarray(whole.reduce(factor)))


def test_pil_written_pngs_read_the_same(astronaut):
    """PIL's own encoder (adaptive filters, one or several IDAT chunks)."""
    for options in ({}, {"optimize": True}):
        buffer = io.BytesIO()
        Image.fromarray(astronaut).save(buffer, format="PNG", **options)
        banded = BandedPng.parse(buffer.getvalue(), "a.png", band_bytes=64 * 1537)
        assert np.array_equal(np.asarray(banded.full()), astronaut)
        assert np.array_equal(np.asarray(banded.reduce(3)),
                              np.asarray(Image.fromarray(astronaut).reduce(3)))


@pytest.mark.parametrize("change", ["16-bit", "interlaced", "exif", "exif-text"])
def test_what_bands_cannot_reproduce_is_decoded_whole(change):
    samples, _ = _samples("RGB")
    if change == "16-bit":
        data = write_png(samples.astype(">u2") * 257, "RGB", depth=16)
    elif change == "interlaced":
        data = write_png(samples, "RGB", interlace=1)
    elif change == "exif":
        data = write_png(samples, "RGB", _chunk(b"eXIf", b"MM\0*\0\0\0\x08\0\0"))
    else:
        data = write_png(samples, "RGB", _chunk(b"tEXt", b"Raw profile type exif\0 0"))
    assert BandedPng.parse(data, "x.png") is None


def test_corrupt_streams_are_rejected_by_name():
    samples, _ = _samples("RGB")
    data = bytearray(write_png(samples, "RGB", idat_pieces=1))
    flipped = bytearray(data)
    flipped[60] ^= 0xFF  # inside the IDAT body: its CRC no longer matches
    with pytest.raises(ImageRejected, match="x.png: truncated or corrupt.*bad CRC"):
        BandedPng.parse(bytes(flipped), "x.png")
    stream = zlib.compress(_filtered_rows(samples, 3))[: 200]
    cut = write_png(samples, "RGB")[:33] + _chunk(b"IDAT", stream) + _chunk(b"IEND", b"")
    banded = BandedPng.parse(cut, "x.png", band_bytes=10 * 112)
    with pytest.raises(ImageRejected, match="x.png: truncated or corrupt.*ends at row"):
        banded.reduce(2)
    with pytest.raises(ImageRejected, match="without IEND"):
        BandedPng.parse(bytes(data[:-12]), "x.png")


def test_a_crop_inside_the_last_decoded_region_reads_no_rows(monkeypatch):
    samples, _ = _samples("RGB", shape=(90, 60))
    data = write_png(samples, "RGB")
    whole, banded = _whole(data), BandedPng.parse(data, "x.png", band_bytes=5 * 181)
    passes = []
    bands = BandedPng.bands
    monkeypatch.setattr(BandedPng, "bands", lambda self, *a: passes.append(a) or bands(self, *a))
    for box in ((20, 30, 30, 40), (12, 25, 38, 48), (11, 21, 39, 49), (10, 20, 40, 60)):
        assert np.array_equal(np.asarray(banded.crop(box)), np.asarray(whole.crop(box)))
    assert len(passes) == 2  # the first box grown to (10, 20, 40, 50); the last leaves it

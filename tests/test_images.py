"""Safe decoding: every mode becomes 8-bit RGB, EXIF orientation applies, bad files are named."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from ffhq_tools.images import ImageRejected, list_images, load_rgb, sniff_format


def _encode(image: Image.Image, fmt: str, **params) -> bytes:
    buf = io.BytesIO()
    image.save(buf, fmt, **params)
    return buf.getvalue()


def test_modes_become_rgb8():
    gray = np.arange(64, dtype=np.uint8).reshape(8, 8) * 4
    assert load_rgb(_encode(Image.fromarray(gray, "L"), "PNG")).shape == (8, 8, 3)
    sixteen = Image.new("I;16", (8, 8))
    sixteen.frombytes((gray.astype("<u2") * 257).tobytes(), "raw", "I;16")
    out = load_rgb(_encode(sixteen, "PNG"))
    assert out.dtype == np.uint8 and np.array_equal(out[..., 0], gray)
    rgba = Image.fromarray(np.full((4, 4, 4), 200, np.uint8), "RGBA")
    assert load_rgb(_encode(rgba, "PNG")).shape == (4, 4, 3)
    cmyk = Image.new("CMYK", (4, 4), (0, 255, 255, 0))
    assert tuple(load_rgb(_encode(cmyk, "JPEG", quality=100))[0, 0]) == pytest.approx(
        (255, 0, 0), abs=3)
    palette = Image.fromarray(gray, "L").convert("P")
    assert load_rgb(_encode(palette, "PNG")).shape == (8, 8, 3)


def test_exif_orientation_is_applied():
    image = Image.new("RGB", (6, 3), (255, 0, 0))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    assert load_rgb(_encode(image, "JPEG", exif=exif.tobytes())).shape == (6, 3, 3)


@pytest.mark.parametrize("payload, reason", [
    (b"", "empty file"),
    (b"hello, I am a text file", "not an image"),
])
def test_non_images_are_rejected(payload, reason):
    with pytest.raises(ImageRejected) as info:
        load_rgb(payload, name="bad.jpg")
    assert info.value.reason == reason and "bad.jpg" in str(info.value)


def test_truncated_jpeg_is_rejected():
    data = _encode(Image.new("RGB", (64, 64), (1, 2, 3)), "JPEG")
    with pytest.raises(ImageRejected, match="truncated|undecodable"):
        load_rgb(data[: len(data) // 2], name="cut.jpg")


def test_decompression_bomb_checked_before_decoding():
    data = _encode(Image.new("L", (3000, 3000)), "PNG")
    with pytest.raises(ImageRejected, match="decompression bomb"):
        load_rgb(data, max_pixels=1_000_000)


def test_sniff_and_listing(tmp_path):
    assert sniff_format(b"\x89PNG\r\n\x1a\n....") == "PNG"
    assert sniff_format(b"RIFF0000WEBPVP8 ") == "WEBP"
    (tmp_path / "a" / ".hidden").mkdir(parents=True)
    (tmp_path / "a" / "x.PNG").write_bytes(b"")
    (tmp_path / "a" / ".hidden" / "y.png").write_bytes(b"")
    (tmp_path / "notes.txt").write_text("x")
    assert [p.name for p in list_images(tmp_path)] == ["x.PNG"]

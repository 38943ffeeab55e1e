"""pixel_size / pixel_md5 follow FFHQ's definition on every kind of stored image."""

from __future__ import annotations

import hashlib
import io

import numpy as np
import pytest
from PIL import Image

from ffhq_tools.crawl.manifest import FileSpec
from ffhq_tools.crawl.verify import VerifyError, stored_pixels_fields, verify_file


def encoded(image: Image.Image, fmt: str, **save) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **save)
    return buffer.getvalue()


def samples() -> dict[str, bytes]:
    rng = np.random.default_rng(0)
    rgb = Image.fromarray(rng.integers(0, 256, (12, 20, 3), dtype=np.uint8))
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 on display
    return {
        "rgb.png": encoded(rgb, "PNG"),
        "gray.png": encoded(rgb.convert("L"), "PNG"),
        "palette.png": encoded(rgb.convert("P"), "PNG"),
        "rgba.png": encoded(rgb.convert("RGBA"), "PNG"),
        "16bit.png": encoded(Image.fromarray(rng.integers(0, 65535, (12, 20), dtype=np.uint16)),
                             "PNG"),
        "rotated.jpg": encoded(rgb, "JPEG", exif=exif.tobytes(), quality=90),
    }


@pytest.mark.parametrize("name", sorted(samples()))
def test_pixel_fields_match_the_ffhq_reference_definition(tmp_path, name):
    data = samples()[name]
    path = tmp_path / name
    path.write_bytes(data)
    with Image.open(path) as image:  # download_ffhq.py: list(image.size), md5(np.array(image))
        expected_size, expected_md5 = list(image.size), hashlib.md5(np.array(image)).hexdigest()
    assert stored_pixels_fields(path) == (expected_size, expected_md5)
    spec = FileSpec("0", "http://h/x", name, len(data), hashlib.md5(data).hexdigest(),
                    tuple(expected_size), expected_md5)
    record = verify_file(path, spec)
    assert record.pixel_size == [20, 12] and record.pixel_md5 == expected_md5


def test_truncated_and_oversized_images_are_rejected(tmp_path):
    data = samples()["rgb.png"]
    path = tmp_path / "cut.png"
    path.write_bytes(data[: len(data) - 30])
    with pytest.raises(VerifyError, match="truncated or corrupt|undecodable"):
        verify_file(path, FileSpec("0", "http://h/x", "cut.png"), decode=True)
    path.write_bytes(data)
    with pytest.raises(VerifyError, match="decompression bomb: 20x12"):
        verify_file(path, FileSpec("0", "http://h/x", "cut.png"), decode=True, max_pixels=100)

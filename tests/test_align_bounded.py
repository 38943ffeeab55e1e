"""Detection on a bounded reduced copy of a large photo: exact coordinate mapping, the same
quad as full-resolution detection, and the --max-pixels / PIL-limit rejections."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from PIL import Image

from ffhq_tools.align import AlignConfig, AlignOptions, align_folder
from ffhq_tools.align.bounded import detect_bounded, detection_factor, to_full_resolution
from ffhq_tools.align.landmarks import make_detector, select_faces
from ffhq_tools.align.quad import choose_quad, face_frame
from ffhq_tools.atomic import read_jsonl
from ffhq_tools.images import ImageRejected, open_image


def test_factor_is_the_smallest_that_fits():
    for size, bound in [((12000, 12000), 4096 * 4096), ((1601, 900), 600 * 600),
                        ((100, 100), 10_000), ((7, 5), 1), ((4097, 4096), 4096 * 4096)]:
        brute = next(f for f in range(1, 10_000)
                     if -(-size[0] // f) * -(-size[1] // f) <= bound)
        assert detection_factor(size, bound) == brute


def test_mapping_is_exact_on_box_averages():
    """A bright pixel block of f x f in the full image is one bright pixel of `reduce(f)`: the
    centroid of the block equals the mapped centroid of the reduced pixel."""
    rng = np.random.default_rng(0)
    for factor in (2, 3, 5):
        full = np.zeros((60, 80), np.uint8)
        i, j = rng.integers(0, 60 // factor), rng.integers(0, 80 // factor)
        full[i * factor:(i + 1) * factor, j * factor:(j + 1) * factor] = 255
        reduced = np.asarray(Image.fromarray(full).reduce(factor))
        (ri,), (rj,) = np.nonzero(reduced == 255)
        ys, xs = np.nonzero(full)
        mapped = to_full_resolution(np.array([[rj, ri]]), factor)[0]
        assert mapped == pytest.approx([xs.mean(), ys.mean()])


@pytest.fixture(scope="module")
def large_photo(astronaut) -> Image.Image:
    canvas = Image.new("RGB", (1600, 1400), (96, 120, 150))
    canvas.paste(Image.fromarray(astronaut).resize((1024, 1024), Image.LANCZOS), (331, 207))
    return canvas


def _quad(face, size):
    return choose_quad(face_frame(face.landmarks, True), size, AlignOptions(), None)


def test_reduced_detection_gives_the_full_resolution_quad(large_photo):
    """The quad from a 3x reduced detection is as close to full-resolution detection's as
    full-resolution detection is to itself on the photo shifted by a crop: dlib HOG's box
    moves by up to ~20 px with the image's size (its pyramid), and the quad with it."""
    detector = make_detector("dlib")
    full = select_faces(detector.detect(np.asarray(large_photo)), min_score=0.5)
    reduced = select_faces(detect_bounded(detector, large_photo, 600 * 600), min_score=0.5)
    assert detection_factor(large_photo.size, 600 * 600) == 3
    assert len(full) == len(reduced) == 1
    cropped = large_photo.crop((0, 0, 900, 900))
    (jittered,) = select_faces(detector.detect(np.asarray(cropped)), min_score=0.5)
    reference = _quad(full[0], large_photo.size)
    own_jitter = np.abs(_quad(jittered, large_photo.size) - reference).max()
    error = np.abs(_quad(reduced[0], large_photo.size) - reference).max()
    side = np.linalg.norm(reference[0] - reference[1])
    assert error <= max(1.0, 1.5 * own_jitter) and error < 0.01 * side


def test_mapped_landmarks_without_refinement_are_close(large_photo):
    """Without the full-resolution landmark pass, the mapped landmarks still land on the face
    (catches a wrong mapping: off by the factor or by its half-pixel offset)."""
    detector = make_detector("dlib")
    full = select_faces(detector.detect(np.asarray(large_photo)), min_score=0.5)[0]
    reduced = np.asarray(large_photo.reduce(3))
    coarse = select_faces(detector.detect(reduced), min_score=0.5)[0]
    mapped = to_full_resolution(coarse.landmarks, 3)
    assert np.abs(mapped - full.landmarks).mean() < 6


def test_over_max_pixels_is_a_reject_naming_the_flag(tmp_path, astronaut):
    src = tmp_path / "src"
    src.mkdir()
    Image.fromarray(astronaut).save(src / "big.png")
    config = AlignConfig(options=AlignOptions(output_size=64, transform_size=256),
                         max_pixels=512 * 511)
    summary = align_folder(src, tmp_path / "out", config, progress=False)
    (reject,) = read_jsonl(tmp_path / "out" / "rejects.jsonl")
    assert summary.rejects["decompression bomb"] == 1
    assert reject["source"].endswith("big.png") and "--max-pixels" in reject["detail"]
    assert "512x512" in reject["detail"]


def test_pil_own_limit_counts_as_a_bomb(tmp_path, monkeypatch):
    """Over the limit is a decompression bomb (whether we or PIL refuse it),
    never "undecodable"."""
    path = tmp_path / "x.png"
    Image.new("RGB", (300, 300)).save(path)
    with pytest.raises(ImageRejected) as info:
        open_image(path, max_pixels=300 * 299)
    assert info.value.reason == "decompression bomb"
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 10)
    assert open_image(path).size == (300, 300)  # our limit decides, not PIL's global
    assert Image.MAX_IMAGE_PIXELS == 10


def test_cli_max_pixels_flag(tmp_path, astronaut, capsys):
    from ffhq_tools.cli import main

    src = tmp_path / "src"
    src.mkdir()
    Image.fromarray(astronaut).save(src / "a.png")
    assert main(["align", str(src), str(tmp_path / "out"), "--max-pixels", "0", "-q"]) == 2
    assert "--max-pixels 0" in capsys.readouterr().err
    assert main(["align", str(src), str(tmp_path / "out"), "--max-pixels", "1000", "-q",
                 "--size", "64", "--transform-size", "256"]) == 0
    (reject,) = [json.loads(line) for line in (tmp_path / "out" / "rejects.jsonl").open()]
    assert reject["reason"] == "decompression bomb"


# ------------------------------------------------------------------------------------------
# Large PNGs read in bands: the same outputs as the whole decode, never the whole photo
# ------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def large_lm(astronaut) -> np.ndarray:
    from ffhq_tools.align.landmarks import make_detector

    face = select_faces(make_detector("dlib").detect(astronaut), min_score=0.5)[0]
    return face.landmarks * 2 + (331, 207)  # where large_photo pastes the 2x astronaut


@pytest.fixture
def banded_everything(monkeypatch):
    """Photos over 600 x 600 read in bands of 64 rows; the whole decode forbidden."""
    from ffhq_tools import banded_png
    from ffhq_tools.align import bounded

    monkeypatch.setattr(bounded, "MAX_DETECTION_PIXELS", 600 * 600)
    monkeypatch.setattr(banded_png, "BAND_BYTES", 64 * (1 + 1600 * 3))

    def refuse(self):
        raise AssertionError("the whole photo was decoded")
    monkeypatch.setattr(banded_png.BandedPng, "full", refuse)


@pytest.mark.parametrize("method", ["fast", "reference"])
@pytest.mark.parametrize("where", ["inside", "at the edge"])
def test_banded_photo_aligns_as_the_whole_decode(tmp_path, large_photo, large_lm, method,
                                                  where, banded_everything):
    from ffhq_tools.align import align_image
    from ffhq_tools.align.bounded import open_photo
    from ffhq_tools.banded_png import BandedPng

    shift = (0, 0) if where == "inside" else (-640, 0)  # the face 300 px from the left edge
    photo = Image.fromarray(np.roll(np.asarray(large_photo), shift[0], axis=1))
    path = tmp_path / "big.png"
    photo.save(path)
    banded = open_photo(path, 10**9, "big.png")
    assert isinstance(banded, BandedPng)
    options = AlignOptions(output_size=256, transform_size=1024)
    got, quad = align_image(banded, large_lm + shift, options, method)
    expected, expected_quad = align_image(photo, large_lm + shift, options, method)
    assert np.array_equal(quad, expected_quad)
    assert np.array_equal(got, expected) and got.std() > 20


def test_a_face_ffhq_shrinks_reads_the_whole_photo(tmp_path, large_photo, large_lm):
    """quad over 4x the output size: FFHQ resizes the whole photo first, so do we."""
    from ffhq_tools.align import align_image
    from ffhq_tools.align.bounded import open_photo

    large_photo.save(tmp_path / "big.png")
    banded = open_photo(tmp_path / "big.png", 10**9, "big.png")
    got, _ = align_image(banded, large_lm, SMALL_OPTIONS, "fast")
    assert np.array_equal(got, align_image(large_photo, large_lm, SMALL_OPTIONS, "fast")[0])


SMALL_OPTIONS = AlignOptions(output_size=64, transform_size=256)


def test_detection_on_bands_equals_detection_on_the_decoded_photo(tmp_path, large_photo,
                                                                  banded_everything,
                                                                  monkeypatch):
    """The same photo as PNG (read in bands) and as BMP (decoded whole): one face found, the
    same landmarks refined at full resolution, the same aligned pixels."""
    from ffhq_tools.banded_png import BandedPng

    records, passes = {}, []
    bands = BandedPng.bands
    monkeypatch.setattr(BandedPng, "bands", lambda self, *a: passes.append(a) or bands(self, *a))
    for fmt in ("png", "bmp"):
        src = tmp_path / fmt
        src.mkdir()
        large_photo.save(src / f"big.{fmt}")
        config = AlignConfig(options=AlignOptions(output_size=256, transform_size=1024))
        align_folder(src, tmp_path / f"out-{fmt}", config, progress=False)
        records[fmt] = read_jsonl(tmp_path / f"out-{fmt}" / "align.jsonl")
    assert len(records["png"]) == len(records["bmp"]) == 1
    # the reduced copy, then one region for the kept face's refinement and warp (the false
    # faces dlib also finds are skipped before any full-resolution read)
    assert len(passes) == 2
    for key in ("landmarks", "quad", "pixel_md5", "face_rect"):
        assert records["png"][0][key] == records["bmp"][0][key]


def test_the_warp_reuses_the_region_the_refinement_decoded(tmp_path, large_photo,
                                                          banded_everything, monkeypatch):
    from ffhq_tools.align import align_image
    from ffhq_tools.align.bounded import open_photo
    from ffhq_tools.banded_png import BandedPng

    large_photo.save(tmp_path / "big.png")
    banded = open_photo(tmp_path / "big.png", 10**9, "big.png")
    passes = []
    bands = BandedPng.bands
    monkeypatch.setattr(BandedPng, "bands", lambda self, *a: passes.append(a) or bands(self, *a))
    (face,) = select_faces(detect_bounded(make_detector("dlib"), banded), min_score=0.5)
    before = len(passes)
    assert before >= 2  # the reduced copy, then the refinement's region(s)
    align_image(banded, face.landmarks, AlignOptions(output_size=256, transform_size=1024))
    assert len(passes) == before


def test_a_png_whose_image_data_stops_early_is_a_reject(tmp_path, large_photo,
                                                       banded_everything):
    """Every chunk intact, the IDAT stream cut after its first chunk: found while the bands
    are read (after the photo opened), still one reject naming the photo."""
    import struct

    src = tmp_path / "src"
    src.mkdir()
    buffer = io.BytesIO()
    large_photo.save(buffer, format="PNG")
    data = buffer.getvalue()
    first_idat = data.index(b"IDAT") - 4
    length = struct.unpack(">I", data[first_idat:first_idat + 4])[0]
    assert data.count(b"IDAT") > 1
    kept = data[:first_idat + 12 + length] + data[data.rindex(b"IEND") - 4:]
    (src / "cut.png").write_bytes(kept)
    summary = align_folder(src, tmp_path / "out", AlignConfig(options=SMALL_OPTIONS),
                           progress=False)
    (reject,) = read_jsonl(tmp_path / "out" / "rejects.jsonl")
    assert summary.rejects["truncated or corrupt"] == 1 and reject["source"].endswith("cut.png")
    assert "ends at row" in reject["detail"]


HUGE_PHOTO = """
import sys
import numpy as np
from PIL import Image
canvas = Image.new("RGB", (12000, 12000), (96, 120, 150))
canvas.paste(Image.fromarray(np.load(sys.argv[1])), (5000, 7000))
canvas.save(sys.argv[2])
"""
ALIGN_AND_MEASURE = """
import resource, sys
from pathlib import Path
from ffhq_tools.align import AlignConfig, align_folder
summary = align_folder(sys.argv[1], sys.argv[2], AlignConfig(landmarks="given"),
                       landmarks_file=Path(sys.argv[3]), progress=False)
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
"""


@pytest.mark.slow
def test_a_12000_px_png_aligns_within_a_fraction_of_its_decoded_size(tmp_path, astronaut,
                                                                     large_lm):
    """432 MB of pixels once decoded (the whole decode peaked at 1.75 GB); read in bands the
    whole run stays under 1 GB, and the aligned face equals the same face cut from a photo
    small enough to decode whole."""
    import os
    import subprocess
    import sys

    env = os.environ | {"PYTHONPATH": os.getcwd()}
    face = np.asarray(Image.fromarray(astronaut).resize((1024, 1024), Image.LANCZOS))
    np.save(tmp_path / "face.npy", face)
    src = tmp_path / "src"
    src.mkdir()
    subprocess.run([sys.executable, "-c", HUGE_PHOTO, str(tmp_path / "face.npy"),
                    str(src / "huge.png")], check=True, env=env)
    landmarks = large_lm - (331, 207) + (5000, 7000)
    (tmp_path / "lm.json").write_text(json.dumps({"huge.png": landmarks.tolist()}))
    run = subprocess.run([sys.executable, "-c", ALIGN_AND_MEASURE, str(src),
                          str(tmp_path / "out"), str(tmp_path / "lm.json")],
                         check=True, env=env, capture_output=True, text=True)
    assert int(run.stdout.split()[-1]) < 1024**3
    (record,) = read_jsonl(tmp_path / "out" / "align.jsonl")
    small = Image.new("RGB", (2600, 2600), (96, 120, 150))
    small.paste(Image.fromarray(face), (1000, 1000))
    from ffhq_tools.align import align_image

    expected, _ = align_image(small, landmarks - (4000, 6000), AlignOptions(), "fast")
    aligned = np.asarray(Image.open(tmp_path / "out" / record["output"]))
    assert np.array_equal(aligned, expected)

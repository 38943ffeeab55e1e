"""Detection on a bounded reduced copy of a large photo: exact coordinate mapping, the same
quad as full-resolution detection, and the --max-pixels / PIL-limit rejections."""

from __future__ import annotations

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

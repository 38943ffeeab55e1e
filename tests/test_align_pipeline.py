"""The align pipeline on real and broken files: detection (and the astronaut's false face),
records, rejects, resume after a kill, given landmarks, manifests, shards and geometric
self-consistency."""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ffhq_tools import weights
from ffhq_tools.align import AlignConfig, AlignOptions, align_folder, align_image
from ffhq_tools.align.landmarks import make_detector, select_faces
from ffhq_tools.atomic import read_jsonl
from ffhq_tools.errors import FfhqToolsError

SMALL = AlignOptions(output_size=64, transform_size=256)


@pytest.fixture(scope="module")
def astronaut_lm(astronaut) -> np.ndarray:
    return select_faces(make_detector("dlib").detect(astronaut), min_score=0.5)[0].landmarks


def test_detector_scores_separate_the_false_face(astronaut):
    faces = make_detector("dlib").detect(astronaut)
    assert len(faces) >= 2  # dlib's HOG also fires on the suit patch
    real = [f for f in faces if f.rect[1] < 200]
    false = [f for f in faces if f.rect[1] > 300]
    assert len(real) == 1 and false
    assert real[0].score > 0.5 > max(f.score for f in false)
    assert select_faces(faces, min_score=0.5) == real
    assert select_faces(faces, min_score=-1, largest_only=True)[0].size >= real[0].size - 2


def write_corpus(folder: Path, astronaut: np.ndarray) -> None:
    folder.mkdir(parents=True)
    photo = Image.fromarray(astronaut)
    photo.save(folder / "astronaut.jpg", quality=95)
    jpeg = (folder / "astronaut.jpg").read_bytes()
    (folder / "truncated.jpg").write_bytes(jpeg[: len(jpeg) // 2])
    (folder / "zero.png").write_bytes(b"")
    (folder / "text.jpg").write_text("this is not an image")
    Image.new("1", (2000, 2000)).save(folder / "bomb.png")  # over the test's pixel limit
    photo.convert("CMYK").save(folder / "cmyk.jpg", quality=95)
    photo.convert("RGBA").save(folder / "rgba.png")
    gray16 = (np.asarray(photo.convert("L"), dtype=np.uint16) * 257)
    Image.fromarray(gray16).save(folder / "gray16.png")
    exif = Image.Exif()
    exif[0x0112] = 6  # stored rotated: viewers turn it 90 degrees clockwise
    photo.transpose(Image.ROTATE_90).save(folder / "exif.jpg", exif=exif, quality=95)


def test_corpus_of_bad_files(tmp_path, astronaut):
    src, out = tmp_path / "src", tmp_path / "out"
    write_corpus(src, astronaut)
    config = AlignConfig(options=SMALL, max_pixels=1_000_000)
    summary = align_folder(src, out, config, progress=False)
    lines = read_jsonl(out / "rejects.jsonl")
    rejects = {r["source"]: r["reason"] for r in lines if not r.get("skipped_face")}
    assert rejects == {"truncated.jpg": "truncated or corrupt", "zero.png": "empty file",
                       "text.jpg": "not an image", "bomb.png": "decompression bomb"}
    skipped = [r for r in lines if r.get("skipped_face")]
    assert {r["source"] for r in skipped} == {"astronaut.jpg", "cmyk.jpg", "exif.jpg",
                                              "gray16.png", "rgba.png"}
    assert all(r["face_score"] < 0.5 for r in skipped)  # the suit patch's false faces
    assert sum(summary.skipped.values()) == len(skipped)
    records = {r["source"]: r for r in read_jsonl(out / "align.jsonl")}
    assert sorted(records) == ["astronaut.jpg", "cmyk.jpg", "exif.jpg", "gray16.png", "rgba.png"]
    assert summary.faces == 5 and sum(summary.rejects.values()) == 4
    reference = np.asarray(Image.open(out / records["astronaut.jpg"]["output"]), dtype=float)
    upright = np.asarray(Image.open(out / records["exif.jpg"]["output"]), dtype=float)
    assert np.abs(reference - upright).mean() < 8  # EXIF orientation was applied
    record = records["astronaut.jpg"]
    assert len(record["landmarks"]) == 68 and len(record["quad"]) == 4
    assert record["models"] == {"dlib-landmarks-68": weights.resolve("dlib-landmarks-68").sha256}
    data = (out / record["output"]).read_bytes()
    assert record["file_md5"] == hashlib.md5(data).hexdigest()
    pixels = np.array(Image.open(io.BytesIO(data)))
    assert record["pixel_md5"] == hashlib.md5(pixels.tobytes()).hexdigest()
    assert record["source_size"] == [512, 512] and record["face_score"] > 0.5


def test_every_face_becomes_an_output(tmp_path, astronaut):
    src = tmp_path / "src"
    src.mkdir()
    Image.fromarray(astronaut).save(src / "a.png")
    config = AlignConfig(options=SMALL, min_score=-0.5)
    align_folder(src, tmp_path / "out", config, progress=False)
    outputs = sorted(r["output"] for r in read_jsonl(tmp_path / "out" / "align.jsonl"))
    assert outputs[:2] == ["a_00.png", "a_01.png"]


KILL_SCRIPT = """
import os, signal, sys
from pathlib import Path
from ffhq_tools.align import pipeline
from ffhq_tools.align.quad import AlignOptions
original = pipeline._Worker.write
count = [0]
def write_then_die(self, *args):
    record = original(self, *args)
    count[0] += 1
    if count[0] == 2:
        os.kill(os.getpid(), signal.SIGKILL)
    return record
pipeline._Worker.write = write_then_die
config = pipeline.AlignConfig(options=AlignOptions(output_size=64, transform_size=256),
                              landmarks="given")
pipeline.align_folder(sys.argv[1], sys.argv[2], config, landmarks_file=Path(sys.argv[3]),
                      progress=False)
"""


def given_folder(tmp_path: Path, astronaut: np.ndarray, lm: np.ndarray,
                 count: int) -> tuple[Path, Path]:
    src = tmp_path / "src"
    src.mkdir()
    given = {}
    for i in range(count):
        shift = np.array([3 * i, 2 * i])
        shifted = np.roll(astronaut, shift=(shift[1], shift[0]), axis=(0, 1))
        Image.fromarray(shifted).save(src / f"p{i}.png")
        given[f"p{i}.png"] = (lm + shift).tolist()
    landmarks_file = tmp_path / "landmarks.json"
    landmarks_file.write_text(json.dumps(given))
    return src, landmarks_file


@pytest.mark.slow
def test_kill_and_resume_equals_uninterrupted_run(tmp_path, astronaut, astronaut_lm):
    src, landmarks_file = given_folder(tmp_path, astronaut, astronaut_lm, 4)
    killed, clean = tmp_path / "killed", tmp_path / "clean"
    result = subprocess.run([sys.executable, "-c", KILL_SCRIPT, str(src), str(killed),
                             str(landmarks_file)], env=os.environ | {"PYTHONPATH": os.getcwd()})
    assert result.returncode != 0  # it was really killed
    assert len(read_jsonl(killed / "align.jsonl")) == 1  # died after writing the 2nd PNG
    config = AlignConfig(options=SMALL, landmarks="given")
    summary = align_folder(src, killed, config, landmarks_file=landmarks_file, progress=False)
    assert summary.resumed == 1 and summary.faces == 3
    align_folder(src, clean, config, landmarks_file=landmarks_file, progress=False)

    def outputs(folder):
        return {r["output"]: r["file_md5"] for r in read_jsonl(folder / "align.jsonl")}

    assert outputs(killed) == outputs(clean) and len(outputs(clean)) == 4
    for name in outputs(clean):
        assert (killed / name).read_bytes() == (clean / name).read_bytes()
    (killed / "p3_00.png").write_bytes(b"damaged")  # a damaged output is redone
    again = align_folder(src, killed, config, landmarks_file=landmarks_file, progress=False)
    assert again.faces == 1
    assert (killed / "p3_00.png").read_bytes() == (clean / "p3_00.png").read_bytes()
    with pytest.raises(FfhqToolsError, match="other options"):
        align_folder(src, killed, AlignConfig(options=AlignOptions(output_size=128),
                                              landmarks="given"),
                     landmarks_file=landmarks_file, progress=False)


@pytest.mark.slow
def test_shards_and_workers_cover_everything_once(tmp_path, astronaut, astronaut_lm):
    src, landmarks_file = given_folder(tmp_path, astronaut, astronaut_lm, 5)
    config = AlignConfig(options=SMALL, landmarks="given")
    out = tmp_path / "out"
    for index in range(2):
        align_folder(src, out, config, landmarks_file=landmarks_file, shard=(index, 2),
                     workers=2 if index == 0 else 1, progress=False)
    sources = [r["source"] for f in sorted(out.glob("align.shard-*.jsonl")) for r in read_jsonl(f)]
    assert sorted(sources) == [f"p{i}.png" for i in range(5)]


def ffhq_manifest(tmp_path: Path, astronaut: np.ndarray, lm: np.ndarray, file_path: str) -> Path:
    wild = tmp_path / "in-the-wild-images"
    wild.mkdir(exist_ok=True)
    Image.fromarray(astronaut).save(wild / "00000.png")
    entry = {"category": "training", "metadata": {"license": "Public Domain Mark",
                                                  "author": "NASA", "country": ""},
             "in_the_wild": {"file_path": file_path, "face_landmarks": lm.tolist(),
                             "file_url": "https://example.org/00000.png"}}
    manifest = tmp_path / "ffhq-dataset-v2.json"
    manifest.write_text(json.dumps({"0": entry}))
    return manifest


def test_ffhq_manifest_with_given_landmarks(tmp_path, astronaut, astronaut_lm):
    manifest = ffhq_manifest(tmp_path, astronaut, astronaut_lm, "in-the-wild-images/00000.png")
    align_folder(manifest, tmp_path / "out", AlignConfig(options=SMALL), progress=False)
    record = read_jsonl(tmp_path / "out" / "align.jsonl")[0]
    assert record["output"] == "00000/00000.png" and record["detector"] == "given"
    assert record["license"] == "Public Domain Mark" and record["author"] == "NASA"
    assert record["face_score"] is None


@pytest.mark.parametrize("bad", ["../outside.png", "/etc/passwd", "https://example.org/x.png"])
def test_manifest_paths_cannot_escape(tmp_path, astronaut, astronaut_lm, bad):
    manifest = ffhq_manifest(tmp_path, astronaut, astronaut_lm, bad)
    with pytest.raises(FfhqToolsError, match="escapes|relative"):
        align_folder(manifest, tmp_path / "out", AlignConfig(options=SMALL), progress=False)


@pytest.mark.slow
def test_geometric_self_consistency(astronaut):
    """Flip, scale, rotate and translate the photo: the aligned crops agree (dlib landmarks on
    each version; with exactly transformed landmarks they agree to resampling error)."""
    options = AlignOptions(output_size=256)
    detector = make_detector("dlib")

    def landmarks(image):
        return select_faces(detector.detect(np.asarray(image)), min_score=0.5)[0].landmarks

    photo = Image.fromarray(astronaut)
    base_lm = landmarks(photo)
    base = align_image(photo, base_lm, options)[0].astype(float)
    control = align_image(photo, base_lm + [8, 0], options)[0].astype(float)
    assert np.abs(control - base).mean() > 20  # an 8-pixel shift is clearly visible

    angle = np.deg2rad(10)
    rotated = photo.rotate(10, resample=Image.BICUBIC, expand=True)
    turn = np.array([[np.cos(angle), np.sin(angle)], [-np.sin(angle), np.cos(angle)]])
    rotated_lm = (base_lm - 256) @ turn.T + np.array(rotated.size) / 2
    canvas = Image.new("RGB", (800, 700))
    canvas.paste(photo, (200, 150))
    cases = {"scale": (photo.resize((1024, 1024), Image.LANCZOS), base_lm * 2 + 0.5, 1.5),
             "rotate": (rotated, rotated_lm, 2.0),
             "translate": (canvas, base_lm + [200, 150], 0.01)}
    for name, (image, exact_lm, tolerance) in cases.items():
        detected = align_image(image, landmarks(image), options)[0].astype(float)
        assert np.abs(detected - base).mean() < 8, name
        exact = align_image(image, exact_lm, options)[0].astype(float)
        assert np.abs(exact - base).mean() < tolerance, name
    flipped = photo.transpose(Image.FLIP_LEFT_RIGHT)
    mirrored = align_image(flipped, landmarks(flipped), options)[0][:, ::-1].astype(float)
    assert np.abs(mirrored - base).mean() < 8


def test_cli_align_errors_are_one_line(tmp_path, capsys):
    from ffhq_tools.cli import main

    assert main(["align", str(tmp_path / "missing"), str(tmp_path / "out"), "-q"]) == 2
    assert "expected a folder of photos" in capsys.readouterr().err
    assert main(["align", str(tmp_path), str(tmp_path / "o"), "--shard", "3/2", "-q"]) == 2
    assert main(["align", str(tmp_path), str(tmp_path / "o"), "--landmarks", "magic", "-q"]) == 2
    assert "--landmarks magic" in capsys.readouterr().err


def test_face_alignment_backend_offline_error(tmp_path):
    with pytest.raises(FfhqToolsError, match="fan-2d.*weights import|weights fetch fan-2d"):
        make_detector("face-alignment")


@pytest.mark.slow
def test_face_alignment_backend_loads_registry_weights(tmp_path):
    """Architecture-exact FAN-4 and S3FD with deterministic random weights, saved as the state
    dicts face-alignment publishes, load through --weights overrides; their hashes are recorded.
    (Detection itself is not run: random weights find nothing meaningful and take minutes.)"""
    import torch
    from face_alignment.detection.sfd.net_s3fd import s3fd
    from face_alignment.models import FAN

    torch.manual_seed(0)
    torch.save(FAN(4).state_dict(), tmp_path / "fan.pth")
    torch.save(s3fd().state_dict(), tmp_path / "s3fd.pth")
    overrides = {"fan-2d": tmp_path / "fan.pth", "s3fd": tmp_path / "s3fd.pth"}
    detector = make_detector("face-alignment", overrides)
    assert detector.models == {name: hashlib.sha256(path.read_bytes()).hexdigest()
                               for name, path in overrides.items()}
    fan = detector._model.face_alignment_net
    expected = torch.load(tmp_path / "fan.pth", weights_only=True)
    for name, tensor in fan.state_dict().items():
        assert torch.equal(tensor, expected[name]), name

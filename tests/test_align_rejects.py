"""`align` from the command line: every skipped face in rejects.jsonl and the summary, the
upscale factor of every face, and align-options.json only after SRC and weights pass."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from ffhq_tools.align.pipeline import MAX_UPSCALE
from ffhq_tools.cli import main


def read_lines(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture
def small_astronaut(tmp_path, astronaut):
    """The astronaut at 256 px: her face box is ~44 px, so a 512 px output magnifies it."""
    src = tmp_path / "src"
    src.mkdir()
    Image.fromarray(astronaut).resize((256, 256), Image.LANCZOS).save(src / "small.png")
    return src


def test_skipped_faces_are_listed_and_counted_and_magnification_is_flagged(
        tmp_path, small_astronaut, capsys):
    out = tmp_path / "out"
    code = main(["align", str(small_astronaut), str(out), "--size", "512",
                 "--transform-size", "512", "-q"])
    assert code == 0
    captured = capsys.readouterr()
    rejects = read_lines(out / "rejects.jsonl")
    assert len(rejects) == 1  # the false face dlib finds on the suit patch
    skipped = rejects[0]
    assert skipped["reason"] == "score below --min-score" and skipped["skipped_face"]
    assert skipped["face_score"] < 0.5 and skipped["face_rect"][1] > 128  # below her face
    assert "0 rejected, 1 faces skipped" in captured.out
    assert "skipped: 1 x score below --min-score" in captured.out
    [record] = read_lines(out / "align.jsonl")
    quad = np.array(record["quad"])
    side = np.linalg.norm(quad[3] - quad[0])
    assert np.isclose(np.linalg.norm(quad[1] - quad[0]), side, rtol=1e-3)  # a square
    assert record["upscale"] == pytest.approx(512 / side, rel=1e-3)
    assert record["upscale"] > MAX_UPSCALE and record["magnified"] is True
    assert f"{record['output']}" in captured.err and "magnified" in captured.err
    assert "1 faces magnified over 4x" in captured.out
    (out / record["output"]).unlink()  # the photo is redone: its skipped face is not repeated
    assert main(["align", str(small_astronaut), str(out), "--size", "512",
                 "--transform-size", "512", "-q"]) == 0
    assert read_lines(out / "rejects.jsonl") == rejects
    assert (out / record["output"]).is_file()


def test_rejects_file_is_written_empty_and_large_faces_are_not_flagged(tmp_path, astronaut,
                                                                       capsys):
    src = tmp_path / "src"
    src.mkdir()
    Image.fromarray(astronaut).save(src / "a.png")
    out = tmp_path / "out"
    assert main(["align", str(src), str(out), "--size", "64", "--transform-size", "256",
                 "--min-score", "-1", "-q"]) == 0
    assert (out / "rejects.jsonl").read_text() == ""
    assert "0 rejected, 0 faces skipped" in capsys.readouterr().out
    records = read_lines(out / "align.jsonl")
    assert len(records) >= 2 and not any(r["magnified"] for r in records)
    assert all(r["upscale"] < 1 for r in records)  # 64 px from quads of 100+ px


def test_options_are_frozen_only_after_src_and_weights_are_valid(tmp_path, small_astronaut,
                                                                 capsys):
    out = tmp_path / "out"
    assert main(["align", str(tmp_path / "missing"), str(out), "--size", "64", "-q"]) == 2
    assert "missing" in capsys.readouterr().err
    assert not (out / "align-options.json").exists()
    missing_weights = tmp_path / "no-such.dat"
    assert main(["align", str(small_astronaut), str(out), "--size", "64", "-q",
                 "--weights", f"dlib-landmarks-68={missing_weights}"]) == 2
    assert str(missing_weights) in capsys.readouterr().err
    assert not (out / "align-options.json").exists()
    assert main(["align", str(small_astronaut), str(out), "--size", "128",
                 "--transform-size", "256", "-q"]) == 0  # other options than the failed runs
    assert json.loads((out / "align-options.json").read_text())["config"]["options"][
        "output_size"] == 128

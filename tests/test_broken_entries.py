"""Entries that are named like images but are no file, and JSON-lines files damaged inside."""

from __future__ import annotations

import os

import pytest
from PIL import Image

from ffhq_tools.align import AlignConfig, AlignOptions, align_folder
from ffhq_tools.atomic import DamagedJsonlError, read_jsonl
from ffhq_tools.cli import main
from ffhq_tools.images import ImageRejected, list_image_entries, list_images, open_image

SMALL = AlignOptions(output_size=64, transform_size=256)


@pytest.fixture
def odd_folder(tmp_path, astronaut):
    src = tmp_path / "src"
    src.mkdir()
    Image.fromarray(astronaut).save(src / "a.png")
    os.symlink("loop2.png", src / "loop1.png")
    os.symlink("loop1.png", src / "loop2.png")
    os.symlink("nowhere.png", src / "dangling.png")
    (src / "x.jpg").mkdir()
    os.symlink(".", src / "itself")  # a directory loop: the walk must still end
    return src


def test_non_files_are_listed_for_rejecting_not_for_reading(odd_folder):
    names = [p.name for p in list_image_entries(odd_folder)]
    assert names == ["a.png", "dangling.png", "loop1.png", "loop2.png", "x.jpg"]
    assert [p.name for p in list_images(odd_folder)] == ["a.png"]


@pytest.mark.parametrize("name, reason", [("loop1.png", "symlink loop"),
                                          ("dangling.png", "dangling symlink"),
                                          ("x.jpg", "not a file")])
def test_open_image_names_the_kind_of_non_file(odd_folder, name, reason):
    with pytest.raises(ImageRejected) as info:
        open_image(odd_folder / name)
    assert info.value.reason == reason and name in str(info.value)


def test_align_sends_each_non_file_to_rejects(odd_folder, tmp_path):
    out = tmp_path / "out"
    summary = align_folder(odd_folder, out, AlignConfig(options=SMALL), progress=False)
    records = read_jsonl(out / "rejects.jsonl")
    rejects = {r["source"]: r["reason"] for r in records if not r.get("skipped_face")}
    assert all(r["source"] == "a.png" for r in records if r.get("skipped_face"))
    assert rejects == {"dangling.png": "dangling symlink", "loop1.png": "symlink loop",
                       "loop2.png": "symlink loop", "x.jpg": "not a file"}
    assert summary.aligned == 1 and [r["source"] for r in read_jsonl(out / "align.jsonl")] \
        == ["a.png"]


@pytest.mark.parametrize("content, line", [
    (b'{"a": 1}\n{"a": \n{"a": 2}\n', 2),
    (b'{"a": 1}\n\xff\xfe{}\n{"a": 2}\n', 2),
    (b'{"a": 1}\n[1, 2]\n', 2),
    (b'7\n{"a": 2}\n', 1),
])
def test_a_damaged_line_inside_is_named(tmp_path, content, line):
    path = tmp_path / "x.jsonl"
    path.write_bytes(content)
    with pytest.raises(DamagedJsonlError, match=rf"x.jsonl line {line}: "):
        read_jsonl(path)


@pytest.mark.parametrize("tail", [b'{"a": ', b'{"a": "\xc3', b'\xff'])
def test_a_torn_last_line_is_skipped(tmp_path, tail):
    path = tmp_path / "x.jsonl"
    path.write_bytes(b'{"a": 1}\r\n{"a": 2}\n' + tail)
    assert read_jsonl(path) == [{"a": 1}, {"a": 2}]


def test_align_rerun_over_a_damaged_record_file_is_one_line(odd_folder, tmp_path, capsys):
    out = tmp_path / "out"
    args = ["align", str(odd_folder), str(out), "-q", "--size", "64", "--transform-size", "256"]
    assert main(args) == 0
    records = (out / "align.jsonl").read_bytes()
    (out / "align.jsonl").write_bytes(b'{"source": "a.png", "fa\n' + records)
    capsys.readouterr()
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "align.jsonl line 1: damaged" in err[0]


def test_fitted_names_are_short_distinct_and_whole_characters():
    from ffhq_tools.safe_paths import MAX_PART_BYTES, fitted_name

    assert fitted_name("sub/photo") == "sub/photo"
    long_a, long_b = "é" * 150 + "a", "é" * 150 + "b"
    fitted = [fitted_name(f"sub/{name}") for name in (long_a, long_b)]
    assert fitted[0] != fitted[1] and all(f.startswith("sub/é") for f in fitted)
    assert all(len(f.split("/")[-1].encode()) <= MAX_PART_BYTES for f in fitted)
    assert fitted[0].split("/")[-1].rstrip("0123456789abcdef~").strip("é") == ""


def test_a_final_name_of_255_bytes_has_a_temp_name(tmp_path):
    from ffhq_tools.atomic import write_bytes_atomic

    final = tmp_path / ("n" * 251 + ".png")
    write_bytes_atomic(final, b"x")
    assert final.read_bytes() == b"x" and [p.name for p in tmp_path.iterdir()] == [final.name]


def test_align_of_a_250_character_name_writes_and_resumes(tmp_path, astronaut, capsys):
    src = tmp_path / "src"
    src.mkdir()
    Image.fromarray(astronaut).save(src / ("p" * 250 + ".png"))
    args = ["align", str(src), str(tmp_path / "out"), "-q", "--size", "64",
            "--transform-size", "256"]
    assert main(args) == 0 and main(args) == 0
    out = capsys.readouterr().out
    assert "1 aligned" in out and "1 already done" in out
    (record,) = read_jsonl(tmp_path / "out" / "align.jsonl")
    assert record["source"] == "p" * 250 + ".png"
    assert (tmp_path / "out" / record["output"]).is_file()


@pytest.mark.parametrize("flag", ["--min-score", "--min-face"])
def test_align_refuses_nan_thresholds(tmp_path, capsys, flag):
    assert main(["align", str(tmp_path), str(tmp_path / "out"), flag, "nan"]) == 2
    assert f"{flag} nan" in capsys.readouterr().err

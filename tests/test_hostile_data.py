"""The bad-input corpus of the data side (issue 20): hostile manifests, HDF5 files and zips, and
broken files that must end in a one-line error naming the file, never a traceback."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ffhq_tools.align import AlignConfig, AlignOptions, align_folder
from ffhq_tools.align.pipeline import _Worker
from ffhq_tools.align.sources import AlignItem
from ffhq_tools.errors import FfhqToolsError

SMALL = AlignOptions(output_size=64, transform_size=256)


def face_landmarks() -> np.ndarray:
    """68 points with eyes and mouth where a 256 px portrait has them (all FFHQ's frame uses)."""
    lm = np.tile([128.0, 140.0], (68, 1))
    lm[36:42] = [100.0, 110.0] + np.random.RandomState(0).uniform(-3, 3, (6, 2))
    lm[42:48] = [156.0, 110.0] + np.random.RandomState(1).uniform(-3, 3, (6, 2))
    lm[48], lm[54] = [110.0, 170.0], [146.0, 170.0]
    return lm


def manifest_with_keys(tmp_path: Path, keys: list[str]) -> Path:
    photos = tmp_path / "photos"
    photos.mkdir(parents=True, exist_ok=True)
    pixels = np.random.RandomState(2).randint(0, 256, (256, 256, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(photos / "p.png")
    entry = {"in_the_wild": {"file_path": "photos/p.png",
                             "face_landmarks": face_landmarks().tolist()}}
    manifest = tmp_path / "manifest.json"
    manifest.write_text(json.dumps({key: entry for key in keys}))
    return manifest


def files_under(root: Path) -> set[Path]:
    return {p for p in root.rglob("*") if p.is_file()}


# ---- 1. align never writes outside OUT ----------------------------------------------------------

HOSTILE_KEYS = ["../../x", "../x", "a/../../x", "{tmp}/evil", "C:evil", "c:/evil", "sub//x",
                "./x", "x/.", "a\\..\\x", "nul\x00byte", "new\nline", "x" * 201,
                "a/" + "y" * 201]


@pytest.mark.parametrize("key", HOSTILE_KEYS, ids=range(len(HOSTILE_KEYS)))
def test_manifest_keys_never_leave_out(tmp_path, key):
    manifest = manifest_with_keys(tmp_path / "in", [key.replace("{tmp}", str(tmp_path))])
    out = tmp_path / "in" / "a" / "b" / "out"
    before = files_under(tmp_path)
    with pytest.raises(FfhqToolsError, match=r"manifest.json entry .*(refused|characters)"):
        align_folder(manifest, out, AlignConfig(options=SMALL), progress=False)
    written = files_under(tmp_path) - before
    assert all(p.is_relative_to(out) for p in written), written


def test_safe_manifest_keys_keep_their_names(tmp_path):
    manifest = manifest_with_keys(tmp_path, ["42", "sub/photo", "..dots", "1234567890"])
    out = tmp_path / "out"
    summary = align_folder(manifest, out, AlignConfig(options=SMALL), progress=False)
    assert summary.faces == 4
    names = {p.relative_to(out).as_posix() for p in out.rglob("*.png")}
    assert names == {"00000/00042.png", "sub/photo_00.png", "..dots_00.png",
                     "1234567890_00.png"}


def test_two_keys_with_one_output_name_are_refused(tmp_path):
    manifest = manifest_with_keys(tmp_path, ["42", "042"])
    with pytest.raises(FfhqToolsError, match="same output name '00000/00042'"):
        align_folder(manifest, tmp_path / "out", AlignConfig(options=SMALL), progress=False)


def test_writer_refuses_a_path_outside_out_even_past_discovery(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    (out / "sub").symlink_to(outside)  # a planted symlink inside OUT
    worker = _Worker(AlignConfig(options=SMALL), out, None, "cpu")
    pixels = np.zeros((64, 64, 3), np.uint8)
    for key in ("sub/photo", "../escaped"):
        item = AlignItem(key, tmp_path / "p.png", "p.png", (face_landmarks(),))
        with pytest.raises(FfhqToolsError, match="outside the output folder"):
            worker.write(item, 0, 1, None, pixels, np.zeros((4, 2)), (256, 256), "given", {})
    assert not any(outside.iterdir()) and not (tmp_path / "escaped_00.png").exists()

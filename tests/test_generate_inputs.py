"""`generate` inputs from the user's side: saved W codes (`--projected-w`), interpolation
videos, and one clean error (exit 2, one line naming the flag or file) per bad input."""

from __future__ import annotations

import io
import json
import sys
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from PIL import Image

from ffhq_tools.cli import main
from models import generate as gen
from models.checkpoint import load_generator, save_checkpoint
from models.configs import build_networks, get_config


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    torch.manual_seed(3)
    config = get_config("tiny")
    G, D = build_networks(config, 16)
    path = tmp_path_factory.mktemp("ckpt") / "tiny.pt"
    save_checkpoint(path, config={"model": config.to_dict(), "resolution": 16}, G=G, D=D)
    return path


@pytest.fixture(scope="module")
def G(ckpt):
    return load_generator(ckpt)


def run(capsys, *argv) -> tuple[int, str, str]:
    rc = main(["generate", *map(str, argv), "--device", "cpu"])
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


def frames_of(folder: Path) -> list[np.ndarray]:
    return [np.asarray(Image.open(p)) for p in sorted(folder.glob("frame*.png"))]


# ------------------------------------------------------------------------------------------
# projected codes
# ------------------------------------------------------------------------------------------
def test_projected_codes_render_exactly_and_interpolate_real_to_real(G, ckpt, tmp_path, capsys):
    ws = gen.map_seeds(G, [3, 4]).numpy()
    w_plus = np.random.RandomState(0).randn(1, G.num_ws, G.w_dim).astype(np.float32)
    np.savez(tmp_path / "a.npz", w=ws[:1])
    np.savez(tmp_path / "b.npz", w=np.concatenate([ws[1:], w_plus]))
    out = tmp_path / "out"
    rc, printed, _ = run(capsys, ckpt, "--out", out, "--projected-w", tmp_path / "a.npz",
                         "--projected-w", tmp_path / "b.npz", "--interpolate", "w",
                         "--frames", "4")
    assert rc == 0 and "3 images" in printed and "interp-w.mp4" in printed
    samples = {p.name: np.asarray(Image.open(p)) for p in (out / "samples").iterdir()}
    assert sorted(samples) == ["proj00.png", "proj01.png", "proj02.png"]
    by_seed = dict(gen.generate_images(G, [3, 4]))
    np.testing.assert_array_equal(samples["proj00.png"], by_seed[3])
    np.testing.assert_array_equal(samples["proj01.png"], by_seed[4])
    np.testing.assert_array_equal(samples["proj02.png"],
                                  gen.render(G, torch.from_numpy(w_plus), "const")[0])
    frames = frames_of(out / "figures" / "interp-w")
    assert len(frames) == 2 * 4 + 1
    np.testing.assert_array_equal(frames[0], samples["proj00.png"])
    np.testing.assert_array_equal(frames[4], samples["proj01.png"])
    np.testing.assert_array_equal(frames[-1], samples["proj02.png"])
    options = json.loads((out / "options.json").read_text())
    assert options["settings"]["source"] == "projected_w"
    assert [c["count"] for c in options["codes"]] == [1, 2]
    np.savez(tmp_path / "c.npz", w=ws[1:])
    rc, _, err = run(capsys, ckpt, "--out", out, "--projected-w", tmp_path / "c.npz")
    assert rc == 2 and "projected_w_sha256" in err


def _huge_declaration(path: Path) -> None:
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        header, {"descr": "<f4", "fortran_order": False, "shape": (10 ** 9, 6, 32)})
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("w.npy", header.getvalue() + b"\0" * 64)


PROJECTED_BAD = {
    "object array": (lambda p: np.savez(p, w=np.array([{"a": 1}], dtype=object)),
                     "object array"),
    "wrong num_ws": (lambda p: np.savez(p, w=np.zeros((1, 5, 32), np.float32)),
                     "shape [1, 5, 32]"),
    "2-D": (lambda p: np.savez(p, w=np.zeros((6, 32), np.float32)), "shape [6, 32]"),
    "ints": (lambda p: np.savez(p, w=np.zeros((1, 6, 32), np.int64)), "dtype int64"),
    "no key w": (lambda p: np.savez(p, codes=np.zeros((1, 6, 32), np.float32)),
                 "no key 'w' (keys: codes)"),
    "nan": (lambda p: np.savez(p, w=np.full((1, 6, 32), np.nan, np.float32)), "NaN"),
    "bare npy": (lambda p: np.save(open(p, "wb"), np.zeros((1, 6, 32), np.float32)),
                 "bare .npy"),
    "not a zip": (lambda p: p.write_bytes(b"hello"), "not a readable .npz"),
    "huge declaration": (_huge_declaration, "holds only"),
}


@pytest.mark.parametrize("case", sorted(PROJECTED_BAD))
def test_bad_projected_codes_are_refused_by_name(ckpt, tmp_path, capsys, case):
    write, expected = PROJECTED_BAD[case]
    path = tmp_path / "bad.npz"
    write(path)
    rc, _, err = run(capsys, ckpt, "--out", tmp_path / "out", "--projected-w", path)
    assert rc == 2 and expected in err and f"--projected-w {path}" in err, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_interpolating_one_projected_code_is_refused_before_rendering(ckpt, tmp_path, capsys):
    np.savez(tmp_path / "one.npz", w=np.zeros((1, 6, 32), np.float32))
    rc, _, err = run(capsys, ckpt, "--out", tmp_path / "out", "--projected-w",
                     tmp_path / "one.npz", "--interpolate", "w")
    assert rc == 2 and "at least two projected codes" in err
    assert not (tmp_path / "out").exists()


def test_projected_codes_refuse_a_traditional_generator(tmp_path, capsys):
    config = get_config("tiny-progan")
    G, D = build_networks(config, 16)
    path = save_checkpoint(tmp_path / "progan.pt", G=G, D=D,
                           config={"model": config.to_dict(), "resolution": 16})
    np.savez(tmp_path / "w.npz", w=np.zeros((1, G.num_ws, G.w_dim), np.float32))
    rc, _, err = run(capsys, path, "--out", tmp_path / "o", "--projected-w", tmp_path / "w.npz")
    assert rc == 2 and "style-based" in err


# ------------------------------------------------------------------------------------------
# videos
# ------------------------------------------------------------------------------------------
def test_interpolation_writes_an_mp4_of_every_frame(ckpt, tmp_path, capsys):
    import imageio_ffmpeg

    out = tmp_path / "out"
    rc, printed, _ = run(capsys, ckpt, "--out", out, "--seeds", "0-2", "--interpolate", "z",
                         "--frames", "3", "--fps", "12")
    assert rc == 0 and "interp-z.mp4" in printed
    pngs = frames_of(out / "figures" / "interp-z")
    reader = imageio_ffmpeg.read_frames(str(out / "figures" / "interp-z.mp4"))
    meta = next(reader)
    decoded = [np.frombuffer(f, np.uint8).reshape(16, 16, 3) for f in reader]
    assert meta["size"] == (16, 16) and meta["fps"] == 12 and len(decoded) == len(pngs) == 7
    for png, frame in zip(pngs, decoded, strict=True):
        assert np.abs(png.astype(int) - frame).mean() < 20  # lossy H.264 with 4:2:0 chroma
    shuffled = np.abs(pngs[0].astype(int) - decoded[-1]).mean()
    assert shuffled > np.abs(pngs[-1].astype(int) - decoded[-1]).mean()


def test_without_imageio_ffmpeg_interpolation_writes_a_gif(ckpt, tmp_path, capsys,
                                                          monkeypatch):
    monkeypatch.setitem(sys.modules, "imageio_ffmpeg", None)  # import fails
    out = tmp_path / "out"
    rc, printed, _ = run(capsys, ckpt, "--out", out, "--seeds", "0-1", "--interpolate", "w",
                         "--frames", "3")
    assert rc == 0 and "interp-w.gif" in printed
    assert not (out / "figures" / "interp-w.mp4").exists()
    pngs = frames_of(out / "figures" / "interp-w")
    with Image.open(out / "figures" / "interp-w.gif") as gif:
        assert gif.n_frames == len(pngs) == 4
        for i, png in enumerate(pngs):
            gif.seek(i)
            np.testing.assert_array_equal(np.asarray(gif.convert("RGB")), png)


# ------------------------------------------------------------------------------------------
# clean errors
# ------------------------------------------------------------------------------------------
BAD_FLAGS = [
    (["--batch", "0"], "--batch 0"),
    (["--grid-cols", "-2"], "--grid-cols -2"),
    (["--noise-variation", "-1"], "--noise-variation -1"),
    (["--noise-variation", "1000"], "--noise-variation 1000"),
    (["--trunc", "nan"], "--trunc nan"),
    (["--trunc", "inf"], "--trunc inf"),
    (["--trunc-cutoff", "0"], "--trunc-cutoff 0"),
    (["--frames", "1"], "--frames 1"),
    (["--fps", "0"], "--fps 0"),
    (["--seeds", "4294967296"], "--seeds 4294967296"),
    (["--seeds", "0-99999999999"], "below 2^32"),
    (["--seeds", "-1"], "--seeds -1"),
    (["--truncation-sweep", "1,x"], "--truncation-sweep 1,x"),
    (["--truncation-sweep", "1,,0"], "--truncation-sweep 1,,0"),
    (["--truncation-sweep", "nan"], "--truncation-sweep nan"),
    (["--seeds", "0-99", "--truncation-sweep", "1,0"], "at most 64 seeds"),
    (["--style-mixing", "a"], "--style-mixing a"),
    (["--seeds", "3", "--interpolate", "w"], "--interpolate needs at least two --seeds"),
    (["--class", "1"], "--class"),
    (["--projected-w", "x.npz", "--seeds", "0"], "--seeds does not apply to --projected-w"),
    (["--projected-w", "x.npz", "--interpolate", "z"], "--interpolate z"),
]


@pytest.mark.parametrize("flags, expected", BAD_FLAGS, ids=[" ".join(f) for f, _ in BAD_FLAGS])
def test_bad_flags_give_one_clean_line(ckpt, tmp_path, capsys, flags, expected):
    out = tmp_path / "out"
    rc, printed, err = run(capsys, ckpt, "--out", out, *flags)
    assert rc == 2 and expected in err, err
    assert err.startswith("ffhq-tools generate: error:") and len(err.strip().splitlines()) == 1
    assert "Traceback" not in err and not (out / "samples").exists()


def _hdf5(path: Path) -> None:
    with h5py.File(path, "w") as f:
        f.create_dataset("images", data=np.zeros((2, 3, 8, 8), np.uint8))


def _zip_dataset(path: Path) -> None:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("dataset.json", "{}")
        archive.writestr("00000/img00000000.png", b"")


NOT_CHECKPOINTS = {
    "dataset.h5": (_hdf5, "this is an HDF5 dataset, not a checkpoint"),
    "photos": (lambda p: p.mkdir(), "this is a folder, not a checkpoint"),
    "faces.zip": (_zip_dataset, "this is a zip archive"),
    "projected_w.npz": (lambda p: np.savez(p, w=np.zeros((1, 6, 32), np.float32)),
                        "pass it with --projected-w"),
    "face.png": (lambda p: Image.new("RGB", (4, 4)).save(p), "this is an image"),
    "missing.pt": (lambda p: None, "checkpoint not found"),
}


@pytest.mark.parametrize("name", sorted(NOT_CHECKPOINTS))
def test_a_file_that_is_not_a_checkpoint_is_named(tmp_path, capsys, name):
    make, expected = NOT_CHECKPOINTS[name]
    path = tmp_path / name
    make(path)
    rc, _, err = run(capsys, path, "--out", tmp_path / "out")
    assert rc == 2 and expected in err and str(path) in err, err
    assert len(err.strip().splitlines()) == 1
    if name == "dataset.h5":
        assert "import-checkpoint dataset.h5" not in err


def test_an_out_that_is_a_file_is_refused(ckpt, tmp_path, capsys):
    target = tmp_path / "notes.txt"
    target.write_text("mine")
    rc, _, err = run(capsys, ckpt, "--out", target, "--seeds", "0")
    assert rc == 2 and f"--out {target}: exists and is not a folder" in err
    assert target.read_text() == "mine"


def test_default_batch_is_a_pixel_budget():
    from models.generate_cli import default_batch

    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert [default_batch(cpu, r) for r in (16, 256, 512, 1024)] == [32, 32, 16, 4]
    assert [default_batch(cuda, r) for r in (256, 1024)] == [32, 8]

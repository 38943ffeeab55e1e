"""A new user's first week, from the command line: pack reruns after a bad image, the hints
of `generate` on a dataset given as a checkpoint (align's reports: test_align_rejects.py)."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
from PIL import Image

from ffhq_tools.cli import main


def image_folder(folder: Path, count: int, size: int = 16) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.RandomState(0)
    for i in range(count):
        Image.fromarray(rng.randint(0, 256, (size, size, 3), dtype=np.uint8)).save(
            folder / f"img{i:03d}.png")


def test_pack_rerun_after_removing_a_bad_image_restarts_the_empty_partial(tmp_path, capsys):
    image_folder(tmp_path / "src", 6)
    bad = tmp_path / "src" / "img003.png"
    bad.write_bytes(b"not a png at all")
    assert main(["pack", str(tmp_path / "src"), str(tmp_path / "d.h5")]) == 2
    assert "img003.png" in capsys.readouterr().err
    assert (tmp_path / ".d.h5.partial").exists()
    bad.unlink()
    assert main(["pack", str(tmp_path / "src"), str(tmp_path / "d.h5")]) == 0
    err = capsys.readouterr().err
    notices = [line for line in err.splitlines() if "starting over" in line]
    assert len(notices) == 1 and ".d.h5.partial" in notices[0]
    assert not (tmp_path / ".d.h5.partial").exists()
    with h5py.File(tmp_path / "d.h5") as f:
        assert f["data16x16"].shape[0] == 5 and f.attrs["complete"]


def test_pack_partial_with_finished_images_and_other_inputs_says_how_to_start_over(tmp_path,
                                                                                    capsys):
    image_folder(tmp_path / "src", 20)
    bad = tmp_path / "src" / "img018.png"
    bad.write_bytes(b"")
    assert main(["pack", str(tmp_path / "src"), str(tmp_path / "d.h5")]) == 2
    capsys.readouterr()
    partial = tmp_path / ".d.h5.partial"
    with h5py.File(partial) as f:
        assert f.attrs["written"] == 16
    bad.unlink()
    assert main(["pack", str(tmp_path / "src"), str(tmp_path / "d.h5")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert f"delete {partial}" in err and "16 finished images" in err
    partial.unlink()
    assert main(["pack", str(tmp_path / "src"), str(tmp_path / "d.h5")]) == 0


def test_data_given_as_a_checkpoint_is_named_with_the_flag_that_takes_it(tmp_path, capsys):
    image_folder(tmp_path / "faces", 5)
    assert main(["pack", str(tmp_path / "faces"), str(tmp_path / "dataset.h5")]) == 0
    assert main(["export", str(tmp_path / "dataset.h5"), "--format", "stylegan2-ada-zip",
                 "--out", str(tmp_path / "faces.zip")]) == 0
    capsys.readouterr()
    expected = {
        "dataset.h5": "this is an HDF5 dataset, not a checkpoint; use it as --data",
        "faces": "this is a folder of 5 images, not a checkpoint",
        "faces.zip": "this is a zip archive (a stylegan2-ada dataset?), not a checkpoint; "
                     f"pack it (ffhq-tools pack {tmp_path / 'faces.zip'} faces.h5)",
    }
    for name, message in expected.items():
        path = tmp_path / name
        for argv in (["generate", str(path), "--out", str(tmp_path / "gen")],
                     ["metrics", "--metrics", "fid50k_full", "--network", str(path),
                      "--data", str(tmp_path / "dataset.h5"), "--num-gen", "4"]):
            assert main(argv) == 2, argv
            err = capsys.readouterr().err.strip()
            assert message in err and len(err.splitlines()) == 1, (argv, err)
            assert "import-checkpoint" not in err.split("official .pkl")[0], err
    assert not (tmp_path / "gen").exists()


def test_train_dry_run_shows_the_resolved_device_threads_and_run_folder(tmp_path, capsys):
    import json

    import torch

    image_folder(tmp_path / "faces", 4)
    assert main(["pack", str(tmp_path / "faces"), str(tmp_path / "faces.h5")]) == 0
    (tmp_path / "runs" / "00003-earlier").mkdir(parents=True)
    capsys.readouterr()
    assert main(["train", "--config", "tiny", "--data", str(tmp_path / "faces.h5"),
                 "--outdir", str(tmp_path / "runs"), "--threads", "1", "--dry-run"]) == 0
    resolved = json.loads(capsys.readouterr().out)["resolved"]
    assert resolved["device"] == ("cuda:0" if torch.cuda.is_available() else "cpu")
    assert resolved["threads"] == 1 and resolved["continues_run"] is False
    assert resolved["run_dir"] == str(tmp_path / "runs" / "00004-faces-tiny")
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["00003-earlier"]

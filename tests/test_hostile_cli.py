"""Hostile and broken inputs (issue 20): each case is a row of a table, reproduced through the
CLI, which must answer with exit 2 and one line naming the file, never a traceback."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from train_standins import (
    one_thread,  # noqa: F401 - autouse fixture
    write_shapes_h5,
)

from ffhq_tools.cli import main

REPO = Path(__file__).resolve().parents[1]


def assert_clean_error(code: int, err: str, name: str) -> None:
    """Exit 2, one line on stderr that names `name`, no traceback."""
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, err
    assert "Traceback" not in err, err
    assert len(lines) == 1 and name in lines[0], err


# ---------------------------------------------------------------- train --resume RUN_DIR


@pytest.fixture(scope="module")
def short_run(tmp_path_factory):
    """A finished run folder started with non-default kimg, batch, tick, snap, seed, grid."""
    root = tmp_path_factory.mktemp("runs")
    data = write_shapes_h5(root / "shapes.h5", count=16, resolution=16)
    started = ["--kimg", "0.016", "--batch", "8", "--tick", "0.008", "--snap", "1",
               "--seed", "3", "--grid", "4", "--mirror"]
    assert main(["train", "--config", "tiny", "--data", str(data), *started,
                 "--channel-max", "16", "--workers", "0", "--device", "cpu", "--no-progress",
                 "--outdir", str(root / "out")]) == 0
    return data, next((root / "out").glob("00000-*"))


FROZEN = {"kimg": 0.016, "batch": 8, "tick_kimg": 0.008, "snap": 1, "seed": 3,
          "grid_size": 4, "mirror": True, "precision": "fp32"}


def _resumed(short_run, capsys, *flags):
    data, run = short_run
    assert main(["train", "--data", str(data), "--resume", str(run), *flags, "--dry-run"]) == 0
    out, err = capsys.readouterr()
    return json.loads(out)["options"], err


def test_resume_keeps_the_frozen_options(short_run, capsys):
    options, err = _resumed(short_run, capsys)
    assert {k: options[k] for k in FROZEN} == FROZEN
    assert options["config"] == "tiny" and "overrides" not in err


@pytest.mark.parametrize("flags, field, value", [
    (["--kimg", "0.032"], "kimg", 0.032),
    (["--batch", "4"], "batch", 4),
    (["--tick", "0.004"], "tick_kimg", 0.004),
    (["--snap", "50"], "snap", 50),  # the old default, given explicitly, still overrides
    (["--seed", "0"], "seed", 0),
])
def test_resume_flag_given_again_overrides_and_is_reported(short_run, capsys, flags, field,
                                                           value):
    options, err = _resumed(short_run, capsys, *flags)
    assert options[field] == value
    assert {k: options[k] for k in FROZEN if k != field} == {k: v for k, v in FROZEN.items()
                                                           if k != field}
    assert f"{field} {value!r} overrides the run's {FROZEN[field]!r}" in err


def test_resume_override_is_logged_in_the_run(short_run, capsys, tmp_path):
    import shutil

    data, run = short_run
    copy = tmp_path / run.name
    shutil.copytree(run, copy)
    assert main(["train", "--data", str(data), "--resume", str(copy), "--kimg", "0.024",
                 "--workers", "0", "--device", "cpu", "--no-progress"]) == 0
    log = (copy / "log.txt").read_text()
    assert "kimg 0.024 overrides the run's 0.016" in log
    assert sorted(p.name for p in copy.glob("network-snapshot-*.pt"))[-1] == \
        "network-snapshot-000000.024.pt"
    assert "overrides" in capsys.readouterr().err


def test_resume_of_a_folder_with_broken_options_json(short_run, capsys, tmp_path):
    import shutil

    data, run = short_run
    copy = tmp_path / run.name
    shutil.copytree(run, copy)
    (copy / "options.json").chmod(0o644)
    (copy / "options.json").write_bytes(b"\xff\xfe{")
    code = main(["train", "--data", str(data), "--resume", str(copy), "--dry-run"])
    assert_clean_error(code, capsys.readouterr().err, "options.json")

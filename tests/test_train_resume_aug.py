"""`train --resume RUN_DIR` of an augmented run keeps its --aug/--augpipe/--p/--target unless
given again (issue 17); the carried values are reported."""

from __future__ import annotations

import json

import pytest
from train_standins import write_shapes_h5

from ffhq_tools.cli import main


@pytest.fixture(scope="module")
def ada_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    data = write_shapes_h5(root / "shapes.h5", count=16, resolution=16)
    assert main(["train", "--config", "tiny", "--data", str(data), "--kimg", "0.016",
                 "--batch", "8", "--aug", "ada", "--augpipe", "bg", "--p", "0.25",
                 "--target", "0.7", "--channel-max", "16", "--workers", "0", "--device", "cpu",
                 "--no-progress", "--outdir", str(root / "out")]) == 0
    return data, next((root / "out").glob("00000-*"))


def _resumed(ada_run, capsys, *flags):
    data, run = ada_run
    assert main(["train", "--data", str(data), "--resume", str(run), *flags, "--dry-run"]) == 0
    out, err = capsys.readouterr()
    return json.loads(out)["options"], err


def _aug(options):
    return {k: options[k] for k in ("aug", "augpipe", "p", "target")}


def test_resume_continues_with_the_runs_augmentation(ada_run, capsys):
    options, err = _resumed(ada_run, capsys)
    assert _aug(options) == {"aug": "ada", "augpipe": "bg", "p": 0.25, "target": 0.7}
    assert "augmentation continues with the run's --aug ada --augpipe bg --p 0.25 " \
           "--target 0.7" in err


def test_resume_with_a_new_target_overrides_only_it(ada_run, capsys):
    options, err = _resumed(ada_run, capsys, "--target", "0.5")
    assert _aug(options) == {"aug": "ada", "augpipe": "bg", "p": 0.25, "target": 0.5}
    assert "target 0.5 overrides the run's 0.7" in err


def test_resume_with_another_aug_mode_is_refused_in_one_line(ada_run, capsys):
    data, run = ada_run
    assert main(["train", "--data", str(data), "--resume", str(run), "--aug", "noaug",
                 "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert "aug 'noaug' overrides the run's 'ada'" in err
    assert "was trained with --aug ada" in err and "Traceback" not in err

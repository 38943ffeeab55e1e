"""Run directories, seeding and device selection."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from ffhq_tools import runs, runtime
from ffhq_tools.errors import FfhqToolsError

CLAIM_MANY = """
import sys
from ffhq_tools.runs import create_run_dir
for _ in range(15):
    print(create_run_dir(sys.argv[1], sys.argv[2]).name, flush=True)
"""


def test_sequential_numbering_and_desc_sanitising(tmp_path):
    first = runs.create_run_dir(tmp_path, "ffhq/stylegan2 F")
    second = runs.create_run_dir(tmp_path, "x")
    assert first.name == "00000-ffhq_stylegan2_F"
    assert second.name == "00001-x"
    (tmp_path / "00041-by-hand").mkdir()
    assert runs.create_run_dir(tmp_path, "y").name == "00042-y"


def test_concurrent_processes_never_share_a_number(tmp_path):
    procs = [subprocess.Popen([sys.executable, "-c", CLAIM_MANY, str(tmp_path), f"p{i}"],
                              stdout=subprocess.PIPE, text=True) for i in range(3)]
    names = [line for p in procs for line in p.communicate()[0].split()]
    assert all(p.returncode == 0 for p in procs)
    numbers = [name.split("-")[0] for name in names]
    assert len(names) == 45 and len(set(numbers)) == 45


def test_options_are_frozen(tmp_path):
    run_dir = runs.create_run_dir(tmp_path, "t")
    runs.write_options(run_dir, {"seed": 3, "kimg": 10})
    assert runs.read_options(run_dir) == {"seed": 3, "kimg": 10}
    with pytest.raises(FfhqToolsError, match="frozen"):
        runs.write_options(run_dir, {"seed": 4})
    assert json.loads((run_dir / "options.json").read_text())["seed"] == 3


def test_capture_log_copies_stdout_and_stderr(tmp_path, capsys):
    with runs.capture_log(tmp_path) as log:
        print("tick 1")
        print("warning", file=sys.stderr)
    assert log.read_text() == "tick 1\nwarning\n"
    assert "tick 1" in capsys.readouterr().out


def test_seeding_is_reproducible_with_rank_offsets():
    import numpy as np
    import torch

    runtime.seed_everything(7)
    a = (np.random.rand(), torch.rand(1).item())
    runtime.seed_everything(7)
    b = (np.random.rand(), torch.rand(1).item())
    runtime.seed_everything(7, rank=1)
    c = (np.random.rand(), torch.rand(1).item())
    assert a == b and a != c


def test_device_selection():
    import torch

    assert runtime.select_device("cpu") == torch.device("cpu")
    assert runtime.select_device("auto").type in ("cpu", "cuda")
    with pytest.raises(FfhqToolsError, match="--device"):
        runtime.select_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(FfhqToolsError, match="CUDA is not available"):
            runtime.select_device("cuda:0")


def test_newest_snapshot_is_the_highest_padded_name(tmp_path):
    assert runs.newest_snapshot(tmp_path) is None
    for kimg in (0.016, 10.0, 2.5):  # the trainer's kimg names, zero-padded
        (tmp_path / f"network-snapshot-{kimg:010.3f}.pt").touch()
    (tmp_path / "network-snapshot-notes.txt").touch()
    assert runs.newest_snapshot(tmp_path).name == "network-snapshot-000010.000.pt"
    (tmp_path / "00003-run").mkdir()
    (tmp_path / "00003-run" / "network-snapshot-000001.pt").touch()
    assert runs.newest_snapshot(tmp_path, f"*/{runs.SNAPSHOT_GLOB}").parent.name == "00003-run"

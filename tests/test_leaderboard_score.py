"""`ffhq-tools score` on a real checkpoint file: rows with provenance, resume, table checks."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from ports import free_port

from ffhq_tools.atomic import read_jsonl
from ffhq_tools.cli import main
from leaderboards.board import parse_weights, read_board
from leaderboards.score import metrics_for_table


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    from models.checkpoint import save_checkpoint
    from models.configs import build_networks, get_config

    torch.manual_seed(0)
    config = get_config("tiny")
    G, D = build_networks(config, 16)
    path = tmp_path_factory.mktemp("ckpt") / "network-snapshot-000002.500.pt"
    save_checkpoint(path, config={"model": config.to_dict(), "resolution": 16}, G=G, D=D)
    return path


@pytest.fixture(scope="module")
def real_folder(tmp_path_factory, astronaut):
    folder = tmp_path_factory.mktemp("real")
    face = Image.fromarray(astronaut[20:240, 140:360])
    for i in range(6):
        face.rotate(4 * i - 10).resize((16, 16), Image.LANCZOS).save(folder / f"{i}.png")
    return folder


def test_metrics_a_table_needs_for_a_config():
    assert metrics_for_table("stylegan-table3", "stylegan-B") == ["ppl_zfull", "ppl_zend", "ls"]
    assert metrics_for_table("stylegan-table4", "traditional-8") == [
        "fid50k", "ppl_zfull", "ppl_zend", "ls", "ppl_wfull", "ppl_wend"]
    with pytest.raises(Exception, match="not a row of table stylegan-table3"):
        metrics_for_table("stylegan-table3", "tiny")


@pytest.mark.slow
def test_score_appends_rows_with_provenance_and_resumes(tiny_checkpoint, real_folder, tmp_path,
                                                        capsys):
    board = tmp_path / "board.csv"
    argv = ["score", str(tiny_checkpoint), "--data", str(real_folder), "--metrics",
            "fd_dlib_face,pr_dlib_face", "--num-gen", "8", "--batch", "8", "--board", str(board),
            "--dataset", "astronaut", "--no-progress", "--device", "cpu"]
    assert main(argv) == 0
    frame = read_board(board)
    assert sorted(frame["result"]) == ["fd_dlib_face", "pr_dlib_face_precision",
                                       "pr_dlib_face_recall"]
    row = frame.iloc[0]
    assert row["config"] == "tiny" and row["kimg"] == 2.5 and row["dataset"] == "astronaut"
    assert row["num_gen"] == 8 and row["num_real"] == 6
    assert len(row["checkpoint_sha256"]) == 64
    assert list(parse_weights(row["weights_sha256"])) == ["dlib-face-resnet"]
    assert np.isfinite(frame["value"]).all()
    records = read_jsonl(board.with_name("board.records.jsonl"))
    assert [r["metric"] for r in records] == ["fd_dlib_face", "pr_dlib_face"]
    capsys.readouterr()
    assert main(argv) == 0  # a rerun finds the rows and computes nothing
    assert "already on the board" in capsys.readouterr().err
    assert len(read_board(board)) == 3


def test_score_with_a_table_refuses_a_config_outside_it(tiny_checkpoint, tmp_path, capsys):
    assert main(["score", str(tiny_checkpoint), "--table", "stylegan2-table1",
                 "--board", str(tmp_path / "b.csv")]) == 2
    assert "--config" in capsys.readouterr().err


def test_missing_weights_fail_score_with_the_fetch_command(tiny_checkpoint, real_folder,
                                                           tmp_path, capsys):
    assert main(["score", str(tiny_checkpoint), "--data", str(real_folder), "--metrics",
                 "fid50k_full", "--board", str(tmp_path / "b.csv"), "--device", "cpu"]) == 2
    assert "ffhq-tools weights fetch inception-fid" in capsys.readouterr().err


@pytest.mark.slow
def test_score_under_torchrun_matches_one_process(tiny_checkpoint, real_folder, tmp_path):
    import os
    import subprocess
    import sys

    common = [str(tiny_checkpoint), "--data", str(real_folder), "--metrics",
              "fd_dlib_face,pr_dlib_face", "--num-gen", "10", "--batch", "4", "--no-progress",
              "--device", "cpu"]
    single, double = tmp_path / "one.csv", tmp_path / "two.csv"
    assert main(["score", *common, "--board", str(single)]) == 0
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                    "--master_addr", "127.0.0.1", "--master_port", str(free_port()),
                    "-m", "ffhq_tools", "score", *common, "--board", str(double)],
                   check=True, env=env, timeout=300, cwd=os.getcwd())
    one, two = read_board(single), read_board(double)
    assert len(two) == len(one) == 3  # rank 1 wrote nothing
    assert (two["num_gen"] == 10).all()
    for result in one["result"]:
        a = one.loc[one["result"] == result, "value"].item()
        b = two.loc[two["result"] == result, "value"].item()
        assert b == pytest.approx(a, rel=1e-6, abs=1e-9), result


def test_skipping_missing_weights_names_the_entry_and_the_fetch_command(tiny_checkpoint,
                                                                        real_folder, tmp_path):
    from leaderboards.score import ScoreSettings, Skipped, checkpoint_info, score_generator
    from models.checkpoint import load_generator

    settings = ScoreSettings(board=tmp_path / "b.csv", dataset="d", device="cpu",
                             skip_missing_weights=True, progress=False)
    outcome = score_generator(load_generator(tiny_checkpoint), checkpoint_info(tiny_checkpoint),
                              real_folder, ["fid50k_full", "kid50k_full", "ls"], settings)
    assert outcome.skipped[:2] == [
        Skipped("fid50k_full", "inception-fid", "ffhq-tools weights fetch inception-fid"),
        Skipped("kid50k_full", "inception-fid", "ffhq-tools weights fetch inception-fid")]
    assert outcome.skipped[2] == Skipped(
        "ls", "celebahq-classifier-00 .. celebahq-classifier-39 (40 files)",
        "ffhq-tools weights fetch celebahq-classifier-00 .. celebahq-classifier-39 "
        "(every name: ffhq-tools weights list)")
    assert not outcome.rows and not (tmp_path / "b.csv").exists()


def test_score_checks_every_network_before_computing_anything(tiny_checkpoint, real_folder,
                                                              tmp_path, capsys):
    """fd_dlib_face could run (dlib ships offline) but pr50k3 and ppl lack their VGG16 files:
    nothing is computed and the board is never created."""
    board = tmp_path / "b.csv"
    assert main(["score", str(tiny_checkpoint), "--data", str(real_folder), "--metrics",
                 "fd_dlib_face,pr50k3,ppl_wend,ls", "--board", str(board), "--device", "cpu",
                 "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "nothing was computed" in err and "fd_dlib_face" not in err
    assert "pr50k3 needs vgg16-ts" in err and "ppl_wend needs vgg16-ts" in err
    assert "ls needs celebahq-classifier-00 .. celebahq-classifier-39 (40 files)" in err
    assert not board.exists()


def test_a_metric_runs_with_any_one_of_its_weight_options(tmp_path):
    from eval.registry import get_metric

    vgg = tmp_path / "vgg16.pt"
    vgg.write_bytes(b"not checked before use")
    spec = get_metric("ppl_wend")
    assert spec.missing_weights({}) == ["vgg16-ts"]
    assert spec.missing_weights({"vgg16-ts": vgg}) == []
    assert get_metric("fid50k").missing_weights({}) == ["inception-fid"]

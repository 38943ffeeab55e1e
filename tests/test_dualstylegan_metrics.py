"""Scoring a DualStyleGAN for one fixed exemplar (`score` / `metrics` with --style-id): the
wrapped generator renders what stylize renders for that exemplar, every row carries the
exemplar in its protocol and its own generator hash (so two exemplars never share a board
cell, and the same one is reused), and bad exemplar flags name the flag."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from dualstylegan_fixtures import SMALL, small_net, write_code_dict
from eval_helpers import photos, random_crops, seeded_inception_file, write_folder

from ffhq_tools.cli import main
from leaderboards.board import read_board
from models.checkpoint import save_checkpoint
from models.dualstylegan_codes import Code, CodeSpace
from models.dualstylegan_exemplar import ExemplarChoice, with_fixed_exemplar
from models.stylize import StylizeSettings, default_weights, stylize


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("dsg-metrics")
    net = small_net()
    save_checkpoint(folder / "dsg.pt", config={"model": SMALL.to_dict(), "resolution": 64},
                    G=net, G_ema=net)
    codes = write_code_dict(folder / "exstyle_code.npy", ["s0.jpg", "s1.jpg"], net.num_ws, 32,
                            seed=3)
    real = write_folder(folder / "real", random_crops(2, 64, 1, photos()))
    inception = seeded_inception_file(tmp_path_factory)
    return folder, net, codes, real, inception


def test_fixed_exemplar_generator_renders_what_stylize_renders(files):
    folder, net, codes, *_ = files
    info = {"sha256": "ab" * 32, "config": "tiny"}
    G, scored = with_fixed_exemplar(net, info, ExemplarChoice(style_id=1), folder / "dsg.pt")
    z = torch.from_numpy(np.random.RandomState(0).randn(2, 32).astype(np.float32))
    with torch.no_grad():
        images = G(z, None, noise_mode="const")
    settings = StylizeSettings(tuple(default_weights(net)), truncation=1.0)
    exemplar = Code("s1.jpg", codes["s1.jpg"], CodeSpace.Z_PLUS)
    for i in range(2):
        z_plus = Code("z", z[i:i + 1, None].repeat(1, net.num_ws, 1).numpy(), CodeSpace.Z_PLUS)
        torch.testing.assert_close(images[i:i + 1], stylize(net, z_plus, exemplar, settings),
                                   atol=1e-5, rtol=0)
    assert scored["exemplar"]["style_id"] == 1 and scored["exemplar"]["name"] == "s1.jpg"
    assert scored["protocol"]["exemplar"] == scored["exemplar"]
    assert scored["checkpoint_file_sha256"] == info["sha256"] != scored["sha256"]
    _, other = with_fixed_exemplar(net, info, ExemplarChoice(style_id=0), folder / "dsg.pt")
    _, reweighted = with_fixed_exemplar(net, info, ExemplarChoice(style_id=1, weights="1x10"),
                                        folder / "dsg.pt")
    assert len({scored["sha256"], other["sha256"], reweighted["sha256"]}) == 3


def score(files, board, *extra):
    folder, _, _, real, inception = files
    return main(["score", str(folder / "dsg.pt"), "--data", str(real), "--metrics", "fid50k",
                 "--num-gen", "2", "--max-real", "2", "--batch", "2", "--board", str(board),
                 "--no-progress", "--device", "cpu", "--stats-cache", str(board.parent / "st"),
                 "--weights", f"inception-fid={inception}", *extra])


def test_score_rows_carry_the_exemplar_and_never_mix(files, tmp_path, capsys):
    board = tmp_path / "board.csv"
    assert score(files, board, "--style-id", "0") == 0
    assert score(files, board, "--style-id", "1") == 0
    capsys.readouterr()
    assert score(files, board, "--style-id", "1") == 0  # already on the board
    assert "already on the board" in capsys.readouterr().err
    frame = read_board(board)
    assert len(frame) == 2 and frame["checkpoint_sha256"].nunique() == 2
    protocols = [json.loads(p) for p in frame["protocol"]]
    assert [p["exemplar"]["style_id"] for p in protocols] == [0, 1]
    assert [p["exemplar"]["name"] for p in protocols] == ["s0.jpg", "s1.jpg"]
    assert protocols[0]["exemplar"]["weights"] == [0.75] * 7 + [1.0] * 3


@pytest.mark.parametrize("extra,message", [
    ([], "a DualStyleGAN is scored for one fixed exemplar; give --style-id N"),
    (["--style-id", "5"], "--style-id 5: .*exstyle_code.npy holds 2 exemplar codes"),
    (["--style-id", "0", "--style-weight", "1x9"],
     "--style-weight '1x9': 9 weights, but the model has 10"),
    (["--style-id", "0", "--exstyle", "missing.npy"], "code file not found: missing.npy"),
])
def test_bad_exemplar_flags_name_the_flag(files, tmp_path, capsys, extra, message):
    assert score(files, tmp_path / "b.csv", *extra) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1
    assert __import__("re").search(message, err), err
    assert not (tmp_path / "b.csv").exists()


def test_exemplar_flags_on_another_network_are_refused(files):
    G = torch.nn.Module()
    with pytest.raises(Exception, match="apply to DualStyleGAN checkpoints"):
        with_fixed_exemplar(G, {}, ExemplarChoice(style_id=0), files[0] / "x.pt")
    assert with_fixed_exemplar(G, {"a": 1}, ExemplarChoice(), "x.pt") == (G, {"a": 1})


def test_metrics_verb_row_records_the_exemplar(files, tmp_path, capsys):
    folder, _, _, real, inception = files
    assert main(["metrics", "--network", str(folder / "dsg.pt"), "--data", str(real),
                 "--metrics", "fid50k", "--num-gen", "2", "--max-real", "2", "--batch-size",
                 "2", "--no-run-dir", "--no-progress", "--device", "cpu", "--style-id", "1",
                 "--stats-cache", str(tmp_path / "st"),
                 "--weights", f"inception-fid={inception}"]) == 0
    row = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert row["protocol"]["exemplar"]["style_id"] == 1
    assert row["network"]["exemplar"]["name"] == "s1.jpg"
    assert np.isfinite(row["results"]["fid"])

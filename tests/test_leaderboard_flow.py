"""The researcher's flow: score --table -> leaderboard table -> compare (refusal, then deltas),
with a real registered metric (fid50k) on a real checkpoint and an architecture-exact random
Inception (not the published weights: compare must notice)."""

from __future__ import annotations

import pytest
import torch
from eval_helpers import photos, random_crops, write_folder

from ffhq_tools.atomic import read_jsonl
from ffhq_tools.cli import main
from leaderboards.board import read_board


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    from eval.features.inception import FIDInception
    from models.checkpoint import save_checkpoint
    from models.configs import build_networks, get_config

    root = tmp_path_factory.mktemp("flow")
    torch.manual_seed(0)
    inception = root / "pt_inception-2015-12-05-6726825d.pth"
    torch.save(FIDInception().state_dict(), inception)
    config = get_config("tiny")
    G, D = build_networks(config, 16)
    ckpt = root / "network-snapshot-000012.000.pt"
    save_checkpoint(ckpt, config={"model": config.to_dict(), "resolution": 16}, G=G, D=D)
    real = write_folder(root / "real", random_crops(6, 16, 1, photos()))
    return root, inception, ckpt, real


@pytest.mark.slow
def test_score_a_table_then_pivot_and_compare(setup, tmp_path, capsys):
    root, inception, ckpt, real = setup
    board = tmp_path / "board.csv"
    assert main(["score", str(ckpt), "--data", str(real), "--table", "stylegan-table1",
                 "--config", "stylegan-F", "--dataset", "mini", "--num-gen", "4",
                 "--max-real", "4", "--batch", "4", "--board", str(board), "--no-progress",
                 "--device", "cpu", "--stats-cache", str(tmp_path / "stats"),
                 "--weights", f"inception-fid={inception}"]) == 0
    rows = read_board(board)
    assert list(rows["metric"]) == ["fid50k"] and list(rows["config"]) == ["stylegan-F"]
    fid = rows["value"].item()
    record = read_jsonl(tmp_path / "board.records.jsonl")[0]
    assert record["results"]["fid"] == fid and record["protocol"]["num_gen"] == 4
    assert rows["mode"].item() == "tf" and rows["kimg"].item() == 12.0

    capsys.readouterr()
    assert main(["leaderboard", "table", "stylegan-table1", "--board", str(board),
                 "--dataset", "FFHQ=mini", "--format", "csv"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[-1].startswith(f"F,stylegan-F,,{fid},")
    # a 4-image fid50k of a 16 px network with custom weights says so in its notes
    for reason in ("num_gen 4 (protocol 50,000)", "reals 4 (protocol 50,000)",
                   "resolution 16 px (FFHQ: 1024 px)", "registry expects 6726825d"):
        assert reason in table[-1]

    assert main(["leaderboard", "compare", "--baseline", "stylegan-table1", "--board",
                 str(board), "--dataset", "FFHQ=mini"]) == 2
    assert "registry expects 6726825d" in capsys.readouterr().err
    assert main(["leaderboard", "compare", "--baseline", "stylegan-table1", "--board",
                 str(board), "--dataset", "FFHQ=mini", "--allow-mixed", "--format", "csv"]) == 0
    line = capsys.readouterr().out.splitlines()[1].split(",")
    assert line[:7] == ["F", "stylegan-F", "FFHQ", "FFHQ", "fid50k", str(fid), "4.4"]
    assert float(line[7]) == pytest.approx(fid - 4.40)

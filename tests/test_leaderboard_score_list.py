"""`score --list`: every metric with its weights entries and whether they are on this machine,
the DINOv2 / CLIP metrics among them; a missing CKPT is a one-line error."""

from __future__ import annotations

from embedding_helpers import register_file, write_dinov2_file

from ffhq_tools import cli
from leaderboards.score import metric_weights_status


def _status(name: str) -> str:
    return next(e["status"] for e in metric_weights_status() if e["metric"] == name)


def test_status_follows_the_weights_on_this_machine(tmp_path, monkeypatch):
    assert _status("fd_dinov2_50k") == "missing dinov2-vit-l-14"
    assert _status("fid_clip50k") == "missing clip-vit-b-32"
    assert _status("fd_dinov2b_50k") == "missing dinov2-vit-b-14"
    path = write_dinov2_file(tmp_path, "dinov2-vit-b-14", seed=1)
    register_file(monkeypatch, "dinov2-vit-b-14", path)
    assert _status("fd_dinov2b_50k") == "ready"
    assert _status("fd_dinov2_50k") == "missing dinov2-vit-l-14"


def test_score_list_prints_every_metric_and_needs_no_checkpoint(capsys):
    assert cli.main(["score", "--list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    listed = {line.split()[0]: line for line in lines}
    for name in ("fd_dinov2_50k", "fid_clip50k", "kd_dinov2_50k", "prdc_dinov2_10k",
                 "fd_inf", "authpct", "fld", "fid50k_full"):
        assert name in listed
    assert "missing dinov2-vit-l-14" in listed["prdc_dinov2_10k"]
    assert cli.main(["score"]) == 2
    assert "give at least one CKPT" in capsys.readouterr().err


def test_demo_style_scoring_skips_fld_without_held_out_images(tmp_path):
    from leaderboards.score import ScoreSettings, score_generator

    settings = ScoreSettings(board=tmp_path / "board.csv", dataset="d", device="cpu",
                             skip_missing_weights=True, progress=False)
    info = {"path": "G.pt", "sha256": "0" * 64, "config": "tiny", "kimg": 0.0}
    outcome = score_generator(object(), info, tmp_path, ["fld"], settings)
    assert [(s.metric, s.weights) for s in outcome.skipped] == [("fld", "held-out real images")]
    assert "--test-data" in outcome.skipped[0].fix and not outcome.rows

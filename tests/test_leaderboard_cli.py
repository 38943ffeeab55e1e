"""`ffhq-tools leaderboard ...` verbs end to end, plots and the HTML report."""

from __future__ import annotations

import pytest
from PIL import Image

from ffhq_tools.atomic import append_jsonl
from ffhq_tools.cli import main
from ffhq_tools.errors import FfhqToolsError
from leaderboards.board import COLUMNS, append_rows
from leaderboards.plots import load_metric_history, plot_metric_history
from leaderboards.report import Section, render_report, write_report

SHA = "6726825d" + "0" * 56


def _row(config, result, value, mode="tf"):
    row = {c: "" for c in COLUMNS}
    row.update(config=config, result=result, value=value, dataset="FFHQ", mode=mode,
               date="2026-01-01T00:00:00", metric="fid50k", checkpoint=f"{config}.pt",
               weights_sha256=f"inception-fid={SHA}", feature_network="inception-fid")
    return row


@pytest.fixture
def board(tmp_path):
    path = tmp_path / "board.csv"
    append_rows(path, [_row("stylegan-A", "fid50k", 9.0), _row("stylegan-F", "fid50k", 4.0)])
    return path


def test_table_markdown_and_csv(board, tmp_path, capsys):
    assert main(["leaderboard", "table", "stylegan-table1", "--board", str(board)]) == 0
    out = capsys.readouterr().out
    assert "| A | stylegan-A | - | 9.00 |" in out and "| B | stylegan-B | - | - |" in out
    csv_path = tmp_path / "t1.csv"
    assert main(["leaderboard", "table", "stylegan-table1", "--board", str(board),
                 "--format", "csv", "--out", str(csv_path)]) == 0
    lines = csv_path.read_text().splitlines()
    assert lines[0] == "row,config,CelebA-HQ,FFHQ,notes" and lines[1] == "A,stylegan-A,,9.0,"


def test_compare_prints_deltas_and_plots(board, tmp_path, capsys):
    png = tmp_path / "bars.png"
    assert main(["leaderboard", "compare", "--baseline", "stylegan-table1", "--board", str(board),
                 "--format", "csv", "--plot", str(png)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("row,config,column,dataset,result,ours,published,delta")
    a_line = next(line for line in out if line.startswith("A,"))
    assert ",9.0,8.04," in a_line and ",0.96" in a_line
    assert Image.open(png).size[0] > 100


def test_plot_bars_against_a_baseline(board, tmp_path):
    out = tmp_path / "plots"
    assert main(["leaderboard", "plot", "--baseline", "stylegan-table1", "--board", str(board),
                 "--out", str(out)]) == 0
    assert Image.open(out / "stylegan-table1-vs-published.png").size[0] > 100
    assert main(["leaderboard", "plot", "--out", str(out)]) == 2


def test_compare_refusal_is_a_one_line_cli_error(tmp_path, capsys):
    path = tmp_path / "mixed.csv"
    append_rows(path, [_row("stylegan-A", "fid50k", 9.0),
                       _row("stylegan-B", "fid50k", 6.0, mode="clean")])
    assert main(["leaderboard", "compare", "--baseline", "stylegan-table1",
                 "--board", str(path)]) == 2
    assert "--allow-mixed" in capsys.readouterr().err
    assert main(["leaderboard", "compare", "--baseline", "stylegan-table1", "--board", str(path),
                 "--allow-mixed"]) == 0


def test_show_filters_and_rejects_unknown_columns(board, capsys):
    assert main(["leaderboard", "show", "--board", str(board), "--config", "stylegan-F",
                 "--columns", "config,value", "--csv"]) == 0
    assert capsys.readouterr().out == "config,value\nstylegan-F,4.0\n"
    assert main(["leaderboard", "show", "--board", str(board), "--columns", "nope"]) == 2


def test_metric_history_from_a_run_and_its_plot(tmp_path):
    run = tmp_path / "run"
    for kimg, fid in ((2.0, 50.0), (1.0, 80.0)):
        append_jsonl(run / "metric-fid50k.jsonl",
                     {"metric": "fid50k", "results": {"fid50k": fid}, "kimg": kimg})
    append_jsonl(run / "metric-pr50k3.jsonl",
                 {"metric": "pr50k3", "results": {"pr50k3_precision": 0.5},
                  "network": {"kimg": 2.0}})
    history = load_metric_history(run)
    assert history == {"fid50k": [(1.0, 80.0), (2.0, 50.0)], "pr50k3_precision": [(2.0, 0.5)]}
    assert main(["leaderboard", "plot", str(run), "--out", str(tmp_path / "plots")]) == 0
    assert Image.open(tmp_path / "plots" / "metrics-vs-kimg.png").format == "PNG"
    append_jsonl(run / "metric-bad.jsonl", {"metric": "bad", "results": {"x": 1.0}})
    with pytest.raises(FfhqToolsError, match="metric-bad.jsonl"):
        load_metric_history(run)
    assert load_metric_history(tmp_path / "empty") == {}
    (tmp_path / "empty").mkdir()
    assert main(["leaderboard", "plot", str(tmp_path / "empty"), "--out",
                 str(tmp_path / "plots")]) == 2


def test_plot_of_a_training_run_finds_its_losses_and_the_metrics_verbs_rows(tmp_path):
    runs = tmp_path / "runs"
    train = runs / "00003-faces-tiny"
    train.mkdir(parents=True)
    (train / "network-snapshot-0000001.000.pt").write_bytes(b"")
    for kimg, loss in ((0.5, 2.0), (1.0, 1.5)):
        append_jsonl(train / "stats.jsonl", {"tick": 0, "kimg": kimg, "Loss/G/loss": loss,
                                             "Loss/D/loss": loss / 2})
    scored = {"metric": "fid50k_full", "results": {"fid": 30.0},
              "network": {"path": "runs/00003-faces-tiny/network-snapshot-0000001.000.pt",
                          "kimg": 1.0}}
    other = {"metric": "fid50k_full", "results": {"fid": 99.0},
             "network": {"path": "runs/00007-else/network-snapshot-0000001.000.pt", "kimg": 1.0}}
    append_jsonl(runs / "00004-metrics-fid50k_full" / "metric-fid50k_full.jsonl", scored)
    append_jsonl(runs / "00008-metrics-fid50k_full" / "metric-fid50k_full.jsonl", other)
    assert load_metric_history(train) == {"fid50k_full": [(1.0, 30.0)]}
    out = tmp_path / "plots"
    assert main(["leaderboard", "plot", str(train), "--out", str(out)]) == 0
    for name in ("metrics-vs-kimg.png", "losses-vs-kimg.png"):
        assert Image.open(out / name).format == "PNG"


def test_report_escapes_text_and_embeds_images(tmp_path):
    import pandas as pd

    png = plot_metric_history({"fid": [(0.0, 2.0), (1.0, 1.0)]}, tmp_path / "p.png")
    section = Section("Metrics <b>")
    section.text("x < y & z").table(pd.DataFrame({"a": [1.5]})).image(png, "curve")
    html_text = render_report("Demo", [section, Section("Empty").items(["one"])])
    assert "x &lt; y &amp; z" in html_text and "Metrics &lt;b&gt;" in html_text
    assert "data:image/png;base64," in html_text and "<li>one</li>" in html_text
    assert 'href="#metrics--b"' in html_text and 'id="metrics--b"' in html_text
    path = write_report(tmp_path / "r.html", "Demo", [section])
    assert path.read_text().startswith("<!DOCTYPE html>")
    with pytest.raises(FfhqToolsError, match="missing.png"):
        Section("x").image(tmp_path / "missing.png")


def test_score_needs_exactly_one_of_table_or_metrics(tmp_path, capsys):
    ckpt = tmp_path / "c.pt"
    ckpt.write_bytes(b"x")
    assert main(["score", str(ckpt), "--board", str(tmp_path / "b.csv")]) == 2
    assert "--table" in capsys.readouterr().err

"""Rows are compared with the papers only when they follow the protocol: counts, the paper
dataset's size for `_full` protocols, resolution, registered weights."""

from __future__ import annotations

import json

import pytest
from test_leaderboard_tables import row

from leaderboards.board import append_rows, read_board
from leaderboards.conformance import row_deviations
from leaderboards.layouts import get_layout
from leaderboards.tables import MixedProvenanceError, compare, marked_table, to_markdown


def with_protocol(metric, **used):
    return {"metric": metric, "protocol": json.dumps(used)}


@pytest.mark.parametrize("metric,used,dataset", [
    ("fid50k_full", dict(num_gen=50_000, num_real=70_000, resolution=1024), "FFHQ"),
    ("fid50k", dict(num_gen=50_000, num_real=50_000, resolution=1024), "FFHQ"),
    ("kid50k_full", dict(num_gen=50_000, max_real=1_000_000, num_real=70_000), "FFHQ"),
    ("pr50k3", dict(num_gen=50_000, num_real=50_000, resolution=512), "LSUN Car"),
    ("ppl_wend", dict(num_samples=100_000, resolution=1024), "FFHQ"),
    ("fid50k_full", dict(num_gen=50_000, num_real=30_000), "CelebA-HQ"),
])
def test_protocol_runs_conform(metric, used, dataset):
    assert row_deviations(with_protocol(metric, **used), dataset) == []


def test_reduced_counts_and_resolution_are_named():
    found = row_deviations(with_protocol("fid50k", num_gen=64, num_real=19, resolution=32),
                           "FFHQ")
    assert found == ["num_gen 64 (protocol 50,000)", "reals 19 (protocol 50,000)",
                     "resolution 32 px (FFHQ: 1024 px)"]
    full = row_deviations(with_protocol("fid50k_full", num_gen=50_000, num_real=19), "FFHQ")
    assert full == ["reals 19 (FFHQ has 70,000)"]
    assert row_deviations(with_protocol("ppl_wend", num_samples=2000), "FFHQ") == [
        "num_samples 2,000 (protocol 100,000)"]
    assert row_deviations(with_protocol("fid49k", num_gen=1), "FFHQ") == [
        "'fid49k' is not a registered protocol"]


def reduced_board(tmp_path):
    path = tmp_path / "board.csv"
    small = row("stylegan-A", "fid50k", 8.0)
    small["protocol"] = json.dumps({"num_gen": 64, "num_real": 19})
    exact = row("stylegan-B", "fid50k", 5.0)
    exact["protocol"] = json.dumps({"num_gen": 50_000, "num_real": 50_000, "resolution": 1024})
    append_rows(path, [small, exact])
    return read_board(path)


def test_compare_refuses_an_fid50k_from_64_samples(tmp_path):
    board = reduced_board(tmp_path)
    layout = get_layout("stylegan-table1")
    with pytest.raises(MixedProvenanceError, match=r"num_gen 64 \(protocol 50,000\)"):
        compare(board, layout)
    table = compare(board, layout, allow_mixed=True).set_index("row")
    assert not table.loc["A", "comparable"] and table.loc["B", "comparable"]


def test_table_marks_the_deviating_cell_and_says_why(tmp_path):
    board = reduced_board(tmp_path)
    layout = get_layout("stylegan-table1")
    text = to_markdown(marked_table(board, layout), layout)
    assert "| A | stylegan-A | - | 8.00 [1] | [1] FFHQ: num_gen 64 (protocol 50,000); " \
           "reals 19 (protocol 50,000) |" in text
    assert "| B | stylegan-B | - | 5.00 |  |" in text
    numbers = marked_table(board, layout, text=False)
    assert numbers.loc["A", "FFHQ"] == 8.0 and "num_gen 64" in numbers.loc["A", "notes"]

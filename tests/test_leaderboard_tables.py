"""Pivots into the papers' layouts, aggregation, and compare's deltas and refusals."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from ffhq_tools.errors import FfhqToolsError
from leaderboards.board import COLUMNS, append_rows, read_board
from leaderboards.layouts import get_layout
from leaderboards.tables import (
    MixedProvenanceError,
    compare,
    dataset_mapping,
    pivot_measured,
    pivot_published,
    to_markdown,
)

INCEPTION_SHA = "6726825d" + "0" * 56  # matches the registry's published prefix
OTHER_SHA = "1" * 64


def row(config, result, value, *, dataset="FFHQ", date="2026-01-01T00:00:00", mode="tf",
        weights=f"inception-fid={INCEPTION_SHA}", checkpoint="ck.pt", protocol="{}"):
    base = {c: "" for c in COLUMNS}
    base.update(config=config, result=result, value=value, dataset=dataset, date=date, mode=mode,
                weights_sha256=weights, checkpoint=checkpoint, metric=protocol_of(result),
                protocol=protocol)
    return base


def protocol_of(result: str) -> str:
    """The registered protocol producing `result` (ppl_zfull, ls_z -> ls, pr50k3_recall ...)."""
    return result if result.startswith("ppl") else result.split("_")[0]


@pytest.fixture
def board_file(tmp_path):
    path = tmp_path / "board.csv"
    rows = [
        row("stylegan-B", "ppl_zfull", 400.0), row("stylegan-B", "ppl_zend", 410.0),
        row("stylegan-B", "ls_z", 11.0), row("stylegan-B", "ppl_wfull", 999.0),  # not in table
        row("stylegan-F", "ppl_wfull", 230.0, date="2026-01-01T00:00:00"),
        row("stylegan-F", "ppl_wfull", 250.0, date="2026-01-03T00:00:00"),
        row("stylegan-F", "ppl_wfull", 240.0, date="2026-01-02T00:00:00"),
        row("stylegan-F", "ppl_wend", 190.0, dataset="ffhq"),
        row("stylegan-F", "ppl_wend", 1.0, dataset="cifar"),
    ]
    append_rows(path, rows)
    return path


def test_pivot_uses_each_rows_latent_space(board_file):
    layout = get_layout("stylegan-table3")
    frame = pivot_measured(read_board(board_file), layout)
    assert list(frame.columns) == ["config", "PPL full", "PPL end", "separability"]
    assert list(frame.index) == [r.label for r in layout.rows]
    b, f = "B Traditional generator Z", "F + Mixing 90% W"
    assert frame.loc[b, "PPL full"] == 400.0 and frame.loc[b, "separability"] == 11.0
    assert frame.loc[f, "PPL full"] == 250.0  # latest by date, not the file's order
    assert frame.loc[f, "PPL end"] == 190.0  # dataset matched case-insensitively
    assert math.isnan(frame.loc[f, "separability"])
    assert frame.loc["D Style-based generator W"].drop("config").isna().all()


@pytest.mark.parametrize("how,expected", [("min", 230.0), ("max", 250.0), ("mean", 240.0),
                                          ("last", 250.0)])
def test_aggregates(board_file, how, expected):
    frame = pivot_measured(read_board(board_file), get_layout("stylegan-table3"), aggregate=how)
    assert frame.loc["F + Mixing 90% W", "PPL full"] == pytest.approx(expected)


def test_dataset_mapping_rules():
    single, double = get_layout("stylegan-table3"), get_layout("stylegan-table1")
    assert dataset_mapping(single, ["cifar"]) == {"FFHQ": "cifar"}
    assert dataset_mapping(double, ["FFHQ=mine"]) == {"CelebA-HQ": "CelebA-HQ", "FFHQ": "mine"}
    with pytest.raises(FfhqToolsError, match="PAPER=NAME"):
        dataset_mapping(double, ["mine"])
    with pytest.raises(FfhqToolsError, match="not a dataset"):
        dataset_mapping(double, ["LSUN=mine"])


def test_pivot_with_a_mapped_dataset(board_file):
    layout = get_layout("stylegan-table3")
    frame = pivot_measured(read_board(board_file), layout, dataset_mapping(layout, ["cifar"]))
    assert frame.loc["F + Mixing 90% W", "PPL end"] == 1.0
    assert math.isnan(frame.loc["F + Mixing 90% W", "PPL full"])


def test_compare_gives_published_values_and_deltas(board_file):
    layout = get_layout("stylegan-table3")
    table = compare(read_board(board_file), layout)
    line = table[(table["row"] == "B Traditional generator Z") & (table["column"] == "PPL full")]
    assert line["published"].item() == 412.0 and line["ours"].item() == 400.0
    assert line["delta"].item() == pytest.approx(-12.0)
    assert line["rel_delta_pct"].item() == pytest.approx(-1200 / 412.0)
    assert table["comparable"].all()
    assert len(table) == 5  # B: 3 cells, F: PPL full and PPL end


def _board(tmp_path, rows):
    path = tmp_path / "mixed.csv"
    append_rows(path, rows)
    return read_board(path)


def test_compare_refuses_mixed_weights_across_rows(tmp_path):
    board = _board(tmp_path, [row("stylegan-A", "fid50k", 8.0),
                              row("stylegan-B", "fid50k", 6.0,
                                  weights=f"inception-fid={OTHER_SHA}")])
    layout = get_layout("stylegan-table1")
    with pytest.raises(MixedProvenanceError, match="--allow-mixed"):
        compare(board, layout)
    table = compare(board, layout, allow_mixed=True)
    assert not table["comparable"].any()
    assert "registry expects" in table.set_index("row").loc["B", "problems"]


def test_compare_refuses_a_mode_the_paper_did_not_use(tmp_path):
    board = _board(tmp_path, [row("stylegan-A", "fid50k", 8.0, mode="clean")])
    with pytest.raises(MixedProvenanceError, match="published numbers use 'tf'"):
        compare(board, get_layout("stylegan-table1"))


def test_compare_refuses_mixed_rows_within_one_cell(tmp_path):
    board = _board(tmp_path, [row("stylegan-A", "fid50k", 8.0),
                              row("stylegan-A", "fid50k", 8.5, mode="pytorch-fid")])
    with pytest.raises(MixedProvenanceError, match="modes"):
        compare(board, get_layout("stylegan-table1"), aggregate="mean")


def test_markdown_uses_the_papers_decimals_and_dashes():
    layout = get_layout("stylegan2-table1")
    text = to_markdown(pivot_published(layout), layout)
    expected = "| F | stylegan2-F | 2.84 | 129.4 | 0.689 | 0.492 | 2.32 | 415.5 | 0.678 | 0.514 |"
    assert expected in text
    empty = pd.DataFrame({"config": ["x"], "FFHQ FID": [math.nan]}, index=pd.Index(["A"]))
    assert "| A | x | - |" in to_markdown(empty, layout)


def test_unknown_table_suggests_close_names():
    with pytest.raises(FfhqToolsError, match="stylegan-table3"):
        get_layout("stylegan-tabel3")


def test_protocols_a_table_needs():
    assert get_layout("stylegan-table3").protocols() == [
        "ppl_zfull", "ppl_zend", "ls", "ppl_wfull", "ppl_wend"]
    assert get_layout("stylegan2-table1").protocols() == ["fid50k", "ppl_wend", "pr50k3",
                                                          "ppl2_wend"]

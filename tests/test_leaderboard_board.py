"""The leaderboard store: round trip, torn lines from killed writers, concurrent appends."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from leaderboards.board import (
    COLUMNS,
    LeaderboardError,
    append_rows,
    format_weights,
    parse_weights,
    qualified_result,
    read_board,
    rows_from_result,
)

RECORD = {
    "metric": "pr50k3", "results": {"pr50k3_precision": 0.5, "pr50k3_recall": 0.25,
                                    "per_attribute": {"x": 1}},
    "protocol": {"num_gen": 500, "max_real": 400, "nhood_size": 3},
    "weights": {"vgg16": "ab" * 32, "lpips-vgg-lin": "cd" * 32}, "mode": "tf", "seed": 3,
    "device": "cpu", "world_size": 1, "total_time_s": 1.5, "ffhq_tools": "0.1.0",
    "torch": "2.x",
}


def make_rows(**changes):
    fields = dict(checkpoint="a.pt", checkpoint_sha256="f" * 64, config="stylegan2-F", kimg=12.0,
                  dataset="FFHQ", data_path="ffhq.h5")
    fields.update(changes)
    return rows_from_result(RECORD, **fields)


def test_rows_from_a_metric_record_keep_provenance():
    rows = make_rows()
    assert [r["result"] for r in rows] == ["pr50k3_precision", "pr50k3_recall"]
    row = rows[0]
    assert row["num_gen"] == 500 and row["num_real"] == 400 and row["seed"] == 3
    assert row["feature_network"] == "lpips-vgg-lin+vgg16"
    assert parse_weights(row["weights_sha256"]) == RECORD["weights"]
    assert row["ffhq_tools_version"] == "0.1.0" and row["torch_version"] == "2.x"


def test_append_and_read_round_trip(tmp_path):
    board = tmp_path / "board.csv"
    append_rows(board, make_rows())
    append_rows(board, make_rows(config="stylegan2-E", kimg=None))
    frame = read_board(board)
    assert list(frame.columns) == list(COLUMNS)
    assert len(frame) == 4
    assert frame["value"].tolist() == [0.5, 0.25, 0.5, 0.25]
    assert frame["kimg"].isna().tolist() == [False, False, True, True]
    assert frame["checkpoint_sha256"].iloc[0] == "f" * 64


def test_torn_last_line_is_ignored_then_cut_by_the_next_append(tmp_path):
    board = tmp_path / "board.csv"
    append_rows(board, make_rows())
    with open(board, "ab") as f:
        f.write(b"2026-01-01,half-written,row")  # what a killed writer leaves behind
    assert len(read_board(board)) == 2
    append_rows(board, make_rows(config="stylegan2-E"))
    frame = read_board(board)
    assert len(frame) == 4 and "half-written" not in set(frame["checkpoint"])
    assert board.read_bytes().endswith(b"\n")


def test_wrong_header_and_unknown_fields_are_clear_errors(tmp_path):
    other = tmp_path / "other.csv"
    other.write_text("a,b\n1,2\n")
    with pytest.raises(LeaderboardError, match="header"):
        append_rows(other, make_rows())
    with pytest.raises(LeaderboardError, match="unknown fields"):
        append_rows(tmp_path / "new.csv", [{"bogus": 1}])
    with pytest.raises(LeaderboardError, match="no leaderboard"):
        read_board(tmp_path / "missing.csv")


WRITER = textwrap.dedent("""
    import sys
    from leaderboards.board import append_rows, rows_from_result
    record = {"metric": "fid50k", "results": {"fid50k": 1.0}, "protocol": {}, "weights": {}}
    tag = sys.argv[2]
    for i in range(100000):
        rows = rows_from_result(record, checkpoint=f"{tag}-{i}", checkpoint_sha256="0" * 64,
                                config="tiny", kimg=i, dataset="d", data_path="d.h5",
                                note="x" * 3000)
        append_rows(sys.argv[1], rows)
""")


def test_concurrent_writers_killed_mid_run_leave_a_valid_file(tmp_path):
    board = tmp_path / "board.csv"
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    writers = [subprocess.Popen([sys.executable, "-c", WRITER, str(board), tag], env=env)
               for tag in ("a", "b")]
    deadline = time.time() + 20
    while time.time() < deadline and (not board.exists() or board.stat().st_size < 200_000):
        time.sleep(0.05)
    for proc in writers:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    frame = read_board(board)
    assert len(frame) > 10
    assert set(frame["note"]) == {"x" * 3000}  # no line was interleaved with another
    for tag in ("a", "b"):
        kimgs = frame[frame["checkpoint"].str.startswith(tag)]["kimg"].tolist()
        assert kimgs == list(range(len(kimgs)))  # each writer's rows complete and in order
    append_rows(board, make_rows())
    assert len(read_board(board)) == len(frame) + 2


@pytest.mark.parametrize("metric,key,expected", [
    ("fid50k", "fid", "fid50k"), ("fid50k_full", "fid", "fid50k_full"),
    ("kid50k_full", "kid", "kid50k_full"), ("kid50k_full", "kid_std", "kid50k_full_std"),
    ("is50k", "is_mean", "is50k_mean"), ("ppl_zfull", "ppl", "ppl_zfull"),
    ("ppl2_wend", "ppl", "ppl2_wend"), ("pr50k3", "precision", "pr50k3_precision"),
    ("ls", "ls_w", "ls_w"), ("fd_dlib_face", "fd_dlib_face", "fd_dlib_face"),
    ("pr_dlib_face", "pr_dlib_face_recall", "pr_dlib_face_recall"),
])
def test_results_are_named_after_their_protocol(metric, key, expected):
    assert qualified_result(metric, key) == expected
    record = {"metric": metric, "results": {key: 1.0}}
    row = rows_from_result(record, checkpoint="c", checkpoint_sha256="s", config="x", kimg=0,
                           dataset="d", data_path="p")[0]
    assert row["result"] == expected


def test_format_weights_is_sorted_and_reversible():
    names, cell = format_weights({"b": "2", "a": "1"})
    assert names == "a+b" and cell == "a=1;b=2"
    assert parse_weights(cell) == {"a": "1", "b": "2"} and parse_weights("") == {}


def test_a_non_number_in_a_numeric_column_names_the_column(tmp_path):
    board = tmp_path / "board.csv"
    append_rows(board, make_rows())
    append_rows(board, [{**make_rows()[0], "value": "oops"}])
    with pytest.raises(LeaderboardError, match="column 'value'"):
        read_board(board)

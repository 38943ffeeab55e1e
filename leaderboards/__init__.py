"""Leaderboards: published baselines, the leaderboard CSV, paper-table pivots and comparisons.

    from leaderboards import read_board, get_layout, pivot_measured, compare, to_markdown
    board = read_board("leaderboard.csv")
    layout = get_layout("stylegan2-table1")
    print(to_markdown(pivot_measured(board, layout, aggregate="mean"), layout))
    deltas = compare(board, layout)  # refuses mixed feature weights / modes

Scoring (needs models and eval): `leaderboards.score.score_checkpoints`.
"""

from leaderboards.board import append_rows, read_board, rows_from_result
from leaderboards.layouts import LAYOUTS, get_layout
from leaderboards.published import list_baselines, load_baseline
from leaderboards.tables import compare, pivot_measured, pivot_published, to_markdown

__all__ = ["LAYOUTS", "append_rows", "compare", "get_layout", "list_baselines",
           "load_baseline", "pivot_measured", "pivot_published", "read_board",
           "rows_from_result", "to_markdown"]

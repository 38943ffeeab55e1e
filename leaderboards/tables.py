"""Pivot leaderboard rows (or published baselines) into a paper's layout, and compare them.

`pivot_measured(board, layout)` gives a DataFrame indexed by the paper's row labels with the
paper's column labels; `compare(board, layout)` lines measured values up with the published
ones and adds deltas. A comparison refuses numbers computed with different feature weights or
preprocessing modes (among themselves, or against the published protocol) unless
`allow_mixed=True`, in which case every line says whether it is comparable.
"""

from __future__ import annotations

import math
import re

from ffhq_tools.errors import FfhqToolsError
from leaderboards.board import parse_weights
from leaderboards.conformance import row_deviations
from leaderboards.layouts import Column, Row, TableLayout
from leaderboards.published import load_baseline

AGGREGATES = ("last", "min", "max", "mean")
# The papers computed the FID family on TF-preprocessed Inception features.
PUBLISHED_MODES = {"fid": "tf", "kid": "tf", "is": "tf"}


class MixedProvenanceError(FfhqToolsError):
    """Numbers computed with different weights or modes were about to be compared."""


def dataset_mapping(layout: TableLayout, specs: list[str] | None) -> dict[str, str]:
    """Map the paper's dataset names to the leaderboard's `dataset` values.

    Default: the same name (compared case-insensitively). `NAME` alone maps every dataset of a
    single-dataset table; `PAPER=NAME` maps one dataset of a table with several.
    """
    mapping = {d: d for d in layout.datasets}
    for spec in specs or []:
        paper, sep, ours = spec.partition("=")
        if not sep:
            if len(layout.datasets) != 1:
                raise FfhqToolsError(
                    f"--dataset {spec}: table {layout.name} has datasets "
                    f"{', '.join(layout.datasets)}; use --dataset PAPER=NAME")
            paper, ours = layout.datasets[0], spec
        if paper not in mapping:
            raise FfhqToolsError(f"--dataset {spec}: '{paper}' is not a dataset of table "
                                 f"{layout.name} ({', '.join(layout.datasets)})")
        mapping[paper] = ours
    return mapping


def _cell_rows(board, row: Row, column: Column, dataset: str):
    mask = ((board["config"] == row.config) & (board["result"] == column.result_for(row))
            & (board["dataset"].str.lower() == dataset.lower()))
    return board[mask]


def _aggregate(values, dates, how: str) -> float:
    if how == "last":
        return float(values.iloc[dates.argsort(kind="stable").iloc[-1]])
    return float(getattr(values, how)())


def measured_cells(board, layout: TableLayout, datasets: dict[str, str] | None = None,
                   aggregate: str = "last") -> list[dict]:
    """One record per (row, column) that has measured rows: value, count and provenance."""
    if aggregate not in AGGREGATES:
        raise FfhqToolsError(f"--aggregate {aggregate}: expected one of {', '.join(AGGREGATES)}")
    datasets = datasets or dataset_mapping(layout, None)
    cells = []
    for row in layout.rows:
        for column in layout.columns:
            found = _cell_rows(board, row, column, datasets[column.dataset])
            if found.empty:
                continue
            cells.append({
                "row": row.label, "config": row.config, "column": column.label,
                "dataset": column.dataset, "result": column.result_for(row),
                "value": _aggregate(found["value"].reset_index(drop=True),
                                    found["date"].reset_index(drop=True), aggregate),
                "n": len(found),
                "checkpoints": ";".join(sorted(set(found["checkpoint"]))),
                "weights": sorted(set(found["weights_sha256"])),
                "modes": sorted(set(found["mode"])),
                "deviations": sorted({reason for _, r in found.iterrows()
                                      for reason in row_deviations(r, column.dataset)}),
            })
    return cells


def _frame(layout: TableLayout, values: dict[tuple[str, str], float]):
    import pandas as pd

    data = {c.label: [values.get((r.label, c.label), math.nan) for r in layout.rows]
            for c in layout.columns}
    frame = pd.DataFrame(data, index=[r.label for r in layout.rows])
    frame.index.name = "row"
    frame.insert(0, "config", [r.config for r in layout.rows])
    return frame


def pivot_measured(board, layout: TableLayout, datasets: dict[str, str] | None = None,
                   aggregate: str = "last"):
    cells = measured_cells(board, layout, datasets, aggregate)
    return _frame(layout, {(c["row"], c["column"]): c["value"] for c in cells})


def marked_table(board, layout: TableLayout, datasets: dict[str, str] | None = None,
                 aggregate: str = "last", text: bool = True):
    """What `table` prints: `pivot_measured` plus a `notes` column saying why a cell deviates
    from the paper's protocol (counts, resolution, mode, custom or unregistered weights).
    With text=True, values are formatted with the paper's decimals and deviating cells are
    marked [n]; otherwise they stay numbers (CSV)."""
    cells = measured_cells(board, layout, datasets, aggregate)
    frame = _frame(layout, {(c["row"], c["column"]): c["value"] for c in cells})
    if text:
        frame = format_frame(frame, layout)
    notes: dict[str, list[str]] = {}
    reasons: list[str] = []
    for cell in cells:
        problems = _comparability(cell)
        if not problems:
            continue
        reason = "; ".join(problems)
        if reason not in reasons:
            reasons.append(reason)
        mark = f"[{reasons.index(reason) + 1}]"
        if text:
            frame.loc[cell["row"], cell["column"]] += f" {mark}"
        notes.setdefault(cell["row"], []).append(f"{mark} {cell['column']}: {reason}")
    frame["notes"] = [" ".join(notes.get(label, [])) for label in frame.index]
    return frame


def pivot_published(layout: TableLayout):
    published = load_baseline(layout.name)
    values = {}
    for row in layout.rows:
        for column in layout.columns:
            match = published[(published["row"] == row.label)
                              & (published["metric"] == column.result_for(row))
                              & (published["dataset"] == column.dataset)]
            if len(match) > 1:
                raise FfhqToolsError(f"baseline {layout.name}: several values for "
                                     f"({row.label}, {column.label})")
            if len(match) == 1:
                values[(row.label, column.label)] = float(match["value"].iloc[0])
    return _frame(layout, values)


def _metric_family(result: str) -> str:
    """`fid50k_full` -> fid, `ppl2_wend` -> ppl, `pr50k3_recall` -> pr, `is50k_mean` -> is."""
    return re.match(r"[a-z]*", result).group()


def _non_reference_weights(weights_cell: str) -> list[str]:
    """Registry entries in a row whose SHA-256 is not the one the registry expects."""
    from ffhq_tools import weights as registry
    from ffhq_tools.hashing import sha256_matches

    odd = []
    for name, digest in parse_weights(weights_cell).items():
        if name not in registry.REGISTRY:
            odd.append(f"{name} (not a registered network)")
            continue
        expected = registry.expected_sha256(name)
        if expected and not sha256_matches(digest, expected):
            odd.append(f"{name} sha256 {digest[:12]}... (registry expects {expected[:12]}...)")
    return odd


def _comparability(cell: dict) -> list[str]:
    problems = list(cell["deviations"])
    if len(cell["weights"]) > 1:
        problems.append(f"{len(cell['weights'])} different feature-weight sets")
    if len(cell["modes"]) > 1:
        problems.append(f"modes {', '.join(cell['modes'])}")
    for weights_cell in cell["weights"]:
        problems += _non_reference_weights(weights_cell)
    paper_mode = PUBLISHED_MODES.get(_metric_family(cell["result"]))
    for mode in cell["modes"]:
        if paper_mode and mode != paper_mode:
            problems.append(f"mode '{mode}' (published numbers use '{paper_mode}')")
    return problems


def compare(board, layout: TableLayout, datasets: dict[str, str] | None = None,
            aggregate: str = "last", allow_mixed: bool = False):
    """Measured vs published for every cell that has a measured value, with deltas."""
    import pandas as pd

    published = pivot_published(layout)
    cells = measured_cells(board, layout, datasets, aggregate)
    lines = []
    mixed_metric = _mixed_across_rows(cells)
    for cell in cells:
        problems = _comparability(cell) + mixed_metric.get(cell["result"], [])
        if problems and not allow_mixed:
            raise MixedProvenanceError(
                f"table {layout.name}, row {cell['row']}, column {cell['column']}: refusing to "
                f"compare: {'; '.join(problems)}. Pass --allow-mixed to compare anyway.")
        reference = published.loc[cell["row"], cell["column"]]
        delta = cell["value"] - reference
        lines.append({
            "row": cell["row"], "config": cell["config"], "column": cell["column"],
            "dataset": cell["dataset"], "result": cell["result"], "ours": cell["value"],
            "published": reference, "delta": delta,
            "rel_delta_pct": 100.0 * delta / reference if reference else math.nan,
            "n": cell["n"], "checkpoints": cell["checkpoints"],
            "mode": ";".join(cell["modes"]), "weights": " | ".join(cell["weights"]),
            "comparable": not problems, "problems": "; ".join(problems),
        })
    columns = ["row", "config", "column", "dataset", "result", "ours", "published", "delta",
               "rel_delta_pct", "n", "checkpoints", "mode", "weights", "comparable", "problems"]
    return pd.DataFrame(lines, columns=columns)


def _mixed_across_rows(cells: list[dict]) -> dict[str, list[str]]:
    """A result measured with different weights or modes in different rows of one table."""
    by_result: dict[str, tuple[set, set]] = {}
    for cell in cells:
        weights, modes = by_result.setdefault(cell["result"], (set(), set()))
        weights.update(cell["weights"])
        modes.update(cell["modes"])
    problems = {}
    for result, (weights, modes) in by_result.items():
        found = []
        if len(weights) > 1:
            found.append(f"'{result}' computed with {len(weights)} weight sets across rows")
        if len(modes) > 1:
            found.append(f"'{result}' computed in modes {', '.join(sorted(modes))} across rows")
        if found:
            problems[result] = found
    return problems


def format_frame(frame, layout: TableLayout):
    """The table as strings with the paper's decimals per column; missing cells as '-'."""
    decimals = {c.label: c.decimals for c in layout.columns}
    return frame.apply(lambda col: col.map(lambda v: _format(v, decimals.get(col.name))))


def to_markdown(frame, layout: TableLayout, caption: str = "") -> str:
    """A GitHub Markdown table with the paper's decimals; missing cells show as '-'."""
    text = format_frame(frame, layout)
    header = [frame.index.name or ""] + list(frame.columns)
    lines = [f"**{layout.paper} {layout.name}**: {caption or layout.title}", "",
             "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for label, values in text.iterrows():
        lines.append("| " + " | ".join([str(label), *values]) + " |")
    return "\n".join(lines) + "\n"


def _format(value, decimals: int | None) -> str:
    if isinstance(value, str):
        return value
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.{decimals}f}" if decimals is not None else f"{value:.4g}"

"""The shipped baseline CSVs against every number of REFERENCE.md (tables and reference lines).

REFERENCE.md lives next to the repository (../shared); tests/data holds a verbatim copy so the
test also runs where the shared folder is absent, and a test checks the copy has not drifted.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest

from leaderboards.layouts import LAYOUTS, get_layout
from leaderboards.published import BASELINE_COLUMNS, list_baselines, load_baseline
from leaderboards.tables import pivot_published

SHARED = Path(__file__).resolve().parents[2] / "shared" / "REFERENCE.md"
VENDORED = Path(__file__).resolve().parent / "data" / "REFERENCE.md"
REFERENCE = SHARED if SHARED.is_file() else VENDORED

HEADING_TO_TABLE = {
    "## StyleGAN Table 1": "stylegan-table1",
    "## StyleGAN Table 2": "stylegan-table2",
    "## StyleGAN Table 3": "stylegan-table3",
    "## StyleGAN Table 4": "stylegan-table4",
    "## StyleGAN2 (paper": "stylegan2-table1",
}


def _number(cell: str) -> float | None:
    try:
        return float(cell)
    except ValueError:
        return None


def markdown_tables(text: str) -> dict[str, tuple[list[str], list[list[str]]]]:
    """{table name: (header, rows)} for every markdown table under a known heading."""
    tables, current, lines = {}, None, text.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("## "):
            current = next((t for h, t in HEADING_TO_TABLE.items() if line.startswith(h)), None)
        stripped = line.strip()
        if current and stripped.startswith("|") and not stripped.startswith("|---"):
            cells = [c.strip() for c in stripped.strip("|").split("|")]
            if current not in tables:
                tables[current] = (cells, [])
            else:
                tables[current][1].append(cells)
        elif current in tables and not stripped.startswith("|") and stripped:
            if i > 0 and lines[i - 1].strip().startswith("|"):
                current = None
    return tables


@pytest.fixture(scope="module")
def reference_text() -> str:
    return REFERENCE.read_text()


def test_vendored_copy_matches_shared_reference():
    if not SHARED.is_file():
        pytest.skip("shared REFERENCE.md not present; the vendored copy is used")
    assert VENDORED.read_text() == SHARED.read_text()


def test_every_reference_table_is_parsed(reference_text):
    assert set(markdown_tables(reference_text)) == set(HEADING_TO_TABLE.values())


@pytest.mark.parametrize("table", sorted(HEADING_TO_TABLE.values()))
def test_baseline_matches_every_number_of_the_reference_table(reference_text, table):
    header, rows = markdown_tables(reference_text)[table]
    layout = get_layout(table)
    published = pivot_published(layout)
    # the row cell is the label, or "label description" (StyleGAN2 Table 1)
    labels = {r.label: r.label for r in layout.rows}
    labels.update({f"{r.label} {r.description}": r.label for r in layout.rows if r.description})
    seen = 0
    for cells in rows:
        label = labels.get(cells[0], cells[0])
        assert label in published.index, f"{table}: row {label!r} missing from the baseline"
        for column, cell in zip(header[1:], cells[1:], strict=True):
            value = _number(cell)
            if value is None:
                continue
            seen += 1
            assert published.loc[label, column] == pytest.approx(value, abs=1e-9), (table, label)
    assert seen == len(load_baseline(table)), f"{table}: baseline has numbers the paper lacks"
    assert not published.drop(columns="config").isna().any().any()


def _numbers(line: str) -> list[float]:
    return [float(x) for x in re.findall(r"(?<![\w.])(\d*\.\d+|\d+)(?![\w])", line)]


def _line(text: str, start: str) -> str:
    matches = [ln for ln in text.splitlines() if ln.strip().startswith(start)]
    assert len(matches) == 1, start
    return matches[0]


def test_wgan_gp_inception_scores(reference_text):
    lines = reference_text.splitlines()
    first = lines.index(_line(reference_text, "ALI 5.34"))
    text = " ".join(lines[first:first + 2])  # the list wraps onto a second line
    frame = pivot_published(get_layout("wgan-gp-inception-score"))
    entries = [e for e in text.strip().rstrip(".").split(";") if e.strip()]
    assert len(entries) == len(frame)
    for entry in entries:
        name, mean, *rest = re.match(r"\s*(.+?) (\d+\.\d+)(?: \+- (\.\d+))?$", entry).groups()
        assert frame.loc[name, "IS"] == pytest.approx(float(mean))
        std = rest[0]
        if std is None:
            assert math.isnan(frame.loc[name, "+-"])
        else:
            assert frame.loc[name, "+-"] == pytest.approx(float(std))


REFERENCE_LINES = {
    # bullet start in REFERENCE.md -> the (row, result) of each number in it, in order
    "- Reference values: StyleGAN2 config F FFHQ 1024 FID": [
        None, ("StyleGAN2 config F", "fid50k"), None],  # 1024, 2.84, (10 runs)
    "- Reference values FFHQ: StyleGAN v1 zfull": [
        ("StyleGAN v1", "ppl_zfull"), ("StyleGAN v1", "ppl_wfull"),
        ("StyleGAN v1", "ppl_zend"), ("StyleGAN v1", "ppl_wend"),
        ("StyleGAN2 config F", "ppl_wend")],
    "- Reference values FFHQ: StyleGAN v1 z ": [
        ("StyleGAN v1", "ls_z"), ("StyleGAN v1", "ls_w"),
        ("StyleGAN2 config F", "ls_z"), ("StyleGAN2 config F", "ls_w")],
    "- Reference values FFHQ StyleGAN2 config F: P": [
        ("StyleGAN2 config F", "pr50k3_precision"), ("StyleGAN2 config F", "pr50k3_recall")],
}


def _reference_line(text: str, start: str) -> str:
    """The bullet starting with `start`, joined with its indented continuation lines."""
    lines = text.splitlines()
    starts = [i for i, ln in enumerate(lines) if ln.startswith(start)]
    assert len(starts) == 1, start
    i = starts[0]
    bullet = [lines[i]]
    while i + 1 < len(lines) and lines[i + 1].startswith("  "):
        i += 1
        bullet.append(lines[i])
    return " ".join(bullet)


def test_reference_values_from_the_reference_code(reference_text):
    baseline = load_baseline("reference-values")
    covered = 0
    for start, expected in REFERENCE_LINES.items():
        line = _reference_line(reference_text, start)
        numbers = _numbers(line)
        assert len(numbers) == len(expected), (line, numbers)
        for number, key in zip(numbers, expected, strict=True):
            if key is None:
                continue
            row, metric = key
            match = baseline[(baseline["row"] == row) & (baseline["metric"] == metric)]
            assert len(match) == 1, key
            assert match["value"].iloc[0] == pytest.approx(number)
            covered += 1
    assert covered == len(baseline)


def test_every_baseline_file_has_a_layout_and_the_long_format():
    assert set(list_baselines()) == set(LAYOUTS)
    for name in list_baselines():
        frame = load_baseline(name)
        assert tuple(frame.columns) == BASELINE_COLUMNS
        assert (frame["table"] == name).all()
        assert frame["value"].notna().all()
        assert not frame.duplicated(["row", "dataset", "metric"]).any()

"""The README's quick start, run as written: every command of its block, in order, in a fresh
folder holding the demo's bundled photos. Each must exit 0 and write what its `# -> ...`
comment says; a line of that block the test cannot run fails it."""

from __future__ import annotations

import json
import math
import re
import shlex
from pathlib import Path

import pytest

from ffhq_tools.cli import main
from ffhq_tools.demo_stages import bundled_photos

README = Path(__file__).resolve().parent.parent / "README.md"
SECTION = "## Quick start"
REQUIRED_VERBS = {"align", "pack", "train", "generate", "metrics"}


def quick_start_steps(text: str) -> list[tuple[list[str], list[str]]]:
    """(argv after `ffhq-tools`, the paths it writes) per line of the quick-start block."""
    start = text.index(SECTION)
    block = re.search(r"```\n(.*?)```", text[start:], re.S)
    assert block, f"README.md: no code block under {SECTION!r}"
    steps = []
    for line in block.group(1).splitlines():
        if not line.strip():
            continue
        command, _, comment = line.partition(" # ")
        argv = shlex.split(command)
        assert argv[0] == "ffhq-tools", f"README quick start: cannot run {line!r}"
        assert comment.strip().startswith("->"), f"README quick start: {line!r} has no '# ->'"
        writes = comment.strip()[2:].strip()
        steps.append((argv[1:], [] if writes.startswith("nothing") else writes.split()))
    return steps


def test_parser_reads_commands_and_outputs_and_refuses_other_lines():
    text = "## Quick start\n\n```\nffhq-tools pack a/ b.h5   # -> b.h5 c.txt\n```\n"
    assert quick_start_steps(text) == [(["pack", "a/", "b.h5"], ["b.h5", "c.txt"])]
    for bad in ("pip install ffhq-tools   # -> nothing", "ffhq-tools pack a b.h5"):
        with pytest.raises(AssertionError, match="README quick start"):
            quick_start_steps(f"## Quick start\n```\n{bad}\n```\n")


def _check_contents(verb: str, argv: list[str], photos: int) -> None:
    """What a step's files hold, for the verbs whose outputs have a known size."""
    if verb == "align":
        out = Path(argv[2])
        assert len((out / "align.jsonl").read_text().splitlines()) == photos  # --largest-only
    if verb == "generate":
        out = Path(argv[argv.index("--out") + 1])
        assert len(list((out / "samples").glob("*.png"))) == 16  # --seeds 0-15
    if verb == "metrics":
        [row_file] = Path("runs").glob("*-metrics-*/metric-*.jsonl")
        row = json.loads(row_file.read_text().splitlines()[-1])
        assert all(math.isfinite(v) for v in row["results"].values())


@pytest.mark.slow
def test_readme_quick_start_runs_as_written(tmp_path, monkeypatch, capsys):
    steps = quick_start_steps(README.read_text())
    assert REQUIRED_VERBS <= {argv[0] for argv, _ in steps}
    monkeypatch.chdir(tmp_path)
    photos = len(bundled_photos(tmp_path / "photos", quick=True))
    for argv, writes in steps:
        code = main(argv)
        err = capsys.readouterr().err
        assert code == 0, f"ffhq-tools {shlex.join(argv)} exited {code}:\n{err[-2000:]}"
        for pattern in writes:
            assert list(tmp_path.glob(pattern.rstrip("/"))), \
                f"ffhq-tools {shlex.join(argv)} did not write {pattern}"
        _check_contents(argv[0], argv, photos)

"""Every CLI verb over a folder of broken inputs: exit 2, no traceback, one line naming the file.

Start-up lines (device, threads) may come first; the error is one line, the last.

The verbs come from the CLI parser itself: a new verb without an entry in VERB_CASES fails
`test_every_verb_has_a_case`. Each case turns one broken path B and a scratch folder T into an
argument list that feeds B wherever the verb takes a file (all of them, so whichever the verb
reads first is broken).
"""

from __future__ import annotations

import os
import traceback
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ffhq_tools.cli import main, verb_names


def _png_bytes() -> bytes:
    import io

    buffer = io.BytesIO()
    Image.fromarray(np.full((64, 64, 3), 128, np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def _random(n: int = 4096) -> bytes:
    return np.random.default_rng(zlib.crc32(b"broken")).integers(0, 256, n, np.uint8).tobytes()


BROKEN = {
    "empty.png": lambda path: path.write_bytes(b""),
    "truncated.png": lambda path: path.write_bytes(_png_bytes()[:80]),
    "random.h5": lambda path: path.write_bytes(_random()),
    "random.pt": lambda path: path.write_bytes(_random()),
    "random.pkl": lambda path: path.write_bytes(_random()),
    "random.npz": lambda path: path.write_bytes(_random()),
    "random.zip": lambda path: path.write_bytes(_random()),
    "random.json": lambda path: path.write_bytes(_random()),
    "x.jpg": lambda path: path.mkdir(),
    "dangling.pkl": lambda path: os.symlink(path.parent / "missing-target.pkl", path),
}

# verb path -> argv builder (B: the broken path, T: a scratch folder), or the reason it takes
# no input file.
VERB_CASES = {
    ("doctor",): "no input file",
    ("weights",): None,
    ("weights", "list"): "no input file",
    ("weights", "fetch"): "no input file (registry names)",
    ("weights", "import"): lambda b, t: ["weights", "import", "vgg16-ts", b],
    ("weights", "verify"): "no input file (registry names)",
    ("crawl",): None,
    ("crawl", "manifest"): lambda b, t: ["crawl", "manifest", b, "--out", t / "c",
                                         "--no-progress"],
    ("crawl", "flickr"): "no input file (a web API)",
    ("align",): lambda b, t: ["align", b, t / "a", "-q"],
    ("pack",): lambda b, t: ["pack", b, t / "p.h5"],
    ("info",): lambda b, t: ["info", b],
    ("export",): lambda b, t: ["export", b, "--out", t / "e"],
    ("score",): lambda b, t: ["score", b, "--data", b, "--metrics", "fid50k",
                                "--no-progress"],
    ("leaderboard",): None,
    ("leaderboard", "show"): "no input file (the board folder is created)",
    ("leaderboard", "table"): lambda b, t: ["leaderboard", "table", b],
    ("leaderboard", "compare"): lambda b, t: ["leaderboard", "compare", "--baseline", b],
    ("leaderboard", "plot"): lambda b, t: ["leaderboard", "plot", b, "--out", t / "p.png"],
    ("leaderboard", "baselines"): "no input file",
    ("demo",): lambda b, t: ["demo", "--resume", b, "--no-progress"],
    ("train",): lambda b, t: ["train", "--config", "stylegan2-F", "--data", b,
                                "--outdir", t / "r", "--dry-run"],
    ("configs",): None,
    ("configs", "list"): "no input file",
    ("configs", "show"): "no input file (a config name)",
    ("import-checkpoint",): lambda b, t: ["import-checkpoint", b, t / "o.pkl"],
    ("generate",): lambda b, t: ["generate", b, "--out", t / "g", "-q"],
    ("project",): lambda b, t: ["project", b, "--network", b, "--out", t / "p"],
    ("stylize",): lambda b, t: ["stylize", b, "--model", b, "--out", t / "s",
                                "--style-id", "0"],
    ("dualstylegan-train",): lambda b, t: ["dualstylegan-train", "pretrain", "--base", b,
                                           "--data", b, "--outdir", t / "d", "--iters", "1",
                                           "--no-progress"],
    ("destylize",): lambda b, t: ["destylize", b, "--original", b, "--finetuned", b,
                                  "--identity", "none"],
    ("refine-exstyle",): lambda b, t: ["refine-exstyle", b, "--model", b, "--exstyle", b,
                                       "--instyle", b],
    ("train-sampler",): lambda b, t: ["train-sampler", b, "--out", t / "s"],
    ("metrics",): lambda b, t: ["metrics", "--network", b, "--data", b, "--no-run-dir",
                                "--no-progress"],
    ("fid",): lambda b, t: ["fid", b, b],
    ("classifiers",): None,
    ("classifiers", "train"): lambda b, t: ["classifiers", "train", "--data", b, "--out",
                                            t / "c"],
}
# Folders are a valid input for these (a photo folder, an image folder): a directory named
# x.jpg is an empty folder there, not a broken file.
FOLDER_INPUTS = {("align",), ("pack",), ("fid",), ("score",), ("metrics",), ("project",),
                 ("stylize",), ("destylize",), ("refine-exstyle",), ("leaderboard", "plot"),
                 ("demo",)}
RUNNABLE = sorted(path for path, case in VERB_CASES.items() if callable(case))


def test_every_verb_has_a_case():
    assert sorted(tuple(path) for path in verb_names()) == sorted(VERB_CASES)


@pytest.fixture(scope="module")
def broken_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("broken")
    for name, make in BROKEN.items():
        make(folder / name)
    return folder


@pytest.mark.parametrize("name", sorted(BROKEN))
@pytest.mark.parametrize("verb", RUNNABLE, ids=" ".join)
def test_verb_refuses_a_broken_input_in_one_line(verb, name, broken_dir, tmp_path, capsys):
    if name == "x.jpg" and verb in FOLDER_INPUTS:
        pytest.skip("a folder is a valid input here")
    path = broken_dir / name
    argv = [str(a) for a in VERB_CASES[verb](path, tmp_path)]
    try:
        code = main(argv)
    except SystemExit as exc:
        code = exc.code
    except BaseException:  # noqa: BLE001 - any escape is the failure being tested
        pytest.fail(f"{' '.join(verb)} {name}: traceback\n{traceback.format_exc()}")
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if "error" in line]
    assert code == 2, f"{' '.join(verb)} {name}: exit {code}\n{err}"
    assert "Traceback" not in err
    assert len(errors) == 1 and err.rstrip().endswith(errors[0]), err
    assert name in errors[0], err

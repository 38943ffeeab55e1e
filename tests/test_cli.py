"""The CLI root: every verb has working help, doctor reports every registered network."""

from __future__ import annotations

import subprocess
import sys

import pytest

from ffhq_tools import cli, weights


@pytest.mark.parametrize("path", cli.verb_names(), ids=" ".join)
def test_every_verb_has_help(path, capsys):
    with pytest.raises(SystemExit) as info:
        cli.main([*path, "--help"])
    assert info.value.code == 0
    assert "usage: ffhq-tools" in capsys.readouterr().out


def test_doctor_lists_every_registered_entry(capsys):
    assert cli.main(["doctor"]) == 0
    out = capsys.readouterr().out
    for line in ("torch ", "h5py ", "lpips ", "dlib-bin ", "cuda build:", "cache dir:"):
        assert line in out
    for name in weights.REGISTRY:
        assert f"  {name} " in out


def test_user_errors_are_one_line_with_exit_status_2(capsys, tmp_path):
    assert cli.main(["weights", "import", "inception-fid", str(tmp_path / "missing.pth")]) == 2
    err = capsys.readouterr().err
    assert "error:" in err and "missing.pth" in err


def test_weights_import_and_verify_through_the_cli(capsys, tmp_path):
    source = tmp_path / "classifier.pkl"
    source.write_bytes(b"classifier pickle stand-in")
    with pytest.warns(UserWarning):
        assert cli.main(["weights", "import", "celebahq-classifier-00", str(source)]) == 0
    assert cli.main(["weights", "verify", "celebahq-classifier-00"]) == 0
    assert "celebahq-classifier-00: OK" in capsys.readouterr().out
    assert cli.main(["weights", "verify", "vgg16"]) == 1


def test_console_entry_point_runs_as_module():
    result = subprocess.run([sys.executable, "-m", "ffhq_tools", "--version"],
                            capture_output=True, text=True, check=True)
    assert result.stdout.startswith("ffhq-tools ")


@pytest.mark.parametrize("verb,expected", [
    ("align", "interrupted; rerun the same command: finished faces are kept and skipped"),
    ("train", "--resume <run dir> (or --resume auto)"),
    ("export", "interrupted\n"),
])
def test_interrupt_exits_130_and_says_how_to_resume(verb, expected, capsys, monkeypatch):
    import argparse

    def stopped(args):
        raise KeyboardInterrupt

    def parser_with_a_stopping_verb():
        parser = argparse.ArgumentParser(prog="ffhq-tools")
        parser.add_subparsers(dest="verb").add_parser(verb).set_defaults(func=stopped)
        return parser

    assert set(cli.RESUME_HINTS) <= {path[0] for path in cli.verb_names()}  # real verbs
    monkeypatch.setattr(cli, "build_parser", parser_with_a_stopping_verb)
    assert cli.main([verb]) == 130
    assert expected in capsys.readouterr().err

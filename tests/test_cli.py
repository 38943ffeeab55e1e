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


def test_a_failed_runs_log_holds_the_error(tmp_path):
    from ffhq_tools.errors import FfhqToolsError
    from ffhq_tools.runs import capture_log

    with pytest.raises(FfhqToolsError):
        with capture_log(tmp_path):
            print("started")
            raise FfhqToolsError("weights 'inception-fid' are missing")
    assert (tmp_path / "log.txt").read_text() == (
        "started\nerror: weights 'inception-fid' are missing\n")


def test_configs_show_counts_parameters_at_a_resolution(capsys):
    """The published models' counts (StyleGAN2 config F and StyleGAN FFHQ at 1024 px)."""
    assert cli.main(["configs", "show", "stylegan2-F", "--res", "1024"]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == (
        "parameters at 1024 px: G 30,370,060 (mapping 2,101,248), D 29,012,513")
    assert cli.main(["configs", "show", "stylegan-F", "--res", "1024"]) == 0
    assert "G 26,219,627 (mapping 2,101,248), D 23,087,249" in capsys.readouterr().out
    assert cli.main(["configs", "show", "tiny", "--res", "48"]) == 2
    captured = capsys.readouterr()
    assert "--res 48" in captured.err and captured.out == ""


def test_train_on_an_image_folder_or_a_zip_says_pack_first(tmp_path, capsys):
    import zipfile

    import numpy as np
    from PIL import Image

    folder = tmp_path / "faces"
    folder.mkdir()
    for i in range(3):
        Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(folder / f"{i}.png")
    archive = tmp_path / "faces.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("00000/img00000000.png", b"")
    for data, what in ((folder, "is a folder of 3 images"), (archive, "is a zip archive")):
        assert cli.main(["train", "--config", "tiny", "--data", str(data), "--dry-run"]) == 2
        err = capsys.readouterr().err
        assert what in err and f"ffhq-tools pack {data}" in err

"""`ffhq-tools destylize` end to end: tiny checkpoints, LPIPS with a random VGG16 through
--weights, resume by rerunning, and one-line errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image
from project_helpers import save_tiny_checkpoint, tiny_generator

from ffhq_tools.cli import main
from models.dualstylegan_codes import read_codes


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ckpt")
    paths = {}
    for name, seed, res in (("G", 0, 32), ("G_prime", 5, 32), ("small", 1, 16)):
        G, D = tiny_generator(seed, resolution=res)
        paths[name] = str(save_tiny_checkpoint(folder / f"{name}.pt", G, D, resolution=res))
    return paths


@pytest.fixture(scope="module")
def vgg_file(tmp_path_factory):
    from vgg_helpers import write_random_vgg16

    return write_random_vgg16(tmp_path_factory.mktemp("vgg") / "vgg16-random.pth")


def test_destylize_verb_writes_the_code_files_and_resumes(tmp_path, checkpoints, vgg_file,
                                                          astronaut, capsys):
    style = tmp_path / "style"
    style.mkdir()
    Image.fromarray(np.ascontiguousarray(astronaut[:256, 120:376])).save(style / "a.png")
    out = tmp_path / "out"
    argv = ["destylize", str(style), "--original", checkpoints["G"], "--finetuned",
            checkpoints["G_prime"], "--out", str(out), "--identity", "none", "--steps", "2",
            "--project-steps", "2", "--weights", f"vgg16={vgg_file}", "-q", "--threads", "1"]
    assert main(argv) == 0
    assert "1 exemplars destylized (0 already done)" in capsys.readouterr().out
    assert read_codes(out / "exstyle_code.npy").names == ["a.png"]
    assert read_codes(out / "instyle_code.npz").codes.shape == (1, 8, 32)
    options = json.loads((out / "options.json").read_text())
    assert options["identity"] == "none" and options["protocol"]["id_weight"] == 0.0
    assert set(options["weights"]) == {"vgg16", "lpips-vgg-lin"}
    assert main(argv) == 0
    assert "(1 already done)" in capsys.readouterr().out


@pytest.mark.parametrize("extra, message", [
    (["--identity", "arcface"], "arcface-ir-se50"),
    (["--finetuned", "SMALL"], "img_resolution 16"),
    (["--steps", "0"], "--steps 0"),
])
def test_destylize_errors_are_one_line(tmp_path, checkpoints, vgg_file, astronaut, capsys,
                                       extra, message):
    Image.fromarray(np.ascontiguousarray(astronaut[:64, :64])).save(tmp_path / "a.png")
    extra = [checkpoints["small"] if e == "SMALL" else e for e in extra]
    argv = ["destylize", str(tmp_path / "a.png"), "--original", checkpoints["G"],
            "--finetuned", checkpoints["G_prime"], "--out", str(tmp_path / "out"),
            "--identity", "none", "--weights", f"vgg16={vgg_file}", "-q", *extra]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_destylize_codes_feed_refine_exstyle(tmp_path, checkpoints, vgg_file, astronaut,
                                             capsys):
    from dualstylegan_fixtures import SMALL, small_net
    from dualstylegan_train_fixtures import write_torchvision_vgg19

    from models.checkpoint import save_checkpoint

    style = tmp_path / "style"
    style.mkdir()
    Image.fromarray(np.ascontiguousarray(astronaut[:256, 120:376])).save(style / "a.png")
    codes = tmp_path / "codes"
    common = ["--weights", f"vgg16={vgg_file}", "-q", "--threads", "1"]
    assert main(["destylize", str(style), "--original", checkpoints["G"], "--finetuned",
                 checkpoints["G_prime"], "--out", str(codes), "--identity", "none",
                 "--steps", "2", "--project-steps", "2", *common]) == 0
    net = small_net(32)
    save_checkpoint(tmp_path / "dsg.pt", config={"model": SMALL.to_dict(), "resolution": 32},
                    G=net, G_ema=net)
    argv = ["refine-exstyle", str(style), "--model", str(tmp_path / "dsg.pt"), "--exstyle",
            str(codes / "exstyle_code.npy"), "--instyle", str(codes / "instyle_code.npy"),
            "--out", str(tmp_path / "refined"), "--steps", "2", *common]
    assert main(argv) == 2
    assert "vgg19" in capsys.readouterr().err  # not fetched: the registry names the entry
    write_torchvision_vgg19(tmp_path / "vgg19.pth")
    assert main([*argv, "--weights", f"vgg19={tmp_path / 'vgg19.pth'}"]) == 0
    refined = read_codes(tmp_path / "refined" / "refined_exstyle_code.npy")
    start = read_codes(codes / "exstyle_code.npy")
    assert refined.names == start.names == ["a.png"]
    assert refined.codes.shape == start.codes.shape and not np.allclose(refined.codes,
                                                                        start.codes)


def test_train_sampler_verb_writes_what_stylize_loads(tmp_path, capsys):
    from dualstylegan_fixtures import write_code_dict

    from models.dualstylegan_codes import load_samplers

    write_code_dict(tmp_path / "exstyle_code.npy", [f"s{i}.png" for i in range(4)], 10, 8)
    out = tmp_path / "sampler.pt"
    assert main(["train-sampler", str(tmp_path / "exstyle_code.npy"), "--out", str(out),
                 "--epochs", "2", "-q", "--threads", "1"]) == 0
    assert "structure error" in capsys.readouterr().out
    samplers = load_samplers(out)
    assert samplers["structure"].lin_out.out_features == 7 * 8
    assert samplers["color"].lin_out.out_features == 3 * 8
    assert main(["train-sampler", str(tmp_path / "exstyle_code.npy"), "--out", str(out),
                 "--structure-layers", "10", "-q"]) == 2
    assert "cannot be split at 10" in capsys.readouterr().err

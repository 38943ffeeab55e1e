"""`ffhq-tools stylize` end to end on skimage's astronaut with a random 64 px DualStyleGAN:
the stylised image equals the official procedure computed here from the codes; the strip,
sweep and jsonl are written; bad flags fail with one-line errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from dualstylegan_fixtures import SMALL, small_net, write_code_dict
from PIL import Image

from ffhq_tools.cli import main
from models.checkpoint import save_checkpoint
from models.dualstylegan_codes import Code, CodeSet, CodeSpace, write_codes
from models.generate import to_uint8
from models.stylize import (
    DEFAULT_COLOUR_WEIGHT,
    DEFAULT_STRUCTURE_WEIGHT,
    StylizeError,
    StylizeSettings,
    default_weights,
    parse_weights,
    stylize,
    weight_sweep,
)


@pytest.fixture(scope="module")
def files(tmp_path_factory, astronaut=None):
    from skimage import data

    folder = tmp_path_factory.mktemp("stylize")
    net = small_net()
    save_checkpoint(folder / "dsg.pt", config={"model": SMALL.to_dict(), "resolution": 64},
                    G=net, G_ema=net)
    Image.fromarray(data.astronaut()).save(folder / "astronaut.png")
    exstyles = write_code_dict(folder / "exstyle_code.npy", ["s0.jpg", "s1.jpg", "s2.jpg"],
                               net.num_ws, 32, seed=1)
    rng = np.random.RandomState(2)
    instyle = rng.randn(1, net.num_ws, 32).astype(np.float32)
    write_codes(folder / "instyle.npz", CodeSet(["astronaut.png"], instyle, "test"))
    return folder, net, exstyles, instyle


def run(folder, *extra):
    return main(["stylize", str(folder / "astronaut.png"), "--model", str(folder / "dsg.pt"),
                 "--exstyle", str(folder / "exstyle_code.npy"), "--instyle",
                 str(folder / "instyle.npz"), "--device", "cpu", *extra])


def official_result(net, instyle, ex_z, weights, truncation=0.75):
    """style_transfer.py's steps with our modules: exstyle through the base mapping, z+
    intrinsic code mapped and truncated towards 0, constant noise."""
    with torch.no_grad():
        ex_w = net.map_z(torch.from_numpy(ex_z))
        ws = net.map_z(torch.from_numpy(instyle)) * truncation
        return net.synthesize(ws, ex_w, interp_weights=weights, noise_mode="const")


def test_stylize_astronaut_end_to_end(files, capsys):
    folder, net, exstyles, instyle = files
    out = folder / "out"
    assert run(folder, "--style-id", "1", "--out", str(out)) == 0
    image = np.asarray(Image.open(out / "astronaut-style1.png"))
    expected = to_uint8(official_result(net, instyle, exstyles["s1.jpg"],
                                        [0.75] * 7 + [1.0] * 3))[0]
    assert np.array_equal(image, expected)
    strip = np.asarray(Image.open(out / "astronaut-style1-strip.png"))
    assert strip.shape == (64, 192, 3) and np.array_equal(strip[:, 128:], expected)
    face = strip[:, :64].astype(float)
    assert face.std() > 20  # an aligned photo, not an empty panel
    sweep = np.asarray(Image.open(out / "astronaut-style1-sweep.png"))
    assert sweep.shape == (5 * 64, 5 * 64, 3)
    zero = to_uint8(official_result(net, instyle, exstyles["s1.jpg"], [0.0] * 10))[0]
    assert np.array_equal(sweep[:64, :64], zero)
    record = json.loads((out / "stylize.jsonl").read_text().splitlines()[-1])
    assert record["exstyle"]["name"] == "s1.jpg"
    assert np.allclose(record["exstyle"]["code"], exstyles["s1.jpg"])
    assert np.allclose(record["instyle"]["code"], instyle)
    assert record["settings"]["weights"] == [0.75] * 7 + [1.0] * 3
    assert record["settings"]["truncation"] == 0.75
    assert record["alignment"]["by"] == "dlib" and len(record["alignment"]["quad"]) == 4


def test_weights_preserve_color_and_sweep_api(files):
    _, net, exstyles, instyle = files
    ex = exstyles["s2.jpg"]
    weights = parse_weights("0.5x7,1x3", net.num_ws)
    settings = StylizeSettings(tuple(weights), preserve_color=True)
    content, exemplar = Code("c", instyle, CodeSpace.Z_PLUS), Code("e", ex, CodeSpace.Z_PLUS)
    ours = stylize(net, content, exemplar, settings)
    mixed = ex.copy()
    mixed[:, 7:] = instyle[:, 7:]
    assert torch.equal(ours, official_result(net, instyle, mixed, weights))
    sweep = weight_sweep(net, content, exemplar,
                         StylizeSettings(tuple(weights), sweep=(0.0, 1.0)))
    assert torch.equal(sweep[1:2], official_result(net, instyle, ex, [0.0] * 7 + [1.0] * 3))
    assert torch.equal(sweep[2:3], official_result(net, instyle, ex, [1.0] * 7 + [0.0] * 3))


def test_weight_parsing():
    assert parse_weights("0.75x7,1x11", 18) == [0.75] * 7 + [1.0] * 11
    assert parse_weights(" ".join(["0.5"] * 4), 4) == [0.5] * 4
    with pytest.raises(StylizeError, match="17 weights.*18 latent layers"):
        parse_weights("0.75x7,1x10", 18)
    with pytest.raises(StylizeError, match="VALUExCOUNT"):
        parse_weights("a,b", 2)


def test_default_weights_fit_a_model_with_fewer_layers_than_res_index():
    net = small_net(resolution=16)
    assert net.num_ws == 6 and net.res_index == 6
    assert default_weights(net) == [DEFAULT_STRUCTURE_WEIGHT] * 6
    assert default_weights(small_net()) == [DEFAULT_STRUCTURE_WEIGHT] * 7 + \
        [DEFAULT_COLOUR_WEIGHT] * 3


@pytest.mark.parametrize("extra,message", [
    (["--style-id", "3"], "--style-id 3: .*exstyle_code.npy holds 3 exemplar codes"),
    (["--style-id", "0", "--weight", "1x9"], "--weight '1x9': 9 weights, but the model has 10"),
    (["--style-id", "0", "--truncation", "1.5"], "--truncation 1.5"),
    (["--style-image", "x.png"], "--style-image x.png: file not found"),
    (["--style-id", "0", "--wplus"], "--wplus: --instyle .*instyle.npz holds z\\+ codes"),
    (["--style-id", "0", "--steps", "0"], "--steps 0: must be >= 1"),
    (["--style-image", "ASTRONAUT"], "--exstyle does not apply with --style-image"),
])
def test_errors_are_one_line(files, capsys, extra, message):
    folder = files[0]
    extra = [str(folder / "astronaut.png") if e == "ASTRONAUT" else e for e in extra]
    assert run(folder, "--aligned", "--out", str(folder / "err"), *extra) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1
    assert __import__("re").search(message, err), err


def test_missing_encoder_and_wrong_code_shape(files, capsys):
    folder, net, *_ = files
    args = ["stylize", str(folder / "astronaut.png"), "--model", str(folder / "dsg.pt"),
            "--style-id", "0", "--out", str(folder / "err"), "--aligned"]
    assert main(args + ["--encoder", str(folder / "nope.pt")]) == 2
    assert "nope.pt: file not found" in capsys.readouterr().err
    assert main(args + ["--encoder", str(folder / "dsg.pt")]) == 2
    assert "--encoder " in (err := capsys.readouterr().err) and "dsg.pt: no 'state_dict'" in err
    write_code_dict(folder / "short.npy", ["astronaut.png"], 5, 32)
    assert main(args + ["--instyle", str(folder / "short.npy")]) == 2
    assert "short.npy: z+ code of shape [1, 5, 32]" in capsys.readouterr().err


def test_generate_points_a_dualstylegan_checkpoint_to_stylize(files, capsys):
    folder = files[0]
    assert main(["generate", str(folder / "dsg.pt"), "--out", str(folder / "gen"),
                 "--seeds", "0", "--device", "cpu"]) == 2
    assert "ffhq-tools stylize" in capsys.readouterr().err

"""`stylize` through the projection route (no --instyle, --style-image) with a tiny random
DualStyleGAN and a random VGG16 through --weights: the result equals the official procedure
computed from the saved projected codes (a w+ exemplar code skips the mapping), a rerun
reuses the codes, and the z+ / w+ space handling of codes and code files."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from dualstylegan_fixtures import SMALL, small_net, write_code_dict
from PIL import Image
from vgg_helpers import write_random_vgg16

from ffhq_tools.cli import main
from models.checkpoint import save_checkpoint
from models.dualstylegan_codes import (
    Code,
    CodeFileError,
    CodeSet,
    CodeSpace,
    read_codes,
    write_codes,
)
from models.generate import to_uint8
from models.stylize import StylizeSettings, default_weights, stylize

STEPS = "3"


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    from skimage import data

    folder = tmp_path_factory.mktemp("stylize-proj")
    net = small_net()
    save_checkpoint(folder / "dsg.pt", config={"model": SMALL.to_dict(), "resolution": 64},
                    G=net, G_ema=net)
    face = np.asarray(Image.fromarray(data.astronaut()[30:250, 150:370]).resize((64, 64)))
    Image.fromarray(face).save(folder / "astronaut.png")
    style = np.asarray(Image.fromarray(data.coffee()).resize((80, 64)))
    Image.fromarray(style).save(folder / "coffee.png")
    exstyles = write_code_dict(folder / "exstyle_code.npy", ["s0.jpg", "s1.jpg"], net.num_ws,
                               32, seed=1)
    vgg = write_random_vgg16(folder / "vgg16-random.pth", seed=5)
    return folder, net, exstyles, vgg


def run(folder, vgg, out, *extra):
    exstyle = [] if "--style-image" in extra else ["--exstyle", str(folder / "exstyle_code.npy")]
    return main(["stylize", str(folder / "astronaut.png"), "--model", str(folder / "dsg.pt"),
                 *exstyle, "--aligned", "--out", str(out),
                 "--steps", STEPS, "--distance", "lpips-vgg", "--weights", f"vgg16={vgg}",
                 "--sweep", "0,1", "--device", "cpu", "-q", *extra])


def reference(net, in_ws, ex_ws, weights, truncation=0.75):
    """style_transfer.py's last step with W+ codes: intrinsic truncated towards 0."""
    with torch.no_grad():
        return to_uint8(net.synthesize(torch.from_numpy(in_ws) * truncation,
                                       torch.from_numpy(ex_ws), interp_weights=weights,
                                       noise_mode="const"))[0]


def projected(out, role, name):
    with np.load(out / "projection" / role / name / "projected_w.npz") as f:
        return f["w"]


def test_projection_route_end_to_end_and_rerun_reuses_codes(files, monkeypatch, capsys):
    folder, net, exstyles, vgg = files
    out = folder / "out"
    assert run(folder, vgg, out, "--style-id", "1") == 0
    w = projected(out, "content", "astronaut")
    assert w.shape == (1, net.num_ws, net.w_dim)
    result = json.loads((out / "projection" / "content" / "astronaut" / "result.json")
                        .read_text())
    assert result["steps"] == int(STEPS)
    with torch.no_grad():
        ex_w = net.map_z(torch.from_numpy(exstyles["s1.jpg"])).numpy()
    expected = reference(net, w, ex_w, default_weights(net))
    image = np.asarray(Image.open(out / "astronaut-style1.png"))
    assert np.array_equal(image, expected)
    record = json.loads((out / "stylize.jsonl").read_text().splitlines()[-1])
    assert record["instyle"]["source"] == "projection" and record["instyle"]["space"] == "w+"
    assert record["instyle"]["file"].endswith("content/astronaut/projected_w.npz")
    assert record["instyle"]["projection"]["protocol"]["steps"] == int(STEPS)
    assert record["instyle"]["projection"]["weights"]["vgg16"]
    assert record["exstyle"]["space"] == "z+"

    def no_steps(*_):
        raise AssertionError("a rerun must reuse the saved projection")

    monkeypatch.setattr("models.project.projector.Projector.step", no_steps)
    assert run(folder, vgg, out, "--style-id", "0") == 0
    assert np.array_equal(projected(out, "content", "astronaut"), w)
    capsys.readouterr()
    assert run(folder, vgg, out, "--style-id", "0", "--seed", "7") == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "seed" in err and "another --out" in err


def test_style_image_is_projected_and_its_w_plus_code_skips_the_mapping(files):
    folder, net, _, vgg = files
    out = folder / "out-style"
    assert run(folder, vgg, out, "--style-image", str(folder / "coffee.png")) == 0
    w_content = projected(out, "content", "astronaut")
    w_style = projected(out, "style", "coffee")
    expected = reference(net, w_content, w_style, default_weights(net))
    assert np.array_equal(np.asarray(Image.open(out / "astronaut-coffee.png")), expected)
    with torch.no_grad():  # mapping the w+ code as if it were z+ renders something else
        mapped = net.map_z(torch.from_numpy(w_style)).numpy()
    assert not np.array_equal(reference(net, w_content, mapped, default_weights(net)),
                              expected)
    record = json.loads((out / "stylize.jsonl").read_text().splitlines()[-1])
    assert record["exstyle"]["source"] == "projection" and record["exstyle"]["space"] == "w+"
    strip = np.asarray(Image.open(out / "astronaut-coffee-strip.png"))
    target = np.asarray(Image.open(out / "projection" / "style" / "coffee" / "target.png"))
    assert np.array_equal(strip[:, 64:128], target)


def test_w_plus_code_renders_as_the_equivalent_z_plus_code():
    net = small_net()
    rng = np.random.RandomState(4)
    z_in = rng.randn(1, net.num_ws, 32).astype(np.float32)
    z_ex = rng.randn(1, net.num_ws, 32).astype(np.float32)
    with torch.no_grad():
        w_in, w_ex = (net.map_z(torch.from_numpy(z)).numpy() for z in (z_in, z_ex))
    z_plus = [Code("c", z_in, CodeSpace.Z_PLUS), Code("e", z_ex, CodeSpace.Z_PLUS)]
    w_plus = [Code("c", w_in, CodeSpace.W_PLUS), Code("e", w_ex, CodeSpace.W_PLUS)]
    for preserve in (False, True):
        settings = StylizeSettings(tuple(default_weights(net)), preserve_color=preserve)
        ref = stylize(net, *z_plus, settings)
        torch.testing.assert_close(stylize(net, *w_plus, settings), ref, atol=1e-5, rtol=0)
        torch.testing.assert_close(stylize(net, z_plus[0], w_plus[1], settings), ref,
                                   atol=1e-5, rtol=0)
        torch.testing.assert_close(stylize(net, w_plus[0], z_plus[1], settings), ref,
                                   atol=1e-5, rtol=0)
    settings = StylizeSettings(tuple(default_weights(net)))
    wrong = Code("e", w_ex, CodeSpace.Z_PLUS)  # a w+ code taken for z+ goes through mapping
    assert (stylize(net, z_plus[0], wrong, settings) - ref).abs().max() > 1e-3


def test_code_files_keep_their_space(tmp_path, capsys):
    codes = np.random.RandomState(0).randn(2, 10, 32).astype(np.float32)
    write_codes(tmp_path / "w.npz", CodeSet(["a.png", "b.png"], codes, "t", CodeSpace.W_PLUS))
    back = read_codes(tmp_path / "w.npz")
    assert back.space is CodeSpace.W_PLUS and back.names == ["a.png", "b.png"]
    assert np.array_equal(back.codes, codes)
    (tmp_path / "astronaut").mkdir()
    np.savez(tmp_path / "astronaut" / "projected_w.npz", w=codes[:1])
    proj = read_codes(tmp_path / "astronaut" / "projected_w.npz")
    assert proj.space is CodeSpace.W_PLUS and proj.names == ["astronaut"]
    np.save(tmp_path / "plain.npy", codes)
    with pytest.raises(CodeFileError, match="does not say whether its codes are z.*--wplus"):
        read_codes(tmp_path / "plain.npy")
    assert read_codes(tmp_path / "plain.npy", CodeSpace.Z_PLUS).space is CodeSpace.Z_PLUS
    official = tmp_path / "instyle_code.npy"
    write_code_dict(official, ["astronaut.png"], 10, 32)
    assert read_codes(official).space is CodeSpace.Z_PLUS

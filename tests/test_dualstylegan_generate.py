"""`generate --dualstylegan`: random intrinsic x extrinsic grids (from the exstyle file or the
samplers) equal the official generate.py procedure computed here, are deterministic, and the
style interpolation's end frames are the two exemplars' renders."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from dualstylegan_fixtures import SMALL, small_net, write_code_dict, write_sampler_pt
from PIL import Image

from ffhq_tools.cli import main
from models.checkpoint import save_checkpoint
from models.dualstylegan_codes import convert_sampler
from models.generate import to_uint8

RES = 64


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("dsg-generate")
    net = small_net()
    save_checkpoint(folder / "dsg.pt", config={"model": SMALL.to_dict(), "resolution": RES},
                    G=net, G_ema=net)
    codes = write_code_dict(folder / "exstyle_code.npy", ["s0.jpg", "s1.jpg"], net.num_ws, 32,
                            seed=3)
    write_sampler_pt(folder / "sampler-official.pt", 7, net.num_ws - 7, 32)
    convert_sampler(folder / "sampler-official.pt", folder / "sampler.pt")
    return folder, net, codes


def generate(folder, out, *extra):
    return main(["generate", str(folder / "dsg.pt"), "--dualstylegan", "--out", str(out),
                 "--device", "cpu", "-q", *extra])


def official(net, seed, ex_z, weights, truncation=0.5):
    """generate.py: instyle = one z, mapped and truncated towards 0; exstyle through the
    base mapping; constant noise."""
    z = torch.from_numpy(np.random.RandomState(seed).randn(1, 32)).float()
    with torch.no_grad():
        return to_uint8(net(z, net.map_z(torch.from_numpy(ex_z)), interp_weights=weights,
                            truncation=truncation, truncation_latent=0.0,
                            noise_mode="const"))[0]


def cell(grid, row, col):
    return grid[row * RES:(row + 1) * RES, col * RES:(col + 1) * RES]


def close(a, b):  # batched vs single renders may differ by one level after rounding
    return np.abs(a.astype(int) - b.astype(int)).max() <= 1


def test_grid_shape_content_and_determinism(files, tmp_path):
    folder, net, codes = files
    args = ("--seeds", "0-2", "--style-ids", "1,0")
    assert generate(folder, tmp_path / "a", *args) == 0
    assert generate(folder, tmp_path / "b", *args) == 0
    grid = np.asarray(Image.open(tmp_path / "a" / "dualstylegan-grid.png"))
    assert grid.shape == (4 * RES, 3 * RES, 3)
    assert np.array_equal(grid, np.asarray(Image.open(tmp_path / "b" / "dualstylegan-grid.png")))
    weights = [0.75] * 7 + [1.0] * 3
    for row, seed in enumerate((0, 1, 2), start=1):
        for col, name in enumerate(("s1.jpg", "s0.jpg"), start=1):
            assert close(cell(grid, row, col), official(net, seed, codes[name], weights))
        z = torch.from_numpy(np.random.RandomState(seed).randn(1, 32)).float()
        with torch.no_grad():  # the header column: the plain base generator
            plain = net.generator.synthesis(net.generator.mapping(z, None) * 0.5,
                                            noise_mode="const")
        assert close(cell(grid, row, 0), to_uint8(plain)[0])
    assert not cell(grid, 0, 0).any()
    record = json.loads((tmp_path / "a" / "dualstylegan.json").read_text())
    assert record["styles"] == [1, 0] and record["seeds"] == [0, 1, 2]
    assert [e["name"] for e in record["exemplars"]] == ["s1.jpg", "s0.jpg"]


def test_sampled_exemplars_follow_the_official_samplers(files, tmp_path):
    folder, net, _ = files
    from models.dualstylegan_codes import load_samplers

    assert generate(folder, tmp_path / "s", "--seeds", "4", "--sampler",
                    str(folder / "sampler.pt"), "--style-seeds", "7,8", "--weight",
                    "1x10") == 0
    grid = np.asarray(Image.open(tmp_path / "s" / "dualstylegan-grid.png"))
    assert grid.shape == (2 * RES, 3 * RES, 3)
    samplers = load_samplers(folder / "sampler.pt")
    for col, seed in enumerate((7, 8), start=1):
        noise = torch.from_numpy(np.random.RandomState(seed).randn(2, 128)).float()
        with torch.no_grad():
            ex_z = torch.cat([samplers["structure"](noise[:1]).reshape(1, 7, 32),
                              samplers["color"](noise[1:]).reshape(1, 3, 32)], dim=1)
        assert close(cell(grid, 1, col), official(net, 4, ex_z.numpy(), [1.0] * 10))


def test_style_interpolation_ends_at_the_two_exemplars(files, tmp_path):
    folder, net, codes = files
    out = tmp_path / "i"
    assert generate(folder, out, "--seeds", "0,1", "--style-ids", "0,1",
                    "--interpolate-styles", "0,1", "--frames", "4", "--fps", "5") == 0
    grid = np.asarray(Image.open(out / "dualstylegan-grid.png"))
    frames = sorted((out / "style-interp").glob("frame-*.png"))
    assert len(frames) == 4
    first, last = (np.asarray(Image.open(f)) for f in (frames[0], frames[-1]))
    assert first.shape == (RES, 2 * RES, 3)
    for i in range(2):
        assert np.array_equal(first[:, i * RES:(i + 1) * RES], cell(grid, i + 1, 1))
        assert np.array_equal(last[:, i * RES:(i + 1) * RES], cell(grid, i + 1, 2))
    middle = np.asarray(Image.open(frames[1]))
    assert not np.array_equal(middle, first) and not np.array_equal(middle, last)
    record = json.loads((out / "dualstylegan.json").read_text())
    assert (out / record["interpolation"]["video"]).stat().st_size > 0


@pytest.mark.parametrize("extra,message", [
    (["--style-ids", "5"], "--style-ids 5: .*exstyle_code.npy holds 2 exemplar codes"),
    (["--style-ids", "0,1", "--weight", "1x9"],
     "--weight '1x9': 9 weights, but the model has 10"),
    (["--style-ids", "0,1", "--interpolate-styles", "0"],
     "--interpolate-styles '0': expected two exemplars"),
    (["--style-ids", "0,1", "--interpolate-styles", "0,4"],
     "--interpolate-styles 4: .*holds 2 exemplar codes"),
    (["--style-seeds", "1"], "--style-seeds needs --sampler"),
    (["--style-mixing", "1"], "--style-mixing does not apply to --dualstylegan"),
])
def test_errors_name_the_flag(files, tmp_path, capsys, extra, message):
    assert generate(files[0], tmp_path / "e", *extra) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1
    assert __import__("re").search(message, err), err


def test_dualstylegan_flag_on_a_stylegan2_checkpoint(tmp_path, capsys):
    from project_helpers import save_tiny_checkpoint, tiny_generator

    ckpt = save_tiny_checkpoint(tmp_path / "sg2.pt", *tiny_generator())
    assert main(["generate", str(ckpt), "--dualstylegan", "--out", str(tmp_path / "o"),
                 "--device", "cpu"]) == 2
    assert "is a Generator checkpoint, not a DualStyleGAN" in capsys.readouterr().err

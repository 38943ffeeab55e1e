"""Generation API (seeded images, figures) and the configs / import-checkpoint / generate
verbs end to end."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from PIL import Image

from ffhq_tools.cli import main
from ffhq_tools.errors import FfhqToolsError
from models import generate as gen
from models.checkpoint import load_generator, save_checkpoint
from models.configs import build_networks, get_config


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory):
    torch.manual_seed(0)
    config = get_config("tiny")
    G, D = build_networks(config, 16)
    with torch.no_grad():
        for name, p in G.named_parameters():
            if "noise_strength" in name:
                p.fill_(0.3)
        G.mapping.w_avg.copy_(torch.randn(G.w_dim))
    path = tmp_path_factory.mktemp("ckpt") / "tiny.pt"
    save_checkpoint(path, config={"model": config.to_dict(), "resolution": 16}, G=G, D=D)
    return path


@pytest.fixture(scope="module")
def G(tiny_ckpt):
    return load_generator(tiny_ckpt)


def test_parse_seeds():
    assert list(gen.parse_seeds("0-3,10")) == [0, 1, 2, 3, 10]
    for bad in ("3-1", "a", "1-", "4294967296", "0-4294967296"):
        with pytest.raises(FfhqToolsError, match="--seeds"):
            gen.parse_seeds(bad)
    assert list(gen.parse_seeds("4294967295")) == [2 ** 32 - 1]


def test_seed_ranges_are_lazy_and_index_like_a_list():
    seeds = gen.parse_seeds("5-9,100,0-100000000")
    assert len(seeds) == 5 + 1 + 100000001
    assert seeds[0] == 5 and seeds[4] == 9 and seeds[5] == 100 and seeds[6] == 0
    assert seeds[-1] == 100000000 and seeds[:7] == [5, 6, 7, 8, 9, 100, 0]
    with pytest.raises(IndexError):
        seeds[len(seeds)]
    expected = [5, 6, 7, 8, 9, 100, 0, 1, 2]
    assert list(itertools.islice(seeds, 9)) == expected
    merged = gen.parse_seeds("10-20,3").union(gen.parse_seeds("0-2,21,30"))
    assert merged.spec() == "0-3,10-21,30"


def test_random_noise_depends_only_on_the_seed(G):
    by_batch_1 = dict(gen.generate_images(G, [5, 6, 7], noise_mode="random", batch_size=1))
    by_batch_3 = dict(gen.generate_images(G, [7, 6, 5], noise_mode="random", batch_size=3))
    consts = dict(gen.generate_images(G, [5], noise_mode="const"))
    for seed in (5, 6, 7):
        np.testing.assert_array_equal(by_batch_1[seed], by_batch_3[seed])
    assert not np.array_equal(by_batch_1[5], consts[5])  # noise strength 0.3: noise shows


def test_images_depend_only_on_seed_and_quantise_like_the_metrics(G):
    by_batch_1 = dict(gen.generate_images(G, [5, 6, 7], batch_size=1))
    by_batch_3 = dict(gen.generate_images(G, [7, 6, 5], batch_size=3))
    for seed in (5, 6, 7):
        np.testing.assert_array_equal(by_batch_1[seed], by_batch_3[seed])
    z = torch.from_numpy(np.random.RandomState(6).randn(1, G.z_dim)).float()
    raw = G(z, noise_mode="const")
    expected = (raw * 127.5 + 128).clamp(0, 255).to(torch.uint8)[0].permute(1, 2, 0).numpy()
    np.testing.assert_array_equal(by_batch_1[6], expected)


def test_style_mixing_cells_take_the_right_layers(G):
    grids = gen.style_mixing_grids(G, [1, 2], [3], noise_mode="const")
    assert set(grids) == {"coarse", "middle"}  # 16 px: num_ws = 6, no fine layers
    ws_a = gen.map_seeds(G, [1, 2])
    ws_b = gen.map_seeds(G, [3])
    mixed = ws_a[1:2].clone()
    mixed[:, 0:4] = ws_b[:, 0:4]
    cell = gen.synthesize(G, mixed, "const", 4)[0]
    np.testing.assert_array_equal(grids["coarse"][16:32, 32:48], cell)  # row 1, column 2
    np.testing.assert_array_equal(grids["coarse"][:16, :16], 0)  # blank corner


def test_truncation_sweep_psi_zero_is_the_average_image(G):
    grid = gen.truncation_sweep(G, [1, 2], [1.0, 0.0], noise_mode="const")
    assert grid.shape == (32, 32, 3)
    np.testing.assert_array_equal(grid[:16, 16:], grid[16:, 16:])  # psi 0: both rows w_avg
    assert not np.array_equal(grid[:16, :16], grid[16:, :16])


@pytest.mark.parametrize("space", ["z", "w"])
def test_interpolation_ends_at_the_seeds(G, space):
    frames = list(gen.interpolation_frames(G, [1, 2], 4, space))
    assert len(frames) == 5
    ends = dict(gen.generate_images(G, [1, 2]))
    np.testing.assert_array_equal(frames[0], ends[1])
    np.testing.assert_array_equal(frames[-1], ends[2])


def test_slerp_keeps_norm_for_equal_norm_endpoints():
    a, b = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])
    mid = gen.slerp(a, b, 0.5)
    assert float(mid.norm()) == pytest.approx(1.0)
    torch.testing.assert_close(mid, torch.tensor([0.5 ** 0.5, 0.5 ** 0.5]))


def test_noise_variation_std_map(G):
    images, std = gen.noise_variation(G, 3, num=4)
    assert images.shape == (4, 16, 16, 3) and std.shape == (16, 16) and std.max() == 255
    assert len({img.tobytes() for img in images}) == 4


def test_generate_verb_writes_images_figures_and_resumes(tiny_ckpt, tmp_path, capsys):
    out = tmp_path / "out"
    argv = ["generate", str(tiny_ckpt), "--out", str(out), "--seeds", "0-3", "--trunc", "0.7",
            "--device", "cpu", "--batch", "3", "--style-mixing", "10-11",
            "--noise-variation", "3", "--truncation-sweep", "1,0.5,0", "--interpolate", "w",
            "--frames", "2"]
    assert main(argv) == 0
    assert {p.name for p in out.iterdir()} == {"options.json", "samples", "grid.png",
                                              "figures"}
    assert {p.name for p in (out / "samples").iterdir()} == {f"seed000{i}.png" for i in range(4)}
    figures = {p.name for p in (out / "figures").iterdir()}
    assert {"style-mixing-coarse.png", "noise-seed0001.png", "noise-seed0001-std.png",
            "truncation-sweep.png", "interp-w"} <= figures
    assert len(list((out / "figures" / "interp-w").iterdir())) == 7
    first = np.asarray(Image.open(out / "samples" / "seed0002.png"))
    assert first.shape == (16, 16, 3)
    assert main(["generate", str(tiny_ckpt), "--out", str(out), "--seeds", "0-4",
                 "--trunc", "0.7", "--device", "cpu"]) == 0
    assert "(1 new, 4 kept)" in capsys.readouterr().out
    np.testing.assert_array_equal(np.asarray(Image.open(out / "samples" / "seed0002.png")),
                                  first)


def test_configs_and_import_verbs(tmp_path, capsys):
    import legacy_fixtures as fx

    assert main(["configs", "list"]) == 0
    assert "stylegan2-F" in capsys.readouterr().out
    assert main(["configs", "show", "stylegan-E"]) == 0
    shown = capsys.readouterr().out
    assert "differences from stylegan-D" in shown and "use_noise: False -> True" in shown
    assert main(["configs", "show", "stylegan-Z"]) == 2
    assert "unknown model config" in capsys.readouterr().err
    torch.manual_seed(1)
    G, D = build_networks(get_config("tiny"), 16)
    src, dst = tmp_path / "ros.pt", tmp_path / "ours.pt"
    fx.write_rosinality(src, G, D, G)
    assert main(["import-checkpoint", str(src), str(dst)]) == 0
    printed = capsys.readouterr().out
    assert "rosinality" in printed and "G_ema:" in printed and dst.exists()
    assert main(["import-checkpoint", str(src), str(dst)]) == 2  # refuses to overwrite
    assert main(["import-checkpoint", str(tmp_path / "nope.pkl"), str(tmp_path / "x.pt")]) == 2
    assert "nope.pkl: no such file" in capsys.readouterr().err


def test_style_mixing_refuses_traditional_generators():
    G, _ = build_networks(get_config("tiny-progan"), 16)
    with pytest.raises(FfhqToolsError, match="style-based"):
        gen.style_mixing_grids(G, [1], [2])

"""Every named config trains a few steps with the real networks; snapshots resume exactly."""

from __future__ import annotations

import json

import pytest
import torch
from train_standins import (
    one_thread,  # noqa: F401 - autouse fixture
    write_shapes_h5,
)

from models.configs import CONFIGS
from models.train import TrainOptions, train


@pytest.fixture(scope="module")
def shapes16(tmp_path_factory):
    return write_shapes_h5(tmp_path_factory.mktemp("data") / "shapes.h5", count=32,
                           resolution=16)


def _options(data, outdir, config="tiny", **changes):
    base = dict(config=config, data=str(data), outdir=str(outdir), kimg=0.016, batch=4,
                tick_kimg=0.008, snap=1, channel_max=16, workers=0, grid_size=4,
                progress=False, device="cpu")
    base.update(changes)
    return TrainOptions(**base)


def test_tiny_run_writes_the_run_folder(shapes16, tmp_path):
    run = train(_options(shapes16, tmp_path))
    names = sorted(p.name for p in run.iterdir())
    assert "options.json" in names and "log.txt" in names and "reals.png" in names
    assert "network-snapshot-000000.016.pt" in names and "fakes000000.016.pt" not in names
    stats = [json.loads(line) for line in (run / "stats.jsonl").read_text().splitlines()]
    assert [s["kimg"] for s in stats] == [0.004, 0.012, 0.016]
    assert all(s["sec_per_kimg"] > 0 and "Loss/G/loss" in s for s in stats)
    options = json.loads((run / "options.json").read_text())
    assert options["plan"]["r1_interval"] == 16 and options["plan"]["batch"] == 4


@pytest.mark.parametrize("cond", [False, True], ids=["unconditional", "conditional"])
def test_resume_from_run_folder_is_exact(cond, shapes16, tmp_path):
    from models.checkpoint import load_checkpoint

    straight = train(_options(shapes16, tmp_path / "a", kimg=0.024, cond=cond))
    half = train(_options(shapes16, tmp_path / "b", kimg=0.012, cond=cond))
    torch.manual_seed(4321)
    resumed = train(_options(shapes16, tmp_path / "c", kimg=0.024, resume=str(half)))
    assert resumed == half  # a run folder continues in place
    a = load_checkpoint(straight / "network-snapshot-000000.024.pt")
    b = load_checkpoint(resumed / "network-snapshot-000000.024.pt")
    for name in ("G", "D", "G_ema"):
        for (key, x), (_, y) in zip(getattr(a, name).state_dict().items(),
                                    getattr(b, name).state_dict().items(), strict=True):
            assert torch.equal(x, y), f"{name}.{key} differs after resume"
    assert a.training_state["kimg"] == b.training_state["kimg"] == 0.024
    assert a.G.c_dim == b.D.c_dim == (2 if cond else 0)


# One of each architecture / loss / growing mode runs locally; CI (slow) runs every config.
REPRESENTATIVE = ("tiny", "tiny-stylegan", "tiny-progan", "stylegan2-F", "stylegan2-A",
                  "stylegan-A", "cifar")
EVERY_CONFIG = [name if name in REPRESENTATIVE else pytest.param(name, marks=pytest.mark.slow)
                for name in sorted(CONFIGS) if CONFIGS[name].arch != "dualstylegan"]


@pytest.mark.parametrize("name", EVERY_CONFIG)
def test_every_named_config_trains(name, shapes16, tmp_path):
    """Two steps (the first runs every phase: G main, path length, D main, R1 / GP)."""
    run = train(_options(shapes16, tmp_path, config=name, kimg=0.008, tick_kimg=0.004,
                         snap=0))
    stats = [json.loads(line) for line in (run / "stats.jsonl").read_text().splitlines()]
    assert stats[-1]["kimg"] == 0.008
    losses = [v for s in stats for k, v in s.items() if k.startswith("Loss/")]
    assert losses and all(v == v and abs(v) < 1e6 for v in losses)


FAST_GROWTH = {"lod_training_kimg": 0.004, "lod_transition_kimg": 0.008}


@pytest.mark.parametrize("name", ["tiny-stylegan", "tiny-progan"])
def test_progressive_growing_fades_levels_in(name, shapes16, tmp_path):
    run = train(_options(shapes16, tmp_path, config=name, kimg=0.032, tick_kimg=0.004, snap=0,
                         config_overrides=FAST_GROWTH))
    stats = [json.loads(line) for line in (run / "stats.jsonl").read_text().splitlines()]
    lods = [s["lod"] for s in stats]
    top = 1.0 if name == "tiny-stylegan" else 2.0  # start at 8px / 4px, train at 16px
    assert lods[0] == top and lods[-1] < top and lods == sorted(lods, reverse=True)
    assert any(0 < lod % 1 for lod in lods)  # a fade-in was seen
    assert stats[0]["resolution"] == 16 // 2 ** int(top)


def test_progressive_resume_is_exact(shapes16, tmp_path):
    from models.checkpoint import load_checkpoint

    opts = dict(config="tiny-stylegan", config_overrides=FAST_GROWTH)
    straight = train(_options(shapes16, tmp_path / "a", kimg=0.016, **opts))
    half = train(_options(shapes16, tmp_path / "b", kimg=0.008, **opts))
    resumed = train(_options(shapes16, tmp_path / "c", kimg=0.016, resume=str(half),
                             config="tiny-stylegan"))
    a = load_checkpoint(straight / "network-snapshot-000000.016.pt")
    b = load_checkpoint(resumed / "network-snapshot-000000.016.pt")
    assert a.G.lod == b.G.lod < 1.0
    for x, y in zip(a.G_ema.state_dict().values(), b.G_ema.state_dict().values(), strict=True):
        assert torch.equal(x, y)


def test_bf16_autocast_and_channels_last_train(shapes16, tmp_path):
    run = train(_options(shapes16, tmp_path, kimg=0.008, tick_kimg=0.004, snap=0,
                         precision="bf16", channels_last=True))
    stats = [json.loads(line) for line in (run / "stats.jsonl").read_text().splitlines()]
    losses = [v for s in stats for k, v in s.items() if k.startswith("Loss/")]
    assert losses and all(abs(v) < 1e6 for v in losses)


def test_resume_auto_continues_the_newest_matching_run(shapes16, tmp_path):
    first = train(_options(shapes16, tmp_path, kimg=0.008, resume="auto"))  # nothing yet
    again = train(_options(shapes16, tmp_path, kimg=0.016, resume="auto"))
    assert again == first and (first / "network-snapshot-000000.016.pt").exists()
    other = train(_options(shapes16, tmp_path, config="tiny-progan", kimg=0.004,
                           resume="auto"))
    assert other != first and other.name.endswith("-shapes-tiny-progan")

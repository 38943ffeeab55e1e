"""DualStyleGAN step 1 (fine-tune StyleGAN2 on a style set) through `train --resume --config`."""

from __future__ import annotations

import json

import pytest
import torch
from train_standins import one_thread, write_shapes_h5  # noqa: F401 - autouse fixture

from ffhq_tools.errors import FfhqToolsError
from models.checkpoint import load_checkpoint, save_checkpoint
from models.configs import build_networks, get_config
from models.train import TrainOptions, resolve_run, train

TINY_NETWORK = {k: getattr(get_config("tiny"), k) for k in (
    "z_dim", "w_dim", "mapping_layers", "channel_base", "channel_max", "mbstd_group")}


@pytest.fixture(scope="module")
def imported(tmp_path_factory):
    """A 16 px StyleGAN2 checkpoint without training state (as import-checkpoint writes)."""
    folder = tmp_path_factory.mktemp("recipe")
    torch.manual_seed(0)
    config = get_config("tiny")
    G, D = build_networks(config, 16)
    ckpt = save_checkpoint(folder / "ffhq.pt", config={"model": config.to_dict(),
                                                       "resolution": 16}, G=G, D=D, G_ema=G)
    return ckpt, write_shapes_h5(folder / "style.h5", count=16, resolution=16)


def test_style_finetune_config_is_the_official_recipe():
    config = get_config("stylegan2-style-finetune")
    assert (config.r1_gamma, config.r1_interval, config.pl_weight, config.pl_interval) == \
        (10.0, 16, 2.0, 4)
    assert (config.mixing_prob, config.lr, config.batch) == (0.9, 0.002, 32)
    assert config.total_kimg * 1000 / config.batch == pytest.approx(600)  # iterations
    assert config.arch == "stylegan2" and config.base == "stylegan2-F"


def test_train_resume_with_the_config_starts_from_the_checkpoint(imported, tmp_path):
    ckpt, data = imported
    options = TrainOptions(resume=str(ckpt), config="stylegan2-style-finetune", data=str(data),
                           outdir=str(tmp_path), config_overrides=TINY_NETWORK, batch=4,
                           kimg=0.004, tick_kimg=0.004, snap=1, workers=0, grid_size=4,
                           progress=False, device="cpu")
    resolved = resolve_run(dataclass_replace(options, kimg=None, batch=None))
    assert resolved.transfer and resolved.plan.batch == 32
    assert resolved.options.kimg == pytest.approx(19.2)
    assert (resolved.plan.r1_gamma, resolved.plan.pl_weight, resolved.plan.mixing_prob) == \
        (10.0, 2.0, 0.9)
    run = train(options)
    frozen = json.loads((run / "options.json").read_text())
    assert frozen["transfer"] and frozen["model"]["name"] == "stylegan2-style-finetune"
    source = load_checkpoint(ckpt).G.state_dict()
    after = load_checkpoint(next(run.glob("network-snapshot-*.pt"))).G.state_dict()
    # one step of Adam (lr 0.002) away from the checkpoint, far from a fresh initialisation
    torch.manual_seed(1)
    fresh = build_networks(get_config("tiny"), 16)[0].state_dict()
    key = "synthesis.b16.conv1.weight"
    assert (after[key] - source[key]).abs().max() < 0.01
    assert (fresh[key] - source[key]).abs().max() > 0.5


def test_train_refuses_dualstylegan_configs(imported, tmp_path):
    _, data = imported
    with pytest.raises(FfhqToolsError, match="dualstylegan-train"):
        resolve_run(TrainOptions(config="tiny-dualstylegan", data=str(data),
                                 outdir=str(tmp_path), device="cpu"))


def dataclass_replace(options, **changes):
    import dataclasses

    return dataclasses.replace(options, **changes)


def test_transfer_starts_a_new_run_from_a_trained_snapshot(imported, tmp_path, capsys):
    from ffhq_tools.cli import main

    ckpt, data = imported
    common = ["--data", str(data), "--batch", "4", "--kimg", "0.004", "--tick", "0.004",
              "--snap", "1", "--workers", "0", "--grid", "4", "--no-progress",
              "--device", "cpu"]
    assert main(["train", "--resume", str(ckpt), "--outdir", str(tmp_path / "a"), *common,
                 "--config", "tiny"]) == 0
    trained = next((tmp_path / "a").glob("*/network-snapshot-*.pt"))
    assert load_checkpoint(trained).training_state  # a snapshot that could be continued
    cfg = [x for key, value in TINY_NETWORK.items() for x in ("--cfg", f"{key}={value}")]
    style = ["--config", "stylegan2-style-finetune", *cfg, "--outdir", str(tmp_path / "b")]
    assert main(["train", "--resume", str(trained), *common, *style]) == 2
    assert "add --transfer" in capsys.readouterr().err
    assert main(["train", "--resume", str(trained), "--transfer", *common, *style]) == 0
    run = next((tmp_path / "b").glob("00000-*"))
    frozen = json.loads((run / "options.json").read_text())
    assert frozen["transfer"] and frozen["model"]["name"] == "stylegan2-style-finetune"
    source = load_checkpoint(trained).G.state_dict()
    after = load_checkpoint(next(run.glob("network-snapshot-*.pt"))).G.state_dict()
    key = "synthesis.b16.conv1.weight"
    assert 0 < (after[key] - source[key]).abs().max() < 0.01


@pytest.mark.parametrize("item, message", [
    ("z_dim=32,w_dim=32", "expected a value of type int"),
    ("mixing_prob=true", "expected a value of type float"),
    ("no_such_field=1", "unknown config field(s): no_such_field"),
])
def test_cfg_values_must_fit_the_field(imported, tmp_path, capsys, item, message):
    from ffhq_tools.cli import main

    _, data = imported
    assert main(["train", "--config", "tiny", "--cfg", item, "--data", str(data),
                 "--outdir", str(tmp_path), "--dry-run", "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err

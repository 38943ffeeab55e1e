"""ADA in the trainer: the p controller, exact resume of p, 2 Gloo ranks, every D input
augmented, Freeze-D, transfer from an imported checkpoint, the ada named configs."""

from __future__ import annotations

import json
import os

import pytest
import torch
import torch.multiprocessing as mp
from ports import free_port
from train_standins import (
    build_trainer,
    flat_params,
    one_thread,  # noqa: F401 - autouse fixture
    run_steps,
    write_shapes_h5,
)

from ffhq_tools.errors import FfhqToolsError
from models.augment_control import AdaController, AugmentSettings, adjusted_p
from models.distributed import DistEnv

CPU = DistEnv(0, 1, 0, torch.device("cpu"))


def _feed(controller, signs: list[float], steps: int, batch: int, start_step: int = 0):
    for step in range(start_step + 1, start_step + steps + 1):
        controller.observe(torch.tensor(signs))
        controller.after_step(step, batch)


def test_controller_raises_p_above_target_at_the_configured_rate():
    settings = AugmentSettings("ada", target=0.6, ada_kimg=500)
    ada = AdaController(settings, CPU)
    _feed(ada, [1.0, 1.0, 1.0, -1.0], steps=40, batch=64)  # r_t = 0.5 < 0.6 ... lowers
    assert ada.p == 0.0  # clamped at 0
    _feed(ada, [1.0, 1.0, 1.0, 1.0, -1.0], steps=40, batch=64, start_step=40)  # r_t = 0.6
    assert ada.p == 0.0 and ada.last_rt == pytest.approx(0.6)  # at the target: no move
    _feed(ada, [1.0, 1.0, 1.0, 0.5], steps=40, batch=64, start_step=80)  # r_t = 1 > 0.6
    # 40 steps = 10 adjustments of 64 * 4 / 500000
    assert ada.p == pytest.approx(10 * 64 * 4 / 500_000, rel=1e-12)
    assert ada.last_rt == 1.0


def test_controller_adjusts_only_every_interval_and_clamps_at_one():
    settings = AugmentSettings("ada", target=0.6, ada_kimg=0.5)  # one unit per 500 images
    ada = AdaController(settings, CPU)
    ada.observe(torch.ones(8))
    for step in (1, 2, 3):
        ada.after_step(step, 8)
        assert ada.p == 0.0
    ada.after_step(4, 8)
    assert ada.p == pytest.approx(8 * 4 / 500)
    _feed(ada, [1.0] * 8, steps=400, batch=8, start_step=4)
    assert ada.p == 1.0
    assert adjusted_p(0.99, 0.9, settings, 64) == 1.0 and adjusted_p(0.01, 0.1, settings, 64) == 0


def test_fixed_and_bad_settings():
    fixed = AdaController(AugmentSettings("fixed", p=0.8), CPU)
    _feed(fixed, [1.0] * 4, steps=8, batch=4)
    assert fixed.p == 0.8
    with pytest.raises(FfhqToolsError, match="--p 1.5"):
        AugmentSettings("fixed", p=1.5)
    with pytest.raises(FfhqToolsError, match="--aug sometimes"):
        AugmentSettings("sometimes")


ADA_FAST = AugmentSettings("ada", pipeline="bgc", target=0.6, ada_kimg=0.1)


def _ada_trainer(env=None, freeze=0, **changes):
    return build_trainer({"batch": 4, **changes}, {"augment": ADA_FAST, "freeze_d": freeze},
                         env=env, noise=False)


def _rank_worker(rank, world, port, steps, out_path):
    import torch.distributed as dist

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    torch.set_num_threads(1)
    try:
        env = DistEnv(rank, world, rank, torch.device("cpu"))
        # rank-local signs: the controller must sum them over ranks
        lone = AdaController(AugmentSettings("ada", ada_kimg=1.0), env)
        lone.observe(torch.full((3,), 1.0 if rank == 0 else -1.0))
        lone.observe(torch.ones(1))
        lone.after_step(4, 8)
        trainer = _ada_trainer(env)
        run_steps(trainer, steps)
        torch.save({"params": flat_params(trainer.G, trainer.D, trainer.G_ema),
                    "p": trainer.ada.p, "lone_p": lone.p, "rt": lone.last_rt},
                   f"{out_path}.{rank}")
    finally:
        dist.destroy_process_group()


def test_two_gloo_ranks_share_p_and_equal_one_process(tmp_path):
    steps, out = 8, tmp_path / "ranks"
    mp.start_processes(_rank_worker, args=(2, free_port(), steps, str(out)), nprocs=2,
                       join=True, start_method="fork")
    r0, r1 = (torch.load(f"{out}.{r}", weights_only=True) for r in (0, 1))
    # signs [1,1,1,1] and [-1,-1,-1,1]: r_t = 2 / 8 over both ranks (rank 0 alone: 1, p up)
    assert r0["rt"] == r1["rt"] == 0.25
    assert r0["lone_p"] == r1["lone_p"] == 0.0
    assert r0["p"] == r1["p"] and torch.equal(r0["params"], r1["params"])
    single = _ada_trainer()
    run_steps(single, steps)
    assert single.ada.p == r0["p"] and single.ada.p > 0
    torch.testing.assert_close(r0["params"], flat_params(single.G, single.D, single.G_ema),
                               rtol=1e-4, atol=1e-5)


def test_resume_restores_p_and_kimg_exactly(tmp_path):
    from models.train_state import gather_rng

    straight = _ada_trainer()
    run_steps(straight, 10)
    first = _ada_trainer()
    run_steps(first, 6)  # mid-interval: pending signs must survive the snapshot
    state = first.training_state(gather_rng(first.env), first.ada.gathered_state())
    torch.save({"state": state, "opt": first.optimizer_states(), "G": first.G.state_dict(),
                "D": first.D.state_dict(), "G_ema": first.G_ema.state_dict()}, tmp_path / "s.pt")
    data = torch.load(tmp_path / "s.pt", weights_only=True)
    torch.manual_seed(99)
    second = _ada_trainer()
    donor = _ada_trainer()
    for name in ("G", "D", "G_ema"):
        getattr(donor, name).load_state_dict(data[name])
    second.load_state(donor.G, donor.D, donor.G_ema, data["opt"], data["state"])
    assert second.ada.p == first.ada.p > 0 and second.state.cur_nimg == 24
    run_steps(second, 4)
    assert second.ada.p == straight.ada.p and second.state.cur_nimg == straight.state.cur_nimg
    assert torch.equal(flat_params(second.G, second.D), flat_params(straight.G, straight.D))
    # the pending signs decide the next adjustment: other pending signs, another p
    data["state"]["augment"].update(sign_sum=-1000.0, sign_count=1000.0)
    third = _ada_trainer()
    third.load_state(donor.G, donor.D, donor.G_ema, data["opt"], data["state"])
    run_steps(third, 4)
    assert third.ada.p < first.ada.p < straight.ada.p


def test_every_image_d_sees_is_augmented():
    """fakes in G main and D main, reals in D main and R1: D is called on augmented images."""
    trainer = _ada_trainer(r1_interval=1, pl_weight=0.0)
    trainer.ada.p = 1.0
    seen = []
    original = trainer.augment_pipe.forward

    def spy(images, rand=None):
        out = original(images, rand)
        seen.append((images.shape[0], images.requires_grad, not torch.equal(out, images)))
        return out

    trainer.augment_pipe.forward = spy
    run_steps(trainer, 1)
    # Gboth: fakes; Dboth: fakes, reals, reals for R1 (gradients through the pipe)
    assert len(seen) == 4 and all(changed for _, _, changed in seen)
    assert seen[-1][1]  # the R1 input requires grad when it enters the pipe


def test_freeze_d_counts_layers_as_ada():
    from models.configs import build_networks, get_config
    from models.train_loop import frozen_layers
    from models.train_transfer import discriminator_layers

    _, D = build_networks(get_config("tiny"), 32, channel_max=16)
    names = [name for name, _ in discriminator_layers(D)]
    assert names == ["b32.fromrgb", "b32.conv0", "b32.conv1", "b32.skip", "b16.conv0",
                     "b16.conv1", "b16.skip", "b8.conv0", "b8.conv1", "b8.skip"]
    assert frozen_layers(D, 0) == []
    with pytest.raises(FfhqToolsError, match="--freezed 11: the discriminator has 10"):
        frozen_layers(D, 11)


def test_frozen_layers_do_not_train():
    from train_standins import RandomImages

    from models.configs import build_networks, get_config
    from models.distributed import DistEnv as Env
    from models.train_loop import LoopSettings, Trainer
    from models.train_options import TrainOptions, resolve_plan

    torch.manual_seed(0)
    G, D = build_networks(get_config("tiny"), 8, channel_max=8)
    plan = resolve_plan(get_config("tiny"), TrainOptions(config="tiny", data="m", batch=4), 8)
    settings = LoopSettings(total_kimg=1, augment=ADA_FAST, freeze_d=2)
    trainer = Trainer(G, D, plan, RandomImages(), Env(0, 1, 0, torch.device("cpu")), None,
                      settings)
    frozen = {id(p) for p in trainer.frozen_d}
    assert frozen == {id(p) for p in [*D.b8.fromrgb.parameters(), *D.b8.conv0.parameters()]}
    before = {name: p.detach().clone() for name, p in trainer.D.named_parameters()}
    run_steps(trainer, 2)
    for name, p in trainer.D.named_parameters():
        same = torch.equal(before[name], p)
        assert same == (id(p) in frozen), name


@pytest.fixture(scope="module")
def shapes16(tmp_path_factory):
    return write_shapes_h5(tmp_path_factory.mktemp("data") / "shapes.h5", count=32,
                           resolution=16)


def _options(data, outdir, **changes):
    from models.train import TrainOptions

    base = dict(config="tiny", data=str(data), outdir=str(outdir), kimg=0.032, batch=4,
                tick_kimg=0.008, snap=2, channel_max=16, workers=0, grid_size=4,
                progress=False, device="cpu", aug="ada", p=0.5, ada_kimg=0.05, threads=1)
    base.update(changes)
    return TrainOptions(**base)


def test_train_logs_stores_and_resumes_p(shapes16, tmp_path, capsys):
    from models.checkpoint import load_checkpoint
    from models.train import train

    straight = train(_options(shapes16, tmp_path / "a"))
    out = capsys.readouterr().out
    assert "augment    ada bgc" in out and "thread(s) per rank" in out and "32 images" in out
    stats = [json.loads(line) for line in (straight / "stats.jsonl").read_text().splitlines()]
    ps = [s["Progress/augment"] for s in stats]
    # p starts at 0.5 and moves by 4 * 4 / 50 every 4 steps (2 ticks)
    assert len(ps) == 5 and len(set(ps)) > 1 and all("Loss/signs/real" in s for s in stats)
    assert all(0 <= p <= 1 for p in ps) and ps[0] == 0.5
    half = train(_options(shapes16, tmp_path / "b", kimg=0.016))
    with pytest.raises(FfhqToolsError, match="--aug noaug: the snapshot"):
        train(_options(shapes16, tmp_path / "b", resume=str(half), aug="noaug",
                       ada_kimg=None, p=None))
    resumed = train(_options(shapes16, tmp_path / "b", resume=str(half)))
    a = load_checkpoint(straight / "network-snapshot-000000.032.pt").training_state
    b = load_checkpoint(resumed / "network-snapshot-000000.032.pt").training_state
    assert a["kimg"] == b["kimg"] == 0.032
    assert a["augment"]["p"] == b["augment"]["p"] == ps[-1]
    assert a["loop"] == {**b["loop"], "elapsed_s": a["loop"]["elapsed_s"]}


def test_transfer_from_an_imported_checkpoint(shapes16, tmp_path, capsys):
    """A checkpoint without training state (what import-checkpoint writes) starts a new run at
    kimg 0 from its weights; with lr 0 the networks stay exactly the source's."""
    from models.checkpoint import load_checkpoint, save_checkpoint
    from models.configs import build_networks, get_config
    from models.train import train

    torch.manual_seed(5)
    config = get_config("tiny")
    G, D = build_networks(config, 16, channel_max=16)
    source = save_checkpoint(tmp_path / "imported.pt",
                             config={"model": config.to_dict(), "resolution": 16,
                                     "channel_max": 16}, G=G, D=D, G_ema=G)
    run = train(_options(shapes16, tmp_path / "t", kimg=0.008, snap=0, config=None,
                         resume=str(source), freezed=2, config_overrides={"lr": 0.0},
                         ada_kimg=None, p=None))
    out = capsys.readouterr().out
    assert "transfer   weights of" in out and "kimg 0" in out and "ada_kimg 100" in out
    ckpt = load_checkpoint(run / "network-snapshot-000000.008.pt")
    assert ckpt.training_state["kimg"] == 0.008
    for name, net in (("G", G), ("D", D)):  # parameters (w_avg moves as it should)
        for (key, x), y in zip(getattr(ckpt, name).named_parameters(), net.parameters(),
                               strict=True):
            assert torch.equal(x, y), f"{name}.{key}"
    options = json.loads((run / "options.json").read_text())
    assert options["transfer"] and options["plan"]["ema_rampup"] is None


def test_ada_named_configs_and_auto():
    from models.configs import get_config, resolve_auto_config

    expected = {"paper256": (64, 8, 16384, 0.0025, 1.0, 20.0),
                "paper512": (64, 8, 32768, 0.0025, 0.5, 20.0),
                "paper1024": (32, 4, 32768, 0.002, 2.0, 10.0),
                "cifar": (64, 32, 32768, 0.0025, 0.01, 500.0)}
    for name, values in expected.items():
        c = get_config(name)
        assert (c.batch, c.mbstd_group, c.channel_base, c.lr, c.r1_gamma, c.ema_kimg) == values
        assert c.conv_clamp == 256 and c.channel_max == 512
    assert get_config("cifar").total_kimg == 100000 and get_config("cifar").pl_weight == 0
    auto = get_config("auto")
    a = resolve_auto_config(auto, 256, 8)  # mb = max(min(8 * 16, 64), 8) = 64
    assert (a.batch, a.mbstd_group, a.channel_base, a.lr, a.ema_kimg) == (64, 4, 16384,
                                                                           0.0025, 20.0)
    assert a.r1_gamma == pytest.approx(0.0002 * 256**2 / 64)
    b = resolve_auto_config(auto, 1024, 1)  # mb = max(min(1 * 4, 64), 1) = 4
    assert (b.batch, b.mbstd_group, b.channel_base, b.lr) == (4, 4, 32768, 0.002)
    assert b.r1_gamma == pytest.approx(0.0002 * 1024**2 / 4) and b.ema_kimg == 4 * 10 / 32
    assert auto.mapping_layers == 2 and auto.ema_rampup == 0.05
    assert resolve_auto_config(get_config("paper256"), 64, 3) == get_config("paper256")


def test_bad_augmentation_flags_name_the_flag(shapes16, tmp_path):
    from models.train import resolve_run

    for changes, flag in (({"aug": "fixed", "ada_kimg": None, "p": None},
                           "--aug fixed needs --p"),
                          ({"aug": "noaug", "p": 0.5, "ada_kimg": None}, "--p and --augpipe"),
                          ({"target": 2.0}, "--target 2.0"),
                          ({"augpipe": "bgcx"}, "--augpipe bgcx"),
                          ({"aug": "fixed", "p": 0.2, "target": 0.5, "ada_kimg": None},
                           "--target can only")):
        with pytest.raises(FfhqToolsError, match=flag):
            resolve_run(_options(shapes16, tmp_path, **changes))


def test_cli_flags_reach_the_resolved_run(shapes16, capsys):
    from ffhq_tools.cli import main

    assert main(["train", "--config", "auto", "--data", str(shapes16), "--aug", "ada",
                 "--augpipe", "bgcfnc", "--target", "0.7", "--freezed", "3", "--threads", "1",
                 "--dry-run"]) == 0
    described = json.loads(capsys.readouterr().out)
    assert described["augment"] == {"mode": "ada", "pipeline": "bgcfnc", "p": 0.0,
                                    "target": 0.7, "interval": 4, "ada_kimg": 500.0}
    assert described["options"]["freezed"] == 3 and described["options"]["threads"] == 1
    # auto at 16 px on one GPU: batch max(min(1 * 32, 64), 1) = 32, gamma 0.0002 * 256 / 32
    assert described["plan"]["batch"] == 32
    assert described["plan"]["r1_gamma"] == pytest.approx(0.0002 * 16**2 / 32)
    assert main(["train", "--config", "tiny", "--data", str(shapes16), "--aug", "fixed",
                 "--dry-run"]) == 2
    assert "--aug fixed needs --p" in capsys.readouterr().err

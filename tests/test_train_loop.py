"""The training loop on stand-in networks: exact resume, gradient accumulation, 2-rank Gloo."""

from __future__ import annotations

import pytest
import torch
import torch.multiprocessing as mp
from ports import free_port
from train_standins import (
    build_trainer,
    ddp_worker,
    flat_params,
    one_thread,  # noqa: F401 - autouse fixture
    run_steps,
)

from models.train_loop import TrainingDiverged


def _snapshot(trainer, path):
    from models.train_state import gather_rng

    torch.save({"G": trainer.G.state_dict(), "D": trainer.D.state_dict(),
                "G_ema": trainer.G_ema.state_dict(), "opt": trainer.optimizer_states(),
                "state": trainer.training_state(gather_rng(trainer.env))}, path)


def _restore(trainer, path):
    data = torch.load(path, weights_only=True)
    nets = build_trainer()
    nets.G.load_state_dict(data["G"])
    nets.D.load_state_dict(data["D"])
    nets.G_ema.load_state_dict(data["G_ema"])
    trainer.load_state(nets.G, nets.D, nets.G_ema, data["opt"], data["state"])


def test_resume_continues_exactly(tmp_path):
    steps = 8  # covers lazy R1 (every 4), lazy path length (every 2), mixing, EMA ramp-up
    straight = build_trainer()
    run_steps(straight, steps)

    first = build_trainer()
    run_steps(first, steps // 2)
    _snapshot(first, tmp_path / "half.pt")
    torch.manual_seed(1234)  # a fresh process has other RNG states; the snapshot restores them
    second = build_trainer(seed=0)
    _restore(second, tmp_path / "half.pt")
    run_steps(second, steps - steps // 2)

    assert second.state.cur_nimg == straight.state.cur_nimg == steps * 4
    assert torch.equal(flat_params(second.G, second.D, second.G_ema),
                       flat_params(straight.G, straight.D, straight.G_ema))
    assert torch.equal(second.pl_mean, straight.pl_mean) and float(straight.pl_mean) > 0


def test_resume_without_rng_restore_differs(tmp_path):
    """The exact-resume test can fail: drop the RNG states and the noise inputs diverge."""
    straight = build_trainer()
    run_steps(straight, 4)
    first = build_trainer()
    run_steps(first, 2)
    _snapshot(first, tmp_path / "half.pt")
    data = torch.load(tmp_path / "half.pt", weights_only=True)
    torch.manual_seed(99)
    second = build_trainer()
    second.G.load_state_dict(data["G"])
    second.D.load_state_dict(data["D"])
    second.opt_G.load_state_dict(data["opt"]["G"])
    second.opt_D.load_state_dict(data["opt"]["D"])
    from models.train_state import LoopState

    second.state = LoopState.from_dict(data["state"]["loop"])
    second.pl_mean = data["state"]["pl_mean"]
    run_steps(second, 2)
    assert not torch.equal(flat_params(second.G), flat_params(straight.G))


def test_gradient_accumulation_matches_one_round():
    """--batch 4 --batch-gpu 2 (2 rounds) trains like batch 4 in one round.

    Noise inputs off (they come from the global RNG per call) and path length off (its running
    mean is updated per round, as in the reference).
    """
    changes = {"pl_weight": 0.0}
    whole = build_trainer(changes, noise=False)
    run_steps(whole, 5)
    split = build_trainer(changes, noise=False, batch_gpu=2)
    run_steps(split, 5)
    assert split.layout_at(0).rounds == 2 and whole.layout_at(0).rounds == 1
    expected = torch.cat([p.detach().flatten() for p in whole.D.parameters()])
    got = torch.cat([p.detach().flatten() for p in split.D.parameters()])
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)
    start = torch.cat([p.detach().flatten() for p in build_trainer(changes).D.parameters()])
    assert (expected - start).abs().max() > 1e-3


def test_nan_guard_stops_with_clear_message():
    trainer = build_trainer()
    run_steps(trainer, 1)
    with torch.no_grad():
        next(trainer.D.parameters()).fill_(float("nan"))
    with pytest.raises(TrainingDiverged, match="diverged at kimg"):
        trainer._end_tick(0.1, False, None)


def test_two_gloo_ranks_equal_one_process(tmp_path):
    steps, changes = 4, {"batch": 4}
    out = tmp_path / "params"
    mp.start_processes(ddp_worker, args=(2, free_port(), steps, str(out), changes), nprocs=2,
                       join=True, start_method="fork")  # fork: no re-import per rank
    rank0 = torch.load(f"{out}.0", weights_only=True)
    rank1 = torch.load(f"{out}.1", weights_only=True)
    assert torch.equal(rank0, rank1)
    single = build_trainer(changes, noise=False)
    run_steps(single, steps)
    expected = flat_params(single.G, single.D, single.G_ema)
    torch.testing.assert_close(rank0, expected, rtol=1e-4, atol=1e-5)
    initial = flat_params(build_trainer(changes, noise=False).G)
    assert not torch.allclose(initial, expected[: initial.numel()])


def test_lazy_phases_and_adam_correction_in_the_loop():
    trainer = build_trainer()  # stand-in plan: R1 every 4, path length every 2
    seen = []
    for _ in range(4):
        seen.append([name for name, _ in trainer._phases()])
        run_steps(trainer, 1)
    assert seen == [["Gmain", "Greg", "Dmain", "Dreg"], ["Gmain", "Dmain"],
                    ["Gmain", "Greg", "Dmain"], ["Gmain", "Dmain"]]
    d_group, g_group = trainer.opt_D.param_groups[0], trainer.opt_G.param_groups[0]
    assert d_group["lr"] == pytest.approx(0.002 * 4 / 5)
    assert d_group["betas"][1] == pytest.approx(0.99 ** (4 / 5))
    assert g_group["lr"] == pytest.approx(0.002 * 2 / 3)
    eager = build_trainer({"r1_interval": 1, "pl_interval": 1})
    assert [name for name, _ in eager._phases()] == ["Gboth", "Dboth"]
    assert eager.opt_D.param_groups[0]["lr"] == pytest.approx(0.002)


def test_w_avg_tracks_the_mapping_and_reaches_the_ema():
    trainer = build_trainer()
    run_steps(trainer, 3)
    w_avg = trainer.G.w_avg
    assert w_avg.abs().sum() > 0  # it moved from its zero start
    assert torch.equal(trainer.G_ema.w_avg, w_avg)  # buffers are copied into the EMA
    with torch.no_grad():
        w = trainer.G.mapping(torch.randn(4096, trainer.G.z_dim), None)[:, 0]
    # after 3 steps of ~3 updates at beta 0.995, w_avg = (1 - 0.995^k) * E[w] for k ~ 7-9
    ratio = (w_avg @ w.mean(0)) / w.mean(0).square().sum()
    assert 0.02 < float(ratio) < 0.06

"""`train --compile`: the compiled main passes train as the eager ones do.

The fast test traces through dynamo and AOT autograd without code generation (the
`aot_eager` backend), which checks the plumbing: eager regularisers (double backward),
unchanged parameter names, compiled noise drawn from torch's generator. The slow test uses
the inductor backend `--compile` runs with and compares with eager within float tolerance.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from train_standins import (
    RandomImages,
    build_trainer,
    flat_params,
    one_thread,  # noqa: F401 - autouse fixture
    run_steps,
    tiny_config,
)

from ffhq_tools.errors import FfhqToolsError
from models import train_compile

STEPS = 4  # with pl_interval = r1_interval = 2: G main, G reg, D main and D reg all run
RESOLUTION = 8  # two blocks per network keep inductor's compile short


def _stylegan2_trainer(compiled: bool):
    from models.configs import build_networks, get_config
    from models.distributed import DistEnv
    from models.train_loop import LoopSettings, Trainer
    from models.train_options import TrainOptions, resolve_plan

    torch.manual_seed(0)
    G, D = build_networks(get_config("stylegan2-F"), RESOLUTION, channel_max=32)
    config = tiny_config(pl_interval=2, r1_interval=2)
    plan = resolve_plan(config, TrainOptions(config="tiny-standin", data="memory", batch=4),
                        RESOLUTION)
    settings = LoopSettings(total_kimg=1.0, tick_kimg=0.004, snap=0, seed=0,
                            channels_last=True, compile=compiled)
    return Trainer(G, D, plan, RandomImages(resolution=RESOLUTION),
                   DistEnv(0, 1, 0, torch.device("cpu")), None, settings)


def _train(compiled: bool):
    trainer = _stylegan2_trainer(compiled)
    names = list(trainer.G.state_dict())
    torch.manual_seed(5)  # the noise images come from the global generator in both runs
    run_steps(trainer, STEPS)
    losses = {key: torch.stack(values) for key, values in trainer.tick_stats.items()}
    return trainer, names, losses


def _compare_with_eager(atol: float):
    """Losses within `atol`; parameters within a quarter of one Adam step (lr 0.002), since
    Adam turns a rounding-level change of a near-zero gradient into a visible step."""
    eager, eager_names, eager_losses = _train(False)
    compiled, names, losses = _train(True)
    assert names == eager_names  # snapshots keep the parameter names
    assert set(losses) == set(eager_losses) and "Loss/r1_penalty" in losses
    assert "Loss/pl_penalty" in losses
    for key, values in eager_losses.items():
        torch.testing.assert_close(losses[key], values, rtol=1e-4, atol=atol, msg=key)
    before = flat_params(_stylegan2_trainer(False).G)
    after = flat_params(eager.G)
    assert (after - before).abs().max() > 1e-3  # the runs did train
    torch.testing.assert_close(flat_params(compiled.G, compiled.D), flat_params(eager.G, eager.D),
                               rtol=1e-4, atol=5e-4)


def test_traced_main_passes_train_as_eager(monkeypatch):
    monkeypatch.setattr(train_compile, "BACKEND", "aot_eager")
    torch._dynamo.reset()
    _compare_with_eager(atol=1e-5)


@pytest.mark.slow
def test_inductor_main_passes_train_as_eager():
    torch._dynamo.reset()  # (it sets TORCHINDUCTOR_CACHE_DIR to torch's default)
    os.environ.pop("TORCHINDUCTOR_CACHE_DIR", None)
    try:
        _compare_with_eager(atol=1e-4)
        kernels = Path(os.environ["FFHQ_TOOLS_CACHE"]) / "inductor"
        assert os.environ["TORCHINDUCTOR_CACHE_DIR"] == str(kernels)
        assert any(kernels.rglob("*.py"))  # generated kernels in our cache, not /tmp
    finally:
        os.environ.pop("TORCHINDUCTOR_CACHE_DIR", None)


def test_compile_refuses_progressive_growing_and_foreign_generators():
    with pytest.raises(FfhqToolsError, match="progressive growing"):
        train_compile.compile_networks(torch.nn.Linear(1, 1), torch.nn.Linear(1, 1), True)
    with pytest.raises(FfhqToolsError, match="no synthesis network module"):
        build_trainer(settings_changes={"compile": True})

"""`ffhq-tools train`: dry run, clear errors, metrics at snapshots, torchrun with 2 Gloo ranks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from ports import free_port
from train_standins import (
    one_thread,  # noqa: F401 - autouse fixture
    write_shapes_h5,
)

from ffhq_tools.cli import main

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def shapes16(tmp_path_factory):
    return write_shapes_h5(tmp_path_factory.mktemp("data") / "shapes.h5", count=32,
                           resolution=16)


def test_dry_run_prints_resolved_plan(shapes16, capsys):
    code = main(["train", "--config", "stylegan2-F", "--data", str(shapes16), "--gamma", "3",
                 "--batch", "8", "--cfg", "mixing_prob=0.5", "--dry-run"])
    assert code == 0
    described = json.loads(capsys.readouterr().out)
    plan = described["plan"]
    assert plan["r1_gamma"] == 3.0 and plan["batch"] == 8 and plan["mixing_prob"] == 0.5
    assert plan["r1_interval"] == 16 and plan["pl_interval"] == 4 and plan["resolution"] == 16
    assert described["options"]["kimg"] == 25000 and described["dataset_size"] == 32


def test_compile_flag_reaches_the_run_and_progressive_configs_refuse_it(shapes16, capsys):
    assert main(["train", "--config", "tiny", "--data", str(shapes16), "--compile",
                 "--dry-run"]) == 0
    assert json.loads(capsys.readouterr().out)["options"]["compile"] is True
    assert main(["train", "--config", "stylegan-A", "--data", str(shapes16), "--compile",
                 "--dry-run"]) == 2
    assert "--compile: progressive growing" in capsys.readouterr().err


def test_cond_takes_c_dim_from_the_labels(shapes16, tmp_path, capsys):
    import h5py

    assert main(["train", "--config", "tiny", "--data", str(shapes16), "--cond",
                 "--dry-run"]) == 0
    assert json.loads(capsys.readouterr().out)["c_dim"] == 2
    unlabelled = tmp_path / "unlabelled.h5"
    with h5py.File(shapes16, "r") as src, h5py.File(unlabelled, "w") as dst:
        dst.create_dataset("data16x16", data=src["data16x16"][:])
    assert main(["train", "--config", "tiny", "--data", str(unlabelled), "--cond",
                 "--dry-run"]) == 2
    assert "no labels" in capsys.readouterr().err


def test_fp16_turns_conv_clamping_on(shapes16, capsys):
    assert main(["train", "--config", "tiny", "--data", str(shapes16), "--precision", "fp16",
                 "--dry-run"]) == 0
    assert json.loads(capsys.readouterr().out)["model"]["conv_clamp"] == 256.0


@pytest.mark.parametrize("argv, message", [
    (["--config", "stylegan2-Z"], "unknown model config 'stylegan2-Z'"),
    (["--config", "tiny", "--res", "64"], "--res 64"),
    (["--config", "tiny", "--batch", "6", "--batch-gpu", "4"], "--batch-gpu 4"),
    (["--config", "tiny", "--batch", "12", "--batch-gpu", "6"], "minibatch-stddev group 4"),
    (["--config", "tiny", "--cfg", "nonsense=1"], "unknown config field(s): nonsense"),
    (["--config", "tiny", "--metrics", "fid50k_fulll"], "unknown metric 'fid50k_fulll'"),
    (["--config", "tiny", "--metrics", "fid50k_full"], "weights fetch inception-fid"),
    (["--config", "tiny", "--precision", "fp16"], "fp16 needs CUDA"),
    (["--resume", "missing-run"], "--resume missing-run"),
])
def test_bad_input_gives_one_line_errors(argv, message, shapes16, tmp_path, capsys):
    code = main(["train", "--data", str(shapes16), "--outdir", str(tmp_path), "--kimg", "0.004",
                 "--device", "cpu", "--workers", "0", "--no-progress", *argv])
    assert code == 2
    assert message in capsys.readouterr().err


def test_metrics_run_at_snapshots_through_the_registry(shapes16, tmp_path, monkeypatch):
    from eval import registry

    def pixel_mean(ctx):
        z = torch.randn(ctx.count("num_gen", ctx.num_gen), ctx.generator.z_dim)
        return {"mean": float(ctx.generator(z, None).mean())}

    spec = registry.MetricSpec("pixel_mean_test", pixel_mean, {"num_gen": 4}, ("generator",),
                               (), "mean pixel of generated images (test)")
    monkeypatch.setitem(registry.METRICS, "pixel_mean_test", spec)
    code = main(["train", "--config", "tiny", "--data", str(shapes16), "--outdir", str(tmp_path),
                 "--kimg", "0.008", "--batch", "4", "--tick", "0.004", "--snap", "1",
                 "--channel-max", "16", "--workers", "0", "--device", "cpu", "--no-progress",
                 "--metrics", "pixel_mean_test", "--metric-num-gen", "2"])
    assert code == 0
    run = next(tmp_path.glob("00000-*"))
    rows = [json.loads(line) for line in (run / "metric-pixel_mean_test.jsonl").read_text()
            .splitlines()]
    assert [r["kimg"] for r in rows] == [0.004, 0.008]
    assert rows[0]["protocol"]["num_gen"] == 2 and rows[0]["network"]["config"] == "tiny"
    assert rows[-1]["snapshot"] == "network-snapshot-000000.008.pt"
    _assert_tensorboard_matches(run, rows)


def _assert_tensorboard_matches(run: Path, metric_rows: list[dict]) -> None:
    """The event file holds every stats.jsonl scalar and every metric result, at cur_nimg."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run)).Reload()
    ticks = [json.loads(line) for line in (run / "stats.jsonl").read_text().splitlines()]
    losses = sorted(key for key in ticks[-1] if key.startswith("Loss/"))
    assert losses and set(losses) | {"Timing/sec_per_kimg", "Metrics/pixel_mean_test/mean"} \
        <= set(events.Tags()["scalars"])
    for key in losses:
        logged = [(e.step, e.value) for e in events.Scalars(key)]
        expected = [(round(t["kimg"] * 1000), t[key]) for t in ticks if key in t]
        assert [s for s, _ in logged] == [s for s, _ in expected]
        assert [v for _, v in logged] == pytest.approx([v for _, v in expected], rel=1e-6)
    metric = [(e.step, e.value) for e in events.Scalars("Metrics/pixel_mean_test/mean")]
    assert metric == [(round(r["kimg"] * 1000), pytest.approx(r["results"]["mean"], rel=1e-6))
                      for r in metric_rows]


@pytest.mark.slow
def test_torchrun_two_ranks_match_one_process(shapes16, tmp_path):
    """The real CLI under torchrun (Gloo, 2 CPU ranks) vs one process, same global batch.

    Noise inputs off (each rank draws its own) and minibatch-stddev groups of 1: D's mbstd
    groups are formed inside each rank's batch (as in the reference), the one known way in
    which K ranks differ from one process.
    """
    from models.checkpoint import load_checkpoint

    common = ["--config", "tiny", "--data", str(shapes16), "--kimg", "0.024", "--batch", "8",
              "--tick", "0.024", "--snap", "1", "--channel-max", "16", "--workers", "0",
              "--device", "cpu", "--no-progress", "--cfg", "use_noise=false",
              "--cfg", "mbstd_group=1"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                    "--master_port", str(free_port()), "-m", "ffhq_tools", "train", *common,
                    "--outdir", str(tmp_path / "ddp")], check=True, cwd=REPO, env=env,
                   capture_output=True, timeout=300)
    assert main(["train", *common, "--outdir", str(tmp_path / "one")]) == 0
    snap = "network-snapshot-000000.024.pt"
    ddp = load_checkpoint(next((tmp_path / "ddp").glob("00000-*")) / snap)
    one = load_checkpoint(next((tmp_path / "one").glob("00000-*")) / snap)
    for name in ("G", "D", "G_ema"):
        a, b = getattr(ddp, name).state_dict(), getattr(one, name).state_dict()
        for key in a:
            torch.testing.assert_close(a[key], b[key], rtol=1e-4, atol=1e-5,
                                       msg=lambda m, k=key, n=name: f"{n}.{k}: {m}")


@pytest.mark.slow
def test_killed_run_resumes_exactly(shapes16, tmp_path):
    """SIGKILL a training process after its first snapshots, resume the folder, compare with
    a run that never stopped."""
    import signal
    import time

    from models.checkpoint import load_checkpoint

    common = ["train", "--config", "tiny", "--data", str(shapes16), "--batch", "8",
              "--tick", "0.016", "--snap", "1", "--channel-max", "16", "--workers", "0",
              "--device", "cpu", "--no-progress"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    victim = subprocess.Popen([sys.executable, "-m", "ffhq_tools", *common, "--kimg", "10",
                               "--outdir", str(tmp_path / "killed")], cwd=REPO, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while time.time() < deadline and victim.poll() is None:
        if list((tmp_path / "killed").glob("*/network-snapshot-000000.040.pt")):
            break
        time.sleep(0.05)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    run = next((tmp_path / "killed").glob("00000-*"))
    newest = sorted(run.glob("network-snapshot-*.pt"))[-1].name
    assert "000000.040" <= newest.removeprefix("network-snapshot-") < "000000.096"
    assert main([*common, "--kimg", "0.096", "--resume", str(run)]) == 0
    assert main([*common, "--kimg", "0.096", "--outdir", str(tmp_path / "straight")]) == 0
    snap = "network-snapshot-000000.096.pt"
    a = load_checkpoint(run / snap)
    b = load_checkpoint(next((tmp_path / "straight").glob("00000-*")) / snap)
    for name in ("G", "D", "G_ema"):
        for key, value in getattr(a, name).state_dict().items():
            assert torch.equal(value, getattr(b, name).state_dict()[key]), f"{name}.{key}"

"""DualStyleGAN pretraining and fine-tuning: runs, exact resume, learning, clear errors."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from dualstylegan_train_fixtures import (
    finetune_options,
    pretrain_options,
    small_vgg,
    write_base,
    write_dualstylegan,
    write_faces,
    write_style_set,
)
from ports import free_port
from train_standins import one_thread  # noqa: F401 - autouse fixture

from models.checkpoint import load_checkpoint, load_generator
from models.dualstylegan import DualStyleGAN
from models.dualstylegan_train import train_dualstylegan
from models.dualstylegan_train_options import DualStyleGANTrainError, pretrain_stages


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, astronaut):
    folder = tmp_path_factory.mktemp("dst")
    return {"base": write_base(folder / "base.pt"), "faces": write_faces(folder / "faces.h5"),
            "dual": write_dualstylegan(folder / "dual.pt"),
            "style": write_style_set(folder, astronaut)}


def _same_networks(a, b) -> None:
    for name in ("G", "D", "G_ema"):
        left, right = getattr(a, name).state_dict(), getattr(b, name).state_dict()
        for key in left:
            assert torch.equal(left[key], right[key]), f"{name}.{key} differs after resume"


def test_pretrain_stages_follow_the_official_schedule():
    assert pretrain_stages(3000) == [(7, 300), (6, 300), (5, 3000)]


def test_pretrain_run_folder_and_exact_resume(inputs, tmp_path):
    options = pretrain_options(inputs["base"], inputs["faces"], tmp_path / "a", snap=2)
    run = train_dualstylegan(options, vgg=small_vgg())
    names = sorted(p.name for p in run.iterdir())
    assert names == ["log.txt", "network-snapshot-000002.pt", "network-snapshot-000004.pt",
                     "options.json", "stats.jsonl"]
    frozen = json.loads((run / "options.json").read_text())
    assert frozen["options"]["stage"] == "pretrain" and frozen["options"]["adv_weight"] == 0.1
    assert frozen["used"]["vgg19"]["source"] == "random"
    assert frozen["used"]["extrinsic_code_source"]["kind"] == "projection"
    rows = [json.loads(line) for line in (run / "stats.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in rows] == [1, 2, 3, 4]
    assert "Loss/r1_penalty" in rows[0] and "Loss/pl_penalty" in rows[0]
    # a killed run: only the first snapshot survived; resuming it must give the same end
    copy = tmp_path / "b" / run.name
    shutil.copytree(run, copy)
    (copy / "network-snapshot-000004.pt").unlink()
    again = train_dualstylegan(pretrain_options(None, None, tmp_path, resume=str(copy)),
                               vgg=small_vgg())
    assert again == copy
    assert _losses(copy / "stats.jsonl") == _losses(run / "stats.jsonl")  # no repeated rows
    _same_networks(load_checkpoint(run / "network-snapshot-000004.pt"),
                   load_checkpoint(copy / "network-snapshot-000004.pt"))
    # snapshots are DualStyleGAN checkpoints stylize loads; T_s and res trained, G did not
    net = load_generator(run / "network-snapshot-000004.pt")
    assert isinstance(net, DualStyleGAN)
    start = load_checkpoint(inputs["base"]).G_ema.state_dict()
    trained = load_checkpoint(run / "network-snapshot-000004.pt").G
    for key, value in trained.generator.state_dict().items():
        assert torch.equal(value, start[key]), f"generator.{key} changed"
    fresh = load_checkpoint(run / "network-snapshot-000002.pt").G
    assert not torch.equal(trained.res[0].conv[0].weight, fresh.res[0].conv[0].weight)
    assert not torch.equal(trained.style[1].weight, fresh.style[1].weight)


def _losses(stats) -> list[dict]:
    rows = [json.loads(line) for line in stats.read_text().splitlines()]
    return [{k: v for k, v in row.items() if k != "sec_per_iter"} for row in rows]


def _reconstruction(ctx, inject: int, seed: int = 123) -> float:
    from models.dualstylegan_losses import PRETRAIN_FEATURE_WEIGHTS, feature_l1
    from models.dualstylegan_steps import mixed_ws

    G = ctx.net.generator
    gen = torch.Generator().manual_seed(seed)
    z1, z2 = torch.randn(8, G.z_dim, generator=gen), torch.randn(8, G.z_dim, generator=gen)
    with torch.no_grad():
        target = G.synthesis(mixed_ws(G, z1, z2, inject), noise_mode="const")
        fake = ctx.net.synthesize(G.mapping(z1, None), G.mapping(z2, None)[:, 0],
                                  noise_mode="const")
        return float(feature_l1(ctx.features(fake), ctx.features(target),
                                PRETRAIN_FEATURE_WEIGHTS))


def test_pretraining_lowers_the_extrinsic_reconstruction_loss(inputs, tmp_path):
    """Steps at injection 5 (at 64 px, index 7 is already matched at initialisation: the
    colour transforms start at the identity), measured on held-out latents. At lr 0.002
    the loss falls slowly (about 5% in 50 steps on this tiny model), steadily."""
    from models.distributed import DistEnv
    from models.dualstylegan_steps import pretrain_step
    from models.dualstylegan_train import build_context

    options = pretrain_options(inputs["base"], inputs["faces"], tmp_path, batch=4,
                               r1_interval=1000, pl_interval=1000).resolved()
    env = DistEnv(0, 1, 0, torch.device("cpu"))
    ctx = build_context(options, env, vgg=small_vgg())[0]
    before = _reconstruction(ctx, 5)
    for step in range(30):
        pretrain_step(ctx, step, step, 5)
    after = _reconstruction(ctx, 5)
    assert after < 0.97 * before, (before, after)


def _mean_colour(net, codes, seed: int = 7) -> np.ndarray:
    gen = torch.Generator().manual_seed(seed)
    z = torch.randn(len(codes), net.generator.z_dim, generator=gen)
    with torch.no_grad():
        images = net(z, codes, noise_mode="const")
    return images.mean(dim=(0, 2, 3)).numpy()


@pytest.mark.slow
def test_finetune_moves_colours_towards_the_style_set(inputs, tmp_path):
    from models.dualstylegan_codes import read_codes

    h5, ex, _ = inputs["style"]
    with __import__("h5py").File(h5) as f:
        target = f["data64x64"][:].astype(np.float64).mean(axis=(0, 2, 3)) / 127.5 - 1
    start = load_checkpoint(inputs["dual"]).G
    codes = start.map_z(torch.from_numpy(read_codes(ex).codes[:4]))
    before = np.abs(_mean_colour(start, codes) - target).sum()
    run = train_dualstylegan(finetune_options(inputs["dual"], inputs["style"], tmp_path,
                                              iters=40, batch=4, snap=40, snap_begin=40),
                             vgg=small_vgg())
    tuned = load_checkpoint(run / "network-snapshot-000040.pt").G
    after = np.abs(_mean_colour(tuned, codes) - target).sum()
    assert after < 0.7 * before, (before, after, target)


def test_finetune_runs_resumes_exactly_and_records_identity(inputs, tmp_path):
    class UnitEmbedding:
        def embed(self, images):
            return torch.nn.functional.normalize(images.mean(dim=(2, 3)), dim=1)

    run = train_dualstylegan(finetune_options(inputs["dual"], inputs["style"], tmp_path / "a"),
                             vgg=small_vgg(), identity=UnitEmbedding())
    frozen = json.loads((run / "options.json").read_text())
    assert frozen["used"]["identity"] == {"kind": "UnitEmbedding"}
    assert frozen["used"]["style_set"] == {"images": 12, "resolution": 64}
    assert frozen["used"]["base_optimiser_states"] is False  # the base has none
    rows = [json.loads(line) for line in (run / "stats.jsonl").read_text().splitlines()]
    assert "Loss/G/perceptual" in rows[1] and "Loss/G/perceptual" not in rows[0]
    assert all("Loss/G/identity" in r and "Loss/G/style" in r for r in rows)
    copy = tmp_path / "b" / run.name
    shutil.copytree(run, copy)
    (copy / "network-snapshot-000004.pt").unlink()
    train_dualstylegan(finetune_options(None, inputs["style"], tmp_path, resume=str(copy)),
                       vgg=small_vgg(), identity=UnitEmbedding())
    _same_networks(load_checkpoint(run / "network-snapshot-000004.pt"),
                   load_checkpoint(copy / "network-snapshot-000004.pt"))


def test_bad_inputs_fail_with_clear_errors(inputs, tmp_path, astronaut):
    vgg = small_vgg()
    with pytest.raises(DualStyleGANTrainError, match="finetune starts from a pretrained"):
        train_dualstylegan(finetune_options(inputs["base"], inputs["style"], tmp_path),
                           vgg=vgg)
    with pytest.raises(DualStyleGANTrainError, match="pretraining starts from a StyleGAN2"):
        train_dualstylegan(pretrain_options(inputs["dual"], inputs["faces"], tmp_path),
                           vgg=vgg)
    small = tmp_path / "small"
    small.mkdir()
    with pytest.raises(DualStyleGANTrainError, match="at least 8"):
        train_dualstylegan(finetune_options(inputs["dual"], write_style_set(
            small, astronaut, count=4), tmp_path), vgg=vgg)
    low = tmp_path / "low"
    low.mkdir()
    with pytest.raises(DualStyleGANTrainError, match="64x64 images"):
        train_dualstylegan(finetune_options(inputs["dual"], write_style_set(
            low, astronaut, resolution=32), tmp_path), vgg=vgg)
    from models.dualstylegan_codes import CodeSet, read_codes, write_codes

    h5, ex, ins = inputs["style"]
    codes = read_codes(ins)
    partial = write_codes(tmp_path / "partial.npz", CodeSet(codes.names[1:], codes.codes[1:],
                                                            "test"))
    with pytest.raises(DualStyleGANTrainError, match="no code for"):
        train_dualstylegan(finetune_options(inputs["dual"], (h5, ex, partial), tmp_path),
                           vgg=vgg)


def test_cli_dry_run_and_one_line_errors(inputs, tmp_path, capsys):
    from ffhq_tools.cli import main

    assert main(["dualstylegan-train", "pretrain", "--base", str(inputs["base"]), "--data",
                 str(inputs["faces"]), "--outdir", str(tmp_path), "--dry-run"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["plan"]["stages"] == [{"injection_index": 7, "iterations": 300},
                                         {"injection_index": 6, "iterations": 300},
                                         {"injection_index": 5, "iterations": 3000}]
    assert printed["options"]["batch"] == 4 and printed["options"]["adv_weight"] == 0.1
    assert not list(tmp_path.iterdir())  # a dry run writes nothing
    h5, ex, ins = inputs["style"]
    assert main(["dualstylegan-train", "finetune", "--base", str(inputs["dual"]), "--data",
                 str(h5), "--exstyle", str(ex), "--instyle", str(ins), "--dry-run"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["options"]["iters"] == 1500 and printed["options"]["batch"] == 32
    assert printed["options"]["snap_begin"] == 1000 and printed["plan"]["paired_every"] == 2
    code = main(["dualstylegan-train", "finetune", "--base", str(inputs["base"]), "--data",
                 str(h5), "--exstyle", str(ex), "--instyle", str(ins), "--outdir",
                 str(tmp_path), "--vgg-weights", str(tmp_path / "missing.pth")])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert "starts from a pretrained DualStyleGAN" in err


def test_two_gloo_ranks_equal_one_process(inputs, tmp_path):
    """One iteration with the batch split over two Gloo ranks vs one process. D (updated
    first, from the same G) must agree but for the rare weight whose first Adam step
    g / (|g| + eps) rounds differently when the two ranks' gradients are summed. G's Adam step
    is lr * sign(g) on the first step, so parameters whose gradient is float noise around 0
    (ModRes convs behind instance norms of near-zero activations) may flip: nearly all must
    agree, none by more than 2 lr per Adam step."""
    import torch.multiprocessing as mp
    from dualstylegan_train_fixtures import gloo_pretrain_worker, write_base_without_mbstd_groups

    base = write_base_without_mbstd_groups(tmp_path / "base.pt")
    settings = dict(iters=1, batch=4, noise_mode="const")
    options = pretrain_options(base, inputs["faces"], tmp_path / "two", **settings)
    mp.start_processes(gloo_pretrain_worker, args=(2, free_port(), options.to_dict()),
                       nprocs=2, join=True, start_method="fork")
    two = next((tmp_path / "two").iterdir())
    assert json.loads((two / "options.json").read_text())["world_size"] == 2
    one = train_dualstylegan(pretrain_options(base, inputs["faces"], tmp_path / "one",
                                              **settings), vgg=small_vgg())
    a = load_checkpoint(two / "network-snapshot-000001.pt")
    b = load_checkpoint(one / "network-snapshot-000001.pt")
    lr = options.lr * options.pl_interval / (options.pl_interval + 1)  # lazy-corrected
    d_left = torch.cat([v.flatten() for v in a.D.state_dict().values()])
    d_right = torch.cat([v.flatten() for v in b.D.state_dict().values()])
    d_moved = (d_left - d_right).abs()
    assert float((d_moved <= 1e-5).float().mean()) > 0.999
    assert float(d_moved.max()) <= 2 * options.lr + 1e-6  # each Adam step is at most lr
    left = torch.cat([p.flatten() for p in (*a.G.res.parameters(), *a.G.style.parameters())])
    right = torch.cat([p.flatten() for p in (*b.G.res.parameters(), *b.G.style.parameters())])
    moved = (left - right).abs()
    assert float((moved <= 1e-5).float().mean()) > 0.98
    assert float(moved.max()) <= 2 * 2 * lr + 1e-6  # G main + path length, each <= lr


def test_each_pretraining_stage_restarts_the_path_length_mean(inputs, tmp_path):
    from models.distributed import DistEnv
    from models.dualstylegan_steps import pretrain_step
    from models.dualstylegan_train import build_context

    options = pretrain_options(inputs["base"], inputs["faces"], tmp_path).resolved()
    ctx = build_context(options, DistEnv(0, 1, 0, torch.device("cpu")), vgg=small_vgg())[0]
    ctx.pl_mean = torch.tensor(50.0)
    stats = pretrain_step(ctx, 0, 0, 7)  # first step of a stage: a = 0.01 * mean length
    assert float(ctx.pl_mean) < 1.0 and float(stats["Loss/pl_mean"]) == float(ctx.pl_mean)

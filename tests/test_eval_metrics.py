"""Inception metrics end to end: real-data sources, registry rows, the statistics cache, the
`fid` / `metrics` verbs and bad inputs. Uses an uncalibrated architecture-exact Inception
(cheap to make; numbers are checked against the peers in test_eval_fid_peers.py)."""

import json

import h5py
import numpy as np
import pytest
import torch
from eval_helpers import (
    LinearTanhG,
    photos,
    random_crops,
    seeded_inception_file,
    shared_inception_file,
    write_folder,
)
from PIL import Image

from eval import sampling
from eval.fid import fid_between
from eval.registry import MetricContext, compute_metric
from ffhq_tools.cli import main
from ffhq_tools.errors import FfhqToolsError


@pytest.fixture(scope="module")
def inception_file(tmp_path_factory):
    return seeded_inception_file(tmp_path_factory)


@pytest.fixture(scope="module")
def real_folder(tmp_path_factory):
    return write_folder(tmp_path_factory.mktemp("real"), random_crops(3, 16, 1, photos()))


def _ctx(inception_file, tmp_path, **fields):
    return MetricContext(weights_overrides={"inception-fid": inception_file}, progress=False,
                         stats_cache=tmp_path / "stats", batch_size=4, **fields)


def test_mixed_folder_sizes_and_modes_never_crash(tmp_path):
    rgb = random_crops(3, 16, 2, photos())
    write_folder(tmp_path / "a", rgb)
    Image.fromarray(rgb[0][..., 0]).save(tmp_path / "a" / "gray.png")            # L
    Image.fromarray(np.dstack([rgb[1], rgb[1][..., :1]])).save(tmp_path / "a" / "x.png")  # RGBA
    Image.fromarray(rgb[2]).resize((24, 24)).convert("P").save(tmp_path / "a" / "z.png")
    batches = list(sampling.iterate_real(tmp_path / "a", 100, 4))
    assert sum(b.shape[0] for b in batches) == 6
    assert all(b.dtype == torch.uint8 and b.shape[1] == 3 for b in batches)
    assert {tuple(b.shape[2:]) for b in batches} == {(16, 16), (24, 24)}
    flipped = list(sampling.iterate_real(tmp_path / "a", 2, 2, xflip=True))
    assert torch.equal(flipped[1], flipped[0].flip(3))


def test_h5_levels_and_sharding(tmp_path):
    path = tmp_path / "d.h5"
    with h5py.File(path, "w") as f:
        f["data16x16"] = np.random.default_rng(0).integers(0, 255, (10, 3, 16, 16), np.uint8)
        f["data8x8"] = np.zeros((10, 3, 8, 8), np.uint8)
    assert sampling.h5_levels(path) == {16: "data16x16", 8: "data8x8"}
    full = torch.cat(list(sampling.iterate_real(path, 10, 3)))
    assert full.shape == (10, 3, 16, 16)
    shards = [torch.cat(list(sampling.iterate_real(path, 10, 3, shard=(r, 2)))) for r in (0, 1)]
    assert sorted(s.shape[0] for s in shards) == [4, 6]
    assert next(sampling.iterate_real(path, 10, 3, resolution=8)).shape[2] == 8
    with pytest.raises(FfhqToolsError, match="32x32"):
        next(sampling.iterate_real(path, 10, 3, resolution=32))


def test_fid_metric_row_counts_weights_and_cache(inception_file, real_folder, tmp_path,
                                                 monkeypatch):
    ctx = _ctx(inception_file, tmp_path, generator=LinearTanhG(), data=real_folder, num_gen=2)
    row = compute_metric("fid50k_full", ctx)
    assert row["metric"] == "fid50k_full" and row["mode"] == "tf"
    assert row["protocol"]["num_gen"] == 2 and row["protocol"]["num_real"] == 3
    assert len(row["weights"]["inception-fid"]) == 64
    assert np.isfinite(row["results"]["fid"]) and row["results"]["fid"] >= 0
    assert len(list((tmp_path / "stats").glob("*.npz"))) == 1
    # Second run: the real statistics come from the cache, not from the images.
    monkeypatch.setattr(sampling, "iterate_real", lambda *a, **k: pytest.fail("not cached"))
    again = compute_metric("fid50k_full", ctx)
    assert again["results"]["fid"] == pytest.approx(row["results"]["fid"], rel=1e-12)


@pytest.fixture(scope="module")
def calibrated_inception(tmp_path_factory):
    """Features that spread across images: the `fid` verb refuses collapsed ones."""
    return shared_inception_file(tmp_path_factory)


@pytest.mark.slow
def test_fid_verb_folders_stats_file_and_self_distance(calibrated_inception, real_folder,
                                                       tmp_path, capsys):
    inception_file = calibrated_inception
    flags = ["--weights", f"inception-fid={inception_file}", "--no-progress",
             "--stats-cache", str(tmp_path / "stats"), "--device", "cpu"]
    other = write_folder(tmp_path / "other", random_crops(2, 20, 9, photos()))
    assert main(["fid", str(real_folder), str(other), *flags]) == 0
    row = json.loads(capsys.readouterr().out)
    assert row["num"] == [3, 2] and row["mode"] == "tf" and "inception-fid" in row["weights"]
    assert main(["fid", "--save-stats", str(other), str(tmp_path / "o.npz"), *flags]) == 0
    capsys.readouterr()
    with np.load(tmp_path / "o.npz") as saved:
        assert saved["mu"].shape == (2048,) and saved["sigma"].shape == (2048, 2048)
    assert main(["fid", str(real_folder), str(tmp_path / "o.npz"), *flags]) == 0
    via_npz = json.loads(capsys.readouterr().out)
    assert via_npz["fid"] == pytest.approx(row["fid"], rel=1e-9)
    ctx = _ctx(inception_file, tmp_path)
    assert fid_between(real_folder, real_folder, ctx)["fid"] == pytest.approx(0, abs=1e-6)


def test_bad_inputs_name_the_input(inception_file, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    write_folder(tmp_path / "one", random_crops(1, 16, 3, photos()))
    ctx = _ctx(inception_file, tmp_path)
    with pytest.raises(FfhqToolsError, match="empty.*0 image"):
        fid_between(tmp_path / "empty", tmp_path / "one", ctx)
    with pytest.raises(FfhqToolsError, match="one.*1 image"):
        fid_between(tmp_path / "one", tmp_path / "one", ctx)
    with pytest.raises(FfhqToolsError, match="no such file"):
        fid_between(tmp_path / "missing", tmp_path / "one", ctx)
    assert main(["metrics", "--metrics", "fid50k_fulll", "--data", str(tmp_path)]) == 2
    assert "Did you mean: fid50k_full" in capsys.readouterr().err
    assert main(["metrics", "--metrics", "fid50k_full", "--data", str(tmp_path / "no.h5"),
                 "--no-run-dir"]) == 2
    assert "--data" in capsys.readouterr().err
    with pytest.raises(FfhqToolsError, match="--network"):
        compute_metric("fid50k_full", MetricContext(data=tmp_path))


@pytest.mark.slow
def test_metrics_verb_on_a_checkpoint_writes_rows(inception_file, real_folder, tmp_path,
                                                  capsys):
    from models.checkpoint import save_checkpoint
    from models.configs import build_networks, get_config

    torch.manual_seed(0)
    config = get_config("tiny")
    G, D = build_networks(config, 16)
    ckpt = tmp_path / "tiny.pt"
    save_checkpoint(ckpt, config={"model": config.to_dict(), "resolution": 16}, G=G, D=D)
    argv = ["metrics", "--metrics", "fid50k_full,kid50k_full", "--network", str(ckpt),
            "--data", str(real_folder), "--num-gen", "3", "--weights",
            f"inception-fid={inception_file}", "--no-progress", "--device", "cpu",
            "--stats-cache", str(tmp_path / "stats"), "--run-root", str(tmp_path / "runs")]
    assert main(argv) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["metric"] for r in rows] == ["fid50k_full", "kid50k_full"]
    assert rows[0]["network"]["sha256"] and rows[1]["protocol"]["subset_size"] == 3
    run_dir = next((tmp_path / "runs").glob("00000-metrics-*"))
    saved = json.loads((run_dir / "metric-kid50k_full.jsonl").read_text())
    assert saved["results"] == rows[1]["results"]
    assert (run_dir / "options.json").is_file() and (run_dir / "log.txt").is_file()


@pytest.mark.slow
def test_fid_verb_refuses_collapsed_features_and_labels_custom_weights(
        inception_file, calibrated_inception, tmp_path, capsys):
    """The default-initialised Inception maps every image to ~1e-8 features: FID ~1e-13
    between faces and noise. The verb stops and says why; with features that spread it warns
    about N < 2048 and labels the test's file as custom weights."""
    faces = write_folder(tmp_path / "faces", random_crops(3, 24, 5, photos()))
    noise = write_folder(tmp_path / "noise", [
        np.random.RandomState(i).randint(0, 256, (24, 24, 3), dtype=np.uint8) for i in range(3)])
    common = [str(faces), str(noise), "--no-progress", "--device", "cpu",
              "--stats-cache", str(tmp_path / "stats")]
    assert main(["fid", *common, "--weights", f"inception-fid={inception_file}"]) == 2
    err = capsys.readouterr().err
    assert "barely vary across images" in err and "faces" in err and "Traceback" not in err
    assert main(["fid", *common, "--weights", f"inception-fid={calibrated_inception}"]) == 0
    captured = capsys.readouterr()
    row = json.loads(captured.out)
    assert row["fid"] > 1 and "custom weights" in row["custom_weights"]["inception-fid"]
    assert "3 images for 2048-d features" in captured.err and len(row["warnings"]) == 2


def test_metrics_verb_runs_on_threads_and_says_so(inception_file, real_folder, tmp_path,
                                                  capsys, monkeypatch):
    from eval import runner

    seen = []
    real_run = runner.run_metrics
    monkeypatch.setattr(runner, "run_metrics", lambda *a: seen.append(torch.get_num_threads())
                        or real_run(*a))
    from models.checkpoint import save_checkpoint
    from models.configs import build_networks, get_config

    config = get_config("tiny")
    G, D = build_networks(config, 16)
    save_checkpoint(tmp_path / "tiny.pt", config={"model": config.to_dict(), "resolution": 16},
                    G=G, D=D)
    before = torch.get_num_threads()
    argv = ["metrics", "--metrics", "fid50k_full", "--network", str(tmp_path / "tiny.pt"),
            "--data", str(real_folder), "--num-gen", "3",
            "--weights", f"inception-fid={inception_file}", "--no-progress", "--device", "cpu",
            "--no-run-dir", "--stats-cache", str(tmp_path / "stats"), "--threads", "1"]
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: {0, 1, 2}, raising=False)
    code = main(argv)
    assert "metrics: device cpu, 1 CPU thread(s)" in capsys.readouterr().err
    assert seen == [1] and torch.get_num_threads() == before and code == 0
    assert main(argv[:-2]) == code
    assert "metrics: device cpu, 3 CPU thread(s)" in capsys.readouterr().err
    assert seen[-1] == 3 and torch.get_num_threads() == before

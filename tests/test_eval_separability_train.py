"""Training our own attribute classifiers from HDF5, the CLI verb, and `ls` end to end."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import torch

from eval import classifiers
from eval.features import attributes
from ffhq_tools.weights import CELEBAHQ_ATTRIBUTES


def make_attribute_h5(path, n: int = 240, resolution: int = 16, seed: int = 0):
    """Images whose left half is bright exactly when 'male' (index 0) is present; every other
    attribute is a coin flip (unlearnable)."""
    rng = np.random.default_rng(seed)
    present = rng.integers(0, 2, size=(n, len(CELEBAHQ_ATTRIBUTES)))
    images = rng.integers(0, 120, size=(n, 3, resolution, resolution)).astype(np.uint8)
    images[present[:, 0] == 1, :, :, : resolution // 2] += 120
    with h5py.File(path, "w") as f:
        f.create_dataset(f"data{resolution}x{resolution}", data=images)
        f.create_dataset("attributes", data=present * 2 - 1)  # CelebA's -1 / +1 convention
    return present


def small_options(**changes) -> classifiers.TrainOptions:
    base = dict(resolution=16, steps=60, batch_size=16, fmap_base=64, fmap_max=16, lr=2e-3)
    return classifiers.TrainOptions(**{**base, **changes})


def test_training_learns_a_learnable_attribute_and_reports_heldout_accuracy(tmp_path):
    data = tmp_path / "celeba.h5"
    make_attribute_h5(data)
    out = tmp_path / "classifiers"
    report = classifiers.train_classifiers(data, out, [0, 1], small_options(), progress=False)
    assert report["male"]["accuracy"] >= 0.95
    assert report["male"]["num_heldout"] == 24
    assert report["smiling"]["accuracy"] < 0.8  # a coin flip cannot be learnt
    net = attributes.load_classifier(out / classifiers.classifier_filename(0))
    assert net.config.resolution == 16
    again = classifiers.train_classifiers(data, out, [0], small_options(), progress=False)
    assert again["male"]["resumed"] and again["male"]["accuracy"] == report["male"]["accuracy"]


def test_bad_training_inputs_name_the_problem(tmp_path):
    data = tmp_path / "plain.h5"
    with h5py.File(data, "w") as f:
        f.create_dataset("data16x16", data=np.zeros((8, 3, 16, 16), np.uint8))
    with pytest.raises(classifiers.TrainingDataError, match="no 'attributes' dataset"):
        classifiers.train_classifiers(data, tmp_path / "o", [0], small_options())
    with pytest.raises(classifiers.TrainingDataError, match="no 'data32x32'"):
        classifiers.train_classifiers(data, tmp_path / "o", [0], small_options(resolution=32))
    with pytest.raises(Exception, match="Did you mean: smiling"):
        classifiers.parse_attributes("male,smilling")
    assert classifiers.parse_attributes("male,1,wearing-necktie") == [0, 1, 39]


def test_cli_verb_trains_and_prints_weights_flags(tmp_path, capsys):
    from ffhq_tools.cli import main

    data = tmp_path / "celeba.h5"
    make_attribute_h5(data, n=80)
    out = tmp_path / "cls"
    code = main(["classifiers", "train", "--data", str(data), "--out", str(out),
                 "--attributes", "male", "--resolution", "16", "--steps", "5", "--batch", "8",
                 "--fmap-base", "32", "--fmap-max", "8", "--quiet", "--device", "cpu"])
    printed = capsys.readouterr().out
    assert code == 0
    assert "male" in printed and "held-out accuracy" in printed
    assert f"--weights celebahq-classifier-00={out}/celebahq-classifier-00-male.pt" in printed
    assert (out / "report.json").is_file()
    assert main(["classifiers", "train", "--data", str(tmp_path / "missing.h5"), "--out",
                 str(out)]) == 2


@pytest.mark.slow
def _classifier_files(folder) -> dict:
    torch.manual_seed(0)
    overrides = {}
    for i in range(len(CELEBAHQ_ATTRIBUTES)):
        net = attributes.AttributeClassifier(attributes.ClassifierConfig(
            resolution=16, fmap_base=32, fmap_max=8))
        path = folder / classifiers.classifier_filename(i)
        attributes.save_classifier(path, net, CELEBAHQ_ATTRIBUTES[i], {})
        overrides[f"celebahq-classifier-{i:02d}"] = path
    return overrides


def test_ls_metric_end_to_end_with_own_classifiers(tmp_path):
    from test_eval_ppl import LinearGenerator

    from eval.registry import MetricContext, compute_metric

    overrides = _classifier_files(tmp_path)
    G = LinearGenerator(resolution=32, seed=1)
    ctx = MetricContext(generator=G, num_gen=64, batch_size=16, progress=False,
                        weights_overrides=overrides)
    row = compute_metric("ls", ctx)
    assert set(row["weights"]) == set(overrides)
    assert row["protocol"]["num_samples"] == 64 and row["protocol"]["num_keep"] == 32
    entropies = row["notes"]["entropy_bits"]
    assert len(entropies) == 40
    expected_w = 2.0 ** sum(h["w"] for h in entropies.values())
    assert row["results"]["ls_w"] == pytest.approx(expected_w)
    assert row["results"]["ls_z"] >= 1.0


def test_killed_ls_sampling_resumes_to_the_same_row(tmp_path, monkeypatch):
    from test_eval_ppl import LinearGenerator

    from eval import passes
    from eval.registry import MetricContext, compute_metric

    overrides = _classifier_files(tmp_path)
    monkeypatch.setattr(passes, "CHECKPOINT_EVERY_IMAGES", 16)  # every batch

    class DiesInBatch3(LinearGenerator):
        calls = 0

        def synthesis(self, ws, noise_mode="random"):
            DiesInBatch3.calls += 1
            if DiesInBatch3.calls == 3:
                raise KeyboardInterrupt("killed")
            return super().synthesis(ws, noise_mode)

    def ls(G, cache):
        return compute_metric("ls", MetricContext(
            generator=G, generator_info={"sha256": "c" * 64}, num_gen=64, batch_size=16,
            progress=False, weights_overrides=overrides, stats_cache=cache))

    straight = ls(LinearGenerator(resolution=32, seed=1), tmp_path / "a")
    with pytest.raises(KeyboardInterrupt):
        ls(DiesInBatch3(resolution=32, seed=1), tmp_path / "b")
    assert len(list((tmp_path / "b" / "partial").glob("*.partial-b16-of1-r0.npz"))) == 1
    DiesInBatch3.calls = 10  # no second death
    resumed = ls(DiesInBatch3(resolution=32, seed=1), tmp_path / "b")
    assert DiesInBatch3.calls == 12  # batches 3 and 4 only
    assert resumed["results"] == straight["results"]
    assert resumed["notes"] == straight["notes"]
    assert not list((tmp_path / "b" / "partial").glob("*.npz"))

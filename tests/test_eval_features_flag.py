"""`--features NAME`: fid, kid, pr and the fid verb computed in another registered network's
space, against independent evaluations (NumPy FD, the `prdc` package) on the same features;
the row, the cache and `leaderboard compare` carry the network.

The network is the DINOv2 architecture at a test size registered under the ViT-L/14 entry
(as in test_eval_embedding_metrics.py)."""

from __future__ import annotations

import json

import pytest
from eval_helpers import LinearTanhG, photos, random_crops, write_folder
from test_eval_embedding_metrics import NETWORK, _fd_numpy, _features

from eval import defaults, sampling
from eval.features.networks import FEATURE_NETWORKS, get_network
from eval.registry import MetricContext, compute_metric
from ffhq_tools import cli, weights
from ffhq_tools.errors import FfhqToolsError
from leaderboards.conformance import row_deviations


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    first = write_folder(tmp_path_factory.mktemp("a"), random_crops(40, 32, 1, photos()[:3]))
    second = write_folder(tmp_path_factory.mktemp("b"), random_crops(40, 32, 2, photos()[3:]))
    return first, second


def _ctx(tmp_path, real, **fields):
    return MetricContext(generator=LinearTanhG(32, seed=5), data=real, progress=False,
                         batch_size=16,
                         stats_cache=tmp_path / "stats", features=NETWORK, **fields)


def test_every_feature_network_is_registered_with_its_weights():
    assert tuple(FEATURE_NETWORKS) == defaults.ALL_FEATURE_NETWORKS
    for name, network in FEATURE_NETWORKS.items():
        assert name in weights.REGISTRY
        assert network.space == defaults.FEATURE_SPACES[name]
    assert get_network(NETWORK).default_mode == "dgm-eval"
    assert get_network("clip-vit-b-32").default_mode == "clean-fid"
    with pytest.raises(FfhqToolsError, match="--features nope: expected one of"):
        get_network("nope")


def test_fid50k_full_in_dinov2_space_is_the_numpy_fd(tmp_path, folders, small_vit_l):
    real_folder, _ = folders
    row = compute_metric("fid50k_full", _ctx(tmp_path, real_folder, num_gen=32))
    gen = _features(sampling.iterate_generated(LinearTanhG(32, seed=5), 32, 16, 0, "cpu"))
    real = _features(sampling.iterate_real(real_folder, 40, 16))
    assert row["results"]["fid"] == pytest.approx(_fd_numpy(gen, real), rel=1e-4)
    assert row["weights"] == {NETWORK: small_vit_l}
    assert row["protocol"]["feature_network"] == NETWORK
    assert row["mode"] == "dgm-eval" and row["protocol"]["num_real"] == 40
    other = compute_metric("fid50k_full", _ctx(tmp_path, real_folder, num_gen=32,
                                               embedding_mode="torch-fidelity"))
    assert other["mode"] == "torch-fidelity"
    assert other["results"]["fid"] != row["results"]["fid"]  # the mode keys the cache


def test_kid_and_pr_in_dinov2_space_match_the_peers(tmp_path, folders, small_vit_l):
    from prdc import compute_prdc

    from eval.kid import kid_from_features

    real_folder, _ = folders
    gen = _features(sampling.iterate_generated(LinearTanhG(32, seed=5), 32, 16, 0, "cpu"))
    real = _features(sampling.iterate_real(real_folder, 40, 16))
    kid = compute_metric("kid50k_full", _ctx(tmp_path, real_folder, num_gen=32))
    expected = kid_from_features(gen, real, defaults.KID_NUM_SUBSETS,
                                 defaults.KID_MAX_SUBSET_SIZE, seed=0)
    assert kid["results"]["kid"] == pytest.approx(expected["kid"], rel=1e-4, abs=1e-7)
    assert kid["weights"] == {NETWORK: small_vit_l}
    pr = compute_metric("pr50k3", _ctx(tmp_path, real_folder, num_gen=32))
    peer = compute_prdc(real, gen, nearest_k=3)
    assert pr["results"]["precision"] == pytest.approx(peer["precision"])
    assert pr["results"]["recall"] == pytest.approx(peer["recall"])
    assert pr["protocol"]["feature_network"] == NETWORK


def test_metrics_on_their_own_network_refuse_features_and_modes_are_checked(tmp_path,
                                                                             folders):
    real_folder, _ = folders
    with pytest.raises(FfhqToolsError, match="'is50k' does not take --features"):
        compute_metric("is50k", _ctx(tmp_path, real_folder, num_gen=8))
    with pytest.raises(FfhqToolsError, match="--mode pytorch-fid: feature network "
                                             "dinov2-vit-l-14 takes"):
        compute_metric("fid50k_full", _ctx(tmp_path, real_folder, num_gen=8,
                                           mode="pytorch-fid"))
    ctx = MetricContext(features="inception-ts")
    assert ctx.feature_network == "inception-ts"  # the Inception passes use it


def test_fid_verb_with_features_and_saved_statistics(tmp_path, folders, small_vit_l,
                                                     capsys):
    first, second = folders
    common = ["--features", NETWORK, "--no-progress", "--stats-cache", str(tmp_path / "c")]
    assert cli.main(["fid", str(first), str(second), *common]) == 0
    row = json.loads(capsys.readouterr().out)
    a = _features(sampling.iterate_real(first, 40, 16))
    b = _features(sampling.iterate_real(second, 40, 16))
    assert row["fid"] == pytest.approx(_fd_numpy(a, b), rel=1e-4)
    assert row["features"] == NETWORK and row["mode"] == "dgm-eval"
    stats = tmp_path / "a.npz"
    assert cli.main(["fid", "--save-stats", str(first), str(stats), *common]) == 0
    capsys.readouterr()
    assert cli.main(["fid", str(stats), str(second), *common]) == 0
    assert json.loads(capsys.readouterr().out)["fid"] == pytest.approx(row["fid"], rel=1e-6)
    assert cli.main(["fid", str(stats), str(second), *common, "--mode",
                     "torch-fidelity"]) == 2
    assert "statistics were computed with mode dgm-eval" in capsys.readouterr().err


def test_compare_guard_names_a_row_of_another_feature_space():
    protocol = json.dumps({"num_gen": 50_000, "num_real": 70_000})
    dinov2_row = {"metric": "fid50k_full", "protocol": protocol,
                  "feature_network": NETWORK}
    assert row_deviations(dinov2_row, "FFHQ") == [
        "features dinov2-vit-l-14 (protocol: inception-2015-12-05)"]
    for same_space in ("inception-fid", "inception-ts"):
        row = {**dinov2_row, "feature_network": same_space}
        assert row_deviations(row, "FFHQ") == []
    clip_prdc = {"metric": "prdc_dinov2_10k", "feature_network": "clip-vit-b-32",
                 "protocol": json.dumps({"num_gen": 10_000, "num_real": 10_000})}
    assert row_deviations(clip_prdc) == ["features clip-vit-b-32 (protocol: dinov2-vit-l-14)"]

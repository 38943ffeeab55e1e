"""The DINOv2-space metrics end to end through the registry (`compute_metric`): generator ->
feature passes -> numbers, against plain NumPy / peer evaluations of the same features.

The network is the DINOv2 architecture at a test size (2 blocks, 32-d) registered under the
ViT-L/14 entry, with seeded weights written by the test and verified by SHA-256."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
import torch
from embedding_helpers import SMALL_VIT_NETWORK, small_vit_config
from eval_helpers import LinearTanhG, photos, random_crops, write_folder

from eval import sampling
from eval.features.embedders import load_embedder
from eval.registry import MetricContext, MetricInputError, compute_metric
from ffhq_tools import weights
from ffhq_tools.errors import FfhqToolsError

NETWORK = SMALL_VIT_NETWORK
SMALL = small_vit_config()


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    real = write_folder(tmp_path_factory.mktemp("real"), random_crops(64, 32, 1, photos()))
    test = write_folder(tmp_path_factory.mktemp("test"), random_crops(32, 32, 2, photos()))
    return real, test


def _ctx(tmp_path, real, **fields):
    return MetricContext(generator=LinearTanhG(32, seed=5), data=real, progress=False,
                         batch_size=16,
                         stats_cache=tmp_path / "stats", **fields)


def _features(batches) -> np.ndarray:
    embedder = load_embedder(NETWORK, weights.resolve)
    return np.concatenate([embedder(batch)[NETWORK].numpy() for batch in batches])


def _fd_numpy(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.astype(np.float64), b.astype(np.float64)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean = np.real(scipy.linalg.sqrtm(s1 @ s2))
    return float(((a.mean(0) - b.mean(0)) ** 2).sum() + np.trace(s1 + s2 - 2 * covmean))


def test_fd_dinov2_equals_numpy_definition_on_the_same_features(tmp_path, folders,
                                                                 small_vit_l):
    real_folder, _ = folders
    row = compute_metric("fd_dinov2_50k", _ctx(tmp_path, real_folder, num_gen=48))
    gen = _features(sampling.iterate_generated(LinearTanhG(32, seed=5), 48, 16, 0, "cpu"))
    real = _features(sampling.iterate_real(real_folder, 64, 16))
    assert row["results"]["fd"] == pytest.approx(_fd_numpy(gen, real), rel=1e-4)
    assert row["results"]["fd"] > 0.01  # the sets differ in feature space
    assert row["weights"] == {NETWORK: small_vit_l}
    assert row["protocol"]["preprocessing"] == "dgm-eval"
    assert row["protocol"]["num_gen"] == 48 and row["protocol"]["num_real"] == 64
    other = compute_metric("fd_dinov2_50k", _ctx(tmp_path, real_folder, num_gen=48,
                                                  embedding_mode="torch-fidelity"))
    assert other["protocol"]["preprocessing"] == "torch-fidelity"
    assert other["results"]["fd"] != row["results"]["fd"]  # the mode is in the cache key


def test_prdc_authpct_kd_and_fd_inf_rows_match_the_peers(tmp_path, folders, small_vit_l):
    prdc_package = pytest.importorskip("prdc")
    real_folder, _ = folders
    ctx = _ctx(tmp_path, real_folder, num_gen=48, max_real=64)
    gen = _features(sampling.iterate_generated(LinearTanhG(32, seed=5), 48, 16, 0, "cpu"))
    real = _features(sampling.iterate_real(real_folder, 64, 16))
    row = compute_metric("prdc_dinov2_10k", ctx)
    expected = prdc_package.compute_prdc(real, gen, 5)
    assert row["results"] == pytest.approx({k: float(v) for k, v in expected.items()},
                                           abs=1.5 / 48)
    assert row["protocol"]["nearest_k"] == 5
    from eval.kid import kid_from_features
    from eval.memorisation import authpct

    kd = compute_metric("kd_dinov2_50k", ctx)["results"]
    assert kd["kd"] == pytest.approx(kid_from_features(gen, real, 100, 1000, 0)["kid"],
                                     rel=1e-6)
    auth = compute_metric("authpct", ctx)["results"]["authpct"]
    assert auth == pytest.approx(authpct(real.astype(np.float64), gen.astype(np.float64),
                                         dtype=torch.float64), abs=1.5 * 100 / 48)
    inf = compute_metric("fd_inf", _ctx(tmp_path, real_folder, num_gen=48))
    assert inf["protocol"]["sizes"][0] == 4 and inf["protocol"]["sizes"][-1] == 48
    assert np.isfinite(inf["results"]["fd_inf"])


def test_fld_needs_held_out_images_and_scores_them(tmp_path, folders, small_vit_l):
    real_folder, test_folder = folders
    with pytest.raises(MetricInputError, match="--test-data"):
        compute_metric("fld", _ctx(tmp_path, real_folder, num_gen=32))
    row = compute_metric("fld", _ctx(tmp_path, real_folder, num_gen=32, max_real=32,
                                     test_data=test_folder))
    assert row["protocol"]["set_size"] == 32
    assert set(row["results"]) == {"fld", "fls", "nll_gen", "nll_baseline"}
    assert row["results"]["fls"] == pytest.approx(100 * np.exp(-row["results"]["fld"] / 50))


def test_bad_inputs_are_named(tmp_path, folders, small_vit_l):
    real_folder, _ = folders
    np.savez(tmp_path / "stats.npz", mu=np.zeros(2048), sigma=np.eye(2048))
    with pytest.raises(FfhqToolsError, match="stats.npz: a statistics file"):
        compute_metric("fd_dinov2_50k", _ctx(tmp_path, tmp_path / "stats.npz", num_gen=8))
    with pytest.raises(FfhqToolsError, match="--mode clean-fid: feature network dinov2-vit-l"):
        compute_metric("fd_dinov2_50k", _ctx(tmp_path, real_folder, num_gen=8,
                                              embedding_mode="clean-fid"))

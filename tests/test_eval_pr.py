"""Precision / recall: blocked k-NN against brute force, known geometries, the peer library."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from eval import knn
from eval.precision_recall import precision_recall_features


def brute_force(real: np.ndarray, gen: np.ndarray, k: int = 3) -> tuple[float, float]:
    """The definition, literally, with scipy's float64 Euclidean distances."""
    from scipy.spatial.distance import cdist as dist

    real_radius = np.sort(dist(real, real), axis=1)[:, k]
    gen_radius = np.sort(dist(gen, gen), axis=1)[:, k]
    cross = dist(gen, real)
    precision = np.mean([(cross[i] <= real_radius).any() for i in range(len(gen))])
    recall = np.mean([(cross[:, j] <= gen_radius).any() for j in range(len(real))])
    return float(precision), float(recall)


@settings(max_examples=25, deadline=None)
@given(n_real=st.integers(5, 60), n_gen=st.integers(5, 60), dim=st.integers(1, 12),
       shift=st.floats(0.0, 2.0), row=st.integers(1, 23), col=st.integers(1, 31),
       seed=st.integers(0, 2**31 - 1))
def test_blocked_equals_brute_force_exactly(n_real, n_gen, dim, shift, row, col, seed):
    rng = np.random.default_rng(seed)
    real = rng.normal(size=(n_real, dim))
    gen = rng.normal(size=(n_gen, dim)) + shift
    got = knn.precision_recall(real, gen, 3, row_batch=row, col_batch=col, dtype=torch.float64)
    assert (got.precision, got.recall) == brute_force(real, gen)


def test_float32_default_matches_brute_force_on_feature_like_data():
    rng = np.random.default_rng(7)
    real = np.abs(rng.normal(size=(300, 512))).astype(np.float32) * 3 + 10
    gen = np.abs(rng.normal(size=(250, 512))).astype(np.float32) * 3.2 + 10
    got = precision_recall_features(real, gen, row_batch=64, col_batch=100)
    assert (got["precision"], got["recall"]) == brute_force(real.astype(np.float64),
                                                          gen.astype(np.float64))


def test_radius_excludes_self_and_counts_duplicates():
    points = np.array([[0.0], [1.0], [3.0], [6.0], [10.0]])
    radii = knn.kth_neighbour_sq_radii(points, k=1, row_batch=2, dtype=torch.float64).sqrt()
    assert radii.tolist() == [1.0, 1.0, 2.0, 3.0, 4.0]
    twins = np.array([[0.0], [0.0], [5.0], [9.0]])
    radii = knn.kth_neighbour_sq_radii(twins, k=1, dtype=torch.float64).sqrt()
    assert radii.tolist() == [0.0, 0.0, 4.0, 4.0]
    with pytest.raises(ValueError, match="more than k=3"):
        knn.kth_neighbour_sq_radii(points[:3], k=3)


def test_identical_disjoint_and_nested_clouds():
    rng = np.random.default_rng(0)
    cloud = rng.normal(size=(200, 16))
    same = precision_recall_features(cloud, cloud.copy(), row_batch=32, col_batch=64)
    assert same == {"precision": 1.0, "recall": 1.0}
    far = precision_recall_features(cloud, cloud + 100.0)
    assert far == {"precision": 0.0, "recall": 0.0}
    # Generated samples concentrated in the middle of the real cloud: all of them are
    # realistic (precision 1) but they cover only part of it (recall < 1).
    inner = rng.normal(size=(200, 16)) * 0.05
    nested = precision_recall_features(cloud, inner)
    assert nested["precision"] == 1.0
    assert nested["recall"] < 0.5


def test_matches_torch_fidelity():
    prc = pytest.importorskip("torch_fidelity.metric_prc")
    torch.manual_seed(3)
    real = torch.randn(700, 64)
    gen = torch.randn(600, 64) * 1.1 + 0.2
    expected = prc.calculate_precision_recall_full(gen, real, 3, 256)
    got = knn.precision_recall(real, gen, 3, row_batch=100, col_batch=300, dtype=torch.float64)
    assert got.precision == pytest.approx(expected[0], abs=1e-6)
    assert got.recall == pytest.approx(expected[1], abs=1e-6)


def test_rejects_mismatched_feature_shapes():
    with pytest.raises(ValueError, match="equal D"):
        knn.precision_recall(np.zeros((5, 3)), np.zeros((5, 4)))

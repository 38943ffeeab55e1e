import numpy as np
import pytest
import scipy.linalg

from eval.frechet import frechet_distance, frechet_distance_sqrtm, trace_sqrt_product
from ffhq_tools.errors import FfhqToolsError


def _random_psd(rng, dim, rank=None):
    a = rng.standard_normal((dim, rank or dim))
    return a @ a.T / dim


def test_closed_form_commuting_diagonal_gaussians():
    rng = np.random.default_rng(0)
    d1, d2 = rng.uniform(0.1, 3, 50), rng.uniform(0.1, 3, 50)
    mu1, mu2 = rng.standard_normal(50), rng.standard_normal(50)
    expected = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(d1) - np.sqrt(d2)) ** 2)
    assert frechet_distance(mu1, np.diag(d1), mu2, np.diag(d2)) == pytest.approx(expected,
                                                                                  rel=1e-12)


def test_closed_form_one_dimension_and_identity():
    assert frechet_distance([1.0], [[4.0]], [3.0], [[9.0]]) == pytest.approx(4 + (2 - 3) ** 2)
    rng = np.random.default_rng(1)
    sigma = _random_psd(rng, 64)
    mu = rng.standard_normal(64)
    assert abs(frechet_distance(mu, sigma, mu, sigma)) < 1e-9


def test_agrees_with_sqrtm_on_full_rank():
    rng = np.random.default_rng(2)
    s1, s2 = _random_psd(rng, 128), _random_psd(rng, 128)
    mu1, mu2 = rng.standard_normal(128), rng.standard_normal(128)
    ours = frechet_distance(mu1, s1, mu2, s2)
    reference = frechet_distance_sqrtm(mu1, s1, mu2, s2)
    assert ours == pytest.approx(reference, rel=1e-9)


def test_rank_deficient_covariances_are_exact_and_real():
    """Fewer samples than dimensions: compare with the symmetric-form definition computed
    by full eigendecompositions (no sqrtm involved)."""
    rng = np.random.default_rng(3)
    s1, s2 = _random_psd(rng, 200, rank=30), _random_psd(rng, 200, rank=40)
    w, v = scipy.linalg.eigh(s1)
    root = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    reference = np.sqrt(np.clip(scipy.linalg.eigvalsh(root @ s2 @ root), 0, None)).sum()
    assert trace_sqrt_product(s1, s2) == pytest.approx(reference, rel=1e-6)
    assert trace_sqrt_product(s1, np.zeros_like(s1)) == pytest.approx(0, abs=1e-6)
    value = frechet_distance(np.zeros(200), s1, np.ones(200), s2)
    assert isinstance(value, float) and np.isfinite(value)


def test_monte_carlo_gaussians_match_closed_form():
    rng = np.random.default_rng(4)
    a = rng.standard_normal((20000, 4)) * [1, 2, 3, 4] + 1
    b = rng.standard_normal((20000, 4)) * [2, 2, 1, 1]
    value = frechet_distance(a.mean(0), np.cov(a, rowvar=False), b.mean(0),
                             np.cov(b, rowvar=False))
    expected = 4 + (1 - 2) ** 2 + 0 + (3 - 1) ** 2 + (4 - 1) ** 2
    assert value == pytest.approx(expected, rel=0.05)


def test_bad_statistics_name_the_input():
    with pytest.raises(FfhqToolsError, match="generated"):
        frechet_distance([np.nan, 0], np.eye(2), [0, 0], np.eye(2),
                         labels=("generated", "real"))
    with pytest.raises(FfhqToolsError, match="dimensions"):
        frechet_distance([0, 0], np.eye(2), [0, 0, 0], np.eye(3))

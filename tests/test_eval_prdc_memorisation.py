"""Density/coverage/precision/recall against the `prdc` package, AuthPct against its
definition on full distance matrices, FD-infinity against dgm-eval's recipe (scipy sqrtm FD,
scikit-learn line fit) and the FLD likelihood against scipy's logsumexp."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from eval import fd_infinity as fdi
from eval.frechet import frechet_distance_sqrtm
from eval.memorisation import authpct, feature_likelihood, kde_nll
from eval.prdc import density_coverage, prdc


def _sets(seed: int, n_real: int, n_fake: int, dim: int):
    rng = np.random.default_rng(seed)
    real = rng.standard_normal((n_real, dim))
    fake = rng.standard_normal((n_fake, dim)) * 1.1 + 0.15
    return real, fake


@pytest.mark.parametrize("k", [1, 3, 5])
def test_prdc_equals_the_prdc_package(k, capsys):
    reference = pytest.importorskip("prdc")
    real, fake = _sets(k, 700, 450, 24)
    expected = reference.compute_prdc(real, fake, k)
    ours = prdc(real, fake, k, dtype=torch.float64, block=128, col_block=300)
    assert ours == {key: float(value) for key, value in expected.items()}
    assert 0 < ours["precision"] < 1 and 0 < ours["coverage"] < 1  # not a degenerate case
    ours32 = prdc(real.astype(np.float32), fake.astype(np.float32), k)
    assert ours32 == pytest.approx(ours, abs=2 / 450)  # float32 may flip a near tie


def test_density_coverage_alone_equals_the_prdc_package():
    reference = pytest.importorskip("prdc")
    real, fake = _sets(9, 640, 510, 20)
    expected = reference.compute_prdc(real, fake, 4)
    ours = density_coverage(real, fake, 4, dtype=torch.float64, block=100, col_block=250)
    assert ours == {key: float(expected[key]) for key in ("density", "coverage")}
    assert 0 < ours["coverage"] < 1 and ours["density"] > 0


def test_prdc_of_a_set_with_itself():
    real, _ = _sets(0, 300, 1, 8)
    result = prdc(real, real, 5, dtype=torch.float64)
    assert result["precision"] == result["recall"] == result["coverage"] == 1.0


def _authpct_definition(train: np.ndarray, gen: np.ndarray) -> float:
    train, gen = torch.from_numpy(train), torch.from_numpy(gen)
    real = torch.cdist(train, train)
    real.fill_diagonal_(float("inf"))
    cross = torch.cdist(train, gen)
    gen_min, closest = cross.min(dim=0)
    return float(100 * (real.min(dim=0).values[closest] < gen_min).double().mean())


def test_authpct_matches_its_definition_and_flags_copies():
    train, gen = _sets(4, 500, 400, 16)
    expected = _authpct_definition(train, gen)
    assert authpct(train, gen, dtype=torch.float64, block=97) == pytest.approx(expected,
                                                                                abs=1e-12)
    copies = np.concatenate([train[:100], gen[:300]])
    assert authpct(train, copies, dtype=torch.float64) == pytest.approx(
        _authpct_definition(train, copies), abs=1e-12)
    assert authpct(train, train[:50], dtype=torch.float64) == 0.0  # memorised: not authentic


def test_fd_infinity_follows_dgm_eval_recipe():
    from sklearn.linear_model import LinearRegression

    real, gen = _sets(5, 3000, 2000, 6)
    mu, sigma = real.mean(axis=0), np.cov(real, rowvar=False)
    result = fdi.fd_infinity(gen, mu, sigma, seed=3)
    sizes = np.linspace(200, 2000, 15).astype(np.int32)  # min(5000, max(2000 // 10, 2))
    assert result["sizes"] == sizes.tolist()
    rng = np.random.default_rng(3)
    values = []
    for size in sizes:
        subset = gen[rng.choice(len(gen), size, replace=False)]
        values.append(frechet_distance_sqrtm(subset.mean(axis=0), np.cov(subset, rowvar=False),
                                             mu, sigma))
    np.testing.assert_allclose(result["fd_n"], values, rtol=1e-9)
    fit = LinearRegression().fit(1 / sizes.reshape(-1, 1), np.array(values).reshape(-1, 1))
    assert result["fd_inf"] == pytest.approx(float(fit.intercept_[0]), rel=1e-9)
    assert result["slope"] > 0 and result["fd_inf"] < values[0]  # the 1/N bias removed


def test_kde_nll_is_the_mixture_likelihood():
    from scipy.special import logsumexp

    rng = np.random.default_rng(6)
    dists = rng.uniform(0, 5, (7, 9))
    log_sigmas = rng.normal(size=9)
    dim = 4
    exponent = -0.5 * dists / np.exp(log_sigmas) - dim / 2 * log_sigmas
    expected = -(logsumexp(exponent, axis=1) - np.log(9))
    ours = kde_nll(torch.from_numpy(dists), torch.from_numpy(log_sigmas), dim)
    np.testing.assert_allclose(ours.numpy(), expected, rtol=1e-12)


def test_feature_likelihood_ranks_fresh_samples_above_copies():
    rng = np.random.default_rng(7)
    draw = lambda n: rng.standard_normal((n, 8)).astype(np.float32)  # noqa: E731
    train, baseline, test, fresh = draw(300), draw(300), draw(300), draw(300)
    good = feature_likelihood(train, baseline, test, fresh, steps=100)
    copied = feature_likelihood(train, baseline, test, train.copy(), steps=100)
    shifted = feature_likelihood(train, baseline, test, fresh + 1.5, steps=100)
    assert abs(good["fld"]) < 5 and 80 < good["fls"] < 120  # as good as real data
    assert copied["fld"] > 20 * max(abs(good["fld"]), 1)    # memorised: much worse
    assert shifted["fld"] > good["fld"] + 5
    assert good["fls"] == pytest.approx(100 * np.exp(-good["fld"] / 50), rel=1e-9)

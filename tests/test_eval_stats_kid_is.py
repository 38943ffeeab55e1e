import numpy as np
import pytest
import torch

from eval.inception_score import inception_score_from_probs
from eval.kid import kid_from_features, mmd2_unbiased
from eval.stats import FeatureStats, StatsError, cache_key, load_gaussian
from ffhq_tools.errors import FfhqToolsError


def test_streaming_stats_match_numpy_both_normalisations():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((257, 16)) * 3 + 5
    stats = FeatureStats(16)
    for chunk in np.array_split(x, 7):
        stats.update(torch.from_numpy(chunk).float())
    x32 = x.astype(np.float32).astype(np.float64)
    np.testing.assert_allclose(stats.mean(), x32.mean(0), rtol=1e-12)
    np.testing.assert_allclose(stats.covariance("unbiased"), np.cov(x32, rowvar=False),
                               rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(stats.covariance("biased"), np.cov(x32, rowvar=False, bias=True),
                               rtol=1e-9, atol=1e-12)


def test_non_finite_features_and_too_few_images_are_errors():
    stats = FeatureStats(4, label="folder X")
    with pytest.raises(StatsError, match="folder X"):
        stats.update(torch.tensor([[1.0, float("nan"), 0, 0]]))
    stats.update(torch.ones(1, 4))
    with pytest.raises(StatsError, match="at least 2"):
        stats.covariance()


def test_npz_round_trip_and_pytorch_fid_layout(tmp_path):
    rng = np.random.default_rng(1)
    stats = FeatureStats(8, capture=True)
    stats.update(torch.from_numpy(rng.standard_normal((30, 8))).float())
    path = stats.save(tmp_path / "s.npz", "unbiased", {"mode": "tf"})
    back = FeatureStats.load(path)
    np.testing.assert_array_equal(back.features(), stats.features())
    mu, sigma, meta = load_gaussian(path, "biased")
    np.testing.assert_allclose(sigma, stats.covariance("biased"))
    assert meta["mode"] == "tf" and meta["num"] == 30
    np.savez(tmp_path / "pf.npz", mu=mu, sigma=sigma)  # what pytorch-fid --save-stats writes
    mu2, sigma2, _ = load_gaussian(tmp_path / "pf.npz")
    np.testing.assert_array_equal(mu2, mu)
    np.savez(tmp_path / "bad.npz", mean=mu)
    with pytest.raises(StatsError, match="bad.npz.*'mu'"):
        load_gaussian(tmp_path / "bad.npz")


def test_rows_only_stats_keep_features_and_refuse_moments(tmp_path):
    rows = torch.from_numpy(np.random.default_rng(2).standard_normal((9, 5))).float()
    stats = FeatureStats(5, capture=True, label="probs", moments=False)
    stats.update(rows[:4])
    stats.update(rows[4:])
    assert stats.num == 9 and stats.gram.numel() == 0
    with pytest.raises(StatsError, match="probs: only the features"):
        stats.mean()
    back = FeatureStats.load(stats.save(tmp_path / "rows.npz", "unbiased"))
    assert (back.num, back.dim, back.moments) == (9, 5, False)
    np.testing.assert_array_equal(back.features(), rows.numpy())
    with pytest.raises(ValueError, match="keeps nothing"):
        FeatureStats(5, capture=False, moments=False)


def test_cache_key_changes_with_every_field():
    base = {"data": "a", "network": "b", "mode": "tf", "num": 10, "xflip": False}
    keys = {cache_key(base)}
    for field, value in [("data", "c"), ("network", "d"), ("mode", "clean"), ("num", 11),
                         ("xflip", True)]:
        keys.add(cache_key({**base, field: value}))
    assert len(keys) == 6


def _mmd_reference(x, y):
    """Textbook unbiased MMD^2 with explicit loops over pairs (k = (x.y/d + 1)^3)."""
    d, m = x.shape[1], x.shape[0]
    k = lambda a, b: (a @ b / d + 1) ** 3  # noqa: E731
    xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    yy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    xy = sum(k(x[i], y[j]) for i in range(m) for j in range(m)) / (m * m)
    return xx + yy - 2 * xy


def test_kid_matches_reference_formula():
    rng = np.random.default_rng(2)
    x, y = rng.standard_normal((12, 5)), rng.standard_normal((12, 5)) + 0.5
    assert mmd2_unbiased(x, y) == pytest.approx(_mmd_reference(x, y), rel=1e-10)
    # A subset as large as the sets is a permutation: every subset gives the same value.
    result = kid_from_features(x, y, num_subsets=3, max_subset_size=100)
    assert result["kid"] == pytest.approx(_mmd_reference(x, y), rel=1e-10)
    assert result["kid_std"] == pytest.approx(0, abs=1e-12)


def test_kid_agrees_with_torch_fidelity():
    from torch_fidelity.metric_kid import kid_features_to_metric

    rng = np.random.default_rng(3)
    x = torch.from_numpy(rng.standard_normal((40, 16)))
    y = torch.from_numpy(rng.standard_normal((40, 16)) * 1.2)
    theirs = kid_features_to_metric(x, y, kid_subsets=2, kid_subset_size=40, verbose=False)
    ours = kid_from_features(x.numpy(), y.numpy(), num_subsets=2, max_subset_size=40)
    assert ours["kid"] == pytest.approx(theirs["kernel_inception_distance_mean"], rel=1e-9)


def test_inception_score_closed_forms():
    # One-hot predictions spread evenly over K classes: IS = K exactly.
    probs = np.eye(10)[np.arange(100) % 10]
    mean, std = inception_score_from_probs(probs, num_splits=10)
    assert mean == pytest.approx(10) and std == pytest.approx(0)
    # Identical predictions for every image: IS = 1.
    uniform = np.full((50, 7), 1 / 7)
    assert inception_score_from_probs(uniform, 5)[0] == pytest.approx(1)
    with pytest.raises(FfhqToolsError, match="at least 10"):
        inception_score_from_probs(probs[:5])


def test_inception_score_agrees_with_torch_fidelity():
    from torch_fidelity.metric_isc import isc_features_to_metric

    logits = torch.from_numpy(np.random.default_rng(4).standard_normal((200, 30)) * 3)
    theirs = isc_features_to_metric(logits, splits=10, shuffle=False)
    probs = torch.softmax(logits, 1).numpy()
    mean, std = inception_score_from_probs(probs, 10)
    assert mean == pytest.approx(theirs["inception_score_mean"], rel=1e-9)
    assert std == pytest.approx(theirs["inception_score_std"], rel=1e-6)


def _kid_reference(gen, real, num_subsets, max_subset_size, seed):
    """The KID protocol as first implemented: everything in float64 up front, then subsets."""
    gen, real = np.asarray(gen, np.float64), np.asarray(real, np.float64)
    size, d = min(len(gen), len(real), max_subset_size), gen.shape[1]
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(num_subsets):
        x = gen[rng.choice(len(gen), size, replace=False)]
        y = real[rng.choice(len(real), size, replace=False)]
        kxx, kyy, kxy = ((a @ b.T / d + 1) ** 3 for a, b in ((x, x), (y, y), (x, y)))
        within = (kxx.sum() - np.trace(kxx) + kyy.sum() - np.trace(kyy)) / (size * (size - 1))
        values.append(within - 2 * kxy.sum() / size**2)
    return np.mean(values), np.std(values)


def test_kid_on_float32_features_matches_float64_reference_without_full_copies():
    import tracemalloc

    rng = np.random.default_rng(5)
    gen = np.abs(rng.standard_normal((3000, 256))).astype(np.float32)
    real = (np.abs(rng.standard_normal((2500, 256))) * 1.1).astype(np.float32)
    tracemalloc.start()
    try:
        ours = kid_from_features(gen, real, num_subsets=4, max_subset_size=200, seed=9)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    mean, std = _kid_reference(gen, real, 4, 200, 9)
    assert ours["kid"] == pytest.approx(mean, rel=1e-6)
    assert ours["kid_std"] == pytest.approx(std, rel=1e-6)
    assert peak < real.nbytes  # subsets only: no float64 (or any) copy of a whole side


def test_feature_buffer_blocks_assemble_and_stream_exactly(tmp_path, monkeypatch):
    from eval.stats import FeatureBuffer

    monkeypatch.setattr(FeatureBuffer, "BLOCK_BYTES", 7 * 4 * 5)  # 7 rows of 5 per block
    rng = np.random.default_rng(6)
    batches = [rng.standard_normal((n, 5)).astype(np.float32) for n in (3, 9, 1, 7, 4)]
    stats = FeatureStats(5, capture=True)
    for batch in batches:
        stats.update(torch.from_numpy(batch))
    assert len(stats.captured.blocks) == 4  # 24 rows in blocks of 7, nothing concatenated
    expected = np.concatenate(batches)
    path = stats.save(tmp_path / "s.npz", "unbiased")  # streamed block by block
    with np.load(path) as saved:
        np.testing.assert_array_equal(saved["features"], expected)
        assert saved["features"].dtype == np.float32
    assembled = stats.features()
    np.testing.assert_array_equal(assembled, expected)
    assert np.shares_memory(stats.features(), assembled) and len(stats.captured.blocks) == 1
    stats.update(torch.from_numpy(batches[0]))  # appending after assembly keeps earlier rows
    np.testing.assert_array_equal(stats.features(), np.concatenate([expected, batches[0]]))
    np.testing.assert_array_equal(FeatureStats.load(path).features(), expected)

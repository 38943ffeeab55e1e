"""An interrupted generated-features run resumes from its partial checkpoint and ends with
exactly the statistics of an uninterrupted run (fake extractor: no Inception needed)."""

import numpy as np
import pytest
import torch

from eval import passes, runner
from eval.registry import MetricContext


class TinyG(torch.nn.Module):
    z_dim, c_dim, img_resolution = 4, 0, 4

    def forward(self, z, c=None, truncation_psi=1.0, noise_mode="random"):
        return torch.tanh(z.repeat(1, 12).view(-1, 3, 4, 4) + torch.randn(len(z), 3, 4, 4))


class FakeExtractor:
    sha256 = "f" * 64

    def __init__(self, fail_at=None):
        self.calls, self.fail_at = 0, fail_at
        self.project = torch.randn(48, 2048, generator=torch.Generator().manual_seed(0))

    def __call__(self, batch, want_probs=False):
        self.calls += 1
        if self.calls == self.fail_at:
            raise KeyboardInterrupt("killed")
        pool = batch.flatten(1).float() @ self.project / 100
        return pool, torch.softmax(pool[:, :1008].double(), 1) if want_probs else None


def _run(monkeypatch, extractor, cache):
    monkeypatch.setattr(runner, "inception", lambda ctx: extractor)
    monkeypatch.setattr(passes, "CHECKPOINT_EVERY_IMAGES", 4)
    ctx = MetricContext(generator=TinyG(), generator_info={"sha256": "a" * 64}, batch_size=2,
                        stats_cache=cache, progress=False, seed=3)
    return runner.generated_features(ctx, 12, capture=True, want_probs=True)


def test_interrupted_run_resumes_to_identical_statistics(monkeypatch, tmp_path):
    reference, reference_probs = _run(monkeypatch, FakeExtractor(), tmp_path / "a")
    with pytest.raises(KeyboardInterrupt):
        _run(monkeypatch, FakeExtractor(fail_at=6), tmp_path / "b")  # batches 1-4 saved
    assert len(list((tmp_path / "b" / "partial").glob("*.npz"))) == 2
    resumed_extractor = FakeExtractor()
    stats, probs = _run(monkeypatch, resumed_extractor, tmp_path / "b")
    assert resumed_extractor.calls == 2  # only batches 5 and 6
    assert stats.num == 12
    np.testing.assert_allclose(stats.mean(), reference.mean(), rtol=1e-12)
    np.testing.assert_allclose(stats.covariance(), reference.covariance(), rtol=1e-9,
                               atol=1e-12)
    np.testing.assert_array_equal(stats.features(), reference.features())
    np.testing.assert_allclose(probs, reference_probs, rtol=1e-12)
    assert not list((tmp_path / "b" / "partial").glob("*.npz"))


def test_partials_of_another_batch_size_are_refused_by_name(monkeypatch, tmp_path):
    with pytest.raises(KeyboardInterrupt):
        _run(monkeypatch, FakeExtractor(fail_at=6), tmp_path)
    saved = sorted(p.name.split(".", 1)[1] for p in (tmp_path / "partial").glob("*.npz"))
    assert saved == ["partial-b2-of1-r0-pool.npz", "partial-b2-of1-r0-probs.npz"]
    monkeypatch.setattr(runner, "inception", lambda ctx: FakeExtractor())
    ctx = MetricContext(generator=TinyG(), generator_info={"sha256": "a" * 64}, batch_size=3,
                        stats_cache=tmp_path, progress=False, seed=3)
    with pytest.raises(passes.StatsError, match=r"partial-b2-of1-r0-\w+\.npz \(and 1 more\)"):
        runner.generated_features(ctx, 12, capture=True, want_probs=True)
    assert len(list((tmp_path / "partial").glob("*.npz"))) == 2  # nothing lost

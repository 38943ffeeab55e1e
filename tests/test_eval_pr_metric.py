"""pr50k3 end to end: generator + HDF5 reals -> VGG16 features -> row with provenance."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import torch
from test_eval_ppl import LinearGenerator
from vgg_helpers import write_random_vgg16

pytestmark = pytest.mark.slow


def test_pr50k3_row_matches_features_computed_directly(tmp_path):
    from eval import knn, sampling
    from eval.features import vgg16
    from eval.registry import MetricContext, compute_metric
    from eval.stats import FeatureStats
    from ffhq_tools import weights

    vgg_path = write_random_vgg16(tmp_path / "vgg16-random.pth", classifier=True)
    rng = np.random.default_rng(0)
    reals = rng.integers(0, 256, size=(10, 3, 32, 32)).astype(np.uint8)
    data = tmp_path / "reals.h5"
    with h5py.File(data, "w") as f:
        f.create_dataset("data32x32", data=reals)
    G = LinearGenerator(resolution=32, seed=3)
    ctx = MetricContext(generator=G, data=data, num_gen=8, max_real=8, batch_size=4,
                        progress=False, weights_overrides={"vgg16": vgg_path},
                        stats_cache=tmp_path / "cache")
    row = compute_metric("pr50k3", ctx)
    assert row["protocol"]["num_gen"] == 8 and row["protocol"]["num_real"] == 8
    assert row["protocol"]["feature_network"] == "vgg16" and set(row["weights"]) == {"vgg16"}
    cached = list((tmp_path / "cache").glob("*.npz"))
    assert len(cached) == 1  # real features cached for the next run
    with np.load(cached[0]) as saved:
        assert "features" in saved and "gram" not in saved  # rows only: no 4096^2 moments

    net = vgg16.load_feature_network(lambda n: weights.resolve(n, {"vgg16": vgg_path}), "vgg16")
    with torch.no_grad():
        real = net(torch.from_numpy(reals[:8]))
        gen = torch.cat([net(b) for b in sampling.iterate_generated(G, 8, 4, ctx.seed, "cpu")])
    np.testing.assert_allclose(FeatureStats.load(cached[0]).features(), real.numpy(),
                               rtol=1e-5, atol=1e-6)
    direct = knn.precision_recall(real, gen, 3)
    assert row["results"] == {"precision": direct.precision, "recall": direct.recall}

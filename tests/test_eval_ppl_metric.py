"""The registered PPL metrics end to end: registry row, weights provenance, LPIPS network."""

from __future__ import annotations

import pytest
from test_eval_ppl import LinearGenerator
from vgg_helpers import write_random_vgg16

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def vgg_path(tmp_path_factory):
    return write_random_vgg16(tmp_path_factory.mktemp("vgg") / "vgg16-random.pth")


def test_ppl_wend_row_records_protocol_and_weights(vgg_path):
    from eval import ppl
    from eval.features import lpips
    from eval.registry import MetricContext, compute_metric
    from ffhq_tools import weights

    G = LinearGenerator(resolution=32, seed=9)
    ctx = MetricContext(generator=G, num_gen=24, batch_size=8, seed=5, progress=False,
                        weights_overrides={"vgg16": vgg_path})
    row = compute_metric("ppl_wend", ctx)
    assert row["protocol"]["num_samples"] == 24 and row["protocol"]["distance"] == lpips.OURS
    assert row["protocol"]["downsample"] == "tf" and row["protocol"]["crop"] is True
    assert set(row["weights"]) == {"vgg16", "lpips-vgg-lin"}
    distance = lpips.load_distance(lambda n: weights.resolve(n, {"vgg16": vgg_path}), lpips.OURS)
    direct = ppl.perceptual_path_length(G, distance, 24, space="w", sampling_mode="end",
                                        crop=True, batch_size=8, seed=5)
    assert row["results"]["ppl"] == pytest.approx(direct["ppl"], rel=1e-6)
    assert row["results"]["ppl"] > 0


def test_ppl_needs_a_generator():
    from eval.registry import MetricContext, compute_metric
    from ffhq_tools.errors import FfhqToolsError

    with pytest.raises(FfhqToolsError, match="needs --network"):
        compute_metric("ppl_zfull", MetricContext())

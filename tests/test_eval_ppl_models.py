"""PPL and linear separability on the project's real generators (StyleGAN2, StyleGAN, ProGAN
configs at toy width) loaded from a saved checkpoint: the contracts the metrics rely on."""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytestmark = pytest.mark.slow


def squared_l2(a, b):
    return (a - b).square().flatten(1).sum(dim=1)


@pytest.mark.parametrize("config_name", ["tiny", "tiny-stylegan", "tiny-progan"])
def test_metrics_run_on_checkpointed_generators(config_name, tmp_path):
    from eval import ppl, separability
    from eval.features import attributes
    from models.checkpoint import load_generator, save_checkpoint
    from models.configs import build_networks, get_config

    torch.manual_seed(0)
    config = get_config(config_name)
    G, _ = build_networks(config, 16, channel_max=32)
    path = tmp_path / "net.pt"
    save_checkpoint(path, config={"model": config.to_dict(), "resolution": 16, "c_dim": 0,
                                  "img_channels": 3, "channel_max": 32}, G=G)
    G = load_generator(path)
    for space in ("z", "w"):
        result = ppl.perceptual_path_length(G, squared_l2, 16, space=space,
                                            sampling_mode="full", crop=True, batch_size=8)
        assert np.isfinite(result["ppl"]) and result["ppl"] > 0
    again = ppl.path_length_samples(G, squared_l2, 8, space="w", sampling_mode="end",
                                    crop=False, batch_size=8, seed=2)
    np.testing.assert_array_equal(again, ppl.path_length_samples(
        G, squared_l2, 8, space="w", sampling_mode="end", crop=False, batch_size=8, seed=2))
    nets = {i: attributes.AttributeClassifier(attributes.ClassifierConfig(
        resolution=16, fmap_base=32, fmap_max=8)) for i in range(2)}
    result = separability.linear_separability(G, nets, num_samples=32, batch_size=8)
    assert result["scores"]["w"] >= 1.0 and result["scores"]["z"] >= 1.0

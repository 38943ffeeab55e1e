"""Every network family and generator adapter keeps the contract metrics rely on."""

from __future__ import annotations

import pytest
import torch

from eval.mixed_latents import MixedLatentGenerator
from models.configs import build_networks, get_config
from models.contract import ImageGenerator, check_generator, has_w_space


def generator(name: str, c_dim: int = 0):
    torch.manual_seed(0)
    return build_networks(get_config(name), 16, c_dim=c_dim)[0].eval()


@pytest.mark.parametrize("name,c_dim,w_space", [
    ("tiny", 0, True), ("tiny", 3, True), ("tiny-stylegan", 0, True),
    ("tiny-progan", 0, False)])
def test_every_family_keeps_the_contract(name, c_dim, w_space):
    G = generator(name, c_dim)
    assert check_generator(G) == []
    assert has_w_space(G) is w_space


def test_adapters_keep_the_contract():
    mixed = MixedLatentGenerator(generator("tiny"), 2)
    assert isinstance(mixed, ImageGenerator)
    assert check_generator(mixed) == []


def test_the_check_reports_a_broken_generator():
    class Broken(torch.nn.Module):
        z_dim, c_dim, img_resolution, img_channels = 4, 0, 8, 3

        def forward(self, z, c=None, truncation_psi=1.0, truncation_cutoff=None,
                    noise_mode="random"):
            return torch.randn(z.shape[0], 3, 4, 4)

    problems = check_generator(Broken())
    assert any("expected (2, 3, 8, 8)" in p for p in problems)
    assert "noise_mode='const' is not deterministic" in problems
    assert check_generator(object()) != []

"""Learning test: a tiny StyleGAN2 trained for ~a minute on coloured shapes moves its output
distribution towards the data (Frechet distance on 8x8 box-downsampled pixels halves)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
import torch
import torch.nn.functional as F
from train_standins import (
    one_thread,  # noqa: F401 - autouse fixture
    shapes_images,
    write_shapes_h5,
)

from models.checkpoint import load_generator
from models.configs import build_networks, get_config
from models.train import TrainOptions, train


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Reference definition with scipy's sqrtm (as pytorch-fid computes it)."""
    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean = scipy.linalg.sqrtm(s1 @ s2).real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2 - 2 * covmean))


def pixel_features(images: torch.Tensor) -> np.ndarray:
    return F.avg_pool2d(images.float(), 2).flatten(1).numpy().astype(np.float64)


@torch.no_grad()
def generated_features(G, count=512) -> np.ndarray:
    z = torch.randn(count, G.z_dim, generator=torch.Generator().manual_seed(123))
    return pixel_features(G.eval()(z, None))


@pytest.mark.slow
def test_tiny_stylegan2_learns_shapes(tmp_path):
    data = write_shapes_h5(tmp_path / "shapes.h5", count=256, resolution=16)
    held_out = torch.from_numpy(shapes_images(512, 16, seed=1)).float() / 127.5 - 1
    reals = pixel_features(held_out)
    options = TrainOptions(config="tiny", data=str(data), outdir=str(tmp_path / "runs"),
                           kimg=2.0, batch=16, tick_kimg=1.0, snap=0, channel_max=32,
                           workers=0, progress=False, device="cpu", seed=0)
    torch.manual_seed(0)
    G_init, _ = build_networks(get_config("tiny"), 16, channel_max=32)
    before = frechet_distance(generated_features(G_init), reals)
    run = train(options)
    after = frechet_distance(generated_features(load_generator(
        run / "network-snapshot-000002.000.pt")), reals)
    assert after <= 0.5 * before, (before, after)

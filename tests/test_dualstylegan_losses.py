"""DualStyleGAN's training losses against independent NumPy computations."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from dualstylegan_train_fixtures import torchvision_vgg19_state

from models import dualstylegan_losses as L
from models.vgg19 import FEATURE_NAMES, seeded_vgg19, vgg19_trunk


def _numpy_contextual(x: np.ndarray, y: np.ndarray, h: float) -> float:
    """The contextual loss written out point by point (Mechrez et al. 2018, Eqs. 1-5)."""
    n, c = x.shape[:2]
    mu = y.mean(axis=(0, 2, 3))
    losses = []
    for b in range(n):
        xs = (x[b].reshape(c, -1).T - mu)
        ys = (y[b].reshape(c, -1).T - mu)
        xs = xs / np.linalg.norm(xs, axis=1, keepdims=True)
        ys = ys / np.linalg.norm(ys, axis=1, keepdims=True)
        d = np.array([[1 - xi @ yj for yj in ys] for xi in xs])
        cx = np.zeros_like(d)
        for i in range(d.shape[0]):
            rel = d[i] / (d[i].min() + 1e-5)
            w = np.exp((1 - rel) / h)
            cx[i] = w / w.sum()
        score = np.mean([cx[:, j].max() for j in range(d.shape[1])])
        losses.append(-np.log(score + 1e-5))
    return float(np.mean(losses))


def test_contextual_loss_matches_a_hand_computation():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 3, 2, 3))
    y = rng.normal(size=(2, 3, 2, 3))
    ours = L.contextual_loss(torch.from_numpy(x), torch.from_numpy(y), band_width=0.2)
    assert float(ours) == pytest.approx(_numpy_contextual(x, y, 0.2), rel=1e-9)
    # identical maps: every y_j has an exact match, CX close to one -> loss near zero
    same = L.contextual_loss(torch.from_numpy(x), torch.from_numpy(x), band_width=0.2)
    assert float(same) < float(ours) and float(same) < 0.05


def test_style_loss_compares_channel_means():
    fake = [torch.zeros(2, 4, 3, 3) for _ in range(5)]
    real = [torch.zeros(2, 4, 3, 3) for _ in range(5)]
    fake[1][:, :, 0, 0] = 9.0  # channel means 1.0
    real[2] += torch.tensor([1.0, 2.0, 3.0, 4.0]).view(1, 4, 1, 1)
    real[0] += 100.0  # feature 0 is not part of the style loss
    expected = 1.0 + np.mean(np.square([1.0, 2.0, 3.0, 4.0]))
    assert float(L.style_loss(fake, real)) == pytest.approx(expected)


def test_feature_l1_uses_only_weighted_levels():
    fake = [torch.full((1, 2, 2, 2), float(i)) for i in range(5)]
    real = [torch.zeros(1, 2, 2, 2) for _ in range(5)]
    got = L.feature_l1(fake, real, L.PRETRAIN_FEATURE_WEIGHTS)
    assert float(got) == pytest.approx(0.5 * (0 + 1 + 2))
    got = L.feature_l1(fake, real, L.PERCEPTUAL_FEATURE_WEIGHTS)
    assert float(got) == pytest.approx(0.5 * 1 + 1.0 * 2)


def test_res_l2_is_the_sum_of_norms_and_identity_loss_the_cosine_gap():
    params = [torch.tensor([3.0, 4.0]), torch.tensor([[1.0, 0.0], [0.0, 0.0]])]
    assert float(L.res_l2(params)) == pytest.approx(5.0 + 1.0)
    a = torch.nn.functional.normalize(torch.tensor([[1.0, 0.0], [1.0, 1.0]]), dim=1)
    b = torch.tensor([[0.0, 1.0], [1.0, 0.0]])
    assert float(L.identity_loss(a, b)) == pytest.approx(((1 - 0) + (1 - 2 ** -0.5)) / 2)


def test_vgg19_outputs_are_the_official_relu_layers():
    net = seeded_vgg19(3)
    images = torch.rand(1, 3, 32, 32) * 2 - 1
    feats = net(images)
    assert len(feats) == len(FEATURE_NAMES)
    assert [f.shape[1] for f in feats] == [64, 128, 256, 512, 512]
    assert [f.shape[-1] for f in feats] == [32, 16, 8, 4, 2]
    # independent: torchvision's own layer list with the same weights, ImageNet-normalised
    trunk = vgg19_trunk()
    trunk.load_state_dict(torchvision_vgg19_state(net))
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    x = ((images + 1) / 2 - mean) / std
    relu_indices = [1, 6, 11, 20, 29]
    outs = []
    for i, layer in enumerate(trunk):
        x = layer(x)
        if i in relu_indices:
            outs.append(x)
    for ours, ref in zip(feats, outs, strict=True):
        torch.testing.assert_close(ours, ref, rtol=1e-4, atol=1e-5)
    assert net.provenance["source"] == "random"


def test_vgg19_registry_entry_and_loader(tmp_path):
    from ffhq_tools import weights
    from models.vgg19 import load_vgg19

    entry = weights.get_entry("vgg19")
    assert entry.urls == ("https://download.pytorch.org/models/vgg19-dcbb9e9d.pth",)
    assert entry.sha256 == "dcbb9e9d"
    net = seeded_vgg19(1)
    state = {f"features.{k}": v for k, v in torchvision_vgg19_state(net).items()}
    path = tmp_path / "vgg19.pth"
    torch.save(state, path)
    loaded = load_vgg19({"vgg19": path})
    images = torch.rand(1, 3, 16, 16)
    for a, b in zip(loaded(images), net(images), strict=True):
        torch.testing.assert_close(a, b)
    assert loaded.provenance["source"] == "explicit"

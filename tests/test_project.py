"""Projection into W / W+: the schedule against its closed forms, recovery of known codes,
noise regularisation, batch independence, kill and resume, the projected_w.npz format."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from project_helpers import FeatureDistance, render_uint8, tiny_generator

from models.project import ProjectionError, ProjectionProtocol, Projector, schedule
from models.project.outputs import load_projected_w, save_projected_w
from models.projected_w import ProjectedWError

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def G():
    return tiny_generator()[0]


def known_codes(G, seeds):
    z = torch.from_numpy(np.stack([np.random.RandomState(s).randn(G.z_dim) for s in seeds]))
    return G.mapping(z.float(), None)


def reference_lr(t):
    return 0.1 * (0.5 - 0.5 * np.cos(np.pi * min(1.0, (1.0 - t) / 0.25))) * min(1.0, t / 0.05)


def test_schedule_matches_the_closed_forms():
    protocol = ProjectionProtocol()
    assert (protocol.steps, protocol.w_avg_samples, protocol.betas) == (1000, 10_000, (0.9, 0.999))
    for t in (0.0, 0.001, 0.025, 0.05, 0.3, 0.5, 0.75, 0.8, 0.875, 0.99, 0.999):
        assert schedule.learning_rate(t, protocol) == pytest.approx(reference_lr(t), abs=1e-15)
        expected = 2.5 * 0.05 * max(0.0, 1 - t / 0.75) ** 2
        assert schedule.w_noise_scale(t, 2.5, protocol) == pytest.approx(expected, abs=1e-15)
    assert schedule.learning_rate(0.0, protocol) == 0.0
    assert schedule.learning_rate(0.025, protocol) == pytest.approx(0.05)
    assert schedule.learning_rate(0.875, protocol) == pytest.approx(0.05)
    assert schedule.w_noise_scale(0.375, 1.0, protocol) == pytest.approx(0.05 * 0.25)
    assert schedule.w_noise_scale(0.9, 1.0, protocol) == 0.0


def numpy_noise_penalty(noise: np.ndarray) -> float:
    total = 0.0
    while True:
        total += np.mean(noise * np.roll(noise, 1, axis=1)) ** 2
        total += np.mean(noise * np.roll(noise, 1, axis=0)) ** 2
        if noise.shape[0] <= 8:
            return total
        noise = noise.reshape(noise.shape[0] // 2, 2, noise.shape[1] // 2, 2).mean(axis=(1, 3))


def test_noise_penalty_matches_numpy_and_punishes_structure():
    rng = np.random.RandomState(0)
    white = rng.randn(32, 32)
    smooth = np.repeat(np.repeat(rng.randn(8, 8), 4, axis=0), 4, axis=1)
    for noise in (white, smooth):
        ours = schedule.noise_regularization(torch.from_numpy(noise)[None, None])
        assert float(ours) == pytest.approx(numpy_noise_penalty(noise), rel=1e-10)
    assert numpy_noise_penalty(smooth) > 50 * numpy_noise_penalty(white)


def test_projector_uses_the_schedule_and_seeded_w_statistics(G):
    protocol = ProjectionProtocol(steps=20, w_avg_samples=500)
    projector = Projector(G, FeatureDistance(), protocol)
    z = np.random.RandomState(123).randn(500, G.z_dim)
    w = G.mapping(torch.from_numpy(z).float(), None)[:, 0].numpy()
    np.testing.assert_allclose(projector.wstats.avg[0, 0].numpy(), w.mean(0), rtol=1e-5,
                               atol=1e-6)
    assert projector.wstats.std == pytest.approx(
        math.sqrt(((w - w.mean(0)) ** 2).sum() / 500), rel=1e-5)
    target = render_uint8(G, known_codes(G, [3]))[0]
    result = projector.project([target], progress=False)[0]
    assert [row["lr"] for row in result.curve] == pytest.approx(
        [reference_lr(i / 20) for i in range(20)], abs=1e-15)
    assert result.w.shape == (1, G.num_ws, G.w_dim) and result.w.dtype == np.float32


def test_a_generated_image_is_recovered_in_w(G):
    ws = known_codes(G, [7])
    target = render_uint8(G, ws)[0]
    protocol = ProjectionProtocol(steps=200, w_avg_samples=1000, optimize_noise=False)
    result = Projector(G, FeatureDistance(), protocol).project([target], progress=False)[0]
    start = result.curve[0]["distance"]
    assert result.distance < 1e-4 < start / 100
    rendered = render_uint8(G, torch.from_numpy(result.w))[0].astype(int)
    error = np.abs(rendered - target.astype(int))
    assert error.mean() < 0.5 and error.max() <= 3
    assert np.abs(result.w - ws.numpy()).max() < 0.05


def test_a_mixed_code_is_recovered_in_w_plus_better_than_in_w(G):
    ws = known_codes(G, [11, 12])
    mixed = ws[:1].clone()
    mixed[:, 3:] = ws[1:, 3:]  # coarse layers of one code, the rest of another: not in W
    target = render_uint8(G, mixed)[0]
    results = {}
    for space in ("w", "w+"):
        protocol = ProjectionProtocol(steps=200, w_avg_samples=1000, optimize_noise=False,
                                      space=space)
        results[space] = Projector(G, FeatureDistance(), protocol).project(
            [target], progress=False)[0]
    plus = results["w+"]
    assert plus.distance < results["w"].distance / 2
    assert plus.distance < plus.curve[0]["distance"] / 30
    rendered = render_uint8(G, torch.from_numpy(plus.w))[0].astype(int)
    assert np.abs(rendered - target.astype(int)).mean() < 4
    assert np.ptp(plus.w[0], axis=0).max() > 0.1  # the layers really got their own codes


def test_noise_maps_stay_white_with_unit_variance():
    G = tiny_generator(noise_strength=1.0)[0]
    target = render_uint8(G, known_codes(G, [5]))[0]
    protocol = ProjectionProtocol(steps=60, w_avg_samples=500)
    result = Projector(G, FeatureDistance(), protocol).project([target], progress=False)[0]
    assert len(result.noise) == 5  # 16 px: b4.conv1 and two per block at 8 and 16
    for name, noise in result.noise.items():
        assert abs(noise.mean()) < 1e-5 and noise.var() == pytest.approx(1.0, abs=1e-4), name
        assert numpy_noise_penalty(noise.astype(np.float64)) < 0.05, name
        if noise.shape[0] >= 8:  # a 2x2 average of white noise has variance 1/4
            pooled = noise.reshape(noise.shape[0] // 2, 2, -1, 2).mean(axis=(1, 3))
            assert 0.1 < pooled.var() < 0.45, name


def test_a_batch_of_three_equals_three_single_projections():
    G = tiny_generator()[0].double()
    targets = list(render_uint8(G, known_codes(G, [1, 2, 3]).double()))
    projector = Projector(G, FeatureDistance(), ProjectionProtocol(steps=30, w_avg_samples=500,
                                                                    space="w+"))
    batched = projector.project(targets, seed=9, progress=False)
    for target, together in zip(targets, batched, strict=True):
        alone = projector.project([target], seed=9, progress=False)[0]
        np.testing.assert_array_equal(together.w, alone.w)
        for name in alone.noise:
            np.testing.assert_array_equal(together.noise[name], alone.noise[name])
        assert together.curve == alone.curve
    assert np.abs(batched[0].w - batched[1].w).max() > 1e-3


def test_kill_and_resume_gives_the_same_codes(G, tmp_path):
    targets = list(render_uint8(G, known_codes(G, [4, 5])))
    projector = Projector(G, FeatureDistance(), ProjectionProtocol(steps=40, w_avg_samples=500))
    paths = [tmp_path / "a" / "state.pt", tmp_path / "b" / "state.pt"]

    def kill_at_25(step):
        if step == 25:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        projector.project(targets, seed=2, checkpoints=paths, checkpoint_every=10,
                          on_step=kill_at_25, progress=False)
    assert torch.load(paths[0], weights_only=True)["state"]["step"] == 20
    steps_after_resume = []
    resumed = projector.project(targets, seed=2, checkpoints=paths, checkpoint_every=10,
                                on_step=steps_after_resume.append, progress=False)
    assert steps_after_resume == list(range(21, 41))
    uninterrupted = projector.project(targets, seed=2, progress=False)
    for a, b in zip(resumed, uninterrupted, strict=True):
        np.testing.assert_array_equal(a.w, b.w)
        assert a.curve == b.curve
    with pytest.raises(ProjectionError, match="seed"):
        projector.project(targets, seed=3, checkpoints=paths, progress=False)


def test_projected_w_npz_round_trip(G, tmp_path):
    w = known_codes(G, [1]).numpy()
    path = tmp_path / "projected_w.npz"
    save_projected_w(path, w)
    with np.load(path, allow_pickle=False) as data:
        assert data.files == ["w"]
        assert data["w"].dtype == np.float32 and data["w"].shape == (1, G.num_ws, G.w_dim)
        np.testing.assert_array_equal(data["w"], w)
    np.testing.assert_array_equal(load_projected_w(path, G), w)
    np.savez(tmp_path / "short.npz", w=w[:, :2])
    with pytest.raises(ProjectedWError, match="short.npz.*needs"):
        load_projected_w(tmp_path / "short.npz", G)
    np.savez(tmp_path / "other.npz", z=w)
    with pytest.raises(ProjectedWError, match="no key 'w'"):
        load_projected_w(tmp_path / "other.npz")


def test_networks_without_w_are_refused_by_name():
    from models.configs import build_networks, get_config

    progan, _ = build_networks(get_config("tiny-progan"), 16)
    with pytest.raises(ProjectionError, match="my-progan.pt.*ProGAN"):
        Projector(progan, FeatureDistance(), label="my-progan.pt")
    stylegan, _ = build_networks(get_config("tiny-stylegan"), 16)
    stylegan.eval()
    target = render_uint8(stylegan, known_codes(stylegan, [1]))[0]
    projector = Projector(stylegan, FeatureDistance(), ProjectionProtocol(steps=3,
                                                                          w_avg_samples=100))
    assert projector.project([target], progress=False)[0].w.shape == (1, stylegan.num_ws, 32)


def test_an_embedding_distance_embeds_targets_once_with_the_same_result(G):
    from models.project import EmbeddingDistance

    torch.manual_seed(3)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.Flatten()).requires_grad_(False)
    calls = []

    def embed(images):
        calls.append(images.shape[0])
        return net(images / 255)

    targets = list(render_uint8(G, known_codes(G, [1, 2])))
    protocol = ProjectionProtocol(steps=10, w_avg_samples=200)
    fast = Projector(G, EmbeddingDistance(embed), protocol).project(targets, progress=False)
    assert calls[:2] == [1, 1] and set(calls[2:]) <= {1, 2} and calls.count(2) == 10

    def pair(a, b):
        return (net(a / 255) - net(b / 255)).square().sum(dim=1)

    plain = Projector(G, pair, protocol).project(targets, progress=False)
    for a, b in zip(fast, plain, strict=True):
        np.testing.assert_allclose(a.w, b.w, atol=1e-5)
        assert [r["distance"] for r in a.curve] == pytest.approx(
            [r["distance"] for r in b.curve], rel=1e-5)

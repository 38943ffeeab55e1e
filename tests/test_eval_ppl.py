"""Perceptual path length: interpolation, crop/downsample, outlier filter, analytic values."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from eval import passes, ppl


class LinearGenerator(torch.nn.Module):
    """image = A w (+ noise); mapping is the identity, so W = Z (float64 throughout)."""

    def __init__(self, resolution: int = 16, z_dim: int = 6, num_ws: int = 3, seed: int = 0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.z_dim = self.w_dim = z_dim
        self.c_dim, self.num_ws, self.img_channels = 0, num_ws, 3
        self.img_resolution = resolution
        self.register_buffer("A", torch.randn(3 * resolution ** 2, z_dim, generator=g,
                                              dtype=torch.float64) * 0.05)
        self.register_buffer("const_noise", torch.randn(3, resolution, resolution, generator=g,
                                                        dtype=torch.float64))
        self.mapping_inputs: list[torch.Tensor] = []

    def mapping(self, z, c=None, truncation_psi=1.0, truncation_cutoff=None,
                update_w_avg=False):
        self.mapping_inputs.append(z.clone())
        return z.to(torch.float64).unsqueeze(1).repeat(1, self.num_ws, 1)

    def forward(self, z, c=None, truncation_psi=1.0, truncation_cutoff=None,
                noise_mode="random"):
        return self.synthesis(self.mapping(z, c), noise_mode=noise_mode)

    def synthesis(self, ws, noise_mode="random"):
        r = self.img_resolution
        img = (ws.mean(dim=1) @ self.A.T).reshape(-1, 3, r, r)
        if noise_mode == "random":
            img = img + 0.3 * torch.randn_like(img)
        elif noise_mode == "const":
            img = img + 0.3 * self.const_noise
        return img


def squared_l2(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a - b).square().flatten(1).sum(dim=1)


def cropped_rows(G: LinearGenerator) -> torch.Tensor:
    """The rows of A that survive the face crop."""
    r = G.img_resolution
    index = torch.arange(3 * r * r).reshape(1, 3, r, r)
    return G.A[ppl.face_crop(index).flatten()]


# ---- interpolation ---------------------------------------------------------------------------

@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), t=st.floats(0.0, 1.0), dim=st.integers(2, 32))
def test_slerp_is_the_great_circle(seed, t, dim):
    g = torch.Generator().manual_seed(seed)
    a, b = torch.randn(2, 1, dim, generator=g, dtype=torch.float64)
    theta = torch.acos((ppl.normalize(a) * ppl.normalize(b)).sum())
    closed = (torch.sin((1 - t) * theta) * ppl.normalize(a)
              + torch.sin(t * theta) * ppl.normalize(b)) / torch.sin(theta)
    got = ppl.slerp(a, b, torch.tensor([t], dtype=torch.float64))
    torch.testing.assert_close(got, closed, rtol=1e-9, atol=1e-9)
    assert got.norm().item() == pytest.approx(1.0, abs=1e-12)


def test_slerp_endpoints_and_lerp():
    a, b = torch.randn(4, 5, dtype=torch.float64), torch.randn(4, 5, dtype=torch.float64)
    zeros, ones = torch.zeros(4, dtype=torch.float64), torch.ones(4, dtype=torch.float64)
    torch.testing.assert_close(ppl.slerp(a, b, zeros), ppl.normalize(a))
    torch.testing.assert_close(ppl.slerp(a, b, ones), ppl.normalize(b))
    ws0, ws1 = torch.randn(4, 3, 5), torch.randn(4, 3, 5)
    t = torch.tensor([0.0, 0.25, 0.5, 1.0])
    got = ppl.lerp(ws0, ws1, t)
    for i in range(4):
        torch.testing.assert_close(got[i], ws0[i] * (1 - t[i]) + ws1[i] * t[i])


# ---- crop, downsample, filter -----------------------------------------------------------------

def test_face_crop_takes_rows_3c_to_7c_and_columns_2c_to_6c():
    images = torch.arange(64 * 64, dtype=torch.float32).reshape(1, 1, 64, 64)
    crop = ppl.face_crop(images)
    assert crop.shape == (1, 1, 32, 32)
    assert crop[0, 0, 0, 0] == 24 * 64 + 16 and crop[0, 0, -1, -1] == 55 * 64 + 47


def test_downsample_policies_differ_at_1024_with_crop():
    assert ppl.downsample_factor(512, 1024, "tf") == 2    # -> 256 px (StyleGAN TF)
    assert ppl.downsample_factor(512, 1024, "ada") == 4   # -> 128 px (stylegan2-ada)
    assert ppl.downsample_factor(1024, 1024, "tf") == 4   # no crop: both 256 px
    assert ppl.downsample_factor(1024, 1024, "ada") == 4
    assert ppl.downsample_factor(128, 256, "tf") == 1
    x = torch.randn(2, 3, 12, 12)
    torch.testing.assert_close(ppl.box_downsample(x, 3), torch.nn.functional.avg_pool2d(x, 3))
    with pytest.raises(Exception, match="policy"):
        ppl.downsample_factor(512, 1024, "bilinear")


@settings(max_examples=40, deadline=None)
@given(values=st.lists(st.floats(-1e6, 1e6), min_size=1, max_size=300))
def test_outlier_filter_matches_numpy_interpolation_modes(values):
    d = np.array(values)
    ordered = np.sort(d)
    n = len(d)
    lo = ordered[int(math.floor(0.01 * (n - 1)))]   # numpy method="lower"
    hi = ordered[int(math.ceil(0.99 * (n - 1)))]    # numpy method="higher"
    assert lo == np.percentile(d, 1, method="lower") and hi == np.percentile(d, 99,
                                                                             method="higher")
    kept = ppl.filter_outliers(d)
    np.testing.assert_array_equal(kept, d[(d >= lo) & (d <= hi)])


# ---- the metric on generators with known path lengths ---------------------------------------

@pytest.mark.parametrize("sampling_mode", ["full", "end"])
@pytest.mark.parametrize("noise", ["pair", "const", "none"])
def test_w_space_linear_generator_gives_the_analytic_value(sampling_mode, noise):
    G = LinearGenerator()
    samples = ppl.path_length_samples(G, squared_l2, 40, space="w", sampling_mode=sampling_mode,
                                      crop=True, noise=noise, batch_size=16, seed=3)
    z = torch.cat(G.mapping_inputs)
    # Each batch maps its 2B latents once; pairs are (z[0::2], z[1::2]) within each batch.
    pairs = torch.cat([batch[1::2] - batch[0::2] for batch in G.mapping_inputs])
    assert z.shape[0] == 80
    expected = (127.5 ** 2) * (pairs @ cropped_rows(G).T).square().sum(dim=1)
    np.testing.assert_allclose(samples, expected.numpy(), rtol=1e-6)


def test_w_space_mean_matches_the_closed_form_expectation():
    G = LinearGenerator(seed=5)
    samples = ppl.path_length_samples(G, squared_l2, 4000, space="w", sampling_mode="full",
                                      crop=False, noise="none", batch_size=500, seed=0)
    # w1 - w0 ~ N(0, 2 I): E |A (w1 - w0)|^2 = 2 ||A||_F^2, scaled to [0, 255].
    closed_form = 127.5 ** 2 * 2 * G.A.square().sum().item()
    assert samples.mean() == pytest.approx(closed_form, rel=0.05)


def test_z_space_linear_generator_follows_the_slerp_speed():
    G = LinearGenerator(seed=2)
    g = torch.Generator().manual_seed(11)
    z = torch.randn(24, G.z_dim, generator=g, dtype=torch.float64)
    t = torch.rand(12, generator=g, dtype=torch.float64)
    got = ppl.pair_distances(G, squared_l2, z, t, space="z", crop=True, policy="tf",
                             noise="pair", noise_seed=0)
    a, b = ppl.normalize(z[0::2]), ppl.normalize(z[1::2])
    cos = (a * b).sum(1, keepdim=True)
    theta = torch.acos(cos)
    ortho = ppl.normalize(b - cos * a)
    velocity = theta * (-a * torch.sin(t[:, None] * theta) + ortho * torch.cos(t[:, None] * theta))
    expected = 127.5 ** 2 * (velocity @ cropped_rows(G).T).square().sum(1)
    torch.testing.assert_close(got, expected, rtol=1e-3, atol=0)


def test_perceptual_path_length_filters_and_averages():
    G = LinearGenerator(seed=4)
    result = ppl.perceptual_path_length(G, squared_l2, 300, space="w", sampling_mode="end",
                                        crop=True, batch_size=64, seed=1)
    samples = ppl.path_length_samples(G, squared_l2, 300, space="w", sampling_mode="end",
                                      crop=True, batch_size=64, seed=1)
    # lo = sorted[floor(0.01 * 299)] = sorted[2], hi = sorted[ceil(0.99 * 299)] = sorted[297]
    assert result["num_samples"] == 300 and result["num_kept"] == 300 - 2 - 2
    assert result["ppl"] == pytest.approx(ppl.filter_outliers(samples).mean(), rel=1e-12)


def test_bad_options_are_named():
    G = LinearGenerator()
    with pytest.raises(Exception, match="sampling 'middle'"):
        ppl.path_length_samples(G, squared_l2, 4, space="w", sampling_mode="middle", crop=True)
    with pytest.raises(Exception, match="space 'x'"):
        ppl.path_length_samples(G, squared_l2, 4, space="x", sampling_mode="end", crop=True)
    G.c_dim = 10
    with pytest.raises(Exception, match="unconditional generators; this one has c_dim=10"):
        ppl.path_length_samples(G, squared_l2, 4, space="w", sampling_mode="end", crop=True)


def test_interrupted_run_resumes_to_identical_samples(tmp_path, monkeypatch):
    monkeypatch.setattr(passes, "CHECKPOINT_EVERY_IMAGES", 32)  # every 2 batches of 16
    G, checkpoint = LinearGenerator(seed=6), tmp_path / "ppl.partial.npz"
    options = dict(space="z", sampling_mode="full", crop=True, batch_size=16, seed=2)
    straight = ppl.path_length_samples(G, squared_l2, 100, **options)
    calls = []

    def dies_in_batch_6(a, b):
        calls.append(len(a))
        if len(calls) == 6:
            raise KeyboardInterrupt("killed")
        return squared_l2(a, b)

    with pytest.raises(KeyboardInterrupt):
        ppl.path_length_samples(G, dies_in_batch_6, 100, checkpoint=checkpoint, **options)
    with np.load(checkpoint) as saved:
        assert int(saved["batches"]) == 4 and saved["distances"].shape == (64,)
    calls.clear()
    resumed = ppl.path_length_samples(G, dies_in_batch_6, 100, checkpoint=checkpoint,
                                      **options)
    assert calls == [16, 16, 4]  # batches 5-7 only
    np.testing.assert_array_equal(resumed, straight)
    assert not checkpoint.exists()

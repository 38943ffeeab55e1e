"""The ADA augmentation pipeline, transform by transform, against independent NumPy / closed
forms: blits are exact, colour transforms are the matrix operations they claim, geometric
warps match the continuous transform of a smooth image and invert up to the filter."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch

from models import augment_geometry as geo
from models.augment import (
    PIPELINES,
    TRANSFORMS,
    AugmentPipe,
    AugmentSpec,
    TorchRandom,
    pipeline_spec,
)


def _rand(seed=0):
    return TorchRandom(torch.device("cpu"), torch.Generator().manual_seed(seed))


def _images(n=16, channels=3, size=16, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(n, channels, size, size, generator=generator) * 2 - 1


def _run(spec: AugmentSpec, images, seed=0, p=1.0):
    pipe = AugmentPipe(spec, p=p)
    params = pipe.sample(images.shape, _rand(seed))
    return pipe.apply(images, params), params


def test_xflip_is_an_exact_flip():
    x = _images()
    out, params = _run(AugmentSpec(xflip=1), x)
    flips = params.values["xflip"]
    assert 0 < int(flips.sum()) < len(x)  # both cases occur
    for i, flip in enumerate(flips.tolist()):
        assert torch.equal(out[i], x[i].flip(-1) if flip else x[i])


def test_rotate90_is_exact():
    x = _images(n=32)
    out, params = _run(AugmentSpec(rotate90=1), x)
    turns = params.values["rotate90"].long().tolist()
    assert set(turns) == {0, 1, 2, 3}
    for i, k in enumerate(turns):
        assert torch.equal(out[i], torch.rot90(x[i], k, dims=(1, 2))), k


def test_integer_translation_is_exact_with_reflected_borders():
    x = _images(size=32)
    out, params = _run(AugmentSpec(xint=1), x)
    shifts = params.values["xint"].long().numpy()
    assert np.abs(shifts).max() > 0 and np.abs(shifts).max() <= 4  # 1/8 of 32 px
    pad = 8
    for i, (tx, ty) in enumerate(shifts):
        padded = np.pad(x[i].numpy(), ((0, 0), (pad, pad), (pad, pad)), mode="reflect")
        expected = padded[:, pad - ty: pad - ty + 32, pad - tx: pad - tx + 32]
        np.testing.assert_array_equal(out[i].numpy(), expected)


def test_blits_compose_exactly():
    x = _images(n=24, size=16)
    out, params = _run(pipeline_spec("blit"), x, seed=3)
    v = params.values
    for i in range(len(x)):
        expected = x[i].flip(-1) if v["xflip"][i] else x[i]
        expected = torch.rot90(expected, int(v["rotate90"][i]), dims=(1, 2))
        tx, ty = (int(t) for t in v["xint"][i])
        # the translation is the last matrix: it moves the flipped, rotated image
        padded = np.pad(expected.numpy(), ((0, 0), (4, 4), (4, 4)), mode="reflect")
        np.testing.assert_array_equal(out[i].numpy(), padded[:, 4 - ty: 20 - ty, 4 - tx: 20 - tx])


LUMA = np.full(3, 1 / math.sqrt(3))


def _rodrigues(theta: float) -> np.ndarray:
    k = np.array([[0, -LUMA[2], LUMA[1]], [LUMA[2], 0, -LUMA[0]], [-LUMA[1], LUMA[0], 0]])
    return np.eye(3) * math.cos(theta) + math.sin(theta) * k \
        + (1 - math.cos(theta)) * np.outer(LUMA, LUMA)


def _color_reference(name: str, value: float, rgb: np.ndarray) -> np.ndarray:
    """rgb [3, P] -> transformed, each from its textbook definition."""
    if name == "brightness":
        return rgb + value
    if name == "contrast":
        return rgb * value
    if name == "lumaflip":  # Householder reflection across the plane normal to the grey axis
        return rgb - 2 * value * np.outer(LUMA, LUMA) @ rgb
    if name == "hue":  # rotation around the grey axis
        return _rodrigues(value) @ rgb
    if name == "saturation":  # scale the distance from the grey axis
        grey = np.outer(LUMA, LUMA) @ rgb
        return grey + value * (rgb - grey)
    raise KeyError(name)


@pytest.mark.parametrize("name", ["brightness", "contrast", "lumaflip", "hue", "saturation"])
def test_each_colour_transform_is_its_matrix(name):
    x = _images(n=12)
    out, params = _run(AugmentSpec(**{name: 1.0}), x)
    values = params.values[name].flatten().double().numpy()
    assert len(set(np.round(values, 6))) > 1  # the draws vary
    for i in range(len(x)):
        rgb = x[i].double().reshape(3, -1).numpy()
        expected = _color_reference(name, values[i], rgb).reshape(3, 16, 16)
        np.testing.assert_allclose(out[i].double().numpy(), expected, atol=2e-5)


def test_colour_chain_applies_in_ada_order():
    x = _images(n=8)
    out, params = _run(pipeline_spec("color"), x, seed=5)
    for i in range(len(x)):
        rgb = x[i].double().reshape(3, -1).numpy()
        for name in ("brightness", "contrast", "lumaflip", "hue", "saturation"):
            rgb = _color_reference(name, float(params.values[name].flatten()[i]), rgb)
        np.testing.assert_allclose(out[i].double().numpy(), rgb.reshape(3, 16, 16), atol=5e-5)


def test_grey_images_take_the_luma_of_the_colour_matrix():
    x = _images(n=8, channels=1)
    out, params = _run(AugmentSpec(brightness=1, contrast=1), x, seed=2)
    b, c = params.values["brightness"], params.values["contrast"]
    torch.testing.assert_close(out, (x + b[:, None, None, None]) * c[:, None, None, None])


def _blob(size=32, centre=(15.2, 16.7), sigma=3.0):
    yy, xx = np.mgrid[:size, :size].astype(np.float64)
    return np.exp(-((xx - centre[0]) ** 2 + (yy - centre[1]) ** 2) / (2 * sigma**2))


def _warped_blob(G_inv: np.ndarray, size=32, centre=(15.2, 16.7), sigma=3.0):
    """The continuous blob read through G_inv (centred pixel coordinates)."""
    c = (size - 1) / 2
    yy, xx = np.mgrid[:size, :size].astype(np.float64)
    pts = np.stack([xx.ravel() - c, yy.ravel() - c, np.ones(xx.size)])
    src = G_inv @ pts
    sx, sy = src[0] + c, src[1] + c
    return np.exp(-((sx - centre[0]) ** 2 + (sy - centre[1]) ** 2) / (2 * sigma**2)
                  ).reshape(size, size)


def test_general_geometry_matches_the_continuous_warp_and_inverts():
    blob = torch.from_numpy(_blob()).float()[None, None].repeat(8, 3, 1, 1)
    # ada's geom pipeline with smaller translations, so the blob's reflection (the padding)
    # stays out of the compared region
    spec = dataclasses.replace(pipeline_spec("geom"), xfrac_std=0.03)
    pipe = AugmentPipe(spec, p=1.0)
    params = pipe.sample(blob.shape, _rand(7))
    assert not bool(geo.is_blit(params.G_inv, 32, 32).any())  # all go through the filter
    out = pipe.apply(blob, params)
    inner = slice(6, 26)
    for i in range(len(blob)):
        ideal = _warped_blob(params.G_inv[i].double().numpy())
        error = np.abs(out[i, 0].double().numpy() - ideal)[inner, inner].max()
        assert error < 0.03, (i, error)  # 3% of the peak: bilinear at 2x + the filter
    back = geo.warp(out, torch.linalg.inv(params.G_inv), pipe.geom_filter)
    error = (back - blob)[:, :, inner, inner].abs().max()
    assert error < 0.03, float(error)
    # the filtered path with the identity matrix is the identity up to float rounding
    # (the sym6 up/down pair is orthogonal): random images, not just smooth ones
    x = _images(n=2, size=32)
    same = geo.filtered_warp(x, torch.eye(3).expand(2, 3, 3), pipe.geom_filter)
    assert float((same - x).abs().max()) < 1e-4


def test_a_filtered_flip_is_not_exact_so_blits_bypass_the_filter():
    """Why blits are copied by index: the sym6 filter is not symmetric."""
    x = _images(n=2, size=16)
    flip = torch.diag(torch.tensor([-1.0, 1.0, 1.0])).expand(2, 3, 3)
    filtered = geo.filtered_warp(x, flip, geo.wavelet_filter(geo.SYM6))
    assert float((filtered - x.flip(-1)).abs().max()) > 0.1
    assert torch.equal(geo.warp(x, flip, geo.wavelet_filter(geo.SYM6)), x.flip(-1))


def test_filter_bank_splits_the_spectrum_into_bands_that_sum_to_identity():
    bank = geo.filter_bank()
    assert bank.shape == (4, 43)
    total = bank.sum(axis=0)
    expected = np.zeros(43)
    expected[21] = 1
    np.testing.assert_allclose(total, expected, atol=1e-12)
    np.testing.assert_allclose(bank, bank[:, ::-1], atol=1e-12)  # zero phase
    # unit gains leave an image unchanged
    x = _images(n=2, size=32)
    gains = torch.ones(2, 4)
    out = geo.apply_band_filter(x, gains, torch.as_tensor(bank, dtype=torch.float32))
    torch.testing.assert_close(out, x, atol=1e-5, rtol=0)


def test_imgfilter_gains_are_power_normalised():
    x = _images(n=64, size=32)
    _, params = _run(AugmentSpec(imgfilter=1), x)
    gains = params.values["imgfilter"].double()
    power = torch.tensor([10, 1, 1, 1], dtype=torch.float64) / 13
    # each band's amplification is normalised; the product is close to unit expected power
    assert gains.std() > 0.1
    ratio = (power * gains.square()).sum(dim=1)
    assert float((ratio.log()).abs().median()) < 1.0


def test_noise_and_cutout():
    x = torch.zeros(32, 3, 16, 16)
    out, params = _run(AugmentSpec(noise=1), x)
    sigma = params.values["noise"]
    assert (sigma > 0).all()
    np.testing.assert_allclose(out.flatten(1).std(dim=1).numpy(), sigma.numpy(), rtol=0.25)
    x = torch.ones(8, 3, 20, 20)
    out, params = _run(AugmentSpec(cutout=1), x)
    centres = params.values["cutout_center"].numpy()
    coords = (np.arange(20) + 0.5) / 20
    for i, (cx, cy) in enumerate(centres):
        inside = (np.abs(coords[None, :] - cx) < 0.25) & (np.abs(coords[:, None] - cy) < 0.25)
        np.testing.assert_array_equal(out[i, 0].numpy(), np.where(inside, 0.0, 1.0))


def test_p_zero_is_the_identity_bit_for_bit_and_draws_nothing():
    x = _images()
    state = torch.get_rng_state()
    for name in PIPELINES:
        out = AugmentPipe(pipeline_spec(name), p=0.0)(x)
        assert out is x or torch.equal(out, x)
    assert torch.equal(torch.get_rng_state(), state)


def test_probability_multiplier_times_p_sets_how_often():
    x = _images(n=4000, size=4, channels=3)
    pipe = AugmentPipe(AugmentSpec(brightness=1, rotate=1), p=0.3)
    params = pipe.sample(x.shape, _rand(1))
    applied = (params.values["brightness"] != 0).double().mean()
    assert float(applied) == pytest.approx(0.3, abs=0.03)
    either = ((params.values["rotate_pre"] != 0) | (params.values["rotate_post"] != 0))
    assert float(either.double().mean()) == pytest.approx(0.3, abs=0.03)  # P(pre or post) = p


def test_gradients_flow_and_r1_works_through_the_pipe():
    x = _images(n=4, size=32).requires_grad_(True)
    conv = torch.nn.Conv2d(3, 4, 3)
    pipe = AugmentPipe(pipeline_spec("bgcfnc"), p=1.0)
    logits = conv(pipe(x, _rand(3))).mean(dim=(1, 2, 3))
    (grad,) = torch.autograd.grad(logits.sum(), x, create_graph=True)
    assert float(grad.detach().abs().sum()) > 0
    grad.square().sum().backward()  # the R1 penalty's gradient reaches D's weights
    assert float(conv.weight.grad.abs().sum()) > 0


def test_named_pipelines_are_adas():
    """stylegan2-ada train.py augpipe_specs, written out."""
    blit, geom = ["xflip", "rotate90", "xint"], ["scale", "rotate", "aniso", "xfrac"]
    color = ["brightness", "contrast", "lumaflip", "hue", "saturation"]
    expected = {"blit": blit, "geom": geom, "color": color, "filter": ["imgfilter"],
                "noise": ["noise"], "cutout": ["cutout"], "bg": blit + geom,
                "bgc": blit + geom + color, "bgcf": blit + geom + color + ["imgfilter"],
                "bgcfn": blit + geom + color + ["imgfilter", "noise"],
                "bgcfnc": blit + geom + color + ["imgfilter", "noise", "cutout"]}
    for name, on in expected.items():
        spec = pipeline_spec(name)
        assert {t for t in TRANSFORMS if getattr(spec, t) > 0} == set(on), name
        assert all(getattr(spec, t) == 1.0 for t in on)
    spec = AugmentSpec()
    assert (spec.xint_max, spec.scale_std, spec.rotate_max, spec.aniso_std, spec.xfrac_std,
            spec.brightness_std, spec.contrast_std, spec.hue_max, spec.saturation_std,
            spec.imgfilter_std, spec.noise_std, spec.cutout_size) == (
        0.125, 0.2, 1, 0.2, 0.125, 0.2, 0.5, 1, 1, 1, 0.1, 0.5)

"""FFHQ quad math, warp plan and the fast warp's building blocks against closed forms, SciPy
and PIL itself."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.ndimage
from PIL import Image

from ffhq_tools.align.fast import (
    KINK_THRESHOLD,
    TILE,
    _exact_tile,
    kinky_tiles,
    lanczos_weights,
    warp_fast,
)
from ffhq_tools.align.fast_prepare import blend_padding_banded, gaussian_blur_fft
from ffhq_tools.align.quad import AlignOptions, WarpPlan, choose_quad, face_frame, plan_warp
from ffhq_tools.align.reference import blend_padding, reflect_pad, warp_reference
from ffhq_tools.errors import FfhqToolsError


def synthetic_landmarks(eye_left, eye_right, mouth_left, mouth_right) -> np.ndarray:
    lm = np.zeros((68, 2))
    lm[36:42], lm[42:48] = eye_left, eye_right
    lm[48], lm[54] = mouth_left, mouth_right
    return lm


def test_face_frame_closed_form():
    # eyes (40,50) (60,50), mouth (42,80) (58,80): eye_to_eye (20,0), eye_to_mouth (0,30),
    # x = (20,0) - (-30,0) -> direction (1,0), length max(2*20, 1.8*30) = 54
    frame = face_frame(synthetic_landmarks((40, 50), (60, 50), (42, 80), (58, 80)))
    np.testing.assert_allclose(frame.c0, [50, 53])
    np.testing.assert_allclose(frame.x, [54, 0])
    np.testing.assert_allclose(frame.y, [0, 54])
    np.testing.assert_allclose(frame.quad(), [[-4, -1], [-4, 107], [104, 107], [104, -1]])
    assert frame.qsize == pytest.approx(108)


def test_face_frame_rotates_with_the_face():
    lm = synthetic_landmarks((40, 50), (60, 50), (42, 80), (58, 80))
    angle = np.deg2rad(25)
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    turned = face_frame(lm @ rotation.T)
    np.testing.assert_allclose(turned.x, rotation @ [54, 0], atol=1e-9)
    level = face_frame(lm @ rotation.T, rotate_level=False)
    np.testing.assert_allclose(level.y[0], 0, atol=1e-12)  # --no-rotation keeps axes


def test_face_frame_rejects_bad_landmarks():
    with pytest.raises(FfhqToolsError, match="68"):
        face_frame(np.zeros((5, 2)))
    with pytest.raises(FfhqToolsError, match="degenerate"):
        face_frame(np.zeros((68, 2)))


def test_plan_shrink_crop_and_pad():
    options = AlignOptions(output_size=64, transform_size=256)
    quad = np.array([[100, 100], [100, 400], [400, 400], [400, 100]], dtype=float)
    plan = plan_warp(quad, (1000, 800), options)  # qsize 300 -> shrink floor(300/64/2) = 2
    assert plan.shrink == 2 and plan.shrunk_size == (500, 400)
    border = max(int(np.rint(150 * 0.1)), 3)
    assert plan.crop == (50 - border, 50 - border, 200 + border, 200 + border)
    assert plan.pad is None
    edge = plan_warp(quad - 120, (1000, 800), options)  # quad leaves the photo top-left
    assert edge.pad is not None and min(edge.pad) == int(np.rint(edge.qsize * 0.3))
    np.testing.assert_allclose(edge.quad.min(axis=0) >= 0, True)


def test_random_shift_is_seeded_and_retry_keeps_inside():
    frame = face_frame(synthetic_landmarks((140, 150), (160, 150), (142, 180), (158, 180)))
    options = AlignOptions(random_shift=0.2, retry_crops=True)
    a = choose_quad(frame, (400, 400), options, np.random.RandomState(3))
    b = choose_quad(frame, (400, 400), options, np.random.RandomState(3))
    np.testing.assert_array_equal(a, b)
    assert a.min() >= 0 and a.max() < 400
    assert choose_quad(frame, (60, 60), options, np.random.RandomState(3)) is None


def test_options_validate_sizes():
    with pytest.raises(FfhqToolsError, match="--size 1000"):
        AlignOptions(output_size=1000)
    with pytest.raises(FfhqToolsError, match="--transform-size"):
        AlignOptions(output_size=1024, transform_size=512)


def test_fft_blur_matches_scipy_gaussian_filter():
    image = np.random.RandomState(0).rand(61, 47, 3).astype(np.float32) * 255
    for sigma in (0.7, 3.3, 12.0):
        ours = gaussian_blur_fft(image, sigma)
        np.testing.assert_allclose(ours, scipy.ndimage.gaussian_filter(image, [sigma, sigma, 0]),
                                   atol=1e-3)


@pytest.mark.parametrize("pad", [(30, 45, 30, 30), (12, 12, 60, 9), (80, 80, 80, 80)])
def test_banded_blend_is_bit_identical_to_the_reference(pad):
    """(80, 80, 80, 80) on a 40 x 50 photo leaves no rectangle where the first weight vanishes."""
    photo = np.random.RandomState(sum(pad)).randint(0, 256, (40, 50, 3)).astype(np.uint8)
    padded = reflect_pad(Image.fromarray(photo), pad)
    blurred = gaussian_blur_fft(padded, 3.0)
    expected = np.asarray(blend_padding(padded, pad, 150.0, blurred))
    np.testing.assert_array_equal(np.asarray(blend_padding_banded(padded, pad, blurred)),
                                  expected)


@pytest.mark.parametrize("n_in,n_out", [(64, 16), (48, 16), (4096, 1024), (37, 11)])
def test_lanczos_coefficients_equal_pils(n_in, n_out):
    identity = Image.fromarray(np.eye(n_in, dtype=np.float32), mode="F")
    pil = np.asarray(identity.resize((n_out, n_in), Image.LANCZOS)).T  # row j = taps of out j
    columns, weights = lanczos_weights(n_in, n_out)
    ours = np.zeros((n_out, n_in))
    for j in range(n_out):
        np.add.at(ours[j], columns[j], weights[j])
    np.testing.assert_allclose(ours, pil, atol=1e-6)


def test_exact_tiles_reproduce_reference_pixels(astronaut):
    """The torch re-computation of a tile (samples at transform_size, truncated, PIL's uint8
    horizontal pass) gives the reference's pixels; exact=True is the reference's own warp."""
    import torch

    options = AlignOptions(output_size=64, transform_size=256)
    lm = synthetic_landmarks((190, 125), (240, 125), (195, 175), (235, 175))
    image = Image.fromarray(astronaut)
    plan = plan_warp(face_frame(lm).quad(), image.size, options)
    reference = warp_reference(image, plan, options).astype(int)
    prepared = np.asarray(image.crop(plan.crop)).transpose(2, 0, 1)
    source = torch.from_numpy(np.ascontiguousarray(prepared)).float()
    tile = _exact_tile(source, plan, options, range(16, 48), range(8, 40))
    tile = torch.clamp(torch.round(tile), 0, 255).numpy().transpose(1, 2, 0)
    assert np.abs(tile - reference[16:48, 8:40]).max() <= 1
    assert np.abs(tile - reference[16:48, 8:40]).mean() < 0.05
    np.testing.assert_array_equal(warp_fast(image, plan, options, exact=True), reference)


@pytest.mark.parametrize("qsize", [250.0, 1000.0])
@pytest.mark.parametrize("angle", [0.0, 20.0, 45.0])
def test_kinky_tiles_flag_every_tile_a_kink_reaches(angle, qsize):
    """One bright pixel on a flat photo, as bright as makes its own kink score 1.6x the
    threshold and its neighbours' 0.8x: every output tile whose footprint (tile +- 3 px, the
    Lanczos support) meets the pixel's bilinear reach (1 px around its centre) is flagged, and
    few others are. qsize 1000 is the tightest case (an output pixel spans a source pixel)."""
    options = AlignOptions(output_size=1024, transform_size=4096)
    n, side = options.output_size, int(qsize * 1.6)
    turn = np.deg2rad(angle)
    x = np.array([np.cos(turn), np.sin(turn)]) * qsize / 2
    y = np.array([-x[1], x[0]])
    centre = np.array([side / 2, side / 2])  # the quad stays inside the photo
    quad = np.stack([centre - x - y, centre - x + y, centre + x + y, centre + x - y])
    plan = WarpPlan(shrink=1, shrunk_size=(side, side), crop=None, pad=None, quad=quad,
                    qsize=qsize)
    nw, sw, ne = quad[0] + 0.5, quad[1] + 0.5, quad[3] + 0.5
    to_output = np.linalg.inv(np.stack([ne - nw, sw - nw], axis=1)) * n
    offsets = np.arange(-96, 97) / 8.0
    spikes = centre + np.random.RandomState(int(angle + qsize)).uniform(-0.3, 0.3, (12, 2)) * qsize
    for spike in spikes.astype(int):
        pixels = np.full((3, side, side), 60, np.uint8)
        pixels[1, spike[1], spike[0]] += round(1.6 * KINK_THRESHOLD / 2 / (qsize / 2048))
        flagged = {tuple(t) for t in kinky_tiles(pixels, plan, options, 2048)}
        # output positions every 1/8 px within 12 px of the spike's image
        centre_u, centre_v = to_output @ (spike + 0.5 - nw)
        u, v = np.meshgrid(centre_u + offsets, centre_v + offsets, indexing="xy")
        source = nw + (u / n)[..., None] * (ne - nw) + (v / n)[..., None] * (sw - nw)
        reached = np.all(np.abs(source - (spike + 0.5)) < 1.0, axis=-1)
        oy, ox = v[reached], u[reached]
        required = {(int(r), int(c))
                    for dy in (-3, 3) for dx in (-3, 3)
                    for r, c in zip(np.clip(oy + dy, 0, n - 1) // TILE,
                                    np.clip(ox + dx, 0, n - 1) // TILE, strict=True)}
        assert required and required <= flagged
        assert len(flagged) <= 9

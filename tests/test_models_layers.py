"""Shared layers against direct definitions: FIR resampling, resampled convs, modulated conv,
demodulation statistics, minibatch stddev, level-of-detail helpers."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from models.layers import (
    MinibatchStd,
    downsample2d,
    downscale_to_lod,
    filter2d,
    resample_conv2d,
    setup_filter,
    style_mix,
    upfirdn2d,
    upsample2d,
)
from models.stylegan2 import modulated_conv2d


def direct_upfirdn2d(x, f, up, down, pad):
    """Textbook definition with explicit loops: zero-insert, pad/crop, true convolution,
    decimate."""
    n, c, h, w = x.shape
    up_x = np.zeros((n, c, h * up, w * up), dtype=np.float64)
    up_x[:, :, ::up, ::up] = x
    px0, px1, py0, py1 = pad
    padded = np.pad(up_x, ((0, 0), (0, 0), (max(py0, 0), max(py1, 0)),
                           (max(px0, 0), max(px1, 0))))
    padded = padded[:, :, max(-py0, 0): padded.shape[2] - max(-py1, 0),
                    max(-px0, 0): padded.shape[3] - max(-px1, 0)]
    fh, fw = f.shape
    out_h, out_w = padded.shape[2] - fh + 1, padded.shape[3] - fw + 1
    out = np.zeros((n, c, out_h, out_w))
    for y in range(out_h):
        for xx in range(out_w):
            window = padded[:, :, y: y + fh, xx: xx + fw]
            out[:, :, y, xx] = (window * f[::-1, ::-1]).sum(axis=(2, 3))
    return out[:, :, ::down, ::down]


@pytest.mark.parametrize("up,down,pad", [(2, 1, (2, 1, 2, 1)), (1, 2, (1, 1, 1, 1)),
                                         (1, 1, (2, 1, 2, 1)), (2, 1, (-1, 0, 1, -2)),
                                         (1, 2, (0, 3, 2, 0))])
def test_upfirdn2d_matches_direct_definition(up, down, pad):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 7, 6))
    f = rng.standard_normal((4, 3))  # asymmetric on purpose: catches a missing flip
    ours = upfirdn2d(torch.tensor(x), torch.tensor(f), up=up, down=down, pad=pad).numpy()
    np.testing.assert_allclose(ours, direct_upfirdn2d(x, f, up, down, pad), atol=1e-10)


def test_resampling_helpers_keep_sizes_and_constants():
    f = setup_filter([1, 3, 3, 1])
    assert float(f.sum()) == pytest.approx(1.0)
    x = torch.ones(1, 2, 8, 8, dtype=torch.float64)
    up = upsample2d(x, f.double())
    down = downsample2d(x, f.double())
    assert up.shape[-1] == 16 and down.shape[-1] == 4
    # interior of a constant image stays constant (gain up^2 compensates zero insertion)
    torch.testing.assert_close(up[..., 2:-2, 2:-2], torch.ones_like(up[..., 2:-2, 2:-2]))
    torch.testing.assert_close(down[..., 1:-1, 1:-1], torch.ones_like(down[..., 1:-1, 1:-1]))
    assert filter2d(x, f.double()).shape == x.shape


def test_up_conv_equals_upsample_then_conv_in_the_interior():
    """Transposed conv of the flipped kernel + FIR (reference ordering) is the same linear map
    as FIR upsampling followed by a 'same' conv, away from the borders."""
    torch.manual_seed(0)
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    w = torch.randn(4, 3, 3, 3, dtype=torch.float64)
    f = setup_filter([1, 3, 3, 1]).double()
    fused = resample_conv2d(x, w, f, up=2)
    reference = F.conv2d(upsample2d(x, f), w, padding=1)
    assert fused.shape == reference.shape == (2, 4, 16, 16)
    torch.testing.assert_close(fused[..., 4:-4, 4:-4], reference[..., 4:-4, 4:-4])


def test_down_conv_equals_conv_then_downsample_in_the_interior():
    torch.manual_seed(1)
    x = torch.randn(2, 3, 16, 16, dtype=torch.float64)
    w = torch.randn(4, 3, 3, 3, dtype=torch.float64)
    f = setup_filter([1, 3, 3, 1]).double()
    fused = resample_conv2d(x, w, f, down=2)
    reference = downsample2d(F.conv2d(x, w, padding=1), f)
    assert fused.shape == reference.shape == (2, 4, 8, 8)
    torch.testing.assert_close(fused[..., 2:-2, 2:-2], reference[..., 2:-2, 2:-2])


def naive_modulated_conv(x, weight, styles, demodulate, up, f):
    outs = []
    for i in range(x.shape[0]):
        w = weight * styles[i][None, :, None, None]
        if demodulate:
            w = w / torch.sqrt(w.square().sum(dim=[1, 2, 3], keepdim=True) + 1e-8)
        outs.append(resample_conv2d(x[i: i + 1], w, f, up=up))
    return torch.cat(outs)


@pytest.mark.parametrize("demodulate", [True, False])
@pytest.mark.parametrize("up", [1, 2])
@pytest.mark.parametrize("fused", [True, False])
def test_grouped_modulated_conv_equals_per_sample_conv(demodulate, up, fused):
    torch.manual_seed(2)
    x = torch.randn(3, 5, 8, 8, dtype=torch.float64)
    weight = torch.randn(6, 5, 3, 3, dtype=torch.float64)
    styles = torch.randn(3, 5, dtype=torch.float64)
    f = setup_filter([1, 3, 3, 1]).double()
    ours = modulated_conv2d(x, weight, styles, demodulate=demodulate, up=up, resample_filter=f,
                            fused=fused)
    torch.testing.assert_close(ours, naive_modulated_conv(x, weight, styles, demodulate, up, f))


def test_demodulation_keeps_unit_output_variance():
    torch.manual_seed(3)
    x = torch.randn(8, 64, 16, 16)
    weight = torch.randn(64, 64, 3, 3)
    styles = torch.rand(8, 64) * 3 + 0.1
    f = setup_filter([1, 3, 3, 1])
    out = modulated_conv2d(x, weight, styles, demodulate=True, resample_filter=f)
    interior = out[..., 1:-1, 1:-1]
    assert float(interior.var()) == pytest.approx(1.0, rel=0.1)
    plain = modulated_conv2d(x, weight, styles, demodulate=False, resample_filter=f)
    assert float(plain[..., 1:-1, 1:-1].var()) > 5.0  # without demodulation the scale drifts


def test_minibatch_std_matches_direct_computation():
    torch.manual_seed(4)
    x = torch.randn(8, 6, 4, 4, dtype=torch.float64)
    out = MinibatchStd(group_size=4, num_channels=2)(x)
    assert out.shape == (8, 8, 4, 4)
    for i in range(8):
        members = [j for j in range(8) if j % 2 == i % 2]  # group g holds samples g, g+2, ...
        group = x[members]
        for feat in range(2):
            chunk = group[:, feat * 3: (feat + 1) * 3]
            expected = (chunk.var(dim=0, unbiased=False) + 1e-8).sqrt().mean()
            torch.testing.assert_close(out[i, 6 + feat], expected.expand(4, 4))


def test_downscale_to_lod():
    torch.manual_seed(5)
    x = torch.randn(2, 3, 16, 16)
    assert downscale_to_lod(x, 0.0) is x
    lod1 = downscale_to_lod(x, 1.0)
    expected = F.avg_pool2d(x, 2).repeat_interleave(2, 2).repeat_interleave(2, 3)
    torch.testing.assert_close(lod1, expected)
    lod2 = downscale_to_lod(x, 2.0)
    torch.testing.assert_close(downscale_to_lod(x, 1.25), torch.lerp(lod1, lod2, 0.25))


def test_style_mix_switches_latents_at_the_crossover():
    a = torch.zeros(2, 10, 4)
    b = torch.ones(2, 10, 4)
    mixed = style_mix(a, b, 6)
    assert torch.equal(mixed[:, :6], a[:, :6]) and torch.equal(mixed[:, 6:], b[:, 6:])
    per_sample = style_mix(a, b, torch.tensor([2, 9]))
    assert per_sample[0, :2].eq(0).all() and per_sample[0, 2:].eq(1).all()
    assert per_sample[1, :9].eq(0).all() and per_sample[1, 9:].eq(1).all()


def test_stylegan_v1_fused_resampling_convs_match_their_unfused_definitions():
    """The reference's fused ops (summed 4x4 kernels, TF conv2d_transpose without a flip):
    fused down-conv == 3x3 conv then 2x2 average pool; fused up-conv == nearest upsampling
    then the 3x3 conv with the spatially flipped kernel (exactly, borders included)."""
    from models.layers import upscale_nearest
    from models.stylegan import fused_down_weight, fused_up_weight

    torch.manual_seed(6)
    w = torch.randn(3, 2, 3, 3, dtype=torch.float64)
    x = torch.randn(2, 2, 6, 6, dtype=torch.float64)
    up = F.conv_transpose2d(x, fused_up_weight(w), stride=2, padding=1)
    torch.testing.assert_close(up, F.conv2d(upscale_nearest(x), w.flip([2, 3]), padding=1))
    x = torch.randn(2, 2, 12, 12, dtype=torch.float64)
    down = F.conv2d(x, fused_down_weight(w), stride=2, padding=1)
    reference = F.avg_pool2d(F.conv2d(x, w, padding=1), 2)
    torch.testing.assert_close(down[..., 1:-1, 1:-1], reference[..., 1:-1, 1:-1])


def test_1x1_downsampling_conv_equals_filter_then_strided_conv():
    """The 1x1 fast path (sample first, then convolve) against the reference order: FIR on
    every pixel, then a stride-2 convolution (float64, so only the order of sums differs)."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, 5, 8, 8, generator=gen, dtype=torch.float64)
    w = torch.randn(3, 5, 1, 1, generator=gen, dtype=torch.float64)
    f = setup_filter([1, 3, 3, 1]).double()
    reference = F.conv2d(upfirdn2d(x, f, pad=(1, 1, 1, 1)), w, stride=2)
    ours = resample_conv2d(x, w, f, down=2)
    assert ours.shape == (2, 3, 4, 4)
    torch.testing.assert_close(ours, reference, rtol=1e-12, atol=1e-12)

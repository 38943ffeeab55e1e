"""DualStyleGAN network: the issue's parameter counts (meta device), the official init, the
two paths' blending rules checked against the plain StyleGAN2 synthesis and NumPy."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from dualstylegan_fixtures import codes, small_net

from models.configs import build_networks, get_config
from models.contract import StyleGenerator, check_generator, has_w_space
from models.dualstylegan import AdaResBlock, DualStyleGANGenerator, layer_resolution
from models.layers import count_parameters


@pytest.mark.parametrize("resolution,base,extrinsic,modres,colour", [
    (1024, 30_370_060, 43_806_208, 40_391_680, 2_889_216),
    (256, 30_034_338, 42_755_584, 40_391_680, 7 * 262_656)])
def test_parameter_counts_of_the_issue(resolution, base, extrinsic, modres, colour):
    with torch.device("meta"):
        net = build_networks(get_config("stylegan2-F").replace(arch="dualstylegan"),
                             resolution)[0]
    assert net.num_ws == 2 * int(np.log2(resolution)) - 2
    assert count_parameters(net.generator) == base
    assert count_parameters(net) - base == extrinsic
    structure = [k for k in range(net.num_ws) if net.is_structure_layer(k)]
    assert structure == list(range(7))
    assert sum(count_parameters(net.res[k]) for k in structure) == modres
    assert count_parameters(net.res) - modres == colour
    assert count_parameters(net.style) == 525_312


def test_official_initialisation():
    net = small_net()
    for k in range(net.num_ws):
        block = net.res[k]
        if net.is_structure_layer(k):
            c = block.conv[0].weight.shape[0]
            assert block.conv[0].weight.std().item() == pytest.approx(0.01, rel=0.25)
            assert torch.equal(block.norm.style.bias[:c], torch.ones(c))
            assert torch.equal(block.norm.style.bias[c:], torch.zeros(c))
        else:
            effective = block.weight * block.weight_gain
            assert (effective - torch.eye(net.w_dim)).abs().max() < 0.01
            assert (effective - torch.eye(net.w_dim)).abs().max() > 0
    assert [layer_resolution(k) for k in range(7)] == [4, 8, 8, 16, 16, 32, 32]


@pytest.mark.parametrize("how", ["zero-weights", "use-res-off", "fuse-index-0"])
def test_weights_zero_is_the_plain_generator(how):
    net = small_net()
    z, ex = codes(net)
    args = {"zero-weights": dict(interp_weights=[0.0] * net.num_ws),
            "use-res-off": dict(use_res=False), "fuse-index-0": dict(fuse_index=0)}[how]
    with torch.no_grad():
        # trained-looking residuals: nothing may leak through when the weights say 0
        for block in net.res:
            if isinstance(block, AdaResBlock):
                block.conv[0].weight.mul_(100)
        ours = net(z, ex, noise_mode="const", **args)
        plain = net.generator(z, noise_mode="const")
    assert torch.equal(ours, plain)


def test_colour_layers_blend_the_transformed_extrinsic_code():
    """Structure weights 0, colour weights w: the plain synthesis of
    w * T_c(ex_k) + (1 - w) * w_k on the colour layers, computed outside DualStyleGAN."""
    net = small_net()
    z, ex = codes(net)
    weights = [0.0] * 7 + [0.3, 1.0, 0.6]
    with torch.no_grad():
        ws = net.generator.mapping(z, None)
        mixed = ws.clone()
        for k in range(7, net.num_ws):
            t_c = ex[:, k] @ (net.res[k].weight * net.res[k].weight_gain).T + net.res[k].bias
            mixed[:, k] = weights[k] * t_c + (1 - weights[k]) * ws[:, k]
        expected = net.generator.synthesis(mixed, noise_mode="const")
        ours = net(z, ex, interp_weights=weights, noise_mode="const")
    assert torch.allclose(ours, expected, atol=1e-5)
    assert not torch.allclose(ours, net.generator(z, noise_mode="const"), atol=1e-3)


def instance_norm(x: np.ndarray) -> np.ndarray:
    mean = x.mean(axis=(2, 3), keepdims=True)
    var = x.var(axis=(2, 3), keepdims=True)
    return (x - mean) / np.sqrt(var + 1e-5)


def conv3x3(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    n, c, h, wd = x.shape
    pad = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    out = np.zeros((n, w.shape[0], h, wd))
    for i in range(3):
        for j in range(3):
            out += np.einsum("nchw,oc->nohw", pad[:, :, i:i + h, j:j + wd], w[:, :, i, j])
    return out


def test_modres_block_against_numpy():
    torch.manual_seed(3)
    block = AdaResBlock(6, 10)
    with torch.no_grad():
        for p in block.parameters():
            p.add_(torch.randn_like(p) * 0.3)
    x, s = torch.randn(2, 6, 5, 5), torch.randn(2, 10)
    with torch.no_grad():
        ours = block(x, s, 0.7).double().numpy()

    def np_(t):
        return t.detach().double().numpy()

    def adain(h, norm):
        style = np_(s) @ np_(norm.style.weight).T + np_(norm.style.bias)
        return style[:, :6, None, None] * instance_norm(h) + style[:, 6:, None, None]

    def conv_act(h, layer):
        y = conv3x3(h, np_(layer[0].weight) / np.sqrt(6 * 9)) + np_(layer[1].bias)[:, None, None]
        return np.where(y >= 0, y, 0.2 * y) * np.sqrt(2)

    h = conv_act(adain(np_(x), block.norm), block.conv)
    h = conv_act(adain(h, block.norm2), block.conv2)
    assert np.allclose(ours, 0.7 * h + np_(x), atol=1e-5)


def test_modres_blocks_act_after_their_layers_convs():
    net = small_net()
    z, ex = codes(net)
    calls = []
    for k in range(7):
        net.res[k].register_forward_hook(
            lambda module, inputs, out, k=k: calls.append((k, inputs[0].shape[-1])))
    weights = [1.0, 0.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.0, 0.0, 0.0]
    with torch.no_grad():
        net(z, ex, interp_weights=weights, noise_mode="const")
    assert calls == [(k, layer_resolution(k)) for k in range(7) if k != 1]
    calls.clear()
    with torch.no_grad():
        net(z, ex, fuse_index=3, noise_mode="const")
    assert [k for k, _ in calls] == [0, 1, 2, 3]


def test_structure_weights_change_the_image_and_scale_the_residual():
    net = small_net()
    z, ex = codes(net)
    with torch.no_grad():
        for block in net.res:
            if isinstance(block, AdaResBlock):
                block.conv[0].weight.mul_(100)
        plain = net.generator(z, noise_mode="const")
        outs = [net(z, ex, interp_weights=[w] * 7 + [0.0] * 3, noise_mode="const")
                for w in (0.5, 1.0)]
    d_half, d_full = ((o - plain).abs().mean().item() for o in outs)
    assert 0 < d_half < d_full


def test_rejects_bad_codes_and_weight_counts():
    net = small_net()
    z, ex = codes(net)
    with pytest.raises(ValueError, match="10 layers"):
        net(z, ex, interp_weights=[1.0] * 9)
    with pytest.raises(ValueError, match="truncation_latent"):
        net(z, ex, truncation=0.7)
    with pytest.raises(ValueError, match="extrinsic code has shape"):
        net(z, ex[:, :5])
    with pytest.raises(ValueError, match="z\\+"):
        net(z, ex, z_plus_latent=True)


def sobel_edges(images: torch.Tensor) -> torch.Tensor:
    gray = images.mean(1, keepdim=True)
    kx = torch.tensor([[-1.0, 0, 1], [-2, 0, 2], [-1, 0, 1]])[None, None]
    gx, gy = F.conv2d(gray, kx), F.conv2d(gray, kx.transpose(2, 3))
    return (gx.square() + gy.square()).sqrt().flatten(1)


def correlation(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    a, b = a - a.mean(1, keepdim=True), b - b.mean(1, keepdim=True)
    return (a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1))


def test_colour_weights_change_colour_but_keep_structure():
    """Colour-only weights leave every feature up to 32x32 bit-identical; the images keep
    their edge maps (correlation well above that of a different content) while the channel
    means move."""
    net = small_net()
    z, ex = codes(net, seed=10, batch=8)
    coarse = []
    net.generator.synthesis.b32.conv1.register_forward_hook(
        lambda module, inputs, out: coarse.append(out))
    colour_only = [0.0] * 7 + [1.0] * 3
    with torch.no_grad():
        plain = net(z, ex, interp_weights=[0.0] * 10, noise_mode="const")
        coloured = net(z, ex, interp_weights=colour_only, noise_mode="const")
        other = net(z.roll(1, 0), ex, interp_weights=[0.0] * 10, noise_mode="const")
    assert torch.equal(coarse[0], coarse[1])
    kept = correlation(sobel_edges(plain), sobel_edges(coloured)).mean().item()
    baseline = correlation(sobel_edges(plain), sobel_edges(other)).mean().item()
    assert kept > 0.5 and kept > baseline + 0.25
    shift = (coloured.mean((2, 3)) - plain.mean((2, 3))).abs().mean().item()
    assert shift > 0.2


def test_fixed_exemplar_generator_keeps_the_contract():
    net = small_net()
    z, _ = codes(net)
    gen = torch.Generator().manual_seed(4)
    ex_z = torch.randn(1, net.num_ws, net.generator.z_dim, generator=gen)
    weights = [0.75] * 7 + [1.0] * 3
    G = DualStyleGANGenerator.from_z_plus(net, ex_z, weights).eval()
    assert isinstance(G, StyleGenerator) and has_w_space(G)
    assert check_generator(G) == []
    with torch.no_grad():
        expected = net(z, net.map_z(ex_z).expand(2, -1, -1), interp_weights=weights,
                       noise_mode="const")
        assert torch.equal(G(z, noise_mode="const"), expected)
        plain = DualStyleGANGenerator.from_z_plus(net, ex_z, [0.0] * 10)
        assert torch.equal(plain(z, truncation_psi=0.5, noise_mode="const"),
                           net.generator(z, truncation_psi=0.5, noise_mode="const"))
    with pytest.raises(ValueError, match="W\\+ code"):
        DualStyleGANGenerator(net, ex_z[:, :3])

"""Networks: published parameter counts, every named config runs, truncation, mixing, noise,
progressive growing (lod) behaviour, conditioning."""

from __future__ import annotations

import pytest
import torch

from models.configs import CONFIGS, build_networks, get_config
from models.layers import count_parameters, style_mix

# ---------------------------------------------------------------------------------------------
# Parameter counts at 1024x1024, derived by hand from the architectures and compared with the
# numbers the reference code prints.
# ---------------------------------------------------------------------------------------------
W = 512
MAPPING_8x512 = 8 * (W * W + W)  # 2,101,248: eight dense 512->512 layers with biases


def sg2_channels(res):  # config F: channel_base 32768, channel_max 512
    return min(32768 // res, 512)


def stylegan2_f_generator_params():
    """Trainable variables of StyleGAN2 config F (what TF print_layers totals for Gs; the noise
    inputs and dlatent_avg are non-trainable). Modulated conv: k*k*cin*cout weight, affine
    512->cin (+bias), scalar noise strength, bias. ToRGB: 1x1 cin->3, affine, bias."""
    def modconv(cin, cout, k=3):
        return k * k * cin * cout + (W * cin + cin) + 1 + cout

    def torgb(cin):
        return cin * 3 + (W * cin + cin) + 3

    total = MAPPING_8x512 + 512 * 4 * 4 + modconv(512, 512) + torgb(512)  # 4x4 block
    for log2 in range(3, 11):
        res = 2 ** log2
        cin, c = sg2_channels(res // 2), sg2_channels(res)
        total += modconv(cin, c) + modconv(c, c) + torgb(c)
    return total


def stylegan2_f_discriminator_params():
    """Residual D: fromRGB 1x1 at 1024, per block conv 3x3 c->c, conv 3x3 down c->c', skip 1x1
    c->c' without bias; epilogue conv 3x3 (512 + 1 mbstd channel)->512, dense 512*16->512,
    dense 512->1."""
    total = 3 * 32 + 32
    for log2 in range(10, 2, -1):
        res = 2 ** log2
        c, c_next = sg2_channels(res), sg2_channels(res // 2)
        total += (9 * c * c + c) + (9 * c * c_next + c_next) + c * c_next
    total += (9 * 513 * 512 + 512) + (512 * 16 * 512 + 512) + (512 + 1)
    return total


def v1_channels(res):  # StyleGAN v1: min(8192 / 2^(log2 res - 1), 512)
    return min(16384 // res, 512)


def stylegan_v1_generator_params():
    """StyleGAN v1 FFHQ Gs: const 4x4x512; each layer = conv weight, per-channel noise weight,
    bias, style dense 512 -> 2c (+bias); a ToRGB 1x1 (+bias) at every level (progressive)."""
    def epilogue(c):
        return c + c + (W * 2 * c + 2 * c)

    total = MAPPING_8x512 + 512 * 16 + epilogue(512) + (9 * 512 * 512 + epilogue(512))
    total += 512 * 3 + 3
    for log2 in range(3, 11):
        res = 2 ** log2
        cin, c = v1_channels(res // 2), v1_channels(res)
        total += (9 * cin * c + epilogue(c)) + (9 * c * c + epilogue(c)) + (c * 3 + 3)
    return total


def stylegan_v1_discriminator_params():
    """Progressive D: a fromRGB 1x1 (+bias) at every level, conv 3x3 + conv 3x3 down per block,
    head: mbstd, conv 3x3 513->512, dense 8192->512, dense 512->1."""
    total = 0
    for log2 in range(10, 2, -1):
        res = 2 ** log2
        c, c_next = v1_channels(res), v1_channels(res // 2)
        total += (3 * c + c) + (9 * c * c + c) + (9 * c * c_next + c_next)
    total += (3 * 512 + 512) + (9 * 513 * 512 + 512) + (512 * 16 * 512 + 512) + (512 + 1)
    return total


def test_stylegan2_config_f_1024_parameter_counts():
    # Published: the StyleGAN2 G (Gs) has 30,370,060 trainable parameters (reference code's
    # print_layers); stylegan2-ada-pytorch prints 29,012,513 for the same residual D in its
    # training log layer summary. Both equal the hand derivations above.
    assert stylegan2_f_generator_params() == 30_370_060
    assert stylegan2_f_discriminator_params() == 29_012_513
    G, D = build_networks(get_config("stylegan2-F"), 1024)
    assert count_parameters(G) == 30_370_060
    assert count_parameters(D) == 29_012_513
    assert G.num_ws == 18 and G.synthesis.b1024.torgb.weight.shape == (3, 32, 1, 1)


def test_stylegan_v1_ffhq_1024_parameter_counts():
    # Published: NVlabs/stylegan README, pretrained_example.py output: "Gs ... Total 26219627".
    assert stylegan_v1_generator_params() == 26_219_627
    G, D = build_networks(get_config("stylegan-F"), 1024)
    assert count_parameters(G) == 26_219_627
    assert count_parameters(D) == stylegan_v1_discriminator_params() == 23_087_249


# ---------------------------------------------------------------------------------------------
# Every named config builds and trains one step at 32 px.
# ---------------------------------------------------------------------------------------------
def forward_backward(name, resolution=32, batch=4, lods=(0.0,)):
    G, D = build_networks(get_config(name), resolution, channel_max=16, z_dim=16, w_dim=16)
    for lod in lods:
        G.lod = D.lod = lod
        img = G(torch.randn(batch, G.z_dim))
        assert img.shape == (batch, 3, resolution, resolution)
        logits = D(img)
        assert logits.shape == (batch, 1) and torch.isfinite(logits).all()
        logits.sum().backward()
        grads = [p.grad for p in G.parameters() if p.grad is not None]
        assert grads and all(torch.isfinite(g).all() for g in grads)


QUICK = ["tiny", "tiny-stylegan", "tiny-progan", "stylegan2-D"]


@pytest.mark.parametrize("name", QUICK)
def test_small_configs_forward_backward(name):
    lods = (0.0, 1.5) if get_config(name).progressive else (0.0,)
    forward_backward(name, resolution=16, batch=2, lods=lods)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(n for n in set(CONFIGS) - set(QUICK)
                                         if CONFIGS[n].arch != "dualstylegan"))
def test_every_named_config_forward_backward_at_32px(name):
    lods = (0.0, 1.5) if get_config(name).progressive else (0.0,)
    forward_backward(name, batch=2, lods=lods)


def test_table_rows_are_all_named():
    expected = ([f"stylegan-{c}" for c in "ABCDEF"] + [f"stylegan2-{c}" for c in "ABCDEF"]
                + [f"mixing-{p}" for p in (0, 50, 90, 100)] + ["traditional-0", "traditional-8"]
                + [f"style-based-{d}" for d in (0, 1, 2, 8)] + ["tiny", "cifar", "paper256"])
    assert set(expected) <= set(CONFIGS)
    assert get_config("stylegan-C").differences(get_config("stylegan-B")) == {
        "mapping_layers": (0, 8), "use_styles": (False, True)}
    # StyleGAN2 Table 1 rows each add one thing to the previous row
    assert get_config("stylegan2-C").differences(get_config("stylegan2-B")) == {
        "r1_interval": (1, 16)}
    assert get_config("stylegan2-D").differences(get_config("stylegan2-C")) == {
        "pl_weight": (0.0, 2.0)}
    assert get_config("stylegan2-F").differences(get_config("stylegan2-E")) == {
        "channel_base": (16384, 32768), "r1_gamma": (100.0, 10.0)}


# ---------------------------------------------------------------------------------------------
# Truncation, w_avg, mixing, noise
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["tiny", "tiny-stylegan"])
def test_truncation_psi_zero_returns_w_avg_and_cutoff_applies(name):
    torch.manual_seed(0)
    G, _ = build_networks(get_config(name), 16)
    G.mapping.w_avg.copy_(torch.randn(G.w_dim))
    z = torch.randn(3, G.z_dim)
    ws = G.mapping(z, truncation_psi=0.0)
    torch.testing.assert_close(ws, G.w_avg.expand_as(ws))
    full = G.mapping(z)
    cut = G.mapping(z, truncation_psi=0.5, truncation_cutoff=2)
    torch.testing.assert_close(cut[:, 2:], full[:, 2:])
    torch.testing.assert_close(cut[:, :2], G.w_avg.lerp(full[:, :2], 0.5))


def test_w_avg_tracks_mapping_output_with_decay():
    torch.manual_seed(1)
    G, _ = build_networks(get_config("tiny"), 16)
    z = torch.randn(5, G.z_dim)
    ws = G.mapping(z, update_w_avg=True)
    torch.testing.assert_close(G.w_avg, ws[:, 0].mean(0) * (1 - 0.995))


def test_mixing_switches_latent_at_crossover_layer():
    """Hooks on each layer's affine show which w fed it: w1 before the crossover, w2 after."""
    torch.manual_seed(2)
    G, _ = build_networks(get_config("tiny"), 16)
    w1, w2 = G.mapping(torch.randn(1, G.z_dim)), G.mapping(torch.randn(1, G.z_dim))
    seen = []
    hooks = [m.register_forward_hook(lambda mod, inp, out: seen.append(inp[0].clone()))
             for name, m in G.synthesis.named_modules() if name.endswith("conv1.affine")
             or name.endswith("conv0.affine")]
    G.synthesis(style_mix(w1, w2, 3), noise_mode="const")
    for h in hooks:
        h.remove()
    assert len(seen) == G.num_ws - 1  # every conv layer (the last w feeds only toRGB)
    for i, w in enumerate(seen):
        expected = w1[:, i] if i < 3 else w2[:, i]
        torch.testing.assert_close(w, expected)


@pytest.mark.parametrize("name", ["tiny", "tiny-stylegan"])
def test_noise_modes(name):
    torch.manual_seed(3)
    G, _ = build_networks(get_config(name), 16)
    for module in G.modules():  # give the (zero-initialised) noise strengths some weight
        for pname in ("noise_strength", "noise_weight"):
            if hasattr(module, pname):
                getattr(module, pname).data.fill_(0.5)
    ws = G.mapping(torch.randn(2, G.z_dim))
    const = G.synthesis(ws, noise_mode="const")
    torch.testing.assert_close(const, G.synthesis(ws, noise_mode="const"))
    assert not torch.allclose(G.synthesis(ws, noise_mode="random"),
                              G.synthesis(ws, noise_mode="random"))
    assert not torch.allclose(const, G.synthesis(ws, noise_mode="none"))
    with pytest.raises(ValueError, match="noise_mode"):
        G.synthesis(ws, noise_mode="bogus")


# ---------------------------------------------------------------------------------------------
# Progressive growing
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["tiny-stylegan", "tiny-progan", "stylegan2-D"])
def test_generator_lod_blends_levels(name):
    torch.manual_seed(4)
    G, _ = build_networks(get_config(name), 32, channel_max=16, z_dim=16, w_dim=16)
    ws = G.mapping(torch.randn(2, G.z_dim))
    outputs = {}
    for lod in (0.0, 0.25, 1.0):
        G.lod = lod
        outputs[lod] = G.synthesis(ws, noise_mode="const")
        assert outputs[lod].shape[-1] == 32
    blocks = outputs[1.0].unfold(2, 2, 2).unfold(3, 2, 2)  # 2x2 blocks are constant at lod 1
    assert torch.allclose(blocks, blocks[..., :1, :1].expand_as(blocks))
    coarse = outputs[1.0]
    if get_config(name).arch == "stylegan2":  # revised networks fade against FIR upsampling
        from models.layers import setup_filter, upsample2d
        coarse = upsample2d(torch.nn.functional.avg_pool2d(coarse, 2), setup_filter([1, 3, 3, 1]))
    torch.testing.assert_close(outputs[0.25], torch.lerp(outputs[0.0], coarse, 0.25))


@pytest.mark.parametrize("name", ["tiny-stylegan", "stylegan2-D"])
def test_discriminator_lod_ignores_faded_out_levels(name):
    torch.manual_seed(5)
    _, D = build_networks(get_config(name), 32, channel_max=16, z_dim=16, w_dim=16)
    img = torch.randn(4, 3, 32, 32)
    D.lod = 1.0
    before = D(img)
    with torch.no_grad():
        for p in D.b32.parameters():
            p.add_(1.0)
    torch.testing.assert_close(D(img), before)
    D.lod = 0.5
    assert not torch.allclose(D(img), before)


def test_conditional_networks():
    torch.manual_seed(6)
    for name in ("tiny", "tiny-stylegan"):
        G, D = build_networks(get_config(name), 16, c_dim=5)
        c = torch.nn.functional.one_hot(torch.tensor([0, 1, 2, 3]), 5).float()
        img = G(torch.randn(4, G.z_dim), c)
        assert D(img, c).shape == (4, 1)
        with pytest.raises(ValueError, match="conditional"):
            G(torch.randn(4, G.z_dim))


def test_unknown_config_suggests_close_names():
    from ffhq_tools.errors import FfhqToolsError

    with pytest.raises(FfhqToolsError, match="stylegan2-F"):
        get_config("stylegan2-f")


def test_config_json_round_trip():
    import json

    for config in CONFIGS.values():
        again = type(config).from_dict(json.loads(json.dumps(config.to_dict())))
        assert again == config


def test_grouped_and_activation_scaled_forms_agree_in_the_generator():
    torch.manual_seed(7)
    G, _ = build_networks(get_config("tiny"), 16)
    ws = G.mapping(torch.randn(3, G.z_dim))
    G.synthesis.fused_modconv = True
    grouped = G.synthesis(ws, noise_mode="const")
    G.synthesis.fused_modconv = False
    torch.testing.assert_close(G.synthesis(ws, noise_mode="const"), grouped,
                               rtol=1e-4, atol=1e-4)

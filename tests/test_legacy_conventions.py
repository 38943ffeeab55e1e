"""Imported checkpoints render what the official code renders.

One network is held as NVIDIA TF StyleGAN2 variables. The stylegan2-ada-pytorch and rosinality
files of the same network are derived by those tools' own converter rules
(tests/official_conventions.py), and one up-sampling layer is computed in NumPy as each code
defines it. The three imports must give identical generators, and each imported layer must
match its code's definition - so a kernel flipped one time too many or too few fails here.
"""

from __future__ import annotations

import hashlib

import legacy_fixtures as fx
import numpy as np
import official_conventions as oc
import pytest
import torch
from test_legacy_import import randomised

from models.checkpoint import load_checkpoint
from models.legacy_import import CheckpointImportError, import_checkpoint


def tf_generator_variables(G) -> dict:
    mapping, synthesis = fx.tf_sg2_generator_vars(G)
    tf = {f"mapping/{k}": v for k, v in mapping.items()}
    tf.update({f"synthesis/{k}": v for k, v in synthesis.items()})
    tf["dlatent_avg"] = fx.np32(G.mapping.w_avg)
    if G.c_dim:
        tf["mapping/LabelEmbed/weight"] = fx.tf_dense(G.mapping.embed.weight)
        tf["mapping/LabelEmbed/bias"] = fx.np32(G.mapping.embed.bias)
    return tf


def ada_attributes(G, D) -> tuple[dict, dict]:
    g = {"mapping": {"w_avg_beta": G.mapping.w_avg_beta},
         "mapping.fc0": {"bias_gain": G.mapping.fc0.bias_gain}}
    d = {"b4.mbstd": {"group_size": D.b4.mbstd.group_size,
                      "num_channels": D.b4.mbstd.num_channels}}
    return g, d


def official_files(tmp_path, g_architecture="skip", c_dim=0):
    """(TF variables of G_ema, paths of the TF, ada and rosinality files of one network)."""
    G, D, G_ema = randomised("tiny", g_architecture=g_architecture, c_dim=c_dim, seed=3)
    tf_g, tf_gs = tf_generator_variables(G), tf_generator_variables(G_ema)
    tf_d = fx.tf_sg2_discriminator_vars(D)
    paths = {}
    if not c_dim:
        paths["tf"] = tmp_path / "tf.pkl"
        oc.write_tf_pickle(paths["tf"], tf_g, tf_d, tf_gs,
                           {"mbstd_group_size": D.b4.mbstd.group_size})
    ada_d = oc.ada_discriminator_state(tf_d)
    # the conditional D's label mapping (TF LabelEmbed / MappingN) is not in the TF fixture;
    # its tensors keep our (= ada's) layout
    ada_d.update({k: v for k, v in D.state_dict().items() if k.startswith("mapping.")})
    paths["ada"] = tmp_path / "ada.pkl"
    oc.write_ada_pickle(paths["ada"], oc.ada_generator_state(tf_g), ada_d,
                        oc.ada_generator_state(tf_gs), *ada_attributes(G, D))
    if g_architecture == "skip" and not c_dim:
        paths["rosinality"] = tmp_path / "rosinality.pt"
        torch.save({"g_ema": oc.rosinality_generator_state(tf_gs),
                    "latent_avg": oc.t(tf_gs["dlatent_avg"])}, paths["rosinality"])
    return tf_gs, paths


def imported(paths: dict) -> dict:
    out = {}
    for fmt, src in paths.items():
        dst = src.with_suffix(".ours.pt")
        assert import_checkpoint(src, dst).source_format.startswith(
            {"tf": "tf-stylegan2", "ada": "stylegan2-ada", "rosinality": "rosinality"}[fmt])
        out[fmt] = load_checkpoint(dst)
    return out


def render(G, c_dim=0):
    z = torch.from_numpy(np.random.RandomState(0).randn(3, G.z_dim)).float()
    c = torch.eye(c_dim)[[0, 1, 2]] if c_dim else None
    with torch.no_grad():
        return G(z, c, truncation_psi=0.7, noise_mode="const")


@pytest.mark.parametrize("g_architecture", [
    "skip", pytest.param("resnet", marks=pytest.mark.slow)])
def test_tf_ada_and_rosinality_files_of_one_network_import_identically(tmp_path,
                                                                       g_architecture):
    _, paths = official_files(tmp_path, g_architecture)
    nets = imported(paths)
    reference = nets.pop("tf")
    image = render(reference.G_ema)
    assert image.std() > 0.1
    for fmt, ckpt in nets.items():
        torch.testing.assert_close(render(ckpt.G_ema), image, rtol=0, atol=1e-6, msg=fmt)
        for name, value in reference.G_ema.state_dict().items():
            assert torch.equal(ckpt.G_ema.state_dict()[name], value), f"{fmt}: {name}"
    images = torch.randn(4, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(nets["ada"].D(images), reference.D(images), rtol=0, atol=1e-6)
    torch.testing.assert_close(render(nets["ada"].G), render(reference.G), rtol=0, atol=1e-6)


def layer_inputs(layer, seed=5):
    rng = np.random.RandomState(seed)
    x = rng.randn(2, layer.weight.shape[1], 4, 4)
    w = rng.randn(2, layer.affine.weight.shape[1])
    return x, w


def run_layer(layer, x, w) -> np.ndarray:
    with torch.no_grad():
        return layer(torch.from_numpy(x).float(), torch.from_numpy(w).float(),
                     noise_mode="const").double().numpy()


def test_tf_import_matches_the_tf_definition_of_an_upsampling_layer(tmp_path):
    tf_gs, paths = official_files(tmp_path)
    layer = imported({"tf": paths["tf"]})["tf"].G_ema.synthesis.b8.conv0
    x, w = layer_inputs(layer)
    expected = oc.tf_upsampling_layer(x, tf_gs, "synthesis/8x8/Conv0_up", w,
                                      tf_gs[f"synthesis/noise{oc.noise_index(8, 'conv0')}"][0, 0])
    np.testing.assert_allclose(run_layer(layer, x, w), expected, rtol=1e-4, atol=1e-4)
    unflipped = dict(tf_gs)
    unflipped["synthesis/8x8/Conv0_up/weight"] = tf_gs["synthesis/8x8/Conv0_up/weight"][::-1, ::-1]
    wrong = oc.tf_upsampling_layer(x, unflipped, "synthesis/8x8/Conv0_up", w,
                                   tf_gs[f"synthesis/noise{oc.noise_index(8, 'conv0')}"][0, 0])
    assert np.abs(wrong - expected).max() > 0.1  # the comparison can tell a flip


@pytest.mark.parametrize("c_dim", [0, 3])
def test_ada_import_matches_the_ada_definition_of_an_upsampling_layer(tmp_path, c_dim):
    tf_gs, paths = official_files(tmp_path, c_dim=c_dim)
    ckpt = imported({"ada": paths["ada"]})["ada"]
    state = oc.ada_generator_state(tf_gs)
    for res in (8, 16):
        layer = getattr(ckpt.G_ema.synthesis, f"b{res}").conv0
        x, w = layer_inputs(layer)
        x = np.random.RandomState(res).randn(2, x.shape[1], res // 2, res // 2)
        expected = oc.ada_upsampling_layer(x, state, f"synthesis.b{res}.conv0", w)
        np.testing.assert_allclose(run_layer(layer, x, w), expected, rtol=1e-4, atol=1e-4)
    if c_dim:
        G_tf_layout = randomised("tiny", c_dim=3, seed=3)[2]
        torch.testing.assert_close(render(ckpt.G_ema, 3), render(G_tf_layout, 3))


def test_stylegan3_pickles_are_refused_by_name(tmp_path):
    tf_gs, _ = official_files(tmp_path)
    g = {k: v for k, v in oc.ada_generator_state(tf_gs).items()
         if not k.startswith("synthesis.")}
    g.update({"synthesis.input.freqs": torch.randn(32, 2), "synthesis.input.phases":
              torch.randn(32), "synthesis.L0_36_32.weight": torch.randn(32, 32, 3, 3)})
    src = tmp_path / "stylegan3-t-ffhq-1024x1024.pkl"
    oc.write_ada_pickle(src, g, {}, g, {}, {})
    with pytest.raises(CheckpointImportError, match="stylegan3.*not supported") as err:
        import_checkpoint(src, tmp_path / "out.pt")
    assert src.name in str(err.value)
    assert not (tmp_path / "out.pt").exists()


def test_import_verify_prints_the_official_seed_convention(tmp_path, capsys):
    """`--verify` renders np.random.RandomState(seed).randn(1, z_dim) with constant noise; the
    numbers must equal that render of the same network imported from its TF file."""
    from ffhq_tools.cli import main

    _, paths = official_files(tmp_path)
    dst = tmp_path / "verified.pt"
    assert main(["import-checkpoint", str(paths["ada"]), str(dst), "--verify",
                 "--verify-psi", "0.7", "--verify-seeds", "3,7"]) == 0
    rows = [line.split() for line in capsys.readouterr().out.splitlines()
            if line.startswith("G_ema ")]
    assert [int(r[1]) for r in rows] == [3, 7]
    reference = imported({"tf": paths["tf"]})["tf"]
    for row in rows:
        z = torch.from_numpy(np.random.RandomState(int(row[1])).randn(1, 32)).float()
        with torch.no_grad():
            image = reference.G_ema(z, None, truncation_psi=0.7, noise_mode="const")
            logit = float(reference.D(image))
        pixels = (image * 127.5 + 128).clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1)
        assert float(row[2]) == pytest.approx(float(image.mean()), abs=2e-6)
        assert float(row[3]) == pytest.approx(float(image.std()), abs=2e-6)
        assert float(row[7]) == pytest.approx(logit, abs=2e-5)
        assert row[8] == hashlib.md5(pixels.contiguous().numpy().tobytes()).hexdigest()


def test_checkpoints_from_the_flipping_importer_must_be_imported_again(tmp_path):
    from models.checkpoint import CheckpointError, save_checkpoint

    _, paths = official_files(tmp_path)
    ckpt = imported({"ada": paths["ada"]})["ada"]
    stale = dict(ckpt.config, source={"format": "stylegan2-ada", "file": "network.pkl"})
    save_checkpoint(tmp_path / "stale.pt", config=stale, G=ckpt.G, D=ckpt.D, G_ema=ckpt.G_ema)
    with pytest.raises(CheckpointError, match="import it again.*network.pkl"):
        load_checkpoint(tmp_path / "stale.pt")


def test_tf_stylegan_v1_import_matches_the_tf_definition_of_a_fused_upsampling_layer(tmp_path):
    """TF StyleGAN v1 `upscale2d_conv2d(fused_scale=True)`: the 3x3 kernel [k, k, in, out]
    grown to 4x4 and run by conv2d_transpose unflipped, then blur [1,2,1], noise, bias, lrelu,
    instance norm, style modulation x * (s0 + 1) + s1."""
    from test_models_legacy_progan import fused_upconv

    G, D, G_ema = randomised("tiny-stylegan", fused_scale_min_res=8, seed=4)
    src = tmp_path / "v1.pkl"
    fx.write_tf_stylegan(src, G, D, G_ema)
    import_checkpoint(src, tmp_path / "v1.pt")
    layer = load_checkpoint(tmp_path / "v1.pt").G_ema.synthesis.b8.conv0
    tf = fx.tf_v1_generator_vars(G_ema)[1]
    scope = "8x8/Conv0_up"
    rng = np.random.RandomState(2)
    x = rng.randn(2, tf[f"{scope}/weight"].shape[2], 4, 4)
    w = rng.randn(2, tf[f"{scope}/StyleMod/weight"].shape[0])

    y = fused_upconv(x, tf[f"{scope}/weight"].transpose(0, 1, 3, 2))
    blur = np.outer([1.0, 2, 1], [1.0, 2, 1]) / 16
    yp = np.pad(y, [(0, 0), (0, 0), (1, 1), (1, 1)])
    y = sum(yp[:, :, a:a + 8, b:b + 8] * blur[a, b] for a in range(3) for b in range(3))
    y = y + tf["noise2"][0, 0] * tf[f"{scope}/Noise/weight"].reshape(1, -1, 1, 1)
    y = y + tf[f"{scope}/bias"].reshape(1, -1, 1, 1)
    y = np.where(y >= 0, y, 0.2 * y)
    y = y - y.mean(axis=(2, 3), keepdims=True)
    y = y / np.sqrt((y ** 2).mean(axis=(2, 3), keepdims=True) + 1e-8)
    style_w = tf[f"{scope}/StyleMod/weight"]
    style = (w @ (style_w / np.sqrt(style_w.shape[0])) + tf[f"{scope}/StyleMod/bias"])
    style = style.reshape(2, 2, -1, 1, 1)
    expected = y * (style[:, 0] + 1) + style[:, 1]
    with torch.no_grad():
        got = layer(torch.from_numpy(x).float(), torch.from_numpy(w).float(),
                    noise_mode="const").double().numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)

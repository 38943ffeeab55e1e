"""Imported checkpoints render what the official code renders.

One network is held as NVIDIA TF StyleGAN2 variables. The stylegan2-ada-pytorch and rosinality
files of the same network are derived by those tools' own converter rules
(tests/official_conventions.py), and one up-sampling layer is computed in NumPy as each code
defines it. The three imports must give identical generators, and each imported layer must
match its code's definition - so a kernel flipped one time too many or too few fails here.
"""

from __future__ import annotations

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

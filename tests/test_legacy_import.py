"""Import of official checkpoint formats (fixtures built by tests/legacy_fixtures.py) and the
restricted unpickler's refusals."""

from __future__ import annotations

import io
import os
import pickle

import legacy_fixtures as fx
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from models.checkpoint import load_checkpoint
from models.configs import build_networks, get_config
from models.legacy import UnsafePickleError, safe_load_pickle
from models.legacy_import import import_checkpoint


def randomised(name, resolution=16, seed=0, c_dim=0, **overrides):
    """(G, D, G_ema) with every parameter and buffer random, so misplacements show."""
    torch.manual_seed(seed)
    config = get_config(name).replace(**overrides) if overrides else get_config(name)
    G, D = build_networks(config, resolution, c_dim=c_dim)
    G_ema, _ = build_networks(config, resolution, c_dim=c_dim)
    with torch.no_grad():
        for net in (G, D, G_ema):
            for pname, p in net.named_parameters():
                p.copy_(torch.randn_like(p) * (0.3 if "noise" in pname else 1.0))
            for bname, b in net.named_buffers():
                if bname.endswith(("w_avg", "noise_const")):
                    b.copy_(torch.randn_like(b))
    return G, D, G_ema


def assert_same_state(ours, theirs, what, skip=()):
    a, b = ours.state_dict(), theirs.state_dict()
    assert a.keys() == b.keys(), what
    for k in set(a) - set(skip):
        torch.testing.assert_close(a[k], b[k], msg=f"{what}: {k}")


def check_import(tmp_path, writer, G, D, G_ema, fmt):
    src, dst = tmp_path / "official.pkl", tmp_path / "ours.pt"
    writer(src, G, D, G_ema)
    result = import_checkpoint(src, dst)
    assert result.source_format == fmt
    ckpt = load_checkpoint(dst)
    for ours, theirs, what in ((ckpt.G_ema, G_ema, "G_ema"), (ckpt.G, G, "G"),
                               (ckpt.D, D, "D")):
        # rosinality keeps latent_avg for g_ema only; the training G's w_avg is re-estimated
        skip = ("mapping.w_avg",) if fmt == "rosinality" and what == "G" else ()
        assert_same_state(ours, theirs, what, skip)
    z = torch.randn(4, G.z_dim)
    c = torch.eye(G.c_dim)[torch.arange(4) % G.c_dim] if G.c_dim else None
    torch.testing.assert_close(ckpt.G_ema(z, c, noise_mode="const"),
                               G_ema(z, c, noise_mode="const"))
    img = torch.randn(4, 3, G.img_resolution, G.img_resolution)
    torch.testing.assert_close(ckpt.D(img, c), D(img, c))
    mapped = {src_name for net, src_name, _, _ in result.mapped if net == "G_ema"}
    return result, ckpt, mapped


def test_tf_stylegan2_pickle(tmp_path):
    G, D, G_ema = randomised("tiny")
    result, ckpt, mapped = check_import(tmp_path, fx.write_tf_stylegan2, G, D, G_ema,
                                        "tf-stylegan2")
    assert {"synthesis/16x16/Conv0_up/mod_bias", "dlatent_avg", "synthesis/noise0"} <= mapped
    # layouts, element by element: conv [kh, kw, in, out] -> [out, in, kh, kw]; dense
    # [in, out] -> [out, in]; mod_bias stored minus one
    tf_g = fx.tf_sg2_generator_vars(G_ema)[1]
    kernel = tf_g["16x16/Conv0_up/weight"]
    ours = ckpt.G_ema.synthesis.b16.conv0.weight
    assert float(ours[5, 2, 0, 1].detach()) == pytest.approx(float(kernel[0, 1, 2, 5]))
    assert float(ckpt.G_ema.synthesis.b8.conv1.affine.bias[3].detach()) == pytest.approx(
        float(tf_g["8x8/Conv1/mod_bias"][3]) + 1)
    assert result.config.g_architecture == "skip" and result.config.d_architecture == "resnet"
    assert result.config.channel_max == 32 and result.config.z_dim == 32


def test_tf_stylegan_v1_pickle(tmp_path):
    G, D, G_ema = randomised("tiny-stylegan")
    result, ckpt, mapped = check_import(tmp_path, fx.write_tf_stylegan, G, D, G_ema,
                                        "tf-stylegan")
    assert {"synthesis/4x4/Const/StyleMod/weight", "synthesis/ToRGB_lod2/weight"} <= mapped
    assert result.config.arch == "stylegan" and result.config.truncation_cutoff == 8


def test_tf_stylegan_v1_pickle_fused_resolutions(tmp_path):
    """Fused up/down convs (fused_scale=True: every resolution) take the same 3x3 kernels."""
    G, D, G_ema = randomised("tiny-stylegan", fused_scale_min_res=8)
    check_import(tmp_path, fx.write_tf_stylegan, G, D, G_ema, "tf-stylegan")


@pytest.mark.parametrize("g_arch,d_arch", [
    ("skip", "resnet"),
    pytest.param("resnet", "skip", marks=pytest.mark.slow),
    pytest.param("orig", "orig", marks=pytest.mark.slow)])
def test_stylegan2_ada_pickle(tmp_path, monkeypatch, g_arch, d_arch):
    monkeypatch.chdir(tmp_path)
    G, D, G_ema = randomised("tiny", g_architecture=g_arch, d_architecture=d_arch,
                             mbstd_group=2)
    result, ckpt, _ = check_import(tmp_path, fx.write_ada, G, D, G_ema, "stylegan2-ada")
    assert result.config.g_architecture == g_arch and result.config.d_architecture == d_arch
    assert result.config.mbstd_group == 2
    assert not (tmp_path / "persistence-source-ran").exists()


def test_conditional_stylegan2_ada_pickle(tmp_path):
    G, D, G_ema = randomised("tiny", c_dim=3)
    result, _, mapped = check_import(tmp_path, fx.write_ada, G, D, G_ema, "stylegan2-ada")
    assert result.c_dim == 3 and "mapping.embed.weight" in mapped


def test_rosinality_checkpoint(tmp_path):
    G, D, G_ema = randomised("tiny")
    _, ckpt, mapped = check_import(tmp_path, fx.write_rosinality, G, D, G_ema, "rosinality")
    assert {"convs.0.conv.weight", "noises.noise_0", "latent_avg"} <= mapped


def test_rosinality_upsampling_kernel_is_flipped_correctly(tmp_path):
    """rosinality's up-conv: conv_transpose2d(x, w^T) unflipped, then blur with pad (1, 1) and
    gain 4. Our imported layer must compute exactly that on the file's kernel."""
    G, D, G_ema = randomised("tiny")
    src, dst = tmp_path / "ros.pt", tmp_path / "ours.pt"
    fx.write_rosinality(src, G, D, G_ema)
    ros_w = torch.load(src, weights_only=False)["g_ema"]["convs.0.conv.weight"][0]
    ours = load_checkpoint(import_checkpoint(src, dst) and dst).G_ema.synthesis.b8.conv0
    x = torch.randn(1, ros_w.shape[1], 4, 4)
    y = F.conv_transpose2d(x, ros_w.transpose(0, 1), stride=2)
    k = torch.tensor([1.0, 3, 3, 1])
    k = (k[:, None] * k[None]) / 64 * 4
    y = F.conv2d(F.pad(y, [1, 1, 1, 1]), k.expand(y.shape[1], 1, 4, 4), groups=y.shape[1])
    from models.layers import resample_conv2d
    torch.testing.assert_close(resample_conv2d(x, ours.weight, ours.resample_filter, up=2), y)


def test_rosinality_without_latent_avg_estimates_it(tmp_path):
    G, D, G_ema = randomised("tiny")
    src, dst = tmp_path / "ros.pt", tmp_path / "ours.pt"
    fx.write_rosinality(src, G, D, G_ema, with_latent_avg=False)
    result = import_checkpoint(src, dst)
    assert any("estimated" in note for note in result.notes)
    w_avg = load_checkpoint(dst).G_ema.mapping.w_avg
    expected = G_ema.mapping(torch.randn(10_000, 32, generator=torch.Generator().manual_seed(0)))
    torch.testing.assert_close(w_avg, expected[:, 0].mean(0))


# ------------------------------------------------------------------------------------------
# Refusals: nothing outside the allow-list runs
# ------------------------------------------------------------------------------------------
class SystemCall:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class Evaluate:
    def __reduce__(self):
        return (eval, ("__import__('os').getcwd()",))


@pytest.mark.parametrize("payload_kind", ["os.system", "eval", "nested-in-tf"])
def test_malicious_pickles_are_refused_without_side_effects(tmp_path, payload_kind):
    marker = tmp_path / "pwned"
    if payload_kind == "os.system":
        payload = {"G_ema": SystemCall(marker)}
    elif payload_kind == "eval":
        payload = [Evaluate()]
    else:
        with fx.fake_modules() as ns:
            payload = (fx.tf_network(ns, "Gs", {"x": SystemCall(marker)}),)
            data = pickle.dumps(payload)
    data = pickle.dumps(payload) if payload_kind != "nested-in-tf" else data
    path = tmp_path / "evil.pkl"
    path.write_bytes(data)
    with pytest.raises(UnsafePickleError, match="refusing to load global"):
        safe_load_pickle(path)
    with pytest.raises(UnsafePickleError):
        import_checkpoint(path, tmp_path / "out.pt")
    assert not marker.exists() and not (tmp_path / "out.pt").exists()


def test_object_arrays_and_foreign_files_are_refused(tmp_path):
    with pytest.raises(UnsafePickleError, match="object"):
        safe_load_pickle(io.BytesIO(pickle.dumps(np.array([1, "a"], dtype=object))))
    arr = safe_load_pickle(io.BytesIO(pickle.dumps({"w": np.arange(6, dtype=np.float32)})))
    np.testing.assert_array_equal(arr["w"], np.arange(6, dtype=np.float32))
    from ffhq_tools.errors import FfhqToolsError
    junk = tmp_path / "junk.pkl"
    junk.write_bytes(b"not a pickle at all")
    with pytest.raises(FfhqToolsError, match="junk.pkl"):
        import_checkpoint(junk, tmp_path / "out.pt")
    plain = tmp_path / "plain.pkl"
    plain.write_bytes(pickle.dumps({"weights": [1, 2]}))
    with pytest.raises(FfhqToolsError, match="unrecognised checkpoint"):
        import_checkpoint(plain, tmp_path / "out.pt")

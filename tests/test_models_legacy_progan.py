"""Import of official Progressive GAN pickles (tfutil.Network (G, D, Gs) tuples).

The pickles are written here in the official format: `tfutil.Network` states (version 2,
build source, static kwargs, variables in TF layouts) holding deterministic N(0, 1) weights
drawn directly in TF layout - none of them comes from our networks. The imported networks must
reproduce a NumPy forward pass of G_paper / D_paper written from the reference definitions
(pixel norm, leaky ReLU 0.2, equalised lr, nearest up / box down, fused conv variants, lod
blending, minibatch stddev).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import pickle
import sys
import types

import numpy as np
import pytest
import torch

from ffhq_tools.errors import FfhqToolsError
from models.checkpoint import load_checkpoint
from models.legacy import UnsafePickleError
from models.legacy_import import import_checkpoint

SRC = "import os\nopen('progan-source-ran', 'w').write('x')\n"
SQRT2 = float(np.sqrt(2.0))
FMAP_BASE, FMAP_MAX, CHANNELS = 128, 32, 3   # nf: 32 (latent), 32 @4, 32 @8, 16 @16, 8 @32


# ------------------------------------------------------------------------------------------
# Writing official-format pickles
# ------------------------------------------------------------------------------------------
@contextlib.contextmanager
def fake_tfutil():
    """A module `tfutil` with a class `Network` so pickle records the official global."""
    module = types.ModuleType("tfutil")

    class Network:
        def __init__(self, state):
            self._state = state

        def __getstate__(self):
            return self._state

    Network.__module__, Network.__qualname__ = "tfutil", "Network"
    module.Network = Network
    saved = sys.modules.get("tfutil")
    sys.modules["tfutil"] = module
    try:
        yield Network
    finally:
        if saved is None:
            sys.modules.pop("tfutil", None)
        else:
            sys.modules["tfutil"] = saved


def nf(stage: int) -> int:
    return min(FMAP_BASE // 2 ** stage, FMAP_MAX)


def generator_vars(rng, log2: int, fused: bool, lod: float = 0.0) -> dict:
    v = {}

    def put(scope, w_shape, out):
        v[f"{scope}/weight"] = rng.standard_normal(w_shape).astype(np.float32)
        v[f"{scope}/bias"] = (0.1 * rng.standard_normal(out)).astype(np.float32)

    put("4x4/Dense", (nf(0), nf(1) * 16), nf(1))
    put("4x4/Conv", (3, 3, nf(1), nf(1)), nf(1))
    for res in range(3, log2 + 1):
        cin, cout = nf(res - 2), nf(res - 1)
        r = 2 ** res
        if fused:
            put(f"{r}x{r}/Conv0_up", (3, 3, cout, cin), cout)
        else:
            put(f"{r}x{r}/Conv0", (3, 3, cin, cout), cout)
        put(f"{r}x{r}/Conv1", (3, 3, cout, cout), cout)
    for res in range(2, log2 + 1):
        put(f"ToRGB_lod{log2 - res}", (1, 1, nf(res - 1), CHANNELS), CHANNELS)
    v["lod"] = np.float32(lod)
    return v


def discriminator_vars(rng, log2: int, fused: bool, mbstd: bool, lod: float = 0.0,
                       label_size: int = 0) -> dict:
    v = {}

    def put(scope, w_shape):
        v[f"{scope}/weight"] = rng.standard_normal(w_shape).astype(np.float32)
        v[f"{scope}/bias"] = (0.1 * rng.standard_normal(w_shape[-1])).astype(np.float32)

    for res in range(log2, 1, -1):
        put(f"FromRGB_lod{log2 - res}", (1, 1, CHANNELS, nf(res - 1)))
    for res in range(log2, 2, -1):
        r = 2 ** res
        put(f"{r}x{r}/Conv0", (3, 3, nf(res - 1), nf(res - 1)))
        put(f"{r}x{r}/{'Conv1_down' if fused else 'Conv1'}", (3, 3, nf(res - 1), nf(res - 2)))
    put("4x4/Conv", (3, 3, nf(1) + (1 if mbstd else 0), nf(1)))
    put("4x4/Dense0", (nf(1) * 16, nf(0)))
    put("4x4/Dense1", (nf(0), 1 + label_size))
    v["lod"] = np.float32(lod)
    return v


def network(Network, name, func, variables, **static_kwargs):
    return Network({"version": 2, "name": name, "static_kwargs": static_kwargs,
                    "build_module_src": SRC, "build_func_name": func,
                    "variables": list(variables.items())})


def write_progan(path, *, log2=5, fused=False, mbstd_group=4, seed=0, g_lod=0.0, d_lod=0.0,
                 g_kwargs=None, d_kwargs=None, tamper=None):
    rng = np.random.RandomState(seed)
    g, d, gs = (generator_vars(rng, log2, fused, g_lod),
                discriminator_vars(rng, log2, fused, mbstd_group > 1, d_lod),
                generator_vars(rng, log2, fused, g_lod))
    if tamper:
        tamper(g, d, gs)
    common = dict(num_channels=CHANNELS, resolution=2 ** log2, fmap_base=FMAP_BASE,
                  fmap_max=FMAP_MAX, fused_scale=fused)
    with fake_tfutil() as Network:
        nets = (network(Network, "G", "G_paper", g, **common, **(g_kwargs or {})),
                network(Network, "D", "D_paper", d, mbstd_group_size=mbstd_group, **common,
                        **(d_kwargs or {})),
                network(Network, "Gs", "G_paper", gs, **common, **(g_kwargs or {})))
        # protocol 4: HIGHEST_PROTOCOL of the Python 3.6 that wrote the official files
        path.write_bytes(pickle.dumps(nets, protocol=4))
    return g, d, gs


# ------------------------------------------------------------------------------------------
# NumPy G_paper / D_paper (float64), from the reference definitions
# ------------------------------------------------------------------------------------------
def pixel_norm(x):
    return x / np.sqrt(np.mean(x ** 2, axis=1, keepdims=True) + 1e-8)


def lrelu(x):
    return np.maximum(x, 0.2 * x)


def wscaled(w, gain, fan_in):
    return w.astype(np.float64) * (gain / np.sqrt(fan_in))


def conv_same(x, w_hwio, gain=SQRT2):
    k = w_hwio.shape[0]
    w = wscaled(w_hwio, gain, k * k * w_hwio.shape[2])
    p = k // 2
    xp = np.pad(x, [(0, 0), (0, 0), (p, p), (p, p)])
    h, wd = x.shape[2:]
    return sum(np.einsum("nchw,co->nohw", xp[:, :, a:a + h, b:b + wd], w[a, b])
               for a in range(k) for b in range(k))


def grow_kernel(w):
    """3x3 -> 4x4 kernel: sum of the four one-pixel shifts (fused resampling)."""
    w = np.pad(w, [(1, 1), (1, 1), (0, 0), (0, 0)])
    return w[1:, 1:] + w[:-1, 1:] + w[1:, :-1] + w[:-1, :-1]


def fused_upconv(x, w_hwoi, gain=SQRT2):
    """conv2d_transpose, stride 2, SAME (the adjoint of a stride-2 SAME conv, pad 1 before)."""
    w = grow_kernel(wscaled(w_hwoi, gain, 9 * x.shape[1]))
    n, _, h, wd = x.shape
    out = np.zeros((n, w.shape[2], 2 * h + 2, 2 * wd + 2))
    for a in range(4):
        for b in range(4):
            out[:, :, a:a + 2 * h:2, b:b + 2 * wd:2] += np.einsum("nchw,oc->nohw", x, w[a, b])
    return out[:, :, 1:1 + 2 * h, 1:1 + 2 * wd]


def fused_downconv(x, w_hwio, gain=SQRT2):
    w = grow_kernel(wscaled(w_hwio, gain, 9 * w_hwio.shape[2])) * 0.25
    xp = np.pad(x, [(0, 0), (0, 0), (1, 1), (1, 1)])
    h, wd = x.shape[2] // 2, x.shape[3] // 2
    return sum(np.einsum("nchw,co->nohw", xp[:, :, a:a + 2 * h:2, b:b + 2 * wd:2], w[a, b])
               for a in range(4) for b in range(4))


def upscale(x, f=2):
    return x.repeat(f, axis=2).repeat(f, axis=3)


def downscale(x):
    n, c, h, w = x.shape
    return x.reshape(n, c, h // 2, 2, w // 2, 2).mean(axis=(3, 5))


def bias(x, b):
    return x + b.reshape(1, -1, *([1] * (x.ndim - 2)))


def lerp_clip(a, b, t):
    return a + (b - a) * np.clip(t, 0.0, 1.0)


def g_paper(v, latents, log2, fused):
    def block(x, res):
        r = 2 ** res
        if res == 2:
            x = pixel_norm(x)
            x = x @ wscaled(v["4x4/Dense/weight"], SQRT2 / 4, x.shape[1])
            x = pixel_norm(lrelu(bias(x.reshape(len(x), -1, 4, 4), v["4x4/Dense/bias"])))
            return pixel_norm(lrelu(bias(conv_same(x, v["4x4/Conv/weight"]),
                                         v["4x4/Conv/bias"])))
        if fused:
            x = fused_upconv(x, v[f"{r}x{r}/Conv0_up/weight"])
            x = pixel_norm(lrelu(bias(x, v[f"{r}x{r}/Conv0_up/bias"])))
        else:
            x = pixel_norm(lrelu(bias(conv_same(upscale(x), v[f"{r}x{r}/Conv0/weight"]),
                                      v[f"{r}x{r}/Conv0/bias"])))
        return pixel_norm(lrelu(bias(conv_same(x, v[f"{r}x{r}/Conv1/weight"]),
                                     v[f"{r}x{r}/Conv1/bias"])))

    def torgb(x, res):
        scope = f"ToRGB_lod{log2 - res}"
        return bias(conv_same(x, v[f"{scope}/weight"], gain=1.0), v[f"{scope}/bias"])

    lod_in = float(v["lod"])
    x = block(latents.astype(np.float64), 2)
    images = torgb(x, 2)
    for res in range(3, log2 + 1):
        x = block(x, res)
        images = lerp_clip(torgb(x, res), upscale(images), lod_in - (log2 - res))
    return images


def minibatch_stddev(x, group_size):
    g = min(group_size, len(x))
    y = x.reshape(g, -1, *x.shape[1:])
    y = np.sqrt(((y - y.mean(axis=0)) ** 2).mean(axis=0) + 1e-8)
    y = y.mean(axis=(1, 2, 3))
    y = np.tile(y[:, None, None, None], (g, 1, x.shape[2], x.shape[3]))
    return np.concatenate([x, y], axis=1)


def d_paper(v, images, log2, fused, mbstd_group):
    def fromrgb(x, res):
        scope = f"FromRGB_lod{log2 - res}"
        return lrelu(bias(conv_same(x, v[f"{scope}/weight"]), v[f"{scope}/bias"]))

    def block(x, res):
        r = 2 ** res
        x = lrelu(bias(conv_same(x, v[f"{r}x{r}/Conv0/weight"]), v[f"{r}x{r}/Conv0/bias"]))
        if fused:
            return lrelu(bias(fused_downconv(x, v[f"{r}x{r}/Conv1_down/weight"]),
                              v[f"{r}x{r}/Conv1_down/bias"]))
        x = lrelu(bias(conv_same(x, v[f"{r}x{r}/Conv1/weight"]), v[f"{r}x{r}/Conv1/bias"]))
        return downscale(x)

    lod_in = float(v["lod"])
    img = images.astype(np.float64)
    x = fromrgb(img, log2)
    for res in range(log2, 2, -1):
        x = block(x, res)
        img = downscale(img)
        x = lerp_clip(x, fromrgb(img, res - 1), lod_in - (log2 - res))
    if mbstd_group > 1:
        x = minibatch_stddev(x, mbstd_group)
    x = lrelu(bias(conv_same(x, v["4x4/Conv/weight"]), v["4x4/Conv/bias"]))
    x = x.reshape(len(x), -1)
    x = lrelu(bias(x @ wscaled(v["4x4/Dense0/weight"], SQRT2, x.shape[1]),
                   v["4x4/Dense0/bias"]))
    x = bias(x @ wscaled(v["4x4/Dense1/weight"], 1.0, x.shape[1]), v["4x4/Dense1/bias"])
    return x[:, :1]


# ------------------------------------------------------------------------------------------
# Tests
# ------------------------------------------------------------------------------------------
def assert_close(ours: torch.Tensor, reference: np.ndarray):
    np.testing.assert_allclose(ours.detach().double().numpy(), reference, rtol=1e-4,
                               atol=1e-5)


@pytest.mark.parametrize("fused,mbstd_group", [(False, 16), (True, 4)],
                         ids=["official-theano-converted", "fused-tf-trained"])
def test_imported_progan_matches_numpy_reference(tmp_path, fused, mbstd_group):
    src, dst = tmp_path / "karras2018iclr-tiny-32x32.pkl", tmp_path / "ours.pt"
    g, d, gs = write_progan(src, fused=fused, mbstd_group=mbstd_group)
    result = import_checkpoint(src, dst)
    assert result.source_format == "tf-progan"
    assert result.resolution == 32 and result.img_channels == 3 and result.c_dim == 0
    config = result.config
    assert config.arch == "progan" and config.z_dim == nf(0) and config.mbstd_group == mbstd_group
    assert (config.channel_base, config.channel_max) == (2 * FMAP_BASE, FMAP_MAX)
    mapped = {src_name for _, src_name, _, _ in result.mapped}
    assert {"4x4/Dense/weight", "ToRGB_lod3/bias", "4x4/Dense1/weight"} <= mapped
    assert not result.notes  # nothing kept at its initial value
    ckpt = load_checkpoint(dst)
    assert ckpt.config["source"]["format"] == "tf-progan"
    assert ckpt.config["source"]["sha256"] == hashlib.sha256(src.read_bytes()).hexdigest()

    latents = np.random.RandomState(1).standard_normal((4, nf(0))).astype(np.float32)
    with torch.no_grad():
        for ours, variables in ((ckpt.G_ema, gs), (ckpt.G, g)):
            assert_close(ours(torch.from_numpy(latents)), g_paper(variables, latents, 5, fused))
        images = np.random.RandomState(2).standard_normal((4, 3, 32, 32)).astype(np.float32)
        assert_close(ckpt.D(torch.from_numpy(images)), d_paper(d, images, 5, fused, mbstd_group))


def test_mid_growth_lod_is_kept_and_blended(tmp_path):
    """A snapshot taken during a fade-in (lod 1.5): G blends 8x8 and 16x16 RGB, D enters at
    the 16x16 level with its fromRGB mixed in, exactly as the linear structure does."""
    src, dst = tmp_path / "network-snapshot.pkl", tmp_path / "ours.pt"
    _, d, gs = write_progan(src, fused=True, g_lod=1.5, d_lod=1.5, seed=3)
    result = import_checkpoint(src, dst)
    assert any("lod" in note for note in result.notes)
    ckpt = load_checkpoint(dst)
    assert ckpt.G_ema.lod == 1.5 and ckpt.D.lod == 1.5
    latents = np.random.RandomState(4).standard_normal((4, nf(0))).astype(np.float32)
    images = np.random.RandomState(5).standard_normal((4, 3, 32, 32)).astype(np.float32)
    with torch.no_grad():
        assert_close(ckpt.G_ema(torch.from_numpy(latents)), g_paper(gs, latents, 5, True))
        assert_close(ckpt.D(torch.from_numpy(images)), d_paper(d, images, 5, True, 4))


def test_reference_catches_layout_mistakes(tmp_path):
    """The comparison can fail: a fused kernel applied spatially flipped changes the output."""
    src, dst = tmp_path / "a.pkl", tmp_path / "a.pt"
    _, _, gs = write_progan(src, fused=True)
    import_checkpoint(src, dst)
    latents = np.random.RandomState(1).standard_normal((2, nf(0))).astype(np.float32)
    swapped = dict(gs)
    swapped["16x16/Conv0_up/weight"] = gs["16x16/Conv0_up/weight"][::-1, ::-1].copy()
    with torch.no_grad():
        ours = load_checkpoint(dst).G_ema(torch.from_numpy(latents)).double().numpy()
    assert np.abs(ours - g_paper(swapped, latents, 5, True)).max() > 1e-2


def _drop(name):
    return lambda g, d, gs: gs.pop(name)


def _add(name):
    return lambda g, d, gs: d.__setitem__(name, np.zeros(3, np.float32))


@pytest.mark.parametrize("tamper,g_kwargs,message", [
    (_drop("16x16/Conv1/bias"), None, r"Gs: TF variable\(s\) missing: 16x16/Conv1/bias"),
    (_drop("lod"), None, "Gs: TF variable.* missing: lod"),
    (_add("8x8/Blur/weight"), None, "D: .*no counterpart in our ProGAN: 8x8/Blur/weight"),
    (None, {"label_size": 10}, "conditional ProGAN pickle \\(label_size=10\\)"),
    (None, {"use_pixelnorm": False}, "use_pixelnorm=False is not supported"),
    (lambda g, d, gs: gs.__setitem__("4x4/Conv/bias", np.zeros(7, np.float32)), None,
     r"4x4/Conv/bias has shape \(7,\), expected \(32,\)"),
])
def test_mismatching_pickles_are_refused_naming_file_and_variable(tmp_path, tamper, g_kwargs,
                                                                  message):
    src, dst = tmp_path / "karras2018iclr-bad.pkl", tmp_path / "ours.pt"
    write_progan(src, tamper=tamper, g_kwargs=g_kwargs)
    with pytest.raises(FfhqToolsError, match=f"karras2018iclr-bad.pkl: .*{message}"):
        import_checkpoint(src, dst)
    assert not dst.exists()


def test_conditional_discriminator_is_refused(tmp_path):
    src = tmp_path / "cond.pkl"
    rng = np.random.RandomState(0)
    with fake_tfutil() as Network:
        nets = (network(Network, "G", "G_paper", generator_vars(rng, 3, False)),
                network(Network, "D", "D_paper", discriminator_vars(rng, 3, False, True,
                                                                      label_size=4)),
                network(Network, "Gs", "G_paper", generator_vars(rng, 3, False)))
        src.write_bytes(pickle.dumps(nets, protocol=4))
    with pytest.raises(FfhqToolsError, match="Dense1 has 5 outputs .*conditional"):
        import_checkpoint(src, tmp_path / "out.pt")


class SystemCall:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_unknown_global_inside_a_progan_pickle_is_refused(tmp_path):
    marker, src = tmp_path / "pwned", tmp_path / "evil.pkl"
    write_progan(src, tamper=lambda g, d, gs: gs.__setitem__("lod", SystemCall(marker)))
    with pytest.raises(UnsafePickleError, match="refusing to load global .*system"):
        import_checkpoint(src, tmp_path / "out.pt")
    assert not marker.exists() and not (tmp_path / "out.pt").exists()
    assert not (tmp_path / "progan-source-ran").exists()


def test_cli_import_checkpoint_verb(tmp_path, capsys, monkeypatch):
    from ffhq_tools.cli import main

    monkeypatch.chdir(tmp_path)  # the pickled build source must never run, here or anywhere
    src, dst = tmp_path / "karras2018iclr-tiny-16x16.pkl", tmp_path / "ours.pt"
    write_progan(src, log2=4)
    assert main(["import-checkpoint", str(src), str(dst)]) == 0
    out = capsys.readouterr().out
    assert "tf-progan" in out and "progan 16px" in out
    assert load_checkpoint(dst).G_ema.img_resolution == 16
    assert not (tmp_path / "progan-source-ran").exists()


@pytest.mark.slow
def test_full_size_celebahq_layout(tmp_path, monkeypatch):
    """The official CelebA-HQ layout (fmap_base 8192, fmap_max 512, 512-d latents, 1024 px,
    Theano-converted: Conv0 + upscale, mbstd group 16). Every TF variable lands in our
    networks, and the sizes are G_paper's 23,079,115 and D_paper's 23,087,249 parameters (the
    ProGAN paper's "23.1M" each; D_paper is also the StyleGAN v1 D)."""
    monkeypatch.setitem(globals(), "FMAP_BASE", 8192)
    monkeypatch.setitem(globals(), "FMAP_MAX", 512)
    src, dst = tmp_path / "karras2018iclr-celebahq-1024x1024.pkl", tmp_path / "ours.pt"
    g, d, _ = write_progan(src, log2=10, mbstd_group=16)
    result = import_checkpoint(src, dst)
    config = result.config
    assert (config.channel_base, config.channel_max, config.z_dim) == (16384, 512, 512)
    assert config.fused_scale_min_res > 1024 and config.mbstd_group == 16
    ckpt = load_checkpoint(dst)
    count = {net: sum(p.numel() for p in getattr(ckpt, net).parameters())
             for net in ("G", "D", "G_ema")}
    tf_count = {net: sum(np.size(v) for k, v in variables.items() if k != "lod")
                for net, variables in (("G", g), ("D", d))}
    assert count == {"G": 23_079_115, "D": 23_087_249, "G_ema": 23_079_115}
    assert tf_count == {"G": 23_079_115, "D": 23_087_249}
    with torch.no_grad():
        image = ckpt.G_ema(torch.randn(1, 512, generator=torch.Generator().manual_seed(0)))
    assert image.shape == (1, 3, 1024, 1024) and torch.isfinite(image).all()

"""The official tools' published conventions, written independently of our importers.

Starting from one set of NVIDIA TF StyleGAN2 variables (names and layouts of the TF code), this
module derives what the other tools would hold for the same network:
  - stylegan2-ada-pytorch, by the rules of its `legacy.py` converter (`convert_tf_generator` /
    `convert_tf_discriminator`): conv kernels [kh, kw, in, out] -> [out, in, kh, kw], and the
    up-sampling kernels `Conv0_up` / `Skip` spatially flipped first (`w[::-1, ::-1]`), because
    its up-sampling layers run conv_transpose2d on the kernel as stored;
  - rosinality/stylegan2-pytorch, by the rules of its `convert_weight.py`: the same flip
    (`flip=True` for `Conv0_up`), a leading batch axis on modulated kernels, [1] noise
    strengths, [1, C, 1, 1] toRGB biases;
and NumPy forward passes of one StyleGAN2 up-sampling modulated convolution as each code
defines it (TF: flip, transposed conv, FIR; ada: transposed conv of the stored kernel, FIR).
Nothing here calls our importers or layers, so tests comparing the two can fail.
"""

from __future__ import annotations

import collections
import pickle
import re

import numpy as np
import torch
from legacy_fixtures import MALICIOUS_SRC, _Persistent, fake_modules, tf_network


def t(v) -> torch.Tensor:
    return torch.from_numpy(np.array(v, dtype=np.float32, order="C"))


def oihw(v: np.ndarray) -> np.ndarray:
    return v.transpose(3, 2, 0, 1)


def flipped_oihw(v: np.ndarray) -> np.ndarray:
    return v[::-1, ::-1].transpose(3, 2, 0, 1)


def noise_index(res: int, layer: str) -> int:
    """TF `synthesis/noiseN` of a layer (ada legacy.py: log2(r) * 2 - 5 for conv0, - 4 conv1)."""
    log2 = res.bit_length() - 1
    return 0 if res == 4 else log2 * 2 - (5 if layer == "conv0" else 4)


# ------------------------------------------------------------------------------------------
# stylegan2-ada-pytorch (legacy.py's rules)
# ------------------------------------------------------------------------------------------
def ada_generator_state(tf: dict) -> dict[str, torch.Tensor]:
    out = {"mapping.w_avg": t(tf["dlatent_avg"]),
           "synthesis.b4.const": t(tf["synthesis/4x4/Const/const"][0])}
    for name, v in tf.items():
        if m := re.fullmatch(r"mapping/(Dense(\d+)|LabelEmbed)/(weight|bias)", name):
            layer = "embed" if m.group(1) == "LabelEmbed" else f"fc{m.group(2)}"
            out[f"mapping.{layer}.{m.group(3)}"] = t(v.T if m.group(3) == "weight" else v)
        elif m := re.fullmatch(r"synthesis/(\d+)x\d+/(Conv|Conv0_up|Conv1|ToRGB|Skip)/(\w+)",
                               name):
            res, scope, kind = int(m.group(1)), m.group(2), m.group(3)
            layer = {"Conv": "conv1", "Conv0_up": "conv0", "Conv1": "conv1", "ToRGB": "torgb",
                     "Skip": "skip"}[scope]
            prefix = f"synthesis.b{res}.{layer}"
            if kind == "weight":
                up = scope in ("Conv0_up", "Skip")
                out[f"{prefix}.weight"] = t(flipped_oihw(v) if up else oihw(v))
            elif kind == "mod_weight":
                out[f"{prefix}.affine.weight"] = t(v.T)
            elif kind == "mod_bias":
                out[f"{prefix}.affine.bias"] = t(v + 1)
            elif kind in ("bias", "noise_strength"):
                out[f"{prefix}.{kind}"] = t(v)
            if kind == "noise_strength":
                idx = noise_index(res, layer)
                out[f"{prefix}.noise_const"] = t(tf[f"synthesis/noise{idx}"][0, 0])
    return out


def ada_discriminator_state(tf: dict) -> dict[str, torch.Tensor]:
    out = {}
    for name, v in tf.items():
        if m := re.fullmatch(r"(\d+)x\d+/(FromRGB|Conv0|Conv1_down|Skip)/(weight|bias)", name):
            layer = {"FromRGB": "fromrgb", "Conv0": "conv0", "Conv1_down": "conv1",
                     "Skip": "skip"}[m.group(2)]
            out[f"b{m.group(1)}.{layer}.{m.group(3)}"] = t(oihw(v) if m.group(3) == "weight"
                                                          else v)
    for ours, theirs, dense in (("b4.conv", "4x4/Conv", False), ("b4.fc", "4x4/Dense0", True),
                                ("b4.out", "Output", True)):
        w = tf[f"{theirs}/weight"]
        out[f"{ours}.weight"] = t(w.T if dense else oihw(w))
        out[f"{ours}.bias"] = t(tf[f"{theirs}/bias"])
    return out


BUFFERS = ("w_avg", "noise_const")


def _nested(state: dict[str, torch.Tensor], module_paths) -> dict:
    tree: dict = {}
    for name in list(state) + [f"{path}." for path in module_paths]:
        *path, leaf = name.split(".")
        node = tree
        for part in path:
            node = node.setdefault(part, {})
        if leaf:
            node[leaf] = state[name]
    return tree


def _persistent(ns, node: dict, class_name: str, attributes: dict, path: str = ""):
    state = dict(attributes.get(path, {}))
    state["_parameters"] = collections.OrderedDict(
        (k, torch.nn.Parameter(v, requires_grad=False)) for k, v in node.items()
        if isinstance(v, torch.Tensor) and k not in BUFFERS)
    state["_buffers"] = collections.OrderedDict(
        (k, v) for k, v in node.items() if isinstance(v, torch.Tensor) and k in BUFFERS)
    state["_modules"] = collections.OrderedDict(
        (k, _persistent(ns, child, k, attributes, f"{path}.{k}".lstrip(".")))
        for k, child in node.items() if isinstance(child, dict))
    meta = {"type": "class", "version": 6, "module_src": MALICIOUS_SRC,
            "class_name": class_name, "state": state}
    return _Persistent(ns.reconstruct, meta)


def write_ada_pickle(path, G: dict, D: dict, G_ema: dict, g_attributes: dict,
                     d_attributes: dict) -> None:
    """A snapshot pickle as stylegan2-ada's training loop writes it, from flat state dicts;
    `*_attributes` maps a module path ("mapping.fc0") to its plain attributes."""
    with fake_modules() as ns:
        data = {"G": _persistent(ns, _nested(G, g_attributes), "Generator", g_attributes),
                "D": _persistent(ns, _nested(D, d_attributes), "Discriminator", d_attributes),
                "G_ema": _persistent(ns, _nested(G_ema, g_attributes), "Generator",
                                     g_attributes),
                "augment_pipe": None,
                "training_set_kwargs": ns.EasyDict(path="faces.zip")}
        path.write_bytes(pickle.dumps(data, protocol=4))


# ------------------------------------------------------------------------------------------
# TF pickles from TF variables, rosinality (convert_weight.py's rules)
# ------------------------------------------------------------------------------------------
def write_tf_pickle(path, G: dict, D: dict, Gs: dict, d_kwargs: dict) -> None:
    with fake_modules() as ns:
        def generator(tf, name):
            part = {c: {k[len(c) + 1:]: v for k, v in tf.items() if k.startswith(c + "/")}
                    for c in ("mapping", "synthesis")}
            comps = {"mapping": tf_network(ns, "G_mapping", part["mapping"]),
                     "synthesis": tf_network(ns, "G_synthesis", part["synthesis"],
                                             func="G_synthesis_stylegan2")}
            own = {"lod": np.float32(0), "dlatent_avg": tf["dlatent_avg"]}
            return tf_network(ns, name, own, comps, func="G_main")
        nets = (generator(G, "G"), tf_network(ns, "D", D, static_kwargs=d_kwargs),
                generator(Gs, "Gs"))
        path.write_bytes(pickle.dumps(nets, protocol=4))


def rosinality_generator_state(tf: dict) -> dict[str, torch.Tensor]:
    res = max(int(m.group(1)) for k in tf if (m := re.match(r"synthesis/(\d+)x", k)))
    out = {"input.input": t(tf["synthesis/4x4/Const/const"]),
           "noises.noise_0": t(tf["synthesis/noise0"])}
    for name, v in tf.items():
        if m := re.fullmatch(r"mapping/Dense(\d+)/(weight|bias)", name):
            out[f"style.{int(m.group(1)) + 1}.{m.group(2)}"] = t(v.T if m.group(2) == "weight"
                                                                else v)

    def modconv(scope: str, target: str, flip: bool = False) -> None:
        kernel = np.expand_dims(oihw(tf[f"{scope}/weight"]), 0)
        out[f"{target}.conv.weight"] = t(kernel[:, :, :, ::-1, ::-1] if flip else kernel)
        out[f"{target}.conv.modulation.weight"] = t(tf[f"{scope}/mod_weight"].T)
        out[f"{target}.conv.modulation.bias"] = t(tf[f"{scope}/mod_bias"] + 1)
        if f"{scope}/noise_strength" in tf:
            out[f"{target}.noise.weight"] = t(np.array([tf[f"{scope}/noise_strength"]]))
            out[f"{target}.activate.bias"] = t(tf[f"{scope}/bias"])
        else:
            out[f"{target}.bias"] = t(tf[f"{scope}/bias"].reshape(1, -1, 1, 1))

    modconv("synthesis/4x4/Conv", "conv1")
    modconv("synthesis/4x4/ToRGB", "to_rgb1")
    blur = torch.tensor([1.0, 3, 3, 1])
    blur = blur[:, None] * blur[None] / 16
    r, i = 8, 0
    while r <= res:
        modconv(f"synthesis/{r}x{r}/Conv0_up", f"convs.{2 * i}", flip=True)
        modconv(f"synthesis/{r}x{r}/Conv1", f"convs.{2 * i + 1}")
        modconv(f"synthesis/{r}x{r}/ToRGB", f"to_rgbs.{i}")
        out[f"convs.{2 * i}.conv.blur.kernel"] = blur * 4
        out[f"to_rgbs.{i}.upsample.kernel"] = blur * 4
        for j in (1, 2):
            out[f"noises.noise_{2 * i + j}"] = t(tf[f"synthesis/noise{2 * i + j}"])
        r, i = r * 2, i + 1
    return out


# ------------------------------------------------------------------------------------------
# One up-sampling modulated convolution, as TF and as stylegan2-ada define it (NumPy)
# ------------------------------------------------------------------------------------------
FIR = np.array([1.0, 3.0, 3.0, 1.0])


def fir_after_transpose(y: np.ndarray) -> np.ndarray:
    """upfirdn_2d(pad0=1, pad1=1, gain=4) of the [1,3,3,1] kernel: both codes' blur after the
    stride-2 transposed convolution of a 3x3 kernel ((H-1)*2+3 -> 2H)."""
    k = np.outer(FIR, FIR) / np.outer(FIR, FIR).sum() * 4
    yp = np.pad(y, [(0, 0), (0, 0), (1, 1), (1, 1)])
    h, w = yp.shape[2] - 3, yp.shape[3] - 3
    return sum(yp[:, :, a:a + h, b:b + w] * k[::-1, ::-1][a, b]
               for a in range(4) for b in range(4))


def scatter_transpose(x: np.ndarray, w_oikk: np.ndarray) -> np.ndarray:
    """Stride-2 transposed convolution: out[o, 2i + a, 2j + b] += x[c, i, j] w[o, c, a, b]."""
    n, _, h, wd = x.shape
    k = w_oikk.shape[-1]
    out = np.zeros((n, w_oikk.shape[0], 2 * (h - 1) + k, 2 * (wd - 1) + k))
    for a in range(k):
        for b in range(k):
            out[:, :, a:a + 2 * h:2, b:b + 2 * wd:2] += np.einsum("nchw,oc->nohw", x,
                                                                  w_oikk[:, :, a, b])
    return out


def modulated_kernels(w_oikk, affine_w, affine_b, dlatents):
    """Per-sample demodulated kernels [N, O, I, k, k] (equalised lr: 1/sqrt(fan_in))."""
    w_dim = affine_w.shape[1]
    styles = dlatents @ (affine_w / np.sqrt(w_dim)).T + affine_b
    fan_in = w_oikk.shape[1] * w_oikk.shape[2] * w_oikk.shape[3]
    ww = (w_oikk / np.sqrt(fan_in))[None] * styles[:, None, :, None, None]
    return ww / np.sqrt((ww ** 2).sum(axis=(2, 3, 4), keepdims=True) + 1e-8)


def _noise_bias_lrelu(y, noise, strength, bias):
    y = y + noise[None, None] * strength + bias.reshape(1, -1, 1, 1)
    return np.where(y >= 0, y, 0.2 * y) * np.sqrt(2)


def tf_upsampling_layer(x, tf: dict, scope: str, dlatents, noise):
    """TF StyleGAN2 `layer(up=True)`: modulated_conv2d_layer -> upsample_conv_2d, which
    flips the kernel (w[::-1, ::-1]) before conv2d_transpose, then blurs; noise, bias, lrelu."""
    w_oikk = oihw(tf[f"{scope}/weight"]).astype(np.float64)
    kernels = modulated_kernels(w_oikk, tf[f"{scope}/mod_weight"].T.astype(np.float64),
                                tf[f"{scope}/mod_bias"].astype(np.float64) + 1, dlatents)
    y = np.concatenate([scatter_transpose(x[i:i + 1], kernels[i][:, :, ::-1, ::-1])
                        for i in range(len(x))])
    return _noise_bias_lrelu(fir_after_transpose(y), noise, tf[f"{scope}/noise_strength"],
                             tf[f"{scope}/bias"])


def ada_upsampling_layer(x, state: dict, prefix: str, dlatents):
    """stylegan2-ada `SynthesisLayer(up=2)`: modulated_conv2d with flip_weight=False, i.e.
    conv_transpose2d of the kernel as stored, then upfirdn2d; noise_const, bias, lrelu."""
    get = {k[len(prefix) + 1:]: v.double().numpy() for k, v in state.items()
           if k.startswith(prefix + ".")}
    kernels = modulated_kernels(get["weight"], get["affine.weight"], get["affine.bias"],
                                dlatents)
    y = np.concatenate([scatter_transpose(x[i:i + 1], kernels[i]) for i in range(len(x))])
    return _noise_bias_lrelu(fir_after_transpose(y), get["noise_const"],
                             get["noise_strength"], get["bias"])

"""Build checkpoint files in the official formats from our networks, for the import tests.

Each builder writes the same pickled structure and names as the original tools (dnnlib Network
states with TF variable layouts, torch_utils.persistence objects, rosinality state dicts) with
arrays taken from one of our networks - none of the original code. The fake modules that make
pickle emit the right global names live only inside the `fake_modules` context.
"""

from __future__ import annotations

import collections
import contextlib
import pickle
import re
import sys
import types

import numpy as np
import torch

MALICIOUS_SRC = "import os\nopen('persistence-source-ran', 'w').write('x')\n"


@contextlib.contextmanager
def fake_modules():
    """Register dnnlib.tflib.network.Network, dnnlib.util.EasyDict and
    torch_utils.persistence._reconstruct_persistent_obj so pickle can name them."""
    mods = {name: types.ModuleType(name) for name in (
        "dnnlib", "dnnlib.tflib", "dnnlib.tflib.network", "dnnlib.util", "torch_utils",
        "torch_utils.persistence")}

    class Network:
        def __init__(self, state):
            self._state = state

        def __getstate__(self):
            return self._state

    class EasyDict(dict):
        pass

    def _reconstruct_persistent_obj(meta):
        raise AssertionError("never called while writing")

    Network.__module__, Network.__qualname__ = "dnnlib.tflib.network", "Network"
    EasyDict.__module__, EasyDict.__qualname__ = "dnnlib.util", "EasyDict"
    _reconstruct_persistent_obj.__module__ = "torch_utils.persistence"
    _reconstruct_persistent_obj.__qualname__ = "_reconstruct_persistent_obj"
    mods["dnnlib.tflib.network"].Network = Network
    mods["dnnlib.util"].EasyDict = EasyDict
    mods["torch_utils.persistence"]._reconstruct_persistent_obj = _reconstruct_persistent_obj
    saved = {k: sys.modules.get(k) for k in mods}
    sys.modules.update(mods)
    try:
        yield types.SimpleNamespace(Network=Network, EasyDict=EasyDict,
                                    reconstruct=_reconstruct_persistent_obj)
    finally:
        for k, v in saved.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v


def np32(t: torch.Tensor) -> np.ndarray:
    return t.detach().float().numpy().copy()


def tf_dense(t):
    return np32(t).T.copy()


def tf_conv(t):
    return np32(t).transpose(2, 3, 1, 0).copy()


def tf_network(ns, name, variables, components=None, static_kwargs=None, func=""):
    return ns.Network({"version": 4, "name": name, "static_kwargs": static_kwargs or {},
                       "components": components or {}, "build_module_src": MALICIOUS_SRC,
                       "build_func_name": func, "variables": list(variables.items())})


# ------------------------------------------------------------------------------------------
# TF StyleGAN2
# ------------------------------------------------------------------------------------------
SG2_TF_LAYER = {"conv0": "Conv0_up", "conv1": "Conv1", "torgb": "ToRGB", "skip": "Skip"}


def tf_sg2_generator_vars(G) -> tuple[dict, dict]:
    sd = G.state_dict()
    mapping, synthesis = {}, {}
    noise_index = 0
    for name, t in sd.items():
        if m := re.fullmatch(r"mapping\.fc(\d+)\.(weight|bias)", name):
            mapping[f"Dense{m.group(1)}/{m.group(2)}"] = tf_dense(t) if m.group(2) == "weight" \
                else np32(t)
    for res in G.synthesis.block_resolutions:
        if res == 4:
            synthesis["4x4/Const/const"] = np32(sd["synthesis.b4.const"])[None]
        for layer in ("conv0", "conv1", "torgb", "skip"):
            prefix = f"synthesis.b{res}.{layer}"
            if f"{prefix}.weight" not in sd:
                continue
            tf_layer = "Conv" if (res == 4 and layer == "conv1") else SG2_TF_LAYER[layer]
            scope = f"{res}x{res}/{tf_layer}"
            synthesis[f"{scope}/weight"] = tf_conv(sd[f"{prefix}.weight"])
            if layer == "skip":
                continue
            synthesis[f"{scope}/mod_weight"] = tf_dense(sd[f"{prefix}.affine.weight"])
            synthesis[f"{scope}/mod_bias"] = np32(sd[f"{prefix}.affine.bias"]) - 1
            synthesis[f"{scope}/bias"] = np32(sd[f"{prefix}.bias"])
            if layer != "torgb":
                synthesis[f"{scope}/noise_strength"] = np32(sd[f"{prefix}.noise_strength"])
                synthesis[f"noise{noise_index}"] = np32(sd[f"{prefix}.noise_const"])[None, None]
                noise_index += 1
    return mapping, synthesis


def tf_sg2_discriminator_vars(D) -> dict:
    sd = D.state_dict()
    out = {}
    for name, t in sd.items():
        if name.endswith("resample_filter"):
            continue
        if m := re.fullmatch(r"b(\d+)\.(fromrgb|conv0|conv1|skip)\.(weight|bias)", name):
            res, layer, kind = m.groups()
            if res == "4":
                continue
            tf_layer = {"fromrgb": "FromRGB", "conv0": "Conv0", "conv1": "Conv1_down",
                        "skip": "Skip"}[layer]
            out[f"{res}x{res}/{tf_layer}/{kind}"] = tf_conv(t) if kind == "weight" else np32(t)
    out["4x4/Conv/weight"], out["4x4/Conv/bias"] = tf_conv(sd["b4.conv.weight"]), \
        np32(sd["b4.conv.bias"])
    out["4x4/Dense0/weight"], out["4x4/Dense0/bias"] = tf_dense(sd["b4.fc.weight"]), \
        np32(sd["b4.fc.bias"])
    out["Output/weight"], out["Output/bias"] = tf_dense(sd["b4.out.weight"]), \
        np32(sd["b4.out.bias"])
    return out


def write_tf_stylegan2(path, G, D, G_ema):
    with fake_modules() as ns:
        def generator(net, name):
            mapping, synthesis = tf_sg2_generator_vars(net)
            comps = {"mapping": tf_network(ns, "G_mapping", mapping),
                     "synthesis": tf_network(ns, "G_synthesis", synthesis,
                                             func="G_synthesis_stylegan2")}
            own = {"lod": np.float32(getattr(net, "lod", 0.0)),
                   "dlatent_avg": np32(net.mapping.w_avg)}
            return tf_network(ns, name, own, comps, func="G_main")
        nets = (generator(G, "G"),
                tf_network(ns, "D", tf_sg2_discriminator_vars(D),
                           static_kwargs={"mbstd_group_size": D.b4.mbstd.group_size}),
                generator(G_ema, "Gs"))
        path.write_bytes(pickle.dumps(nets, protocol=4))


# ------------------------------------------------------------------------------------------
# TF StyleGAN v1
# ------------------------------------------------------------------------------------------
def tf_v1_generator_vars(G) -> tuple[dict, dict]:
    sd = G.state_dict()
    mapping = {}
    for name, t in sd.items():
        if m := re.fullmatch(r"mapping\.fc(\d+)\.(weight|bias)", name):
            mapping[f"Dense{m.group(1)}/{m.group(2)}"] = tf_dense(t) if m.group(2) == "weight" \
                else np32(t)
    synthesis = {"lod": np.float32(G.lod)}
    log2 = G.img_resolution.bit_length() - 1
    noise_index = 0
    for res in G.synthesis.block_resolutions:
        for layer in ("conv0", "conv1"):
            prefix = f"synthesis.b{res}.{layer}"
            tf_layer = {("conv0", True): "Const", ("conv1", True): "Conv",
                        ("conv0", False): "Conv0_up", ("conv1", False): "Conv1"}[
                (layer, res == 4)]
            scope = f"{res}x{res}/{tf_layer}"
            if f"{prefix}.const" in sd:
                synthesis[f"{scope}/const"] = np32(sd[f"{prefix}.const"])
            else:
                synthesis[f"{scope}/weight"] = tf_conv(sd[f"{prefix}.weight"])
            synthesis[f"{scope}/Noise/weight"] = np32(sd[f"{prefix}.noise_weight"])
            synthesis[f"{scope}/bias"] = np32(sd[f"{prefix}.bias"])
            synthesis[f"{scope}/StyleMod/weight"] = tf_dense(sd[f"{prefix}.style.weight"])
            synthesis[f"{scope}/StyleMod/bias"] = np32(sd[f"{prefix}.style.bias"])
            synthesis[f"noise{noise_index}"] = np32(sd[f"{prefix}.noise_const"])[None, None]
            noise_index += 1
        lod = log2 - (res.bit_length() - 1)
        synthesis[f"ToRGB_lod{lod}/weight"] = tf_conv(sd[f"synthesis.b{res}.torgb.weight"])
        synthesis[f"ToRGB_lod{lod}/bias"] = np32(sd[f"synthesis.b{res}.torgb.bias"])
    return mapping, synthesis


def tf_v1_discriminator_vars(D) -> dict:
    sd = D.state_dict()
    log2 = D.img_resolution.bit_length() - 1
    out = {"lod": np.float32(D.lod)}
    for name, t in sd.items():
        if name.endswith("blur_filter"):
            continue
        m = re.fullmatch(r"b(\d+)\.(\w+)\.(weight|bias)", name)
        res, layer, kind = int(m.group(1)), m.group(2), m.group(3)
        value = (tf_dense(t) if layer.startswith("dense") else tf_conv(t)) \
            if kind == "weight" else np32(t)
        if layer == "fromrgb":
            out[f"FromRGB_lod{log2 - (res.bit_length() - 1)}/{kind}"] = value
        else:
            tf_layer = {"conv0": "Conv0", "conv1": "Conv1_down", "conv": "Conv",
                        "dense0": "Dense0", "dense1": "Dense1"}[layer]
            out[f"{res}x{res}/{tf_layer}/{kind}"] = value
    return out


def write_tf_stylegan(path, G, D, G_ema):
    with fake_modules() as ns:
        def generator(net, name):
            mapping, synthesis = tf_v1_generator_vars(net)
            comps = {"mapping": tf_network(ns, "G_mapping", mapping),
                     "synthesis": tf_network(ns, "G_synthesis", synthesis, static_kwargs={
                         "blur_filter": [1, 2, 1],
                         "fused_scale": True if net.synthesis.b8.conv0.fused else "auto"})}
            own = {"lod": np.float32(getattr(net, "lod", 0.0)),
                   "dlatent_avg": np32(net.mapping.w_avg)}
            return tf_network(ns, name, own, comps, func="G_style",
                              static_kwargs={"truncation_psi": 0.7, "truncation_cutoff": 8})
        nets = (generator(G, "G"), tf_network(ns, "D", tf_v1_discriminator_vars(D)),
                generator(G_ema, "Gs"))
        path.write_bytes(pickle.dumps(nets, protocol=4))


# ------------------------------------------------------------------------------------------
# stylegan2-ada-pytorch
# ------------------------------------------------------------------------------------------
class _Persistent:
    def __init__(self, reconstruct, meta):
        self._reconstruct, self._meta = reconstruct, meta

    def __reduce__(self):
        return (self._reconstruct, (self._meta,))


def persistent_tree(ns, module, class_name):
    state = {k: v for k, v in vars(module).items()
             if isinstance(v, (int, float, str, bool, type(None)))}
    state["_parameters"] = collections.OrderedDict(module._parameters)
    if getattr(module, "up", 1) > 1:  # ada's up-sampling layers keep the kernel unflipped
        state["_parameters"]["weight"] = torch.nn.Parameter(module.weight.detach().flip([2, 3]))
    state["_buffers"] = collections.OrderedDict(
        (k, v) for k, v in module._buffers.items() if not k.endswith("resample_filter")
        or class_name != "ToRGBLayer")
    state["_modules"] = collections.OrderedDict(
        (k, persistent_tree(ns, child, type(child).__name__))
        for k, child in module._modules.items())
    meta = {"type": "class", "version": 6, "module_src": MALICIOUS_SRC,
            "class_name": f"training.networks.{class_name}", "state": state}
    return _Persistent(ns.reconstruct, meta)


def write_ada(path, G, D, G_ema):
    with fake_modules() as ns:
        data = {"G": persistent_tree(ns, G, "Generator"),
                "D": persistent_tree(ns, D, "Discriminator"),
                "G_ema": persistent_tree(ns, G_ema, "Generator"),
                "augment_pipe": None,
                "training_set_kwargs": ns.EasyDict(path="ffhq.zip", resolution=16)}
        path.write_bytes(pickle.dumps(data, protocol=4))


# ------------------------------------------------------------------------------------------
# rosinality
# ------------------------------------------------------------------------------------------
def rosinality_generator_state(G) -> dict:
    sd = G.state_dict()
    out = {}
    for name, t in sd.items():
        if m := re.fullmatch(r"mapping\.fc(\d+)\.(weight|bias)", name):
            out[f"style.{int(m.group(1)) + 1}.{m.group(2)}"] = t.clone()
    out["input.input"] = sd["synthesis.b4.const"][None].clone()
    blocks = G.synthesis.block_resolutions
    noise = 0
    for res in blocks:
        for layer in (("conv1",) if res == 4 else ("conv0", "conv1")) + ("torgb",):
            prefix = f"synthesis.b{res}.{layer}"
            if res == 4:
                ros = "conv1" if layer == "conv1" else "to_rgb1"
            elif layer == "torgb":
                ros = f"to_rgbs.{blocks.index(res) - 1}"
            else:
                ros = f"convs.{2 * (blocks.index(res) - 1) + (layer == 'conv1')}"
            weight = sd[f"{prefix}.weight"]
            if layer == "conv0":
                weight = weight.flip([2, 3])
            out[f"{ros}.conv.weight"] = weight[None].clone()
            out[f"{ros}.conv.modulation.weight"] = sd[f"{prefix}.affine.weight"].clone()
            out[f"{ros}.conv.modulation.bias"] = sd[f"{prefix}.affine.bias"].clone()
            if layer == "torgb":
                out[f"{ros}.bias"] = sd[f"{prefix}.bias"].reshape(1, -1, 1, 1).clone()
                if res > 4:
                    out[f"{ros}.upsample.kernel"] = torch.ones(4, 4) / 4
            else:
                out[f"{ros}.noise.weight"] = sd[f"{prefix}.noise_strength"].reshape(1).clone()
                out[f"{ros}.activate.bias"] = sd[f"{prefix}.bias"].clone()
                out[f"noises.noise_{noise}"] = sd[f"{prefix}.noise_const"][None, None].clone()
                noise += 1
                if layer == "conv0":
                    out[f"{ros}.conv.blur.kernel"] = torch.ones(4, 4) / 4
    return out


def rosinality_discriminator_state(D) -> dict:
    sd = D.state_dict()
    top = D.img_resolution
    out = {"convs.0.0.weight": sd[f"b{top}.fromrgb.weight"].clone(),
           "convs.0.1.bias": sd[f"b{top}.fromrgb.bias"].clone()}
    for i, res in enumerate(D.block_resolutions, start=1):
        for ours, ros in (("conv0.weight", "conv1.0.weight"), ("conv0.bias", "conv1.1.bias"),
                          ("conv1.weight", "conv2.1.weight"), ("conv1.bias", "conv2.2.bias"),
                          ("skip.weight", "skip.1.weight")):
            out[f"convs.{i}.{ros}"] = sd[f"b{res}.{ours}"].clone()
        out[f"convs.{i}.conv2.0.kernel"] = torch.ones(4, 4) / 16
    for ros, ours in (("final_conv.0.weight", "b4.conv.weight"), ("final_conv.1.bias",
                      "b4.conv.bias"), ("final_linear.0.weight", "b4.fc.weight"),
                      ("final_linear.0.bias", "b4.fc.bias"), ("final_linear.1.weight",
                      "b4.out.weight"), ("final_linear.1.bias", "b4.out.bias")):
        out[ros] = sd[ours].clone()
    return out


def write_rosinality(path, G, D, G_ema, with_latent_avg=True):
    import argparse

    ckpt = {"g": rosinality_generator_state(G), "d": rosinality_discriminator_state(D),
            "g_ema": rosinality_generator_state(G_ema), "g_optim": {}, "d_optim": {},
            "args": argparse.Namespace(size=G.img_resolution, channel_multiplier=2)}
    if with_latent_avg:
        ckpt["latent_avg"] = G_ema.mapping.w_avg.clone()
    torch.save(ckpt, path)

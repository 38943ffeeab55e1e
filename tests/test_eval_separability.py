"""Linear separability: conditional entropy, the SVM protocol, the classifier network and the
import of NVIDIA's TF classifier pickles through the restricted unpickler."""

from __future__ import annotations

import math
import pickle
import sys
import types

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from eval import separability as ls
from eval.features import attributes

# ---- conditional entropy ---------------------------------------------------------------------

def test_conditional_entropy_on_constructed_tables():
    assert ls.conditional_entropy([[50, 0], [0, 50]]) == 0.0             # X determines Y
    assert ls.conditional_entropy([[25, 25], [25, 25]]) == pytest.approx(1.0)  # independent
    # X uninformative, Y ~ (3/4, 1/4): H(Y|X) = H(Y).
    h = -(0.75 * math.log2(0.75) + 0.25 * math.log2(0.25))
    assert ls.conditional_entropy([[30, 10], [15, 5]]) == pytest.approx(h)
    # Row 0 pure, row 1 a fair coin, each row half the mass: H = 0.5 * 0 + 0.5 * 1.
    assert ls.conditional_entropy([[10, 0], [5, 5]]) == pytest.approx(0.5)
    assert ls.conditional_entropy([[0, 0], [0, 7]]) == 0.0
    with pytest.raises(ValueError):
        ls.conditional_entropy([[0, 0], [0, 0]])


def test_joint_table_rows_are_predictions():
    table = ls.joint_table(np.array([0, 0, 1, 1, 1]), np.array([0, 1, 1, 1, 0]))
    assert table.tolist() == [[1, 1], [1, 2]]


def test_most_confident_keeps_the_surest_half_in_stable_order():
    probs = np.array([[0.5, 0.5], [0.9, 0.1], [0.2, 0.8], [0.1, 0.9], [0.6, 0.4], [0.8, 0.2]])
    assert ls.most_confident(probs, 3).tolist() == [1, 3, 2]
    assert ls.most_confident(probs, 4).tolist() == [1, 3, 2, 5]


def _probs_from_labels(labels: np.ndarray, confidence: np.ndarray) -> np.ndarray:
    p0 = np.where(labels == 0, confidence, 1 - confidence)
    return np.stack([p0, 1 - p0], axis=1)


def test_linear_labels_give_score_one_and_random_labels_one_bit_each():
    rng = np.random.default_rng(0)
    n, dim, attributes_count = 2000, 16, 3
    latents = {"z": rng.normal(size=(n, dim)), "w": rng.normal(size=(n, dim))}
    linear, random = {}, {}
    for i in range(attributes_count):
        margin = latents["w"] @ rng.normal(size=dim)
        # A classifier is surest far from the boundary, so the kept half has a margin.
        confidence = 0.5 + 0.5 * np.tanh(np.abs(margin))
        linear[i] = _probs_from_labels((margin > 0).astype(int), confidence)
        random[i] = _probs_from_labels(rng.integers(0, 2, size=n), confidence)
    result = ls.separability_from_samples(latents, linear, num_keep=1000)
    assert result["scores"]["w"] == pytest.approx(1.0, abs=0.01)
    assert all(h["w"] < 0.005 for h in result["entropies"].values())
    assert all(h["z"] > 0.9 for h in result["entropies"].values())  # z is independent of them
    noise = ls.separability_from_samples(latents, random, num_keep=1000)
    for h in noise["entropies"].values():
        assert h["w"] == pytest.approx(1.0, abs=0.03)
    assert noise["scores"]["w"] == pytest.approx(2.0 ** sum(h["w"] for h in
                                                             noise["entropies"].values()))


def test_single_class_attribute_has_zero_entropy():
    latents = {"w": np.random.default_rng(1).normal(size=(40, 4))}
    probs = np.tile([[0.9, 0.1]], (40, 1))
    assert ls.separability_from_samples(latents, {0: probs}, 20)["entropies"][0]["w"] == 0.0


# ---- the classifier network --------------------------------------------------------------------

SQRT2 = math.sqrt(2)
SMALL = attributes.ClassifierConfig(resolution=16, fmap_base=64, fmap_max=32)


def test_fused_conv_downscale_equals_conv_then_box_filter():
    torch.manual_seed(0)
    conv = attributes.EqualizedConv(5, 7, 3, down=True)
    x = torch.randn(2, 5, 16, 16)
    plain = F.conv2d(x, conv.weight * conv.scale, padding=1)
    expected = F.avg_pool2d(plain, 2) + conv.bias.view(1, -1, 1, 1)
    torch.testing.assert_close(conv(x), expected, rtol=1e-5, atol=1e-5)


def test_minibatch_stddev_matches_its_definition():
    torch.manual_seed(1)
    x = torch.randn(8, 3, 4, 4)
    out = attributes.minibatch_stddev(x, 4)
    for i in range(8):
        group = x[[j for j in range(8) if j % 2 == i % 2]]  # groups interleave: j = g * 2 + m
        expected = group.std(dim=0, unbiased=False).mean()
        assert out[i, 3].allclose(torch.full((4, 4), expected.item()), atol=1e-4)


def test_classifier_shapes_and_probabilities():
    net = attributes.AttributeClassifier(SMALL)
    logits = net(torch.randn(4, 3, 16, 16))
    assert logits.shape == (4, 1)
    probs = attributes.class_probabilities(logits)
    torch.testing.assert_close(probs.sum(1), torch.ones(4))
    assert torch.equal(probs[:, 0] > 0.5, logits[:, 0] > 0)


# ---- NVIDIA TF pickle import -------------------------------------------------------------------

def tf_variables(config: attributes.ClassifierConfig, seed: int = 0) -> dict[str, np.ndarray]:
    """D_paper variables in TF layout (conv [k, k, in, out], dense [in, out]), incl. unused
    FromRGB_lod1.. and the lod scalar, as NVIDIA's pickles hold them."""
    rng = np.random.default_rng(seed)
    top = config.log2
    v = {"lod": np.float32(0.0)}

    def conv(name, k, cin, cout):
        v[f"{name}/weight"] = rng.normal(size=(k, k, cin, cout)).astype(np.float32)
        v[f"{name}/bias"] = rng.normal(size=cout).astype(np.float32) * 0.1

    for lod, res in enumerate(range(top, 1, -1)):
        conv(f"FromRGB_lod{lod}", 1, config.num_channels, config.nf(res - 1))
    for res in range(top, 2, -1):
        conv(f"{2**res}x{2**res}/Conv0", 3, config.nf(res - 1), config.nf(res - 1))
        conv(f"{2**res}x{2**res}/Conv1_down", 3, config.nf(res - 1), config.nf(res - 2))
    conv("4x4/Conv", 3, config.nf(1) + 1, config.nf(1))
    v["4x4/Dense0/weight"] = rng.normal(size=(config.nf(1) * 16, config.nf(0))).astype(np.float32)
    v["4x4/Dense0/bias"] = rng.normal(size=config.nf(0)).astype(np.float32) * 0.1
    v["4x4/Dense1/weight"] = rng.normal(size=(config.nf(0), 1)).astype(np.float32)
    v["4x4/Dense1/bias"] = np.zeros(1, np.float32)
    return v


def reference_forward(v: dict, images: torch.Tensor, config) -> torch.Tensor:
    """D_paper written from the TF code's definition: unfused conv + box downscale."""
    def t(name):
        return torch.from_numpy(v[name])

    def conv(x, name, gain=SQRT2):
        w = t(f"{name}/weight")
        w = w * gain / math.sqrt(np.prod(w.shape[:-1]))
        return F.conv2d(x, w.permute(3, 2, 0, 1), padding=w.shape[0] // 2) + \
            t(f"{name}/bias").view(1, -1, 1, 1)

    def dense(x, name, gain=SQRT2):
        w = t(f"{name}/weight")
        return x.flatten(1) @ (w * gain / math.sqrt(w.shape[0])) + t(f"{name}/bias")

    act = lambda x: F.leaky_relu(x, 0.2)  # noqa: E731
    x = act(conv(images, "FromRGB_lod0"))
    for res in range(config.log2, 2, -1):
        x = act(conv(x, f"{2**res}x{2**res}/Conv0"))
        x = act(F.avg_pool2d(conv(x, f"{2**res}x{2**res}/Conv1_down")
                             - t(f"{2**res}x{2**res}/Conv1_down/bias").view(1, -1, 1, 1), 2)
                + t(f"{2**res}x{2**res}/Conv1_down/bias").view(1, -1, 1, 1))
    g = min(4, x.shape[0])
    groups = x.reshape(g, -1, *x.shape[1:])
    std = groups.var(dim=0, unbiased=False).add(1e-8).sqrt().mean(dim=(1, 2, 3))
    x = torch.cat([x, std.repeat(g).view(-1, 1, 1, 1).expand(-1, 1, 4, 4)], dim=1)
    x = act(conv(x, "4x4/Conv"))
    x = act(dense(x, "4x4/Dense0"))
    return dense(x, "4x4/Dense1", gain=1.0)


def write_tf_pickle(path, variables: dict, static_kwargs: dict, monkeypatch) -> None:
    """Write a pickle shaped like NVIDIA's: a dnnlib.tflib.network.Network with __getstate__."""
    class Network:
        def __getstate__(self):
            return self.state

    Network.__module__, Network.__qualname__ = "dnnlib.tflib.network", "Network"
    for name in ("dnnlib", "dnnlib.tflib", "dnnlib.tflib.network"):
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    sys.modules["dnnlib.tflib.network"].Network = Network
    net = Network()
    net.state = {"version": 4, "name": "D_paper", "static_kwargs": static_kwargs,
                 "components": {}, "build_module_src": "raise SystemExit('never run')",
                 "build_func_name": "D_paper", "variables": list(variables.items())}
    with open(path, "wb") as f:
        pickle.dump(net, f, protocol=4)


def test_tf_pickle_import_matches_the_reference_definition(tmp_path, monkeypatch):
    config = SMALL
    variables = tf_variables(config)
    path = tmp_path / "celebahq-classifier-00-male.pkl"
    write_tf_pickle(path, variables, {"num_channels": 3, "resolution": 16, "fmap_base": 64,
                                      "fmap_max": 32, "label_size": 0}, monkeypatch)
    monkeypatch.undo()  # the loader must not need the fake module
    net = attributes.load_classifier(path)
    images = torch.rand(8, 3, 16, 16) * 2 - 1
    with torch.no_grad():
        torch.testing.assert_close(net(images), reference_forward(variables, images, config),
                                   rtol=1e-4, atol=1e-4)


def test_tf_pickle_with_code_is_refused(tmp_path):
    from ffhq_tools.errors import FfhqToolsError

    class Evil:
        def __reduce__(self):
            return (eval, ("1 + 1",))

    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps(Evil()))
    with pytest.raises(FfhqToolsError, match="builtins.eval"):
        attributes.load_classifier(path)


def test_tf_shape_mismatch_names_the_variable(tmp_path, monkeypatch):
    variables = tf_variables(SMALL)
    variables["4x4/Dense0/weight"] = variables["4x4/Dense0/weight"][:, :3]
    path = tmp_path / "bad.pkl"
    write_tf_pickle(path, variables, {"resolution": 16, "fmap_base": 64, "fmap_max": 32},
                    monkeypatch)
    with pytest.raises(attributes.ClassifierFileError, match="dense0.weight"):
        attributes.load_classifier(path)


def test_own_format_round_trip(tmp_path):
    net = attributes.AttributeClassifier(SMALL)
    path = tmp_path / "own.pt"
    attributes.save_classifier(path, net, "smiling", {"accuracy": 0.9})
    loaded = attributes.load_classifier(path)
    x = torch.randn(4, 3, 32, 32)
    prepared = attributes.prepare_images(x, 16)
    torch.testing.assert_close(prepared, F.avg_pool2d(x, 2))
    torch.testing.assert_close(loaded(prepared), net(prepared))

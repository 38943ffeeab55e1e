"""ArcFace IR-SE50 (models.irse, models.arcface): the reference layout, a NumPy forward of
single units, loading through the registry, the embedder and `--identity arcface` runs."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from ffhq_tools import weights
from ffhq_tools.errors import WeightsError
from ffhq_tools.hashing import sha256_file
from models.arcface import WEIGHTS_NAME, load_arcface
from models.destylize.identity import IdentityTerm
from models.irse import IRSE50, BottleneckIRSE, seeded_irse50

BN = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")


def reference_keys() -> dict[str, tuple]:
    """pSp's Backbone(112, 50, 'ir_se') state-dict listing, written out from its definition."""
    keys = {"input_layer.0.weight": (64, 3, 3, 3)}
    keys |= {f"input_layer.1.{n}": () if n == "num_batches_tracked" else (64,) for n in BN}
    keys["input_layer.2.weight"] = (64,)
    units = ([(64, 64, 2)] + [(64, 64, 1)] * 2 + [(64, 128, 2)] + [(128, 128, 1)] * 3
             + [(128, 256, 2)] + [(256, 256, 1)] * 13 + [(256, 512, 2)] + [(512, 512, 1)] * 2)
    for i, (cin, d, _) in enumerate(units):
        p = f"body.{i}."
        if cin != d:
            keys[p + "shortcut_layer.0.weight"] = (d, cin, 1, 1)
            keys |= {p + f"shortcut_layer.1.{n}": () if n == "num_batches_tracked" else (d,)
                     for n in BN}
        keys |= {p + f"res_layer.0.{n}": () if n == "num_batches_tracked" else (cin,) for n in BN}
        keys[p + "res_layer.1.weight"] = (d, cin, 3, 3)
        keys[p + "res_layer.2.weight"] = (d,)
        keys[p + "res_layer.3.weight"] = (d, d, 3, 3)
        keys |= {p + f"res_layer.4.{n}": () if n == "num_batches_tracked" else (d,) for n in BN}
        keys[p + "res_layer.5.fc1.weight"] = (d // 16, d, 1, 1)
        keys[p + "res_layer.5.fc2.weight"] = (d, d // 16, 1, 1)
    keys |= {f"output_layer.0.{n}": () if n == "num_batches_tracked" else (512,) for n in BN}
    keys["output_layer.3.weight"] = (512, 512 * 49)
    keys["output_layer.3.bias"] = (512,)
    keys |= {f"output_layer.4.{n}": () if n == "num_batches_tracked" else (512,) for n in BN}
    return keys


def test_irse50_matches_the_reference_layout_and_parameter_count():
    state = IRSE50().state_dict()
    expected = reference_keys()
    assert len(state) == len(expected) == 397  # 7 input + 3 x 21 + 21 x 15 units + 12 output
    assert {k: tuple(v.shape) for k, v in state.items()} == expected
    assert list(state)[:7] == list(expected)[:7]
    unit = [k[len("body.3."):] for k in state if k.startswith("body.3.")]
    assert unit[0] == "shortcut_layer.0.weight" and unit[-1] == "res_layer.5.fc2.weight"
    assert len(unit) == 21 and len([k for k in state if k.startswith("body.4.")]) == 15
    # by hand: convs, BN / PReLU vectors, SE fcs, the 25088 -> 512 linear
    assert sum(p.numel() for p in IRSE50().parameters()) == 43_797_696


def bn(x, prefix, state):
    g, b, m, v = (state[f"{prefix}.{n}"] for n in BN[:4])
    shape = (1, -1, 1, 1)
    return (x - m.reshape(shape)) / np.sqrt(v.reshape(shape) + 1e-5) * g.reshape(shape) \
        + b.reshape(shape)


def conv(x, w, stride, pad):
    x = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    k = w.shape[-1]
    rows = (x.shape[2] - k) // stride + 1
    cols = (x.shape[3] - k) // stride + 1
    out = np.zeros((x.shape[0], w.shape[0], rows, cols))
    for i in range(rows):
        for j in range(cols):
            patch = x[:, :, i * stride:i * stride + k, j * stride:j * stride + k]
            out[:, :, i, j] = np.einsum("nchw,ochw->no", patch, w)
    return out


def numpy_unit(x, state, cin, d, stride):
    if cin == d:
        shortcut = x[:, :, ::stride, ::stride]
    else:
        shortcut = bn(conv(x, state["shortcut_layer.0.weight"], stride, 0),
                      "shortcut_layer.1", state)
    r = conv(bn(x, "res_layer.0", state), state["res_layer.1.weight"], 1, 1)
    r = np.where(r > 0, r, r * state["res_layer.2.weight"].reshape(1, -1, 1, 1))
    r = bn(conv(r, state["res_layer.3.weight"], stride, 1), "res_layer.4", state)
    squeezed = r.mean(axis=(2, 3))
    hidden = np.maximum(squeezed @ state["res_layer.5.fc1.weight"][:, :, 0, 0].T, 0)
    gate = 1 / (1 + np.exp(-(hidden @ state["res_layer.5.fc2.weight"][:, :, 0, 0].T)))
    return shortcut + r * gate[:, :, None, None]


@pytest.mark.parametrize("cin, d, stride", [(16, 32, 2), (32, 32, 2), (32, 32, 1)])
def test_one_bottleneck_unit_against_numpy(cin, d, stride):
    torch.manual_seed(cin + d + stride)
    unit = BottleneckIRSE(cin, d, stride)
    with torch.no_grad():
        for name, t in unit.state_dict().items():
            if "running_var" in name:
                t.uniform_(0.5, 1.5)
            elif not name.endswith("num_batches_tracked"):
                t.normal_(0, 0.5)
    unit.eval()
    x = torch.randn(2, cin, 7, 7, dtype=torch.float64)
    ours = unit.double()(x).detach().numpy()
    state = {k: v.double().numpy() for k, v in unit.state_dict().items()}
    np.testing.assert_allclose(ours, numpy_unit(x.numpy(), state, cin, d, stride), rtol=1e-9,
                               atol=1e-9)


@pytest.fixture(scope="module")
def arcface_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("arcface") / "model_ir_se50-random.pth"
    torch.save(seeded_irse50(3).state_dict(), path)
    return path


def test_registry_file_loads_and_embeds_like_psp_idloss(arcface_file):
    embedder = load_arcface({WEIGHTS_NAME: arcface_file})
    assert embedder.provenance == {"name": WEIGHTS_NAME, "sha256": sha256_file(arcface_file),
                                   "source": "explicit"}
    reference = seeded_irse50(3).state_dict()
    loaded = embedder.backbone.state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in reference.items())
    gen = torch.Generator().manual_seed(0)
    images = torch.rand(2, 3, 256, 256, generator=gen) * 2 - 1
    with torch.no_grad():
        ours = embedder.embed(images)
        theirs = embedder.backbone(torch.nn.functional.adaptive_avg_pool2d(
            images[:, :, 35:223, 32:220], (112, 112)))
        large = embedder.embed(images.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3))
    torch.testing.assert_close(ours, theirs)
    torch.testing.assert_close(large, ours)  # pooled back to 256 first
    torch.testing.assert_close(ours.norm(dim=1), torch.ones(2))
    term = IdentityTerm(embedder, images[:1])
    assert float(term(images[:1])) == pytest.approx(0.0, abs=1e-6)
    assert float(term(images[1:2])) > 1e-3  # different faces are not identical


def test_embedding_passes_gradients_to_the_images_only(arcface_file):
    embedder = load_arcface({WEIGHTS_NAME: arcface_file})
    embedder.train()
    assert not embedder.training and not embedder.backbone.training
    images = (torch.rand(1, 3, 64, 64) * 2 - 1).requires_grad_(True)
    embedder.embed(images).sum().backward()
    assert images.grad.abs().sum() > 0
    assert all(p.grad is None for p in embedder.parameters())


def test_missing_and_wrong_files_give_clear_errors(tmp_path):
    with pytest.raises(WeightsError) as info:
        load_arcface()
    message = str(info.value)
    assert "arcface-ir-se50" in message and "pixel2style2pixel" in message
    assert "weights import arcface-ir-se50" in message
    with pytest.raises(WeightsError, match="no download URL"):
        weights.fetch(WEIGHTS_NAME)
    partial = seeded_irse50(0).state_dict()
    partial.pop("body.5.res_layer.5.fc1.weight")
    torch.save(partial, tmp_path / "partial.pth")
    with pytest.raises(WeightsError, match="partial.pth: not an IR-SE50"):
        load_arcface({WEIGHTS_NAME: tmp_path / "partial.pth"})
    torch.save({"state_dict": {}}, tmp_path / "other.pth")
    with pytest.raises(WeightsError, match="other.pth: not an IR-SE50 state dict"):
        load_arcface({WEIGHTS_NAME: tmp_path / "other.pth"})


def test_destylize_with_arcface_records_its_hash(tmp_path, arcface_file, astronaut, capsys):
    from PIL import Image
    from project_helpers import save_tiny_checkpoint, tiny_generator
    from vgg_helpers import write_random_vgg16

    from ffhq_tools.cli import main

    paths = {}
    for name, seed in (("G", 0), ("G_prime", 5)):
        G, D = tiny_generator(seed, resolution=32)
        paths[name] = str(save_tiny_checkpoint(tmp_path / f"{name}.pt", G, D, resolution=32))
    write_random_vgg16(tmp_path / "vgg16.pth")
    style = tmp_path / "style"
    style.mkdir()
    Image.fromarray(np.ascontiguousarray(astronaut[:256, 120:376])).save(style / "a.png")
    argv = ["destylize", str(style), "--original", paths["G"], "--finetuned",
            paths["G_prime"], "--out", str(tmp_path / "out"), "--identity", "arcface",
            "--steps", "2", "--project-steps", "2", "--weights",
            f"vgg16={tmp_path / 'vgg16.pth'}", "-q", "--threads", "1"]
    code = main(argv)
    assert code == 2 and "arcface-ir-se50" in capsys.readouterr().err  # not in the cache
    assert main(argv + ["--weights", f"{WEIGHTS_NAME}={arcface_file}"]) == 0
    options = json.loads((tmp_path / "out" / "options.json").read_text())
    assert options["identity"] == "arcface" and options["protocol"]["id_weight"] == 0.1
    assert options["weights"][WEIGHTS_NAME] == sha256_file(arcface_file)


def test_dualstylegan_finetune_with_arcface(tmp_path, arcface_file, astronaut, capsys):
    from dualstylegan_train_fixtures import (
        write_dualstylegan,
        write_style_set,
        write_torchvision_vgg19,
    )

    from ffhq_tools.cli import main

    dual = write_dualstylegan(tmp_path / "dual.pt")
    h5, ex, ins = write_style_set(tmp_path, astronaut, count=8)
    write_torchvision_vgg19(tmp_path / "vgg19.pth")
    argv = ["dualstylegan-train", "finetune", "--base", str(dual), "--data", str(h5),
            "--exstyle", str(ex), "--instyle", str(ins), "--outdir", str(tmp_path / "runs"),
            "--identity", "arcface", "--iters", "2", "--batch", "2", "--loss-res", "64",
            "--snap", "2", "--snap-begin", "2", "--log-every", "1", "--threads", "1",
            "--no-progress",
            "--device", "cpu", "--weights", f"vgg19={tmp_path / 'vgg19.pth'}"]
    assert main(argv) == 2 and "arcface-ir-se50" in capsys.readouterr().err
    assert main(argv + ["--weights", f"{WEIGHTS_NAME}={arcface_file}"]) == 0
    run, = (tmp_path / "runs").glob("00000-*")
    frozen = json.loads((run / "options.json").read_text())
    assert frozen["used"]["identity"] == {"kind": WEIGHTS_NAME, "name": WEIGHTS_NAME,
                                          "sha256": sha256_file(arcface_file),
                                          "source": "explicit"}
    assert frozen["options"]["identity_weights"] == str(arcface_file)
    rows = [json.loads(line) for line in (run / "stats.jsonl").read_text().splitlines()]
    assert all(r["Loss/G/identity"] > 0 for r in rows)

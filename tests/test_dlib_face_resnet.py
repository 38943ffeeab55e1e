"""dlib's face ResNet in torch: the reader takes the shipped model byte for byte, the forward
equals dlib's own `compute_face_descriptor` on the same chips, and hostile files are refused."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest
import torch
from PIL import Image

from eval.face_space import DlibFaceDescriptor
from ffhq_tools import weights
from ffhq_tools.errors import WeightsError
from models.destylize.identity import IdentityTerm, load_identity
from models.dlib_dnn_reader import read_dlib_net
from models.dlib_face_resnet import DlibFaceEmbedder, read_face_resnet


@pytest.fixture(scope="module")
def model_path():
    return weights.resolve("dlib-face-resnet").path


@pytest.fixture(scope="module")
def network(model_path):
    return read_face_resnet(model_path)


def _chips(astronaut) -> list[np.ndarray]:
    face = Image.fromarray(astronaut).crop((150, 20, 330, 200)).resize((150, 150))
    noise = np.random.default_rng(0).integers(0, 256, (150, 150, 3), dtype=np.uint8)
    face = np.asarray(face)
    return [face, np.ascontiguousarray(face[:, ::-1]), noise]


def _aligned_like(astronaut) -> np.ndarray:
    face = np.asarray(Image.fromarray(astronaut).crop((120, 0, 360, 240)).resize((256, 256)))
    return np.stack([face, face[:, ::-1]]).transpose(0, 3, 1, 2).copy()


def test_reader_takes_the_shipped_model_to_its_last_byte(model_path):
    net = read_dlib_net(model_path)
    kinds = Counter(layer.kind for layer in net.layers)
    assert kinds == {"con_4": 29, "affine_": 29, "relu_": 29, "add_prev_": 14,
                     "avg_pool_2": 5, "max_pool_2": 1, "fc_2": 1}
    assert net.loss.fields["dist_thresh"] == pytest.approx(0.6)
    assert net.input.fields["size"] == (150, 150)
    assert net.input.fields["mean"] == pytest.approx((122.782, 117.001, 104.298), abs=1e-4)
    first, last = net.layers[0].fields, net.layers[-1].fields
    assert first["weight"].shape == (32, 3, 7, 7) and first["padding"] == (0, 0)
    assert (last["num_inputs"], last["num_outputs"]) == (256, 128)


def test_forward_equals_dlibs_own_descriptors(network, model_path, astronaut):
    import dlib

    chips = _chips(astronaut)
    model = dlib.face_recognition_model_v1(str(model_path))
    reference = np.array([np.asarray(d) for d in model.compute_face_descriptor(chips)])
    with torch.no_grad():
        ours = network(torch.from_numpy(np.stack(chips)).permute(0, 3, 1, 2).float()).numpy()
    assert np.linalg.norm(reference, axis=1).min() > 0.5
    np.testing.assert_allclose(ours, reference, atol=1e-4 * np.abs(reference).max())


def test_embedder_route_agrees_with_the_pil_chip_route(network, model_path, astronaut):
    images = _aligned_like(astronaut)
    reference = DlibFaceDescriptor(model_path)(images)
    ours = DlibFaceEmbedder(network, {}).descriptors(
        torch.from_numpy(images).float() / 127.5 - 1).numpy()
    gaps = np.linalg.norm(ours - reference, axis=1)
    assert gaps.max() < 0.08  # resize filters differ; dlib's same-person threshold is 0.6
    assert np.linalg.norm(reference[0] - reference[1]) > 4 * gaps.max()


def test_identity_term_is_differentiable_in_the_images_only(astronaut):
    embedder = load_identity("dlib")
    _recorded_dlib(embedder.describe())
    assert not any(p.requires_grad for p in embedder.parameters())
    images = torch.from_numpy(_aligned_like(astronaut)).float() / 127.5 - 1
    term = IdentityTerm(embedder, images[:1])
    assert float(term(images[:1])) == pytest.approx(0.0, abs=1e-5)
    moving = images[1:].clone().requires_grad_(True)
    loss = term(moving)
    loss.backward()
    assert float(loss.detach()) > 0.01
    assert torch.isfinite(moving.grad).all() and moving.grad.abs().sum() > 0


def _with_bytes(tmp_path, data: bytes):
    path = tmp_path / "model.dat"
    path.write_bytes(data)
    return path


def _first_params_dims_at(data: bytes) -> int:
    """Offset of the first conv's params tensor sizes (after its version, 2)."""
    start = data.index(b"\x01\x05con_4") + 7
    assert data[start:start + 2] == b"\x01\x02"
    return start + 2


@pytest.mark.parametrize("case", ["truncated", "trailing", "huge-tensor", "other-network",
                                  "not-dlib", "empty"])
def test_hostile_or_foreign_files_are_refused_by_name(tmp_path, model_path, case):
    data = model_path.read_bytes()
    if case == "truncated":
        path = _with_bytes(tmp_path, data[: len(data) // 2])
    elif case == "trailing":
        path = _with_bytes(tmp_path, data + b"\x00")
    elif case == "huge-tensor":
        at = _first_params_dims_at(data)
        size = data[at] & 0x0F
        path = _with_bytes(tmp_path, data[:at] + b"\x06" + (2 ** 40).to_bytes(6, "little")
                           + data[at + 1 + size:])
    elif case == "other-network":
        path = weights.resolve("dlib-mmod").path
    elif case == "not-dlib":
        path = _with_bytes(tmp_path, b"PK\x03\x04" + bytes(range(256)) * 4)
    else:
        path = _with_bytes(tmp_path, b"")
    with pytest.raises(WeightsError, match="not a dlib network file|dlib's face ResNet") as info:
        read_face_resnet(path)
    assert str(path) in str(info.value)


def _recorded_dlib(entry: dict) -> None:
    assert entry["kind"] == "dlib-face-resnet"
    assert entry["sha256"] == weights.resolve("dlib-face-resnet").sha256


def test_destylize_with_the_dlib_identity_runs_offline(tmp_path, astronaut):
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
    out = tmp_path / "out"
    assert main(["destylize", str(style), "--original", paths["G"], "--finetuned",
                 paths["G_prime"], "--out", str(out), "--identity", "dlib", "--steps", "2",
                 "--project-steps", "2", "--weights", f"vgg16={tmp_path / 'vgg16.pth'}",
                 "-q", "--threads", "1"]) == 0
    options = json.loads((out / "options.json").read_text())
    assert options["identity"] == "dlib" and options["protocol"]["id_weight"] == 0.1
    assert options["weights"]["dlib-face-resnet"] == weights.resolve("dlib-face-resnet").sha256


def test_dualstylegan_finetune_with_the_dlib_identity(tmp_path, astronaut):
    from dualstylegan_train_fixtures import (
        write_dualstylegan,
        write_style_set,
        write_torchvision_vgg19,
    )

    from ffhq_tools.cli import main

    dual = write_dualstylegan(tmp_path / "dual.pt")
    h5, ex, ins = write_style_set(tmp_path, astronaut, count=8)
    write_torchvision_vgg19(tmp_path / "vgg19.pth")
    assert main(["dualstylegan-train", "finetune", "--base", str(dual), "--data", str(h5),
                 "--exstyle", str(ex), "--instyle", str(ins), "--outdir",
                 str(tmp_path / "runs"), "--identity", "dlib", "--iters", "2", "--batch", "2",
                 "--loss-res", "64", "--snap", "2", "--snap-begin", "2", "--log-every", "1",
                 "--threads", "1", "--no-progress", "--device", "cpu",
                 "--weights", f"vgg19={tmp_path / 'vgg19.pth'}"]) == 0
    run, = (tmp_path / "runs").glob("00000-*")
    frozen = json.loads((run / "options.json").read_text())
    _recorded_dlib(frozen["used"]["identity"])
    assert frozen["options"]["identity"] == "dlib"
    rows = [json.loads(line) for line in (run / "stats.jsonl").read_text().splitlines()]
    assert all(r["Loss/G/identity"] > 0 for r in rows)

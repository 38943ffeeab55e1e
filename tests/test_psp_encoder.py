"""pSp's GradualStyleEncoder (models.psp_encoder): the reference layout, output shapes, an
official-layout checkpoint through the real loader, and `stylize --encoder` meeting
`stylize --instyle` with the code the encoder gave."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from models.dualstylegan_codes import CodeSet, CodeSpace, write_codes
from models.psp_encoder import (
    EncoderError,
    GradualStyleEncoder,
    PSPEncoder,
    load_psp_encoder,
    n_styles_for,
)

FILE_OUTPUT_SIZE = 32  # the test checkpoint's opts: 8 styles, for a 32 px model


def reference_style_keys(n_styles: int) -> dict[str, tuple]:
    """styles.* and latlayer* of pSp's GradualStyleEncoder, written out from its definition:
    block i has log2(spatial) convs (16 px for i < 3, 32 for i < 7, else 64) at Sequential
    indices 0, 2, 4, ... (LeakyReLUs between) and an EqualLinear."""
    keys = {}
    for i in range(n_styles):
        convs = 4 if i < 3 else 5 if i < 7 else 6
        for j in range(convs):
            keys[f"styles.{i}.convs.{2 * j}.weight"] = (512, 512, 3, 3)
            keys[f"styles.{i}.convs.{2 * j}.bias"] = (512,)
        keys[f"styles.{i}.linear.weight"] = (512, 512)
        keys[f"styles.{i}.linear.bias"] = (512,)
    keys |= {"latlayer1.weight": (512, 256, 1, 1), "latlayer1.bias": (512,),
             "latlayer2.weight": (512, 128, 1, 1), "latlayer2.bias": (512,)}
    return keys


def meta_encoder(n_styles: int) -> GradualStyleEncoder:
    with torch.device("meta"):
        return GradualStyleEncoder(n_styles).eval()


def test_layout_matches_the_reference_listing():
    from test_arcface import reference_keys

    state = meta_encoder(18).state_dict()
    trunk = {k: v for k, v in reference_keys().items() if not k.startswith("output_layer")}
    expected = trunk | reference_style_keys(18)
    assert len(state) == len(expected) == 385 + 3 * 10 + 4 * 12 + 11 * 14 + 4 == 621
    assert {k: tuple(v.shape) for k, v in state.items()} == expected
    params = sum(int(np.prod(s)) for k, s in expected.items()
                 if not k.endswith(("running_mean", "running_var", "num_batches_tracked")))
    assert sum(p.numel() for p in meta_encoder(18).parameters()) == params == 267_136_704


@pytest.mark.parametrize("size, n_styles", [(1024, 18), (256, 14), (64, 10)])
def test_output_shapes(size, n_styles):
    assert n_styles_for(size) == n_styles
    encoder = meta_encoder(n_styles_for(size))
    assert encoder(torch.empty(2, 3, 256, 256, device="meta")).shape == (2, n_styles, 512)


def write_official_checkpoint(path, seed: int = 0, latent_avg: bool = True):
    """torch.save of pSp's layout: state_dict with encoder.* and decoder.*, latent_avg, opts."""
    torch.manual_seed(seed)
    encoder = GradualStyleEncoder(n_styles_for(FILE_OUTPUT_SIZE)).eval()
    state = {f"encoder.{k}": v for k, v in encoder.state_dict().items()}
    state["decoder.style.1.weight"] = torch.randn(512, 512)  # the decoder is not used
    avg = torch.randn(encoder.n_styles, 512) * 0.5
    opts = {"encoder_type": "GradualStyleEncoder", "input_nc": 3,
            "output_size": FILE_OUTPUT_SIZE, "start_from_latent_avg": latent_avg,
            "learn_in_w": False, "checkpoint_path": None, "lpips_lambda": 0.8}
    torch.save({"state_dict": state, "latent_avg": avg, "opts": opts}, path)
    return encoder, avg


@pytest.fixture(scope="module")
def official(tmp_path_factory):
    path = tmp_path_factory.mktemp("psp") / "encoder.pt"
    encoder, avg = write_official_checkpoint(path)
    return path, encoder, avg


def test_official_checkpoint_loads_and_encodes_as_psp(official):
    from ffhq_tools.hashing import sha256_file

    path, reference, avg = official
    loaded = load_psp_encoder(path)
    assert isinstance(loaded, PSPEncoder) and loaded.info.space is CodeSpace.Z_PLUS
    assert loaded.describe()["sha256"] == sha256_file(path)
    assert loaded.describe()["start_from_latent_avg"] is True
    ours = loaded.encoder.state_dict()
    assert all(torch.equal(ours[k], v) for k, v in reference.state_dict().items())
    images = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(1)) * 2 - 1
    with torch.no_grad():
        codes = loaded.encode(images)
        expected = loaded.encoder(torch.nn.functional.adaptive_avg_pool2d(images, 256)) + avg
    torch.testing.assert_close(codes, expected)


def test_bad_checkpoints_are_refused_by_name(tmp_path):
    opts = {"encoder_type": "GradualStyleEncoder", "output_size": FILE_OUTPUT_SIZE,
            "start_from_latent_avg": False}
    torch.save({"g_ema": {}}, tmp_path / "generator.pt")
    with pytest.raises(EncoderError, match="generator.pt: no 'state_dict'"):
        load_psp_encoder(tmp_path / "generator.pt")
    partial = {f"encoder.{k}": v for k, v in meta_encoder(8).state_dict().items()
               if k.startswith("input_layer")}
    torch.save({"state_dict": {k: torch.zeros(v.shape) for k, v in partial.items()},
                "opts": opts}, tmp_path / "partial.pt")
    with pytest.raises(EncoderError, match="partial.pt: its encoder.* tensors are not"):
        load_psp_encoder(tmp_path / "partial.pt")
    torch.save({"state_dict": {}, "opts": {**opts, "encoder_type": "BackboneEncoderUsingLast"
                                           "LayerIntoW"}}, tmp_path / "w.pt")
    with pytest.raises(EncoderError, match="w.pt: encoder_type 'BackboneEncoder"):
        load_psp_encoder(tmp_path / "w.pt")
    torch.save({"state_dict": {}, "opts": {**opts, "start_from_latent_avg": True}},
               tmp_path / "noavg.pt")
    with pytest.raises(EncoderError, match="noavg.pt: opts start_from_latent_avg but no"):
        load_psp_encoder(tmp_path / "noavg.pt")
    (tmp_path / "code.pt").write_bytes(b"\x80\x02cos\nsystem\n.")
    with pytest.raises(EncoderError, match="code.pt: not a weights-only torch file"):
        load_psp_encoder(tmp_path / "code.pt")


def test_stylize_encoder_meets_stylize_instyle(tmp_path, official, capsys):
    from dualstylegan_fixtures import SMALL, write_code_dict
    from skimage import data

    from ffhq_tools.cli import main
    from models.checkpoint import save_checkpoint
    from models.configs import build_networks

    model = SMALL.replace(z_dim=512, w_dim=512)
    torch.manual_seed(0)
    net = build_networks(model, FILE_OUTPUT_SIZE)[0].eval()
    save_checkpoint(tmp_path / "dsg.pt", config={"model": model.to_dict(),
                                                 "resolution": FILE_OUTPUT_SIZE},
                    G=net, G_ema=net)
    write_code_dict(tmp_path / "exstyle_code.npy", ["s0.jpg"], net.num_ws, 512, seed=1)
    Image.fromarray(data.astronaut()[:256, 120:376]).save(tmp_path / "face.png")
    common = ["stylize", str(tmp_path / "face.png"), "--model", str(tmp_path / "dsg.pt"),
              "--exstyle", str(tmp_path / "exstyle_code.npy"), "--style-id", "0",
              "--aligned", "--device", "cpu", "-q", "--sweep", "0,1"]
    assert main(common + ["--out", str(tmp_path / "enc"), "--encoder", str(official[0])]) == 0
    record = json.loads((tmp_path / "enc" / "stylize.jsonl").read_text())
    assert record["instyle"]["source"] == "encoder" and record["instyle"]["space"] == "z+"
    assert record["instyle"]["encoder"]["path"] == str(official[0])
    code = np.asarray(record["instyle"]["code"], dtype=np.float32)
    assert code.shape == (1, 8, 512)
    write_codes(tmp_path / "code.npz", CodeSet(["face.png"], code, "test", CodeSpace.Z_PLUS))
    assert main(common + ["--out", str(tmp_path / "ins"), "--instyle",
                          str(tmp_path / "code.npz")]) == 0
    for name in ("face-style0.png", "face-style0-sweep.png"):
        a = np.asarray(Image.open(tmp_path / "enc" / name))
        b = np.asarray(Image.open(tmp_path / "ins" / name))
        np.testing.assert_array_equal(a, b)
    capsys.readouterr()
    assert main(common + ["--out", str(tmp_path / "x"), "--encoder", str(official[0]),
                          "--instyle", str(tmp_path / "code.npz")]) == 2
    assert "give one" in capsys.readouterr().err


def test_pretraining_takes_its_extrinsic_codes_from_the_encoder(tmp_path, official, capsys):
    from dualstylegan_train_fixtures import BASE, small_vgg
    from train_standins import write_shapes_h5

    from ffhq_tools.cli import main
    from models.checkpoint import save_checkpoint
    from models.configs import build_networks
    from models.dualstylegan import DualStyleGAN
    from models.dualstylegan_sources import EncoderCodeSource
    from models.dualstylegan_train import train_dualstylegan
    from models.dualstylegan_train_options import DualStyleGANTrainOptions

    model = BASE.replace(z_dim=512, w_dim=512)
    torch.manual_seed(0)
    G, D = build_networks(model, FILE_OUTPUT_SIZE)
    base = save_checkpoint(tmp_path / "base.pt", config={
        "model": model.to_dict(), "resolution": FILE_OUTPUT_SIZE, "channel_max": 32},
        G=G, D=D, G_ema=G)
    faces = write_shapes_h5(tmp_path / "faces.h5", count=8, resolution=FILE_OUTPUT_SIZE)
    source = EncoderCodeSource(load_psp_encoder(official[0]), DualStyleGAN(G))
    images = torch.rand(2, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        expected = source.net.map_z(source.encoder.encode(images))
        torch.testing.assert_close(source.encode(images), expected)
    options = DualStyleGANTrainOptions(
        "pretrain", base=str(base), data=str(faces), outdir=str(tmp_path / "runs"), iters=2,
        batch=2, code_source="encoder", encoder=str(official[0]),
        loss_resolution=FILE_OUTPUT_SIZE, log_every=1, device="cpu", progress=False,
        threads=1)
    run = train_dualstylegan(options, vgg=small_vgg())
    used = json.loads((run / "options.json").read_text())["used"]
    assert used["extrinsic_code_source"]["kind"] == "psp-encoder"
    assert used["extrinsic_code_source"]["sha256"] == source.encoder.info.sha256
    assert main(["dualstylegan-train", "pretrain", "--base", str(base), "--data", str(faces),
                 "--code-source", "encoder", "--dry-run"]) == 2
    assert "--code-source encoder needs --encoder" in capsys.readouterr().err


def test_pyramid_routes_coarse_middle_fine_as_the_reference():
    encoder = meta_encoder(18)
    seen = {}
    for i, block in enumerate(encoder.styles):
        block.register_forward_pre_hook(
            lambda module, args, i=i: seen.__setitem__(i, tuple(args[0].shape[1:])))
    encoder(torch.empty(1, 3, 256, 256, device="meta"))
    assert [seen[i] for i in range(18)] == \
        [(512, 16, 16)] * 3 + [(512, 32, 32)] * 4 + [(512, 64, 64)] * 11


def test_upsample_add_is_bilinear_with_aligned_corners():
    from models.psp_encoder import _upsample_add

    top = torch.randn(1, 2, 3, 3, dtype=torch.float64)
    lateral = torch.randn(1, 2, 5, 5, dtype=torch.float64)
    t = top.numpy()[0]
    expected = np.empty((2, 5, 5))
    for y in range(5):
        for x in range(5):
            sy, sx = y * 2 / 4, x * 2 / 4  # align_corners: output corners on input corners
            y0, x0 = min(int(sy), 1), min(int(sx), 1)
            fy, fx = sy - y0, sx - x0
            expected[:, y, x] = (t[:, y0, x0] * (1 - fy) * (1 - fx) + t[:, y0, x0 + 1]
                                 * (1 - fy) * fx + t[:, y0 + 1, x0] * fy * (1 - fx)
                                 + t[:, y0 + 1, x0 + 1] * fy * fx)
    np.testing.assert_allclose(_upsample_add(top, lateral).numpy()[0],
                               expected + lateral.numpy()[0], rtol=1e-12, atol=1e-12)

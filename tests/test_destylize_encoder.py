"""`destylize --encoder`: a pSp checkpoint (the layout test_psp_encoder writes) gives z+_e (the
exemplar's code) and the re-encoding of the destylized face instead of the two projections;
the codes are checked against the encoder run here, on inputs rebuilt from the outputs."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from project_helpers import FeatureDistance, save_tiny_checkpoint, tiny_generator
from test_psp_encoder import write_official_checkpoint

from ffhq_tools.cli import main
from models.destylize import DestylizeError, DestylizeProtocol, Destylizer, destylize_set
from models.dualstylegan_codes import CodeSet, CodeSpace, read_codes, write_codes
from models.generate import to_uint8
from models.project.targets import collect_targets
from models.psp_encoder import EncoderError, load_psp_encoder

REPO = Path(__file__).resolve().parents[1]
RES = 32  # num_ws 8: the test checkpoint's n_styles
COLOUR_FROM = 6  # layers 6, 7 are copied (8.. at 64 px and up, none at 32)
PROTOCOL = DestylizeProtocol(steps=3, project_steps=3, id_weight=0.0, colour_from=COLOUR_FROM)

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def encoder_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("psp") / "encoder.pt"
    write_official_checkpoint(path)
    return path


@pytest.fixture(scope="module")
def encoder(encoder_file):
    return load_psp_encoder(encoder_file)


@pytest.fixture(scope="module")
def pair():
    """(G, G') with 512-d latents; G's toRGB scaled up so the destylized face leaves [-1, 1]
    (the clamp before the re-encoding then matters)."""
    G, _ = tiny_generator(0, noise_strength=0.0, resolution=RES, latent_dim=512)
    G_prime, _ = tiny_generator(5, noise_strength=0.0, resolution=RES, latent_dim=512)
    with torch.no_grad():
        for name, p in G.named_parameters():
            if "torgb.weight" in name:
                p.mul_(6)
    return G, G_prime


class SpyEncoder:
    """The real encoder, recording every batch it is given."""

    def __init__(self, encoder, info=None):
        self.encoder, self.info, self.inputs = encoder, info or encoder.info, []

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        self.inputs.append(images.detach().clone())
        return self.encoder.encode(images)


def style_folder(folder: Path, G_prime) -> Path:
    folder.mkdir()
    z = torch.randn(1, G_prime.num_ws, G_prime.z_dim, generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        ws = torch.stack([G_prime.mapping(z[:, k], None)[:, 0] for k in range(G_prime.num_ws)],
                         dim=1)
        Image.fromarray(to_uint8(G_prime.synthesis(ws, noise_mode="const"))[0]).save(
            folder / "style0.png")
    return folder


def as_input(path: Path) -> torch.Tensor:
    pixels = np.asarray(Image.open(path).convert("RGB"), dtype=np.float32)
    return torch.from_numpy(pixels).permute(2, 0, 1)[None] / 127.5 - 1


@torch.no_grad()
def destylized_face(G, z_hat: np.ndarray, z_e: np.ndarray, noise: dict) -> torch.Tensor:
    """G at truncation 0.7 of z^+_e's layers < COLOUR_FROM and z+_e's from there on."""
    zs = torch.from_numpy(np.concatenate([z_hat[:, :COLOUR_FROM], z_e[:, COLOUR_FROM:]], 1))
    ws = torch.stack([G.mapping(zs[:, k], None)[:, 0] for k in range(G.num_ws)], dim=1)
    buffers = {k: torch.from_numpy(v)[None, None] for k, v in noise.items()}
    return torch.func.functional_call(G.synthesis, buffers, (0.7 * ws,),
                                      {"noise_mode": "const"})


def no_projection(*args, **kwargs):
    raise AssertionError("a projection ran although the encoder was given")


def test_encoder_gives_the_extrinsic_code_and_the_reencoding(pair, encoder, tmp_path,
                                                             monkeypatch):
    G, G_prime = pair
    folder = style_folder(tmp_path / "style", G_prime)
    spy = SpyEncoder(encoder)
    monkeypatch.setattr(Destylizer, "project", no_projection)
    destylizer = Destylizer(G, G_prime, FeatureDistance(), PROTOCOL, encoder=spy)
    out = tmp_path / "out"
    destylize_set(destylizer, collect_targets([str(folder)], RES), out, seed=1,
                  options={"test": True}, progress=False)
    exemplar = as_input(folder / "style0.png")
    with torch.no_grad():
        expected_e = encoder.encode(exemplar).numpy()
    z_e = read_codes(out / "exstyle_code.npy").codes
    np.testing.assert_array_equal(z_e, expected_e)
    with np.load(out / "style0" / "codes.npz") as codes, \
            np.load(out / "style0" / "noise.npz") as noise:
        face = destylized_face(G, codes["z_hat"], codes["z_e"], dict(noise))
    assert face.abs().max() > 1.5
    assert len(spy.inputs) == 2
    assert torch.equal(spy.inputs[0], exemplar)
    torch.testing.assert_close(spy.inputs[1], face.clamp(-1, 1), rtol=1e-5, atol=1e-5)
    with torch.no_grad():
        expected_i = encoder.encode(face.clamp(-1, 1)).numpy()
        unclamped = encoder.encode(face).numpy()
    z_i = read_codes(out / "instyle_code.npy").codes
    np.testing.assert_array_equal(z_i[:, COLOUR_FROM:], z_e[:, COLOUR_FROM:])
    np.testing.assert_allclose(z_i[:, :COLOUR_FROM], expected_i[:, :COLOUR_FROM],
                               rtol=1e-4, atol=1e-4)
    assert not np.allclose(z_i[:, :COLOUR_FROM], unclamped[:, :COLOUR_FROM], atol=1e-3)
    assert not np.allclose(z_i[:, :COLOUR_FROM], z_e[:, :COLOUR_FROM], atol=1e-3)
    result = json.loads((out / "style0" / "result.json").read_text())
    assert result["codes_from"] == {"z_e": "encoder", "z_i": "encoder"}
    assert set(result["final"]) == {"destylize"}
    rows = [json.loads(line) for line in (out / "losses.jsonl").read_text().splitlines()]
    assert {r["stage"] for r in rows} == {"destylize"}


def test_without_encoder_the_records_name_the_projection(pair, tmp_path):
    G, G_prime = pair
    result = Destylizer(G, G_prime, FeatureDistance(), PROTOCOL).run(
        np.asarray(Image.open(style_folder(tmp_path / "s", G_prime) / "style0.png")), 0,
        progress=False)
    assert result.sources == {"z_e": "projection", "z_i": "projection"}
    assert list(result.curves) == ["project", "destylize", "reencode"]


def test_a_wplus_encoder_and_init_codes_with_an_encoder_are_refused(pair, encoder, tmp_path):
    G, G_prime = pair
    wplus = SpyEncoder(encoder, dataclasses.replace(encoder.info, space=CodeSpace.W_PLUS))
    with pytest.raises(EncoderError, match=r"--encoder .*encoder\.pt: a w\+ encoder, but "
                                           r"--original G\.pt takes z\+ codes"):
        Destylizer(G, G_prime, FeatureDistance(), PROTOCOL, encoder=wplus,
                   labels=("--original G.pt", "--finetuned G'.pt"))
    folder = style_folder(tmp_path / "style", G_prime)
    code = np.zeros((1, G.num_ws, G.z_dim), np.float32)
    init = read_codes(write_codes(tmp_path / "init.npz", CodeSet(["style0.png"], code, "t")))
    destylizer = Destylizer(G, G_prime, FeatureDistance(), PROTOCOL, encoder=encoder)
    with pytest.raises(DestylizeError, match="--init and --encoder both give"):
        destylize_set(destylizer, collect_targets([str(folder)], RES), tmp_path / "out",
                      seed=0, options={}, init=init, progress=False)
    assert not (tmp_path / "out").exists()


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ckpt")
    paths = {}
    for name, seed, res, dim in (("G", 0, RES, 512), ("G_prime", 5, RES, 512),
                                 ("G64", 0, 64, 512), ("G64_prime", 5, 64, 512),
                                 ("narrow", 0, RES, None), ("narrow_prime", 5, RES, None)):
        G, D = tiny_generator(seed, resolution=res, latent_dim=dim)
        paths[name] = str(save_tiny_checkpoint(folder / f"{name}.pt", G, D, resolution=res,
                                               latent_dim=dim))
    return paths


@pytest.fixture(scope="module")
def vgg_file(tmp_path_factory):
    from vgg_helpers import write_random_vgg16

    return write_random_vgg16(tmp_path_factory.mktemp("vgg") / "vgg16-random.pth")


def destylize_argv(style, out, original, finetuned, vgg_file) -> list[str]:
    return ["destylize", str(style), "--original", original, "--finetuned", finetuned,
            "--out", str(out), "--identity", "none", "--steps", "2", "--project-steps", "2",
            "--weights", f"vgg16={vgg_file}", "-q", "--threads", "1", "--device", "cpu"]


def test_destylize_encoder_end_to_end(tmp_path, checkpoints, encoder_file, encoder, vgg_file,
                                      astronaut):
    style = tmp_path / "style"
    style.mkdir()
    face = Image.fromarray(np.ascontiguousarray(astronaut[:256, 120:376]))
    face.resize((RES, RES), Image.Resampling.LANCZOS).save(style / "a.png")
    out = tmp_path / "out"
    argv = destylize_argv(style, out, checkpoints["G"], checkpoints["G_prime"], vgg_file)
    run = subprocess.run([sys.executable, "-m", "ffhq_tools", *argv, "--encoder",
                          str(encoder_file)], cwd=REPO, capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=600)
    assert run.returncode == 0, run.stderr
    assert "1 exemplars destylized (0 already done)" in run.stdout
    with torch.no_grad():
        expected = encoder.encode(as_input(style / "a.png")).numpy()
    np.testing.assert_array_equal(read_codes(out / "exstyle_code.npy").codes, expected)
    assert read_codes(out / "instyle_code.npz").codes.shape == (1, 8, 512)
    options = json.loads((out / "options.json").read_text())
    assert options["encoder"] == encoder.describe()
    assert options["encoder"]["space"] == "z+" and len(options["encoder"]["sha256"]) == 64
    result = json.loads((out / "a" / "result.json").read_text())
    assert result["codes_from"] == {"z_e": "encoder", "z_i": "encoder"}
    stages = {json.loads(line)["stage"] for line in (out / "losses.jsonl").read_text()
              .splitlines()}
    assert stages == {"destylize"}
    assert main([*argv, "--encoder", str(encoder_file)]) == 0  # resume: already done
    assert main(argv) == 2  # the same folder without the encoder is refused


@pytest.mark.parametrize("original, message", [
    ("G64", r"--encoder .*encoder\.pt: z\+ codes of shape \[1, 8, 512\], but --original "
            r".*G64\.pt takes \[1, 10, 512\]"),
    ("narrow", r"--encoder .*encoder\.pt: z\+ codes of shape \[1, 8, 512\], but --original "
               r".*narrow\.pt takes \[1, 8, 32\]"),
    ("INIT", r"--init and --encoder both give the start codes"),
])
def test_destylize_encoder_refusals_exit_2(tmp_path, checkpoints, encoder_file, vgg_file,
                                           capsys, original, message):
    import re

    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(tmp_path / "a.png")
    extra = ["--init", str(tmp_path / "init.npz")] if original == "INIT" else []
    name = "G" if original == "INIT" else original
    argv = destylize_argv(tmp_path / "a.png", tmp_path / "out", checkpoints[name],
                          checkpoints[f"{name}_prime"], vgg_file)
    assert main([*argv, "--encoder", str(encoder_file), *extra]) == 2
    err = capsys.readouterr().err
    assert re.search(message, err), err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "out").exists()

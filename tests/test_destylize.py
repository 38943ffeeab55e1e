"""Facial destylization (DualStyleGAN's destylize.py): the z+ fit recovers an image G' made
from a known code, the layer-copy rule, the identity term, the code files (official layout
through our safe reader), resume and the errors."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch
from PIL import Image
from project_helpers import FeatureDistance, tiny_generator

from models.destylize import (
    DestylizeError,
    DestylizeProtocol,
    Destylizer,
    IdentityTerm,
    check_pair,
    destylize_set,
    face_crop,
    load_identity,
    render_zplus,
)
from models.dualstylegan_codes import read_codes
from models.generate import to_uint8
from models.legacy import UnsafePickleError
from models.project.targets import collect_targets

RES = 64
QUICK = DestylizeProtocol(steps=3, project_steps=3, id_weight=0.0)


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def pair():
    """(G, G'): two narrow random 64 px StyleGAN2s without noise (G' stands for the
    fine-tuned one)."""
    G, _ = tiny_generator(0, noise_strength=0.0, resolution=RES)
    G_prime, _ = tiny_generator(5, noise_strength=0.0, resolution=RES)
    return G, G_prime


class PooledEmbedder:
    """A stand-in face embedder: a fixed random conv, global pooling, unit length."""

    def __init__(self, seed: int = 2):
        torch.manual_seed(seed)
        self.net = torch.nn.Conv2d(3, 8, 5, stride=2).requires_grad_(False)

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.normalize(self.net(images).mean(dim=(2, 3)), dim=1)


def generated(G, z: torch.Tensor) -> np.ndarray:
    with torch.no_grad():
        return to_uint8(render_zplus(G, z, {}))[0]


def rmse(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.sqrt(np.mean((a.astype(float) - b.astype(float)) ** 2)) / 127.5)


def test_destylization_recovers_an_image_of_g_prime_from_a_nearby_code(pair):
    G, G_prime = pair
    gen = torch.Generator().manual_seed(3)
    z = torch.randn(1, 1, G.z_dim, generator=gen).repeat(1, G.num_ws, 1)
    target = generated(G_prime, z)
    start = (z + 0.5 * torch.randn(1, 1, G.z_dim, generator=gen)).numpy()
    protocol = DestylizeProtocol(steps=200, project_steps=2, id_weight=0.1)
    destylizer = Destylizer(G, G_prime, FeatureDistance(), protocol,
                            identity=PooledEmbedder())
    result = destylizer.run(target, 0, z_e=start, progress=False)
    before = rmse(generated(G_prime, torch.from_numpy(start)), target)
    after = rmse(result.previews[2], target)
    assert before > 0.15
    assert after < 0.04 and after < before / 5
    curve = result.curves["destylize"]
    assert len(curve) == 200 and {"distance", "identity", "layer_std", "noise_reg"} <= set(
        curve[0])
    assert curve[-1]["distance"] < curve[0]["distance"] / 20
    assert curve[-1]["identity"] < curve[0]["identity"]


def test_layer_copy_rule_takes_layers_8_on_from_the_extrinsic_code(pair):
    G, G_prime = pair
    result = Destylizer(G, G_prime, FeatureDistance(), QUICK).run(
        generated(G_prime, torch.randn(1, G.num_ws, G.z_dim)), 0, progress=False)
    assert G.num_ws == 10  # layers 8, 9 are the colour layers at 64 px (8..17 at 1024)
    np.testing.assert_array_equal(result.z_i[:, 8:], result.z_e[:, 8:])
    assert not np.allclose(result.z_i[:, :8], result.z_e[:, :8])
    assert not np.allclose(result.z_hat[:, 8:], result.z_e[:, 8:])
    mixed = np.concatenate([result.z_hat[:, :8], result.z_e[:, 8:]], axis=1)
    noise = {k: torch.from_numpy(v)[None, None] for k, v in result.noise.items()}
    with torch.no_grad():  # independent rendering: each layer's z mapped, w scaled by 0.7
        zs = torch.from_numpy(mixed)
        ws = torch.stack([G.mapping(zs[:, k], None)[:, 0] for k in range(G.num_ws)], dim=1)
        expected = torch.func.functional_call(G.synthesis, noise, (0.7 * ws,),
                                              {"noise_mode": "const"})
    np.testing.assert_array_equal(result.previews[3], to_uint8(expected)[0])


def test_identity_term_is_one_minus_the_cosine_and_face_crop_is_psps():
    embedder = PooledEmbedder()
    gen = torch.Generator().manual_seed(0)
    a, b = (torch.rand(2, 3, 256, 256, generator=gen) * 2 - 1 for _ in range(2))
    crop = face_crop(a)
    assert crop.shape == (2, 3, 112, 112)
    torch.testing.assert_close(crop, torch.nn.functional.adaptive_avg_pool2d(
        a[:, :, 35:223, 32:220], 112))
    big = a.repeat_interleave(4, dim=2).repeat_interleave(4, dim=3)  # 1024 px, pooled to 256
    torch.testing.assert_close(face_crop(big), crop)
    ea, eb = embedder.embed(a).numpy(), embedder.embed(b).numpy()
    expected = np.mean(1 - np.sum(ea * eb, axis=1))
    assert float(IdentityTerm(embedder, b)(a)) == pytest.approx(expected, abs=1e-6)
    assert float(IdentityTerm(embedder, a)(a)) == pytest.approx(0.0, abs=1e-6)


def test_arcface_without_weights_names_the_registry_entry():
    from ffhq_tools.errors import WeightsError

    assert load_identity("none") is None
    with pytest.raises(WeightsError, match="arcface-ir-se50"):
        load_identity("arcface")


def style_folder(folder, G_prime, count: int = 2):
    folder.mkdir()
    gen = torch.Generator().manual_seed(7)
    for i in range(count):
        z = torch.randn(1, 1, G_prime.z_dim, generator=gen).repeat(1, G_prime.num_ws, 1)
        Image.fromarray(generated(G_prime, z)).save(folder / f"style{i}.png")
    return folder


def run_set(pair, folder, out, **kwargs):
    G, G_prime = pair
    destylizer = Destylizer(G, G_prime, FeatureDistance(), QUICK)
    return destylize_set(destylizer, collect_targets([str(folder)], RES), out, seed=1,
                         options={"test": True}, progress=False, **kwargs)


def test_code_files_in_the_official_layout_read_back_safely(pair, tmp_path):
    out = tmp_path / "out"
    run_set(pair, style_folder(tmp_path / "style", pair[1]), out)
    for stem, key in (("exstyle_code", "z_e"), ("instyle_code", "z_i")):
        official, ours = read_codes(out / f"{stem}.npy"), read_codes(out / f"{stem}.npz")
        assert official.names == ours.names == ["style0.png", "style1.png"]
        for i, name in enumerate(official.names):
            with np.load(out / name[:-4] / "codes.npz") as codes:
                np.testing.assert_array_equal(official.codes[i:i + 1], codes[key])
        np.testing.assert_array_equal(official.codes, ours.codes)
        assert official.codes.shape == (2, 10, 32) and official.codes.dtype == np.float32
        with open(out / f"{stem}.npy", "rb") as f:  # upstream's layout: a pickled dict
            assert np.lib.format.read_magic(f) == (1, 0)
            shape, _, dtype = np.lib.format.read_array_header_1_0(f)
            assert shape == () and dtype.hasobject
    rows = [json.loads(line) for line in (out / "losses.jsonl").read_text().splitlines()]
    assert {(r["exemplar"], r["stage"]) for r in rows} == {
        (f"style{i}.png", s) for i in range(2) for s in ("project", "destylize", "reencode")}
    assert json.loads((out / "options.json").read_text())["seed"] == 1
    preview = np.asarray(Image.open(out / "style0" / "preview.png"))
    assert preview.shape == (RES, 5 * RES, 3)


class Payload:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return os.mkdir, (self.marker,)


def test_a_code_file_carrying_pickled_code_is_refused(tmp_path):
    marker = tmp_path / "ran"
    path = tmp_path / "exstyle_code.npy"
    np.save(path, {"a.png": Payload(marker)}, allow_pickle=True)
    with pytest.raises(UnsafePickleError):
        read_codes(path)
    assert not marker.exists()


def test_a_killed_run_resumes_and_skips_finished_exemplars(pair, tmp_path, monkeypatch):
    folder = style_folder(tmp_path / "style", pair[1], count=3)
    out = tmp_path / "out"
    calls = []
    original = Destylizer.run

    def dies_on_the_second(self, pixels, seed, **kwargs):
        calls.append(kwargs["name"])
        if len(calls) == 2:
            raise KeyboardInterrupt
        return original(self, pixels, seed, **kwargs)

    monkeypatch.setattr(Destylizer, "run", dies_on_the_second)
    with pytest.raises(KeyboardInterrupt):
        run_set(pair, folder, out)
    first = (out / "style0" / "codes.npz").read_bytes()
    assert read_codes(out / "exstyle_code.npy").names == ["style0.png"]
    monkeypatch.setattr(Destylizer, "run", original)
    calls.clear()
    monkeypatch.setattr(Destylizer, "run", lambda self, p, s, **kw: (
        calls.append(kw["name"]), original(self, p, s, **kw))[1])
    summary = run_set(pair, folder, out)
    assert calls == ["style1.png", "style2.png"] and summary.skipped == 1
    assert (out / "style0" / "codes.npz").read_bytes() == first
    assert read_codes(out / "instyle_code.npz").names == ["style0.png", "style1.png",
                                                           "style2.png"]
    with pytest.raises(DestylizeError, match="seed"):
        G, G_prime = pair
        destylize_set(Destylizer(G, G_prime, FeatureDistance(), QUICK),
                      collect_targets([str(folder)], RES), out, seed=2,
                      options={"test": True}, progress=False)


def test_unaligned_and_too_small_exemplars_are_refused_by_name(pair, tmp_path):
    folder = tmp_path / "style"
    folder.mkdir()
    Image.fromarray(np.zeros((64, 80, 3), np.uint8)).save(folder / "wide.png")
    with pytest.raises(DestylizeError, match=r"wide\.png: 80x64 is not an FFHQ-aligned"):
        run_set(pair, folder, tmp_path / "a")
    (folder / "wide.png").unlink()
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(folder / "tiny.png")
    with pytest.raises(DestylizeError, match=r"tiny\.png: 32x32 is smaller than the 64 px"):
        run_set(pair, folder, tmp_path / "b")
    assert not (tmp_path / "b").exists()


def test_generators_of_different_resolution_are_refused(pair):
    G, _ = pair
    small, _ = tiny_generator(1, resolution=32)
    with pytest.raises(DestylizeError, match="img_resolution 32 but original G has 64"):
        check_pair(G, small, ("original G", "fine-tuned G'"))
    with pytest.raises(DestylizeError, match="needs an identity network"):
        Destylizer(G, G, FeatureDistance(), DestylizeProtocol())


def test_init_codes_replace_the_projection(pair, tmp_path):
    from models.dualstylegan_codes import CodeSet, write_codes

    G, _ = pair
    folder = style_folder(tmp_path / "style", pair[1], count=1)
    code = np.random.RandomState(0).randn(1, G.num_ws, G.z_dim).astype(np.float32)
    init = read_codes(write_codes(tmp_path / "init.npz", CodeSet(["style0.png"], code, "t")))
    run_set(pair, folder, tmp_path / "out", init=init)
    np.testing.assert_array_equal(read_codes(tmp_path / "out" / "exstyle_code.npy").codes,
                                  code)
    rows = (tmp_path / "out" / "losses.jsonl").read_text()
    assert '"project"' not in rows
    wrong = read_codes(write_codes(tmp_path / "w.npz", CodeSet(["other.png"], code, "t")))
    with pytest.raises(DestylizeError, match="no code named 'style0.png'"):
        run_set(pair, folder, tmp_path / "out2", init=wrong)

"""Checkpoint format: round trip, weights_only safety, atomic writes, clear errors."""

from __future__ import annotations

import contextlib
import pickle

import pytest
import torch

from models.checkpoint import (
    CheckpointError,
    checkpoint_info,
    checkpoint_sha256,
    load_checkpoint,
    load_generator,
    save_checkpoint,
)
from models.configs import build_networks, get_config


def make_checkpoint(path, name="tiny", resolution=16, lod=None):
    torch.manual_seed(0)
    config = get_config(name)
    G, D = build_networks(config, resolution)
    G_ema, _ = build_networks(config, resolution)
    G_ema.load_state_dict(G.state_dict())
    with torch.no_grad():
        G_ema.synthesis.b4.conv1.bias.add_(0.5)
    if lod is not None:
        G.lod = D.lod = G_ema.lod = lod
    opt = torch.optim.Adam(G.parameters(), lr=0.002, betas=(0.0, 0.99))
    G(torch.randn(2, G.z_dim)).square().mean().backward()
    opt.step()
    save_checkpoint(path, config={"model": config.to_dict(), "resolution": resolution},
                    G=G, D=D, G_ema=G_ema, optimizers={"G": opt.state_dict()},
                    training_state={"kimg": 12.5, "step": 7, "rng": torch.get_rng_state(),
                                    "note": "x"})
    return G, D, G_ema


def test_round_trip_restores_every_network_and_state(tmp_path):
    path = tmp_path / "snap.pt"
    G, D, G_ema = make_checkpoint(path)
    ckpt = load_checkpoint(path)
    z = torch.randn(3, G.z_dim)
    for ours, theirs in ((ckpt.G, G), (ckpt.G_ema, G_ema)):
        torch.testing.assert_close(ours(z, noise_mode="const"), theirs(z, noise_mode="const"))
    img = torch.randn(4, 3, 16, 16)
    torch.testing.assert_close(ckpt.D(img), D(img))
    assert ckpt.training_state["kimg"] == 12.5 and ckpt.training_state["note"] == "x"
    assert ckpt.optimizer_states["G"]["param_groups"][0]["betas"] == (0.0, 0.99)
    assert ckpt.config["model"]["name"] == "tiny" and ckpt.config["c_dim"] == 0


def test_load_generator_prefers_ema_and_freezes(tmp_path):
    path = tmp_path / "snap.pt"
    _, _, G_ema = make_checkpoint(path)
    G = load_generator(path)
    assert not G.training and not any(p.requires_grad for p in G.parameters())
    torch.testing.assert_close(G.state_dict()["synthesis.b4.conv1.bias"],
                               G_ema.state_dict()["synthesis.b4.conv1.bias"])


def test_progressive_lod_survives(tmp_path):
    path = tmp_path / "grow.pt"
    make_checkpoint(path, name="tiny-stylegan", lod=0.75)
    ckpt = load_checkpoint(path)
    assert ckpt.G.lod == 0.75 and ckpt.D.lod == 0.75


def test_info_and_hash(tmp_path):
    path = tmp_path / "snap.pt"
    make_checkpoint(path)
    info = checkpoint_info(path)
    assert info["config"] == "tiny" and info["kimg"] == 12.5
    assert info["sha256"] == checkpoint_sha256(path) and len(info["sha256"]) == 64


class Boom:
    def __reduce__(self):
        import os
        return (os.system, ("touch should-not-exist",))


def test_code_in_a_checkpoint_is_never_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "evil.pt"
    torch.save({"format": "ffhq-tools-checkpoint", "payload": Boom()}, path)
    with pytest.raises(CheckpointError, match="weights_only"):
        load_checkpoint(path)
    assert not (tmp_path / "should-not-exist").exists()


def test_errors_name_the_file(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "missing.pt")
    foreign = tmp_path / "foreign.pt"
    torch.save({"state_dict": {}}, foreign)
    with pytest.raises(CheckpointError, match="import-checkpoint"):
        load_checkpoint(foreign)
    pkl = tmp_path / "network.pkl"
    pkl.write_bytes(pickle.dumps({"G": [1, 2, 3]}))
    with pytest.raises(CheckpointError, match=str(pkl.name)):
        load_checkpoint(pkl)


@contextlib.contextmanager
def monkeypatch_save(exc):
    """torch.save that writes half a file, then fails."""
    real = torch.save

    def broken(obj, f):
        open(f, "wb").write(b"partial")
        raise exc

    torch.save = broken
    try:
        yield
    finally:
        torch.save = real


def test_failed_save_leaves_no_partial_file(tmp_path):
    path = tmp_path / "snap.pt"
    G, D = build_networks(get_config("tiny"), 16)
    with pytest.raises(CheckpointError, match=r"training_state\.bad"):
        save_checkpoint(path, config={"model": get_config("tiny").to_dict(), "resolution": 16},
                        G=G, training_state={"bad": Boom()})
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(KeyboardInterrupt), monkeypatch_save(KeyboardInterrupt):
        save_checkpoint(path, config={"model": get_config("tiny").to_dict(), "resolution": 16},
                        G=G)
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(CheckpointError, match="resolution"):
        save_checkpoint(path, config={"model": {}}, G=G)

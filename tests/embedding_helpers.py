"""Helpers for the DINOv2 / CLIP tests: seeded weight files registered in the weights registry
(with their SHA-256, so the real loader verifies them) and small photo batches."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

from ffhq_tools import weights
from ffhq_tools.hashing import sha256_file


def register_file(monkeypatch, name: str, path: Path) -> str:
    """Give registry entry `name` the SHA-256 of `path` and import the file into the cache
    (as `ffhq-tools weights import` does); returns the hash."""
    digest = sha256_file(path)
    entry = dataclasses.replace(weights.REGISTRY[name], sha256=digest)
    monkeypatch.setitem(weights.REGISTRY, name, entry)
    weights.import_file(name, path)
    return digest


def write_dinov2_file(folder: Path, name: str, seed: int, config=None) -> Path:
    from eval.features.dinov2 import CONFIGS, seeded_state_dict

    state = seeded_state_dict(config or CONFIGS[name], seed)
    path = folder / weights.REGISTRY[name].filename
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(state, path)
    return path


def write_clip_file(folder: Path, seed: int) -> tuple[Path, dict]:
    """A whole-CLIP state dict: seeded image encoder under `visual.` plus a stand-in text
    tensor (which the image encoder's loader must ignore)."""
    from eval.features.clip import VIT_B_32, seeded_visual_state

    visual = seeded_visual_state(VIT_B_32, seed)
    state = {f"visual.{key}": value for key, value in visual.items()}
    state["token_embedding.weight"] = torch.zeros(4, 8)
    path = folder / weights.REGISTRY["clip-vit-b-32"].filename
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(state, path)
    return path, visual


SMALL_VIT_NETWORK = "dinov2-vit-l-14"


def small_vit_config():
    from eval.features import dinov2

    return dinov2.VitConfig(32, 2, 2)


def install_small_vit_l(folder: Path, monkeypatch) -> Path:
    """The DINOv2 architecture at a test size (2 blocks, 32-d) under the ViT-L/14 entry, with
    seeded weights written to `folder` and registered by SHA-256; returns the file."""
    from eval.features import dinov2

    config = small_vit_config()
    monkeypatch.setitem(dinov2.CONFIGS, SMALL_VIT_NETWORK, config)
    path = write_dinov2_file(folder, SMALL_VIT_NETWORK, seed=11, config=config)
    return register_file(monkeypatch, SMALL_VIT_NETWORK, path)

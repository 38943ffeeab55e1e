"""Our checkpoint format: one `torch.save` file of state dicts plus a JSON config.

Loading uses `torch.load(weights_only=True)`, so a checkpoint can hold tensors, numbers,
strings, lists and dicts only - never code. Files are written to a temp file and renamed.
Official checkpoints (pickles) are converted to this format by `models.legacy`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from ffhq_tools.atomic import atomic_path
from ffhq_tools.errors import FfhqToolsError
from ffhq_tools.hashing import sha256_file

FORMAT = "ffhq-tools-checkpoint"
VERSION = 1


class CheckpointError(FfhqToolsError):
    """A checkpoint file is missing, unreadable or not in our format."""


@dataclass
class Checkpoint:
    config: dict
    G: nn.Module
    D: nn.Module | None = None
    G_ema: nn.Module | None = None
    optimizer_states: dict[str, dict] = field(default_factory=dict)
    training_state: dict = field(default_factory=dict)


def _lod(module: nn.Module | None) -> float | None:
    return None if module is None or not hasattr(module, "lod") else float(module.lod)


PLAIN_TYPES = (torch.Tensor, int, float, bool, str, bytes, type(None), torch.dtype,
               torch.device)


def _check_plain(obj, where: str) -> None:
    """Refuse, at save time, anything torch.load(weights_only=True) could not read back."""
    if isinstance(obj, dict):
        for key, value in obj.items():
            if not isinstance(key, (str, int)):
                raise CheckpointError(f"{where}: key {key!r} must be a string or an integer")
            _check_plain(value, f"{where}.{key}")
    elif isinstance(obj, (list, tuple)):
        for i, value in enumerate(obj):
            _check_plain(value, f"{where}[{i}]")
    elif not isinstance(obj, PLAIN_TYPES):
        raise CheckpointError(f"{where}: {type(obj).__name__} cannot be stored in a checkpoint "
                              "(only tensors, numbers, strings, lists and dicts)")


def save_checkpoint(path: str | Path, *, config: dict, G: nn.Module, D: nn.Module | None = None,
                    G_ema: nn.Module | None = None,
                    optimizers: dict[str, dict] | None = None,
                    training_state: dict | None = None) -> Path:
    """Write one checkpoint file atomically. `config` must hold at least
    {"model": ModelConfig.to_dict(), "resolution": int}; c_dim, img_channels, channel_max,
    z_dim and w_dim default to the networks' own values."""
    if "model" not in config or "resolution" not in config:
        raise CheckpointError("save_checkpoint: config needs 'model' (ModelConfig.to_dict()) "
                              "and 'resolution'")
    _check_plain(training_state or {}, "training_state")
    _check_plain(optimizers or {}, "optimizers")
    config = dict(config)
    config.setdefault("c_dim", int(G.c_dim))
    config.setdefault("img_channels", int(G.img_channels))
    payload = {
        "format": FORMAT,
        "version": VERSION,
        "config_json": json.dumps(config, sort_keys=True),
        "G": G.state_dict(),
        "D": None if D is None else D.state_dict(),
        "G_ema": None if G_ema is None else G_ema.state_dict(),
        "lod": {k: v for k, v in (("G", _lod(G)), ("D", _lod(D)), ("G_ema", _lod(G_ema)))
                if v is not None},
        "optimizers": dict(optimizers or {}),
        "training_state": dict(training_state or {}),
    }
    path = Path(path)
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return path


def _read(path: Path, device) -> dict:
    from models.checkpoint_hints import describe_non_checkpoint

    described = describe_non_checkpoint(path)
    if described:
        raise CheckpointError(described)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        payload = torch.load(path, map_location=device, weights_only=True)
    except Exception as exc:  # torch raises UnpicklingError, RuntimeError, EOFError...
        raise CheckpointError(
            f"{path}: not an ffhq-tools checkpoint readable with weights_only=True "
            f"({type(exc).__name__}). Official pickles must be converted first: "
            f"ffhq-tools import-checkpoint {path} OUT.pt") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not an ffhq-tools checkpoint (no '{FORMAT}' marker); "
                              f"convert it with: ffhq-tools import-checkpoint {path} OUT.pt")
    if payload.get("version", 0) > VERSION:
        raise CheckpointError(f"{path}: checkpoint version {payload['version']} is newer than "
                              f"this ffhq-tools understands ({VERSION})")
    return payload


def build_from_config(config: dict):
    """(G, D) with the architecture a checkpoint config describes (random weights)."""
    from models.configs import ModelConfig, build_networks

    try:
        model = ModelConfig.from_dict(config["model"])
        return build_networks(model, int(config["resolution"]), c_dim=int(config.get("c_dim", 0)),
                              img_channels=int(config.get("img_channels", 3)),
                              channel_max=config.get("channel_max"), z_dim=config.get("z_dim"),
                              w_dim=config.get("w_dim"))
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"checkpoint config is invalid: {exc}") from None


def _restore(module: nn.Module, state: dict, name: str, path: Path, lod: float | None):
    try:
        module.load_state_dict(state)
    except RuntimeError as exc:
        raise CheckpointError(f"{path}: {name} weights do not match the configured network: "
                              f"{str(exc).splitlines()[0]}") from None
    if lod is not None:
        module.lod = lod
    return module


def refuse_stale_import(config: dict, path: Path) -> None:
    """stylegan2-ada pickles imported before importer revision 2 hold up-sampling kernels
    flipped against NVlabs' code: their images are wrong, so they must be imported again."""
    source = config.get("source") or {}
    if source.get("format") == "stylegan2-ada" and source.get("importer_revision", 1) < 2:
        raise CheckpointError(
            f"{path}: imported from the stylegan2-ada pickle {source.get('file', '?')!r} by an "
            "older ffhq-tools whose up-sampling kernels were flipped (its images differ from "
            "NVlabs' code); import it again: ffhq-tools import-checkpoint "
            f"{source.get('file', 'SRC.pkl')} OUT.pt")


def load_checkpoint(path: str | Path, device="cpu") -> Checkpoint:
    path = Path(path)
    payload = _read(path, device)
    config = json.loads(payload["config_json"])
    refuse_stale_import(config, path)
    lods = payload.get("lod", {})
    if payload.get("G") is None:
        raise CheckpointError(f"{path}: checkpoint holds no generator")
    G, D = build_from_config(config)
    networks = {"G": G, "D": D if payload.get("D") is not None else None,
                "G_ema": build_from_config(config)[0] if payload.get("G_ema") is not None
                else None}
    for name, module in networks.items():
        if module is not None:
            networks[name] = _restore(module, payload[name], name, path, lods.get(name))
            networks[name].to(device)
    return Checkpoint(config=config, G=networks["G"], D=networks["D"], G_ema=networks["G_ema"],
                      optimizer_states=payload.get("optimizers") or {},
                      training_state=payload.get("training_state") or {})


def load_generator(path: str | Path, device="cpu") -> nn.Module:
    """The generator to sample from: G_ema when present, else G; eval mode, no gradients."""
    ckpt = load_checkpoint(path, device)
    G = ckpt.G_ema if ckpt.G_ema is not None else ckpt.G
    G.eval().requires_grad_(False)
    return G


def checkpoint_sha256(path: str | Path) -> str:
    return sha256_file(path)


def checkpoint_info(path: str | Path) -> dict:
    """Provenance for metric rows: path, sha256, config name, kimg (when recorded)."""
    path = Path(path)
    payload = _read(path, "cpu")
    config = json.loads(payload["config_json"])
    state = payload.get("training_state") or {}
    kimg = state.get("kimg", config.get("kimg"))
    return {"path": str(path), "sha256": checkpoint_sha256(path),
            "config": config["model"].get("name"), "resolution": config["resolution"],
            "kimg": None if kimg is None else float(kimg)}

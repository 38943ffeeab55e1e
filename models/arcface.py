"""ArcFace IR-SE50 as a face embedder: the identity network of pSp's `IDLoss`, used by
DualStyleGAN's destylization and fine-tuning (`--identity arcface`).

`embed(images [N, 3, R, R] in [-1, 1]) -> [N, 512] unit vectors`, R any size: pooled to
256 px when R differs, cropped to the face region (rows 35:223, columns 32:220), pooled to
112 px (`models.destylize.identity.face_crop`), then IR-SE50 (`models.irse`).

Weights: the registry entry `arcface-ir-se50` (pSp's `model_ir_se50.pth`, a plain state
dict read with `torch.load(weights_only=True)`); `--weights arcface-ir-se50=FILE` points at
another copy. The file's SHA-256 is in `provenance` and recorded by every run that uses it.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ffhq_tools.errors import WeightsError
from models.destylize.identity import face_crop
from models.irse import IRSE50

WEIGHTS_NAME = "arcface-ir-se50"


class ArcFaceEmbedder(nn.Module):
    """pSp's IDLoss feature extractor; gradients flow to the images, never to the weights."""

    def __init__(self, backbone: IRSE50, provenance: dict):
        super().__init__()
        self.backbone = backbone
        self.provenance = dict(provenance)
        self.requires_grad_(False).eval()

    def train(self, mode: bool = True) -> "ArcFaceEmbedder":
        return super().train(False)  # BatchNorm statistics and dropout stay frozen

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        return self.backbone(face_crop(images))

    def describe(self) -> dict:
        return {"kind": WEIGHTS_NAME, **self.provenance}


def _first_line(exc: Exception) -> str:
    return (str(exc).splitlines() or [""])[0]


def irse50_from_state(state, path: Path) -> IRSE50:
    if not isinstance(state, dict) or "input_layer.0.weight" not in state:
        raise WeightsError(f"{path}: not an IR-SE50 state dict (no 'input_layer.0.weight'; "
                           "expected pSp's model_ir_se50.pth)")
    with torch.device("meta"):  # no random init: a strict load fills every tensor
        net = IRSE50()
    try:
        net.load_state_dict(state, strict=True, assign=True)
    except RuntimeError as exc:
        raise WeightsError(f"{path}: not an IR-SE50 50-layer ir_se state dict "
                           f"({_first_line(exc)})") from None
    return net.float()


def load_arcface(overrides: dict | None = None, device="cpu") -> ArcFaceEmbedder:
    """The registry's ArcFace IR-SE50 (a clear offline error when the file is missing)."""
    from ffhq_tools import weights

    resolved = weights.resolve(WEIGHTS_NAME, overrides)
    try:
        state = torch.load(resolved.path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise WeightsError(f"{resolved.path}: cannot be read as a weights-only state dict "
                           f"({type(exc).__name__}: {_first_line(exc)})") from None
    backbone = irse50_from_state(state, resolved.path)
    return ArcFaceEmbedder(backbone, resolved.provenance()).to(device)

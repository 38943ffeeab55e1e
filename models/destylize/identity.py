"""The identity term of facial destylization: pSp's `IDLoss` (ArcFace IR-SE50 in DualStyleGAN;
dlib's face ResNet offline).

`1 - <e(fake), e(target)>`, averaged over the batch, where `e` is any face embedder: an
object with `embed(images float NCHW in [-1, 1], any size) -> (N, 512) unit vectors` that
does its own preprocessing. `face_crop` is pSp's (and DualStyleGAN's) for ArcFace: images are
area-pooled to 256 px when they are another size, cropped to the face region (rows 35:223,
columns 32:220) and area-pooled to the 112 x 112 input (`models.arcface` uses it).
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch
import torch.nn.functional as F

from ffhq_tools.errors import FfhqToolsError
from models.identity_names import IDENTITIES

CROP_REFERENCE = 256
FACE_CROP = (35, 223, 32, 220)  # top, bottom, left, right at 256 px
EMBED_INPUT = 112


@runtime_checkable
class FaceEmbedder(Protocol):
    def embed(self, images: torch.Tensor) -> torch.Tensor: ...


def face_crop(images: torch.Tensor) -> torch.Tensor:
    """[N, C, R, R] -> pooled to 256 px (when R != 256), the face region, area-pooled to
    [N, C, 112, 112]."""
    if images.shape[-1] != CROP_REFERENCE or images.shape[-2] != CROP_REFERENCE:
        images = F.adaptive_avg_pool2d(images, CROP_REFERENCE)
    top, bottom, left, right = FACE_CROP
    return F.adaptive_avg_pool2d(images[:, :, top:bottom, left:right], EMBED_INPUT)


class IdentityTerm:
    """identity(images) = mean(1 - <e(images), e(targets)>); the targets are embedded once."""

    def __init__(self, embedder: FaceEmbedder, targets: torch.Tensor):
        if not isinstance(embedder, FaceEmbedder):
            raise TypeError(f"{type(embedder).__name__} has no embed(images) method")
        self.embedder = embedder
        with torch.no_grad():
            self.target_embeddings = embedder.embed(targets).detach()

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        embeddings = self.embedder.embed(images)
        return (1 - (embeddings * self.target_embeddings).sum(dim=1)).mean()


def load_identity(name: str, overrides: dict | None = None, device="cpu") -> FaceEmbedder | None:
    """The embedder for `--identity NAME` (None for 'none'), from its weights registry entry
    (`models.identity_names.IDENTITY_WEIGHTS`, or `overrides`); a clear error when missing."""
    if name not in IDENTITIES:
        raise FfhqToolsError(f"--identity {name!r}: expected one of {', '.join(IDENTITIES)}")
    if name == "none":
        return None
    if name == "dlib":
        from models.dlib_face_resnet import load_dlib_identity

        return load_dlib_identity(overrides, device)
    from models.arcface import load_arcface

    return load_arcface(overrides, device)

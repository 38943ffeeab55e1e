"""The identity term of facial destylization: pSp's `IDLoss` (ArcFace IR-SE50 in DualStyleGAN).

`1 - <e(fake), e(target)>`, averaged over the batch, where `e` is any face embedder: an
object with `embed(images float NCHW in [-1, 1]) -> (N, 512) unit vectors`. Before embedding,
both images are cropped to the face region pSp's IDLoss uses on 256 px images (rows 35:223,
columns 32:220, scaled to other sizes) and area-pooled to the embedder's 112 x 112 input.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch
import torch.nn.functional as F

from ffhq_tools.errors import FfhqToolsError

CROP_REFERENCE = 256
FACE_CROP = (35, 223, 32, 220)  # top, bottom, left, right at 256 px
EMBED_INPUT = 112
IDENTITIES = ("arcface", "none")
ARCFACE_ENTRY = "arcface-ir-se50"


@runtime_checkable
class FaceEmbedder(Protocol):
    def embed(self, images: torch.Tensor) -> torch.Tensor: ...


class IdentityUnavailable(FfhqToolsError):
    """The requested identity network cannot be loaded here."""


def face_crop(images: torch.Tensor) -> torch.Tensor:
    """[N, C, R, R] -> the face region, area-pooled to [N, C, 112, 112]."""
    size = images.shape[-1]
    top, bottom, left, right = (round(v * size / CROP_REFERENCE) for v in FACE_CROP)
    return F.adaptive_avg_pool2d(images[:, :, top:bottom, left:right], EMBED_INPUT)


class IdentityTerm:
    """identity(images) = mean(1 - <e(crop(images)), e(crop(targets))>); the targets are
    embedded once."""

    def __init__(self, embedder: FaceEmbedder, targets: torch.Tensor):
        if not isinstance(embedder, FaceEmbedder):
            raise TypeError(f"{type(embedder).__name__} has no embed(images) method")
        self.embedder = embedder
        with torch.no_grad():
            self.target_embeddings = embedder.embed(face_crop(targets)).detach()

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        embeddings = self.embedder.embed(face_crop(images))
        return (1 - (embeddings * self.target_embeddings).sum(dim=1)).mean()


def load_identity(name: str) -> FaceEmbedder | None:
    """The embedder for `--identity NAME` (None for 'none')."""
    if name not in IDENTITIES:
        raise FfhqToolsError(f"--identity {name!r}: expected one of {', '.join(IDENTITIES)}")
    if name == "none":
        return None
    raise IdentityUnavailable(
        f"--identity arcface: the ArcFace IR-SE50 network (weights registry entry "
        f"'{ARCFACE_ENTRY}') is not available in this version; run with --identity none "
        "(or --id-weight 0) to destylize without the identity term")

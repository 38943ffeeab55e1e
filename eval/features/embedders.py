"""The DINOv2 and CLIP feature networks: name -> architecture, output dimension, named
preprocessing modes and weights entry, with one call shape `embedder(uint8 NCHW) ->
{name: (N, dim) float32 features}`.

Each name is also its `ffhq_tools.weights` entry; the SHA-256 of the file used and the
preprocessing mode enter every cache key and result row.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from eval import defaults
from eval.features import vit_preprocess as vp
from ffhq_tools.errors import FfhqToolsError


@dataclass(frozen=True)
class EmbedderSpec:
    name: str
    family: str          # "dinov2" or "clip"
    dim: int
    modes: tuple[str, ...]  # the first one is the default
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    description: str

    @property
    def default_mode(self) -> str:
        return self.modes[0]


_DINOV2_MODES = (vp.MODE_DGM_EVAL, vp.MODE_TORCH_FIDELITY)
_CLIP_MODES = (vp.MODE_CLEAN_FID, vp.MODE_TORCH_FIDELITY)

SPECS: dict[str, EmbedderSpec] = {spec.name: spec for spec in (
    EmbedderSpec(defaults.DINOV2_VIT_S, "dinov2", 384, _DINOV2_MODES, vp.IMAGENET_MEAN,
                 vp.IMAGENET_STD, "DINOv2 ViT-S/14 class token"),
    EmbedderSpec(defaults.DINOV2_VIT_B, "dinov2", 768, _DINOV2_MODES, vp.IMAGENET_MEAN,
                 vp.IMAGENET_STD, "DINOv2 ViT-B/14 class token"),
    EmbedderSpec(defaults.DINOV2_VIT_L, "dinov2", 1024, _DINOV2_MODES, vp.IMAGENET_MEAN,
                 vp.IMAGENET_STD, "DINOv2 ViT-L/14 class token"),
    EmbedderSpec(defaults.DINOV2_VIT_G, "dinov2", 1536, _DINOV2_MODES, vp.IMAGENET_MEAN,
                 vp.IMAGENET_STD, "DINOv2 ViT-g/14 class token"),
    EmbedderSpec(defaults.CLIP_VIT_B_32, "clip", 512, _CLIP_MODES, vp.CLIP_MEAN, vp.CLIP_STD,
                 "CLIP ViT-B/32 encode_image"),
)}


def get_spec(name: str) -> EmbedderSpec:
    if name not in SPECS:
        raise FfhqToolsError(f"unknown feature network '{name}'; expected one of "
                             f"{', '.join(SPECS)}")
    return SPECS[name]


class Embedder:
    """uint8 NCHW images of any size -> {spec.name: (N, dim) float32 features}."""

    def __init__(self, spec: EmbedderSpec, network: torch.nn.Module, mode: str, sha256: str,
                 device):
        self.spec, self.mode = spec, vp.check_vit_mode(mode, spec.modes)
        self.sha256, self.device = sha256, torch.device(device)
        self.network = network.to(self.device).eval()

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        return vp.vit_input(images.to(self.device), self.mode, self.spec.mean, self.spec.std)

    @torch.inference_mode()
    def __call__(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        return {self.spec.name: self.network(self.preprocess(images)).float()}


def build_network(spec: EmbedderSpec, path) -> torch.nn.Module:
    """The architecture of `spec` filled from the state dict at `path` (strict)."""
    if spec.family == "dinov2":
        from eval.features.dinov2 import load_dinov2

        return load_dinov2(path, spec.name)
    from eval.features.clip import load_clip_vision

    return load_clip_vision(path)


def load_embedder(name: str, resolve, device="cpu", mode: str | None = None) -> Embedder:
    """The feature network `name`; `resolve(entry)` locates and verifies its weights file
    (e.g. `MetricContext.resolve_weights`, which also records the SHA-256)."""
    spec = get_spec(name)
    mode = mode or spec.default_mode
    vp.check_vit_mode(mode, spec.modes)
    resolved = resolve(name)
    return Embedder(spec, build_network(spec, resolved.path), mode, resolved.sha256, device)

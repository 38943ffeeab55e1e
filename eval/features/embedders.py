"""The DINOv2 and CLIP feature networks of the registry (`eval.features.networks`): their
architectures, per-family normalisation and one call shape `embedder(uint8 NCHW) ->
{name: (N, dim) float32 features}`.

Each name is also its `ffhq_tools.weights` entry; the SHA-256 of the file used and the
preprocessing mode enter every cache key and result row.
"""

from __future__ import annotations

import torch

from eval.features import vit_preprocess as vp
from eval.features.networks import CLIP, DINOV2, FeatureNetwork, get_network
from ffhq_tools.errors import FfhqToolsError

NORMALISATION = {DINOV2: (vp.IMAGENET_MEAN, vp.IMAGENET_STD), CLIP: (vp.CLIP_MEAN, vp.CLIP_STD)}


class Embedder:
    """uint8 NCHW images of any size -> {network name: (N, dim) float32 features}."""

    def __init__(self, spec: FeatureNetwork, network: torch.nn.Module, mode: str, sha256: str,
                 device):
        self.spec, self.mode = spec, vp.check_vit_mode(mode, spec.modes)
        self.sha256, self.device = sha256, torch.device(device)
        self.network = network.to(self.device).eval()
        self.mean, self.std = NORMALISATION[spec.family]

    @property
    def dim(self) -> int:
        """The loaded architecture's width (the registry's, unless a test shrinks it)."""
        return self.network.feature_dim

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        return vp.vit_input(images.to(self.device), self.mode, self.mean, self.std)

    @torch.inference_mode()
    def __call__(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        return {self.spec.name: self.network(self.preprocess(images)).float()}


def build_network(spec: FeatureNetwork, path) -> torch.nn.Module:
    """The architecture of `spec` filled from the state dict at `path` (strict)."""
    if spec.family == DINOV2:
        from eval.features.dinov2 import load_dinov2

        return load_dinov2(path, spec.name)
    from eval.features.clip import load_clip_vision

    return load_clip_vision(path)


def load_embedder(name: str, resolve, device="cpu", mode: str | None = None) -> Embedder:
    """The DINOv2 / CLIP network `name`; `resolve(entry)` locates and verifies its weights
    file (e.g. `MetricContext.resolve_weights`, which also records the SHA-256)."""
    spec = get_network(name)
    if spec.family not in NORMALISATION:
        raise FfhqToolsError(f"--features {name}: not a DINOv2 / CLIP network")
    mode = vp.check_vit_mode(mode or spec.default_mode, spec.modes)
    resolved = resolve(name)
    return Embedder(spec, build_network(spec, resolved.path), mode, resolved.sha256, device)

"""The one feature-network registry: name -> family, output dimension, preprocessing modes
(the first is the default; the mode enters every cache key and row) and weights entries.

Every network answers one call shape, `extractor(uint8 NCHW) -> {name: (N, dim) float32}`,
through `load_extractor(name, resolve, device, mode)`; `fid`, `kid`, `pr`, density/coverage
and the other feature-space metrics take any registered network by name (`--features NAME`).
Networks of one `space` compute the same features from the same weights (the two Inception
files, the two VGG16 files), so `leaderboard compare` treats them as one feature space.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from eval import defaults
from eval.features import vgg16
from ffhq_tools.errors import FfhqToolsError

INCEPTION = "inception"
VGG16 = "vgg16"
DINOV2 = "dinov2"
CLIP = "clip"


@dataclass(frozen=True)
class FeatureNetwork:
    name: str             # also its ffhq_tools.weights entry
    family: str           # inception | vgg16 | dinov2 | clip
    space: str            # networks of one space give the same features
    dim: int
    modes: tuple[str, ...]
    description: str

    @property
    def default_mode(self) -> str:
        return self.modes[0]

    def check_mode(self, mode: str | None) -> str:
        if mode is None:
            return self.default_mode
        if mode not in self.modes:
            raise FfhqToolsError(f"--mode {mode}: feature network {self.name} takes "
                                 f"{', '.join(self.modes)}")
        return mode


VGG16_MODE = "tf1-bilinear-224"   # both VGG16 files: TF1 bilinear resize to 224 (as NVIDIA's)


_DINOV2_MODES = (defaults.MODE_DGM_EVAL, defaults.MODE_TORCH_FIDELITY)
_CLIP_MODES = (defaults.MODE_CLEAN_FID, defaults.MODE_TORCH_FIDELITY)


def _dinov2(name: str, dim: int, size: str) -> FeatureNetwork:
    return FeatureNetwork(name, DINOV2, defaults.FEATURE_SPACES[name], dim, _DINOV2_MODES,
                          f"DINOv2 ViT-{size}/14 class token")


FEATURE_NETWORKS: dict[str, FeatureNetwork] = {net.name: net for net in (
    FeatureNetwork(defaults.INCEPTION_STATE_DICT, INCEPTION,
                   defaults.FEATURE_SPACES[defaults.INCEPTION_STATE_DICT],
                   defaults.INCEPTION_FEATURE_DIM, defaults.MODES,
                   "FID Inception pool3 (pytorch-fid / torch-fidelity state dict)"),
    FeatureNetwork(defaults.INCEPTION_TORCHSCRIPT, INCEPTION,
                   defaults.FEATURE_SPACES[defaults.INCEPTION_TORCHSCRIPT],
                   defaults.INCEPTION_FEATURE_DIM,
                   tuple(m for m in defaults.MODES if m != defaults.MODE_PYTORCH_FID),
                   "FID Inception pool3 (NVIDIA TorchScript, read as data)"),
    FeatureNetwork(vgg16.TORCHVISION, VGG16, defaults.FEATURE_SPACES[vgg16.TORCHVISION],
                   vgg16.FEATURE_DIM, (VGG16_MODE,),
                   "VGG16 fc2 (torchvision weights), the precision/recall features"),
    FeatureNetwork(vgg16.TORCHSCRIPT, VGG16, defaults.FEATURE_SPACES[vgg16.TORCHSCRIPT],
                   vgg16.FEATURE_DIM, (VGG16_MODE,),
                   "VGG16 fc2 (NVIDIA TorchScript, read as data)"),
    _dinov2(defaults.DINOV2_VIT_S, 384, "S"),
    _dinov2(defaults.DINOV2_VIT_B, 768, "B"),
    _dinov2(defaults.DINOV2_VIT_L, 1024, "L"),
    _dinov2(defaults.DINOV2_VIT_G, 1536, "g"),
    FeatureNetwork(defaults.CLIP_VIT_B_32, CLIP, defaults.FEATURE_SPACES[defaults.CLIP_VIT_B_32],
                   512, _CLIP_MODES, "CLIP ViT-B/32 encode_image"),
)}


def get_network(name: str) -> FeatureNetwork:
    if name not in FEATURE_NETWORKS:
        raise FfhqToolsError(f"--features {name}: expected one of "
                             f"{', '.join(FEATURE_NETWORKS)}")
    return FEATURE_NETWORKS[name]


class FeatureExtractor:
    """uint8 NCHW images of any size -> {network name: (N, dim) float32 features}."""

    def __init__(self, network: FeatureNetwork, forward, mode: str, sha256: str,
                 dim: int | None = None):
        self.network, self.forward, self.mode, self.sha256 = network, forward, mode, sha256
        self.forward_dim = dim or network.dim

    @property
    def name(self) -> str:
        return self.network.name

    @property
    def dim(self) -> int:
        return self.forward_dim

    @torch.inference_mode()
    def __call__(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        return {self.name: self.forward(images).float()}


def _inception_forward(name: str, resolve, device, mode: str):
    from types import SimpleNamespace

    from eval.features import load_inception

    ctx = SimpleNamespace(feature_network=name, resolve_weights=resolve, device=device,
                          mode=mode)
    extractor = load_inception(ctx)
    return (lambda images: extractor(images)[0]), extractor.sha256


def _vgg16_forward(name: str, resolve, device):
    shas = {}

    def recording(entry):
        resolved = resolve(entry)
        shas[entry] = resolved.sha256
        return resolved

    network = vgg16.load_feature_network(recording, name, device)
    return (lambda images: network(images.to(device))), shas[name]


def _vit_forward(name: str, resolve, device, mode: str):
    from eval.features.embedders import load_embedder

    embedder = load_embedder(name, resolve, device, mode)
    return (lambda images: embedder(images)[name]), embedder.sha256, embedder.dim


def load_extractor(name: str, resolve, device="cpu", mode: str | None = None) \
        -> FeatureExtractor:
    """Registered network `name`; `resolve(entry)` locates and verifies its weights file (e.g.
    `MetricContext.resolve_weights`, which also records the SHA-256); `mode` None: default."""
    network = get_network(name)
    mode = network.check_mode(mode)
    dim = None
    if network.family == INCEPTION:
        forward, sha256 = _inception_forward(name, resolve, device, mode)
    elif network.family == VGG16:
        forward, sha256 = _vgg16_forward(name, resolve, device)
    else:  # the architecture's width (a test may shrink it)
        forward, sha256, dim = _vit_forward(name, resolve, device, mode)
    return FeatureExtractor(network, forward, mode, sha256, dim)

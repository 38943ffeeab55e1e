"""VGG16 feature networks: 4096-d fc2 features for precision/recall, loaded via the registry.

Two sources, both recorded by SHA-256 in every result row:
- `vgg16`: torchvision's VGG16 state dict (`vgg16-397923af.pth`). Images are resized to
  224x224 with TF1 bilinear sampling, normalised with the ImageNet mean/std and run up to
  fc2 after its ReLU (torch-fidelity's `fc2_relu`).
- `vgg16-ts`: NVIDIA's TorchScript `vgg16.pt` (stylegan2-ada-pytorch), read as data (never
  executed) into our `eval.features.nvidia_vgg16.NvidiaVgg16`, which takes uint8 images,
  resizes them itself and returns the same kind of 4096-d features with
  `return_features=True` (and LPIPS feature vectors with `return_lpips=True`).
"""

from __future__ import annotations

import torch
from torch import nn

from eval import defaults

FEATURE_DIM = 4096
INPUT_SIZE = 224
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
TORCHVISION = defaults.VGG16_TORCHVISION
TORCHSCRIPT = defaults.VGG16_TORCHSCRIPT
SOURCES = (TORCHVISION, TORCHSCRIPT)


def empty_vgg16() -> nn.Module:
    """torchvision's VGG16 architecture with uninitialised parameters, to be filled by
    `load_state_dict` (skips the 138M-parameter random init; never downloads)."""
    import torchvision

    with torch.device("meta"):
        net = torchvision.models.vgg16(weights=None)
    return net.to_empty(device="cpu")


def load_vgg16_state_dict(path) -> dict:
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict) or "features.0.weight" not in state:
        from ffhq_tools.errors import WeightsError

        raise WeightsError(f"{path}: not a torchvision VGG16 state dict "
                           "(no 'features.0.weight')")
    return state


def _source_index(in_size: int, out_size: int, device) -> tuple[torch.Tensor, ...]:
    """TF1 resize_bilinear (align_corners=False, no half-pixel centres) sample positions."""
    scale = torch.tensor(in_size / out_size, dtype=torch.float32)  # float32 like TF
    src = torch.arange(out_size, device=device, dtype=torch.float32) * scale.to(device)
    lo = src.floor().long().clamp(max=in_size - 1)
    hi = (lo + 1).clamp(max=in_size - 1)
    frac = src - lo.to(torch.float32)
    return lo, hi, frac


def resize_bilinear_tf1(images: torch.Tensor, size: int) -> torch.Tensor:
    """Resize float NCHW images the way TF1's tf.image.resize_bilinear does by default."""
    _, _, h, w = images.shape
    if (h, w) == (size, size):
        return images
    y0, y1, fy = _source_index(h, size, images.device)
    x0, x1, fx = _source_index(w, size, images.device)
    left, right = images[:, :, :, x0], images[:, :, :, x1]
    cols = left + (right - left) * fx.to(images.dtype).view(1, 1, 1, -1)  # x first, as TF
    top, bottom = cols[:, :, y0, :], cols[:, :, y1, :]
    return top + (bottom - top) * fy.to(images.dtype).view(1, 1, -1, 1)


class Vgg16Fc2(nn.Module):
    """uint8 NCHW images -> [N, 4096] fc2 features after ReLU (torchvision VGG16 weights)."""

    def __init__(self, vgg: nn.Module):
        super().__init__()
        self.features = vgg.features
        self.avgpool = vgg.avgpool
        self.fc = nn.Sequential(*list(vgg.classifier.children())[:5])  # fc1 relu drop fc2 relu
        mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1) * 255
        std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1) * 255
        self.register_buffer("mean", mean)
        self.register_buffer("std", std)
        self.eval().requires_grad_(False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] not in (1, 3):
            raise ValueError(f"expected uint8 [N, 1|3, H, W] images, got {images.dtype} "
                             f"{tuple(images.shape)}")
        x = images.float()
        if x.shape[1] == 1:
            x = x.repeat(1, 3, 1, 1)
        x = resize_bilinear_tf1(x, INPUT_SIZE)
        x = (x - self.mean) / self.std
        x = self.avgpool(self.features(x)).flatten(1)
        return self.fc(x)


class TorchScriptVgg16Features(nn.Module):
    """NVIDIA's TorchScript VGG16: uint8 NCHW images -> [N, 4096] features."""

    def __init__(self, module):
        super().__init__()
        self.module = module

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.shape[1] == 1:
            images = images.repeat(1, 3, 1, 1)
        return self.module(images, return_features=True)


def load_torchscript(path, device="cpu") -> nn.Module:
    """NVIDIA's `vgg16.pt` as our module (its tensors read as data; its code never runs)."""
    from eval.features.nvidia_vgg16 import load_nvidia_vgg16

    return load_nvidia_vgg16(path).to(device)


def vgg16_fc2_from_state_dict(state: dict) -> Vgg16Fc2:
    vgg = empty_vgg16()
    vgg.load_state_dict(state)
    return Vgg16Fc2(vgg)


def load_feature_network(resolve, source: str, device="cpu") -> nn.Module:
    """The 4096-d feature network from registry entry `source`; `resolve(name)` records it."""
    if source not in SOURCES:
        raise ValueError(f"unknown VGG16 source {source!r}; expected one of {SOURCES}")
    resolved = resolve(source)
    if source == TORCHSCRIPT:
        return TorchScriptVgg16Features(load_torchscript(resolved.path, device)).to(device)
    return vgg16_fc2_from_state_dict(load_vgg16_state_dict(resolved.path)).to(device)


def preferred_source(overrides: dict | None) -> str:
    """NVIDIA's TorchScript file when it is provided (the papers' network), else torchvision."""
    from ffhq_tools import weights

    return TORCHSCRIPT if weights.is_available(TORCHSCRIPT, overrides) else TORCHVISION

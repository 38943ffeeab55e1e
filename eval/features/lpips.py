"""LPIPS-VGG16 perceptual distance (Zhang et al. 2018, v0.1), the `d` of perceptual path length.

Two implementations behind one call, `distance(img0, img1) -> [N]` on float images in
[0, 255] (the scale the path-length protocol hands over):
- `LpipsVgg16`: our network: torchvision VGG16 conv trunk (registry entry `vgg16`), the
  lpips package's shipped linear layers (registry entry `lpips-vgg-lin`), identical in
  structure to `lpips.LPIPS(net="vgg")`.
- `TorchScriptLpips`: NVIDIA's `vgg16.pt` with `return_lpips=True` (stylegan2-ada-pytorch),
  whose outputs are vectors whose squared difference sums to the distance.
"""

from __future__ import annotations

import torch
from torch import nn

from eval.features import vgg16 as vgg

CHANNELS = (64, 128, 256, 512, 512)
# Indices into torchvision's vgg16.features that end each LPIPS stage (relu1_2 ... relu5_3).
STAGE_ENDS = (4, 9, 16, 23, 30)
SHIFT = (-0.030, -0.088, -0.188)
SCALE = (0.458, 0.448, 0.450)
NORM_EPS = 1e-10
LIN_KEYS = tuple(f"lin{i}.model.1.weight" for i in range(5))
OURS = "lpips-vgg16"
SOURCES = (OURS, vgg.TORCHSCRIPT)


def unit_normalize(features: torch.Tensor) -> torch.Tensor:
    return features / (features.square().sum(dim=1, keepdim=True).sqrt() + NORM_EPS)


class LpipsVgg16(nn.Module):
    """LPIPS v0.1 with a VGG16 trunk; `forward(x0, x1)` on images in [-1, 1] -> [N]."""

    def __init__(self, vgg16_features: nn.Sequential, lin_weights: list[torch.Tensor]):
        super().__init__()
        starts = (0,) + STAGE_ENDS[:-1]
        self.stages = nn.ModuleList(
            nn.Sequential(*[vgg16_features[i] for i in range(a, b)])
            for a, b in zip(starts, STAGE_ENDS, strict=True))
        self.lins = nn.ModuleList()
        for channels, weight in zip(CHANNELS, lin_weights, strict=True):
            conv = nn.Conv2d(channels, 1, 1, bias=False)
            conv.weight.data.copy_(weight.reshape(1, channels, 1, 1))
            self.lins.append(conv)
        self.register_buffer("shift", torch.tensor(SHIFT).view(1, 3, 1, 1))
        self.register_buffer("scale", torch.tensor(SCALE).view(1, 3, 1, 1))
        self.eval().requires_grad_(False)

    def stage_features(self, images: torch.Tensor) -> list[torch.Tensor]:
        x = (images - self.shift) / self.scale
        outputs = []
        for stage in self.stages:
            x = stage(x)
            outputs.append(x)
        return outputs

    def forward(self, x0: torch.Tensor, x1: torch.Tensor) -> torch.Tensor:
        both = self.stage_features(torch.cat([x0, x1]))
        total = 0.0
        for features, lin in zip(both, self.lins, strict=True):
            f0, f1 = unit_normalize(features).chunk(2)
            total = total + lin((f0 - f1).square()).mean(dim=(2, 3))
        return total.flatten()


class PerceptualDistance(nn.Module):
    """`forward(img0, img1)` on float NCHW images in [0, 255] -> [N] LPIPS distances."""

    def __init__(self, lpips: LpipsVgg16):
        super().__init__()
        self.lpips = lpips

    def forward(self, img0: torch.Tensor, img1: torch.Tensor) -> torch.Tensor:
        dtype = self.lpips.shift.dtype
        img0, img1 = _rgb(img0).to(dtype), _rgb(img1).to(dtype)
        return self.lpips(img0 / 127.5 - 1, img1 / 127.5 - 1)


class TorchScriptLpips(nn.Module):
    """NVIDIA `vgg16.pt`: distance = sum of squared differences of its LPIPS vectors."""

    def __init__(self, module):
        super().__init__()
        self.module = module

    def forward(self, img0: torch.Tensor, img1: torch.Tensor) -> torch.Tensor:
        both = self.module(torch.cat([_rgb(img0), _rgb(img1)]).float(), resize_images=False,
                           return_lpips=True)
        f0, f1 = both.chunk(2)
        return (f0 - f1).square().sum(dim=1)


def _rgb(images: torch.Tensor) -> torch.Tensor:
    return images.repeat(1, 3, 1, 1) if images.shape[1] == 1 else images


def load_lin_weights(path) -> list[torch.Tensor]:
    from ffhq_tools.errors import WeightsError

    state = torch.load(path, map_location="cpu", weights_only=True)
    missing = [k for k in LIN_KEYS if k not in state]
    if missing:
        raise WeightsError(f"{path}: not LPIPS VGG linear layers (missing {missing[0]})")
    return [state[k].float() for k in LIN_KEYS]


def lpips_from_state_dicts(vgg_state: dict, lin_weights: list[torch.Tensor]) -> LpipsVgg16:
    net = vgg.empty_vgg16()
    net.load_state_dict(vgg_state)
    return LpipsVgg16(net.features, lin_weights)


def load_distance(resolve, source: str, device="cpu") -> nn.Module:
    """The perceptual distance from registry entries; `resolve(name)` records each SHA-256."""
    if source not in SOURCES:
        raise ValueError(f"unknown LPIPS source {source!r}; expected one of {SOURCES}")
    if source == vgg.TORCHSCRIPT:
        return TorchScriptLpips(vgg.load_torchscript(resolve(source).path, device)).to(device)
    vgg_state = vgg.load_vgg16_state_dict(resolve(vgg.TORCHVISION).path)
    lins = load_lin_weights(resolve("lpips-vgg-lin").path)
    return PerceptualDistance(lpips_from_state_dicts(vgg_state, lins)).to(device)


def preferred_source(overrides: dict | None) -> str:
    """NVIDIA's TorchScript file when provided (the papers' distance), else ours."""
    return vgg.TORCHSCRIPT if vgg.preferred_source(overrides) == vgg.TORCHSCRIPT else OURS

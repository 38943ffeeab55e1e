"""NVIDIA's TorchScript `vgg16.pt` (stylegan2-ada-pytorch), read as data into our VGG16.

Module tree of the real file (from public code written against it: genforce's weight
converter and projection code that slices `vgg16.layers`):

    layers: conv1 ... conv13 (3x3 convolutions, `weight` + `bias`, ReLU inside each),
            pool1 ... pool5 (2x2 max pools), fc1, fc2 (`weight` + `bias`, ReLU inside),
            fc3 (`weight` + `bias`, 1000 logits), softmax
    lpips0 ... lpips4: LPIPS channel weights, shape [C, 1, 1] for C = 64, 128, 256, 512, 512

A file is refused unless its 37 tensors are exactly these names with these shapes.

`forward(img, resize_images=True, return_lpips=False, return_features=False)` follows the
calls stylegan2-ada-pytorch makes (`return_features=True` for precision/recall on uint8
images at any size, `resize_images=False, return_lpips=True` for PPL on 256x256 floats):
- resize to 224 with the grid-sample TF1 bilinear resize (`nvidia_common`), when asked;
- normalise [0, 255] RGB with the ImageNet mean/std (x / 255 - mean) / std, which is also
  LPIPS v0.1's scaling layer ((x / 127.5 - 1) - shift) / scale up to float rounding;
- `return_lpips`: for each stage output (relu1_2, relu2_2, relu3_3, relu4_3, relu5_3) the
  channel-unit-normalised features times sqrt(lpips weight) / sqrt(H * W), flattened and
  concatenated, so that the squared distance of two such vectors is the LPIPS distance;
- `return_features`: the 4096-d fc2 output (after its ReLU); otherwise softmax(fc3).
NOT established from public sources: the exact floating-point order of the file's own
normalisation and LPIPS code (its `code/` is not published in readable form), and its
default-output behaviour; the names, shapes and roles of the tensors and the resize are.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from eval.features.nvidia_common import checked_tensors, grid_sample_resize
from ffhq_tools.torchscript_archive import read_torchscript

INPUT_SIZE = 224
WHAT = "NVIDIA's vgg16.pt layout"
STAGES = ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512))
FC_WIDTH = 4096
NUM_CLASSES = 1000
POOLED_SIDE = 7
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
NORM_EPS = 1e-10
# (stages, fc width, classes) that `load_nvidia_vgg16` requires: the published file's. Offline
# tests swap in narrower widths to keep files small; the layout rules stay the same.
ARCHITECTURE = (STAGES, FC_WIDTH, NUM_CLASSES)


def expected_shapes(stages=STAGES, fc_width: int = FC_WIDTH,
                    num_classes: int = NUM_CLASSES) -> dict[str, tuple[int, ...]]:
    """NVIDIA tensor name -> shape for a VGG16 with these widths (the defaults are the file's)."""
    shapes: dict[str, tuple[int, ...]] = {}
    in_channels, index = 3, 1
    for stage in stages:
        for out_channels in stage:
            shapes[f"layers.conv{index}.weight"] = (out_channels, in_channels, 3, 3)
            shapes[f"layers.conv{index}.bias"] = (out_channels,)
            in_channels, index = out_channels, index + 1
    widths = (in_channels * POOLED_SIDE ** 2, fc_width, fc_width, num_classes)
    for j in range(3):
        shapes[f"layers.fc{j + 1}.weight"] = (widths[j + 1], widths[j])
        shapes[f"layers.fc{j + 1}.bias"] = (widths[j + 1],)
    for k, stage in enumerate(stages):
        shapes[f"lpips{k}"] = (stage[-1], 1, 1)
    return shapes


class NvidiaVgg16(nn.Module):
    """VGG16 + LPIPS weights behind the call signature of NVIDIA's TorchScript module."""

    def __init__(self, tensors: dict[str, torch.Tensor], stages=STAGES):
        super().__init__()
        self.stage_sizes = tuple(len(stage) for stage in stages)
        for name, tensor in tensors.items():
            self.register_buffer(name.replace("layers.", "").replace(".", "_"), tensor)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))
        self.eval().requires_grad_(False)

    def _conv(self, index: int, x: torch.Tensor) -> torch.Tensor:
        weight, bias = getattr(self, f"conv{index}_weight"), getattr(self, f"conv{index}_bias")
        return F.relu(F.conv2d(x, weight, bias, padding=1))

    def stage_outputs(self, x: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        outputs, index = [], 1
        for size in self.stage_sizes:
            if outputs:
                x = F.max_pool2d(x, 2)
            for _ in range(size):
                x = self._conv(index, x)
                index += 1
            outputs.append(x)
        return outputs, F.max_pool2d(x, 2)

    def _lpips_vector(self, outputs: list[torch.Tensor]) -> torch.Tensor:
        parts = []
        for k, features in enumerate(outputs):
            unit = features / (features.square().sum(dim=1, keepdim=True).sqrt() + NORM_EPS)
            weight = getattr(self, f"lpips{k}").sqrt()
            height, width = features.shape[2:]
            parts.append((unit * weight / (height * width) ** 0.5).flatten(1))
        return torch.cat(parts, dim=1)

    def _fc(self, j: int, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, getattr(self, f"fc{j}_weight"), getattr(self, f"fc{j}_bias"))

    def forward(self, img: torch.Tensor, resize_images: bool = True, return_lpips: bool = False,
                return_features: bool = False) -> torch.Tensor:
        x = img.to(torch.float32)
        if resize_images:
            x = grid_sample_resize(x, INPUT_SIZE)
        if x.shape[1] == 1:
            x = x.repeat(1, 3, 1, 1)
        x = (x / 255 - self.mean) / self.std
        outputs, pooled = self.stage_outputs(x)
        if return_lpips:
            return self._lpips_vector(outputs)
        x = F.relu(self._fc(1, pooled.flatten(1)))
        x = F.relu(self._fc(2, x))
        if return_features:
            return x
        return torch.softmax(self._fc(3, x), dim=1)


def vgg16_from_tensors(path, tensors: dict[str, torch.Tensor], stages=STAGES,
                       fc_width: int = FC_WIDTH, num_classes: int = NUM_CLASSES) -> NvidiaVgg16:
    """Our module holding the file's tensors, each checked by name and shape."""
    from ffhq_tools.errors import WeightsError

    checked = checked_tensors(path, WHAT, tensors, expected_shapes(stages, fc_width,
                                                                    num_classes))
    negative = [f"lpips{k}" for k in range(len(stages)) if (checked[f"lpips{k}"] < 0).any()]
    if negative:
        raise WeightsError(f"{path}: not {WHAT}: LPIPS weights '{negative[0]}' are negative")
    return NvidiaVgg16(checked, stages)


def load_nvidia_vgg16(path) -> NvidiaVgg16:
    """NVIDIA's TorchScript VGG16 file as our module, read as data (never executed)."""
    return vgg16_from_tensors(path, read_torchscript(path).tensors(), *ARCHITECTURE)

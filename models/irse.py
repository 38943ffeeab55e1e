"""The IR-SE50 network of pSp (eladrich/pixel2style2pixel, `models/encoders/model_irse.py`,
after TreB1eN's InsightFace_Pytorch): ArcFace's face-recognition backbone, also the trunk of
pSp's GradualStyleEncoder.

Module names and order follow the reference exactly, so its published state dicts
(`model_ir_se50.pth`: input_layer.*, body.N.*, output_layer.*) load with strict=True:

- `input_layer`: 3x3 conv 3 -> 64 (no bias), BatchNorm, PReLU;
- `body`: 24 bottleneck units in four stages (3 x 64, 4 x 128, 14 x 256, 3 x 512 channels),
  the first unit of each stage with stride 2. A unit is `shortcut_layer(x) + res_layer(x)`:
  the shortcut is MaxPool2d(1, stride) when the width is unchanged, else a strided 1x1 conv
  + BatchNorm; `res_layer` is BatchNorm, 3x3 conv, PReLU, 3x3 conv (strided), BatchNorm and
  a squeeze-excitation module (avg pool, 1x1 conv C -> C/16, ReLU, 1x1 conv C/16 -> C,
  sigmoid, times the input);
- `output_layer` (112 px input, 7x7 at the end): BatchNorm2d, Dropout, flatten, linear
  512*7*7 -> 512, BatchNorm1d; the result is L2-normalised.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

# (input width, output width, units) of the four stages of the 50-layer network.
IRSE50_STAGES = ((64, 64, 3), (64, 128, 4), (128, 256, 14), (256, 512, 3))
SE_REDUCTION = 16
EMBEDDING_DIM = 512
INPUT_SIZE = 112


class SqueezeExcite(nn.Module):
    """x * sigmoid(fc2(relu(fc1(mean over space of x)))), the fcs as bias-free 1x1 convs."""

    def __init__(self, channels: int, reduction: int = SE_REDUCTION):
        super().__init__()
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(channels, channels // reduction, 1, bias=False)
        self.relu = nn.ReLU()
        self.fc2 = nn.Conv2d(channels // reduction, channels, 1, bias=False)
        self.sigmoid = nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate = self.sigmoid(self.fc2(self.relu(self.fc1(self.avg_pool(x)))))
        return x * gate


class BottleneckIRSE(nn.Module):
    """One IR-SE unit: shortcut(x) + res_layer(x)."""

    def __init__(self, in_channels: int, depth: int, stride: int):
        super().__init__()
        if in_channels == depth:
            self.shortcut_layer = nn.MaxPool2d(1, stride)
        else:
            self.shortcut_layer = nn.Sequential(
                nn.Conv2d(in_channels, depth, 1, stride, bias=False), nn.BatchNorm2d(depth))
        self.res_layer = nn.Sequential(
            nn.BatchNorm2d(in_channels),
            nn.Conv2d(in_channels, depth, 3, 1, 1, bias=False),
            nn.PReLU(depth),
            nn.Conv2d(depth, depth, 3, stride, 1, bias=False),
            nn.BatchNorm2d(depth),
            SqueezeExcite(depth),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shortcut_layer(x) + self.res_layer(x)


def unit_layout(stages=IRSE50_STAGES) -> list[tuple[int, int, int]]:
    """(in channels, depth, stride) of every unit: each stage opens with a stride-2 unit."""
    units = []
    for in_channels, depth, count in stages:
        units.append((in_channels, depth, 2))
        units += [(depth, depth, 1)] * (count - 1)
    return units


def input_layer() -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(3, 64, 3, 1, 1, bias=False), nn.BatchNorm2d(64),
                         nn.PReLU(64))


def irse_body(stages=IRSE50_STAGES) -> nn.Sequential:
    return nn.Sequential(*(BottleneckIRSE(*unit) for unit in unit_layout(stages)))


class IRSE50(nn.Module):
    """`Backbone(input_size=112, num_layers=50, mode='ir_se')`: [N, 3, 112, 112] in [-1, 1]
    -> [N, 512] unit vectors."""

    def __init__(self, drop_ratio: float = 0.4):
        super().__init__()
        self.input_layer = input_layer()
        self.output_layer = nn.Sequential(
            nn.BatchNorm2d(512), nn.Dropout(drop_ratio), nn.Flatten(),
            nn.Linear(512 * 7 * 7, EMBEDDING_DIM), nn.BatchNorm1d(EMBEDDING_DIM))
        self.body = irse_body()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if tuple(x.shape[-2:]) != (INPUT_SIZE, INPUT_SIZE):
            raise ValueError(f"IR-SE50 takes {INPUT_SIZE}x{INPUT_SIZE} inputs, got "
                             f"{tuple(x.shape[-2:])}")
        features = self.output_layer(self.body(self.input_layer(x)))
        return F.normalize(features, dim=1)


def seeded_irse50(seed: int = 0) -> IRSE50:
    """IR-SE50 with deterministic random weights and non-trivial BatchNorm statistics (for
    offline tests), in eval mode."""
    gen = torch.Generator().manual_seed(seed)
    net = IRSE50()
    with torch.no_grad():
        for name, tensor in net.state_dict().items():
            if name.endswith("num_batches_tracked"):
                continue
            if name.endswith("running_var"):
                tensor.copy_(0.5 + torch.rand(tensor.shape, generator=gen))
            elif name.endswith("running_mean") or name.endswith("bias"):
                tensor.copy_(0.1 * torch.randn(tensor.shape, generator=gen))
            elif tensor.ndim == 1:  # BatchNorm gammas, PReLU slopes
                tensor.copy_(0.75 + 0.5 * torch.rand(tensor.shape, generator=gen))
            else:
                fan_in = tensor[0].numel()
                tensor.copy_(torch.randn(tensor.shape, generator=gen) / fan_in ** 0.5)
    return net.eval()

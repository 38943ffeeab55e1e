"""dlib's face-recognition ResNet in torch (`dlib_face_recognition_resnet_model_v1.dat`, the
network of dlib's `dnn_face_recognition_ex.cpp`, shipped offline by `face_recognition_models`),
differentiable, so it can serve as the identity loss where ArcFace's weights are not at hand
(`--identity dlib`).

Architecture (dlib's definition; strides 2 have no padding, as dlib's defaults give):
- input 150x150 RGB, each channel `(pixel - mean) / 256` (means in the file);
- conv 7x7/2 (32), affine, relu, max pool 3x3/2;
- residual units, 3 x 32, then [down + 3] x 64, [down + 2] x 128, [down + 2] x 256, down x 256.
  A unit is `relu(block(x) + x)`, block = affine(conv3x3(relu(affine(conv3x3/s(x))))); a
  down unit adds the 2x2/2 average pool of x instead of x, and where the two differ in
  channels or size the sum is taken over dlib's zero-padded union (`add_prev`);
- global average pool, a bias-free linear 256 -> 128: the face descriptor. dlib calls two
  faces the same person below a Euclidean distance of 0.6.
The layers are read from the file in the order dlib writes them (`models.dlib_dnn_reader`,
data only) and each one's kind, shape, stride and padding is checked against this layout.

`DlibFaceEmbedder.embed(images [N, 3, R, R] in [-1, 1], FFHQ-aligned)` crops the face chip
(`models.dlib_chip`, the chip `dlib.get_face_chip(shape, 150, 0.25)` cuts from an
FFHQ-aligned face), resizes it to 150 px (bilinear, antialiased) and returns unit descriptors.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ffhq_tools.errors import WeightsError
from models.dlib_chip import CHIP_SIZE, WEIGHTS_NAME, chip_box
from models.dlib_dnn_reader import DlibLayer, DlibNet, read_dlib_net

DESCRIPTOR_DIM = 128
# (channels, units, first unit down-samples), input side first.
STAGES = ((32, 3, False), (64, 4, True), (128, 3, True), (256, 3, True), (256, 1, True))


class Affine(nn.Module):
    """dlib's affine_ layer (a frozen batch norm): gamma * x + beta per channel."""

    def __init__(self, channels: int):
        super().__init__()
        self.gamma = nn.Parameter(torch.ones(1, channels, 1, 1))
        self.beta = nn.Parameter(torch.zeros(1, channels, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma + self.beta


def padded_add(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """dlib's add_prev: the sum over the union of both shapes, missing values taken as 0."""
    shape = [max(p, q) for p, q in zip(a.shape, b.shape, strict=True)]

    def pad(t):
        return F.pad(t, (0, shape[3] - t.shape[3], 0, shape[2] - t.shape[2],
                         0, shape[1] - t.shape[1]))
    return pad(a) + pad(b)


class ResidualUnit(nn.Module):
    def __init__(self, in_channels: int, channels: int, down: bool):
        super().__init__()
        stride = 2 if down else 1
        self.down = down
        self.conv1 = nn.Conv2d(in_channels, channels, 3, stride, 0 if down else 1)
        self.affine1 = Affine(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, 1, 1)
        self.affine2 = Affine(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.affine2(self.conv2(F.relu(self.affine1(self.conv1(x)))))
        shortcut = F.avg_pool2d(x, 2, 2) if self.down else x
        return F.relu(padded_add(y, shortcut))

    def expected_layers(self) -> list[tuple]:
        """(kind, details) in dlib's file order: the block, [the pool], add_prev, relu."""
        block = [("con", self.conv1), ("affine", self.affine1), ("relu", None),
                 ("con", self.conv2), ("affine", self.affine2)]
        pool = [("avg_pool", (2, 2, 2, 0))] if self.down else []
        return block + pool + [("add_prev", None), ("relu", None)]


class DlibFaceResNet(nn.Module):
    """150x150 RGB in [0, 255] (float) -> [N, 128] dlib face descriptors."""

    def __init__(self, mean=(122.782, 117.001, 104.298)):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1))
        self.conv = nn.Conv2d(3, 32, 7, 2, 0)
        self.affine = Affine(32)
        units, width = [], 32
        for channels, count, down in STAGES:
            for i in range(count):
                units.append(ResidualUnit(width, channels, down and i == 0))
                width = channels
        self.units = nn.ModuleList(units)
        self.fc = nn.Linear(width, DESCRIPTOR_DIM, bias=False)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        x = (pixels - self.mean) / 256
        x = F.max_pool2d(F.relu(self.affine(self.conv(x))), 3, 2)
        for unit in self.units:
            x = unit(x)
        return self.fc(x.mean(dim=(2, 3)))

    def expected_layers(self) -> list[tuple]:
        layers = [("con", self.conv), ("affine", self.affine), ("relu", None),
                  ("max_pool", (3, 3, 2, 0))]
        for unit in self.units:
            layers += unit.expected_layers()
        return layers + [("avg_pool", (0, 0, 1, 0)), ("fc", self.fc)]


def _check_pool(layer: DlibLayer, window: tuple, where: str) -> None:
    f = layer.fields
    found = (f["nr"], f["nc"], f["stride"][0], f["padding"][0])
    if found != window or f["stride"][0] != f["stride"][1] or f["padding"] != (window[3],) * 2:
        raise WeightsError(f"{where}: pool {found}, expected {window} (nr, nc, stride, pad)")


def _load_con(conv: nn.Conv2d, layer: DlibLayer, where: str) -> None:
    f = layer.fields
    weight = f["weight"]
    if tuple(weight.shape) != tuple(conv.weight.shape) or not f["use_bias"] or \
            f["stride"] != conv.stride or f["padding"] != conv.padding:
        raise WeightsError(f"{where}: conv {list(weight.shape)} stride {f['stride']} padding "
                           f"{f['padding']}, expected {list(conv.weight.shape)} stride "
                           f"{conv.stride} padding {conv.padding}")
    conv.weight.data.copy_(torch.from_numpy(weight))
    conv.bias.data.copy_(torch.from_numpy(f["bias"].reshape(-1)))


def _load_affine(affine: Affine, layer: DlibLayer, where: str) -> None:
    f = layer.fields
    if f["gamma"].shape != tuple(affine.gamma.shape) or f["disabled"]:
        raise WeightsError(f"{where}: affine of shape {list(f['gamma'].shape)}, expected "
                           f"{list(affine.gamma.shape)}")
    affine.gamma.data.copy_(torch.from_numpy(f["gamma"]))
    affine.beta.data.copy_(torch.from_numpy(f["beta"]))


def _load_fc(fc: nn.Linear, layer: DlibLayer, where: str) -> None:
    weight = layer.fields["weight"].reshape(layer.fields["num_inputs"], -1)
    if weight.T.shape != tuple(fc.weight.shape) or layer.fields["bias_mode"] != 1:
        raise WeightsError(f"{where}: fc {list(weight.shape)}, expected a bias-free "
                           f"{fc.in_features} -> {fc.out_features}")
    fc.weight.data.copy_(torch.from_numpy(np.ascontiguousarray(weight.T)))


def load_layers(net: DlibFaceResNet, dlib_net: DlibNet, path: Path) -> DlibFaceResNet:
    """Fill `net` from the file's layers, checking each against the layout."""
    expected = net.expected_layers()
    if len(dlib_net.layers) != len(expected) or dlib_net.input.fields.get("size") != \
            (CHIP_SIZE, CHIP_SIZE):
        raise WeightsError(f"{path}: {len(dlib_net.layers)} layers on a "
                           f"{dlib_net.input.fields.get('size')} input; dlib's face ResNet has "
                           f"{len(expected)} on 150x150 (is this another dlib network?)")
    for index, ((kind, target), layer) in enumerate(zip(expected, dlib_net.layers,
                                                        strict=True)):
        where = f"{path}: layer {index} ({layer.kind})"
        if not layer.kind.startswith(kind):
            raise WeightsError(f"{where}: expected a {kind} layer")
        if layer.fields.get("disabled"):
            raise WeightsError(f"{where}: a disabled layer")
        if kind == "con":
            _load_con(target, layer, where)
        elif kind == "affine":
            _load_affine(target, layer, where)
        elif kind == "fc":
            _load_fc(target, layer, where)
        elif kind in ("avg_pool", "max_pool"):
            _check_pool(layer, target, where)
    net.mean.copy_(torch.tensor(dlib_net.input.fields["mean"]).view(1, 3, 1, 1))
    return net


def read_face_resnet(path: str | Path) -> DlibFaceResNet:
    """dlib_face_recognition_resnet_model_v1.dat -> DlibFaceResNet (eval mode, frozen)."""
    path = Path(path)
    with torch.no_grad():
        net = load_layers(DlibFaceResNet(), read_dlib_net(path), path)
    return net.requires_grad_(False).eval()


def face_chips(images: torch.Tensor) -> torch.Tensor:
    """FFHQ-aligned [N, C, H, W] -> [N, C, 150, 150]: DLIB_CHIP_BOX, resized (bilinear,
    antialiased)."""
    height, width = images.shape[-2:]
    left, top, right, bottom = (round(v) for v in chip_box(width, height))
    crop = images[..., top:bottom, left:right]
    return F.interpolate(crop, size=(CHIP_SIZE, CHIP_SIZE), mode="bilinear",
                         align_corners=False, antialias=True)


class DlibFaceEmbedder(nn.Module):
    """The identity embedder over dlib's network; gradients flow to the images only."""

    def __init__(self, network: DlibFaceResNet, provenance: dict):
        super().__init__()
        self.network = network
        self.provenance = dict(provenance)
        self.requires_grad_(False).eval()

    def descriptors(self, images: torch.Tensor) -> torch.Tensor:
        """[-1, 1] FFHQ-aligned images -> dlib's 128-d descriptors (Euclidean scale)."""
        chips = face_chips(images.float())
        if chips.shape[1] == 1:
            chips = chips.repeat(1, 3, 1, 1)
        return self.network((chips + 1) * 127.5)

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.descriptors(images), dim=1)

    def describe(self) -> dict:
        return {"kind": WEIGHTS_NAME, **self.provenance}


def load_dlib_identity(overrides: dict | None = None, device="cpu") -> DlibFaceEmbedder:
    """The registry's dlib face ResNet (face_recognition_models ships it offline)."""
    from ffhq_tools import weights

    resolved = weights.resolve(WEIGHTS_NAME, overrides)
    return DlibFaceEmbedder(read_face_resnet(resolved.path), resolved.provenance()).to(device)

"""CelebA-HQ attribute classifiers: the ProGAN discriminator (`D_paper`) used as a classifier.

One network per attribute (order: `ffhq_tools.weights.CELEBAHQ_ATTRIBUTES`), input images in
[-1, 1] box-downsampled to the classifier's resolution (256 for NVIDIA's), one logit; the
class probabilities are softmax([logit, -logit]) as in the StyleGAN separability code.

Two file formats, told apart by content:
- NVIDIA's `celebahq-classifier-NN-<attr>.pkl` TF pickles, read by the restricted unpickler
  `models.legacy.safe_load_pickle` (no code runs; only variables and static kwargs are used);
- our own `torch.save` files written by `eval.classifiers` (`{"format", "config",
  "state_dict", ...}`), read with `weights_only=True`.
Architecture (lod 0, i.e. fully grown): FromRGB 1x1 -> per resolution R..8: Conv0 3x3,
Conv1_down 3x3 fused with a 2x2 box downscale -> 4x4: minibatch stddev, Conv 3x3, Dense0,
Dense1 (1 output). Equalised learning rate: weights stored N(0, 1), scaled by
gain / sqrt(fan_in) at run time (gain sqrt 2, 1 for Dense1), leaky ReLU 0.2.
"""

from __future__ import annotations

import math
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ffhq_tools.errors import FfhqToolsError

OWN_FORMAT = "ffhq-tools-attribute-classifier/v1"
NVIDIA_RESOLUTION = 256


class ClassifierFileError(FfhqToolsError):
    """An attribute-classifier file that cannot be used."""


@dataclass(frozen=True)
class ClassifierConfig:
    resolution: int = NVIDIA_RESOLUTION
    num_channels: int = 3
    fmap_base: int = 8192
    fmap_decay: float = 1.0
    fmap_max: int = 512
    mbstd_group_size: int = 4

    def nf(self, stage: int) -> int:
        return min(int(self.fmap_base / (2.0 ** (stage * self.fmap_decay))), self.fmap_max)

    @property
    def log2(self) -> int:
        value = int(round(math.log2(self.resolution)))
        if 2 ** value != self.resolution or value < 2:
            raise ClassifierFileError(f"classifier resolution {self.resolution} is not a "
                                      "power of two >= 4")
        return value


class EqualizedConv(nn.Module):
    def __init__(self, cin: int, cout: int, kernel: int, gain: float = math.sqrt(2),
                 down: bool = False):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(cout, cin, kernel, kernel))
        self.bias = nn.Parameter(torch.zeros(cout))
        self.scale = gain / math.sqrt(cin * kernel * kernel)
        self.down = down

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight * self.scale
        if self.down:  # conv 3x3 then 2x2 box downscale, fused into a 4x4 stride-2 kernel
            w = F.pad(w, (1, 1, 1, 1))
            w = (w[:, :, 1:, 1:] + w[:, :, :-1, 1:] + w[:, :, 1:, :-1] + w[:, :, :-1, :-1]) / 4
            x = F.conv2d(x, w, stride=2, padding=1)
        else:
            x = F.conv2d(x, w, padding=w.shape[-1] // 2)
        return x + self.bias.view(1, -1, 1, 1)


class EqualizedDense(nn.Module):
    def __init__(self, cin: int, cout: int, gain: float = math.sqrt(2)):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(cout, cin))
        self.bias = nn.Parameter(torch.zeros(cout))
        self.scale = gain / math.sqrt(cin)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x.flatten(1), self.weight * self.scale, self.bias)


def minibatch_stddev(x: torch.Tensor, group_size: int) -> torch.Tensor:
    """Append the mean (over channels and pixels) of the per-group standard deviation."""
    n, c, h, w = x.shape
    g = min(group_size, n)
    if n % g:
        raise ValueError(f"minibatch stddev: batch {n} is not divisible by group size {g}")
    y = x.reshape(g, -1, c, h, w).float()
    y = (y - y.mean(dim=0)).square().mean(dim=0).add(1e-8).sqrt()
    y = y.mean(dim=(1, 2, 3)).to(x.dtype).view(-1, 1, 1, 1).repeat(g, 1, h, w)
    return torch.cat([x, y], dim=1)


class AttributeClassifier(nn.Module):
    """ProGAN D_paper at lod 0: images [N, C, R, R] in [-1, 1] -> logits [N, 1]."""

    def __init__(self, config: ClassifierConfig = ClassifierConfig()):
        super().__init__()
        self.config = config
        top = config.log2
        self.from_rgb = EqualizedConv(config.num_channels, config.nf(top - 1), 1)
        self.blocks = nn.ModuleDict()
        for res in range(top, 2, -1):
            self.blocks[f"b{2 ** res}"] = nn.ModuleList([
                EqualizedConv(config.nf(res - 1), config.nf(res - 1), 3),
                EqualizedConv(config.nf(res - 1), config.nf(res - 2), 3, down=True)])
        extra = 1 if config.mbstd_group_size > 1 else 0
        self.conv4 = EqualizedConv(config.nf(1) + extra, config.nf(1), 3)
        self.dense0 = EqualizedDense(config.nf(1) * 16, config.nf(0))
        self.dense1 = EqualizedDense(config.nf(0), 1, gain=1.0)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = F.leaky_relu(self.from_rgb(images), 0.2)
        for conv0, conv1 in self.blocks.values():
            x = F.leaky_relu(conv1(F.leaky_relu(conv0(x), 0.2)), 0.2)
        if self.config.mbstd_group_size > 1:
            x = minibatch_stddev(x, self.config.mbstd_group_size)
        x = F.leaky_relu(self.conv4(x), 0.2)
        x = F.leaky_relu(self.dense0(x), 0.2)
        return self.dense1(x)


def prepare_images(images: torch.Tensor, resolution: int) -> torch.Tensor:
    """Generator output (float, [-1, 1]) box-downsampled to the classifier's resolution."""
    size = images.shape[2]
    if size == resolution:
        return images
    if size < resolution or size % resolution:
        raise FfhqToolsError(f"attribute classifier expects {resolution}px images (or an "
                             f"integer multiple); got {size}px")
    f = size // resolution
    n, c = images.shape[:2]
    return images.reshape(n, c, resolution, f, resolution, f).mean(dim=(3, 5))


def class_probabilities(logits: torch.Tensor) -> torch.Tensor:
    """softmax([logit, -logit]) -> [N, 2]."""
    logits = logits.reshape(-1, 1)
    return torch.softmax(torch.cat([logits, -logits], dim=1), dim=1)


# ---- NVIDIA TF pickles ------------------------------------------------------------------------

def _tf_conv(array: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(array.transpose(3, 2, 0, 1))).float()


def _tf_dense(array: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(array.T)).float()


def tf_variable_map(config: ClassifierConfig) -> dict[str, tuple[str, str]]:
    """Our parameter name -> (TF variable name, kind) for a D_paper classifier."""
    top = config.log2
    names = {"from_rgb": ("FromRGB_lod0", "conv")}
    for res in range(top, 2, -1):
        scope = f"{2 ** res}x{2 ** res}"
        names[f"blocks.b{2 ** res}.0"] = (f"{scope}/Conv0", "conv")
        names[f"blocks.b{2 ** res}.1"] = (f"{scope}/Conv1_down", "conv")
    names.update({"conv4": ("4x4/Conv", "conv"), "dense0": ("4x4/Dense0", "dense"),
                  "dense1": ("4x4/Dense1", "dense")})
    return names


def _config_from_kwargs(kwargs: dict, path) -> ClassifierConfig:
    if kwargs.get("fused_scale", True) is not True:
        raise ClassifierFileError(f"{path}: classifiers with fused_scale=False are not "
                                  "supported")
    if kwargs.get("use_wscale", True) is not True:
        raise ClassifierFileError(f"{path}: classifiers without equalised lr are not supported")
    defaults = ClassifierConfig()
    return ClassifierConfig(
        resolution=int(kwargs.get("resolution", defaults.resolution)),
        num_channels=int(kwargs.get("num_channels", defaults.num_channels)),
        fmap_base=int(kwargs.get("fmap_base", defaults.fmap_base)),
        fmap_decay=float(kwargs.get("fmap_decay", defaults.fmap_decay)),
        fmap_max=int(kwargs.get("fmap_max", defaults.fmap_max)),
        mbstd_group_size=int(kwargs.get("mbstd_group_size", defaults.mbstd_group_size)))


def classifier_from_tf(variables: dict[str, np.ndarray], static_kwargs: dict,
                       path="<tf pickle>") -> AttributeClassifier:
    """Build our classifier from a D_paper TF network's variables (shapes checked)."""
    config = _config_from_kwargs(static_kwargs, path)
    lod = float(np.asarray(variables.get("lod", 0.0)))
    if lod != 0.0:
        raise ClassifierFileError(f"{path}: network is at lod {lod}, not fully grown (lod 0)")
    net = AttributeClassifier(config)
    state = {}
    for ours, (scope, kind) in tf_variable_map(config).items():
        for suffix in ("weight", "bias"):
            key = f"{scope}/{suffix}"
            if key not in variables:
                raise ClassifierFileError(f"{path}: missing TF variable '{key}'")
            value = np.asarray(variables[key], dtype=np.float32)
            tensor = (torch.from_numpy(value.copy()) if suffix == "bias"
                      else _tf_conv(value) if kind == "conv" else _tf_dense(value))
            state[f"{ours}.{suffix}"] = tensor
    expected = net.state_dict()
    for key, tensor in state.items():
        if tensor.shape != expected[key].shape:
            raise ClassifierFileError(f"{path}: variable for {key} has shape "
                                      f"{tuple(tensor.shape)}, expected "
                                      f"{tuple(expected[key].shape)} (static kwargs "
                                      f"{asdict(config)})")
    net.load_state_dict(state)
    return net.eval().requires_grad_(False)


def load_tf_classifier(path) -> AttributeClassifier:
    from models.legacy import TFNetwork, safe_load_pickle

    network = safe_load_pickle(path)
    if not isinstance(network, TFNetwork):
        raise ClassifierFileError(f"{path}: expected a TF network pickle, got "
                                  f"{type(network).__name__}")
    return classifier_from_tf(network.variables, network.static_kwargs, path)


# ---- our own format ---------------------------------------------------------------------------

def save_classifier(path, net: AttributeClassifier, attribute: str, metrics: dict) -> None:
    from ffhq_tools.atomic import atomic_path

    payload = {"format": OWN_FORMAT, "config": asdict(net.config), "attribute": attribute,
               "metrics": dict(metrics),
               "state_dict": {k: v.detach().cpu() for k, v in net.state_dict().items()}}
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def load_own_classifier(path) -> tuple[AttributeClassifier, dict]:
    payload = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(payload, dict) or payload.get("format") != OWN_FORMAT:
        found = payload.get("format") if isinstance(payload, dict) else type(payload).__name__
        raise ClassifierFileError(f"{path}: not an ffhq-tools attribute classifier "
                                  f"(format {found!r})")
    net = AttributeClassifier(ClassifierConfig(**payload["config"]))
    net.load_state_dict(payload["state_dict"])
    return net.eval().requires_grad_(False), payload


def load_classifier(path) -> AttributeClassifier:
    """Either format, recognised by content (torch zip archive vs TF pickle)."""
    path = Path(path)
    if not path.is_file():
        raise ClassifierFileError(f"{path}: no such classifier file")
    if zipfile.is_zipfile(path):
        return load_own_classifier(path)[0]
    return load_tf_classifier(path)


def registry_name(index: int) -> str:
    return f"celebahq-classifier-{index:02d}"


def load_attribute_classifiers(resolve, indices, device="cpu") -> dict[int, AttributeClassifier]:
    """Attribute index -> classifier for registry entries `celebahq-classifier-NN`."""
    return {i: load_classifier(resolve(registry_name(i)).path).to(device) for i in indices}

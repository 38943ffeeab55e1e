"""VGG19 features for DualStyleGAN's training losses (the official `model/vgg.py`).

Five outputs: relu1_1, relu2_1, relu3_1, relu4_1, relu5_1 of torchvision's `vgg19.features`
(layers 0-1, 2-6, 7-11, 12-20, 21-29). Input images are in [-1, 1]; they are normalised with
the ImageNet mean / std rescaled to that range ((x - (2 mean - 1)) / (2 std)), as upstream.

Weights: the registry entry `vgg19` (torchvision's ImageNet `vgg19-dcbb9e9d.pth`), or
`seeded_vgg19(seed)` (architecture-exact, deterministic random weights, tagged as such) for
offline tests. Every run records which one it used (`provenance`).
"""

from __future__ import annotations

import torch
from torch import nn

from ffhq_tools.errors import WeightsError

WEIGHTS_NAME = "vgg19"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# (first, last + 1) indices into vgg19.features of each output slice.
SLICES = ((0, 2), (2, 7), (7, 12), (12, 21), (21, 30))
FEATURE_NAMES = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")


def vgg19_trunk() -> nn.Sequential:
    """torchvision's `vgg19(weights=None).features[:30]` with uninitialised parameters, to
    be filled by `load_state_dict` or `seeded_vgg19` (never downloads, skips the 140M
    parameter random init of the classifier)."""
    import torchvision

    with torch.device("meta"):
        net = torchvision.models.vgg19(weights=None)
    return net.features[:SLICES[-1][1]].to_empty(device="cpu")


class VGG19Features(nn.Module):
    """`features(images [-1, 1]) -> [relu1_1, relu2_1, relu3_1, relu4_1, relu5_1]`."""

    def __init__(self, trunk: nn.Sequential, provenance: dict):
        super().__init__()
        self.slices = nn.ModuleList(trunk[a:b] for a, b in SLICES)
        self.provenance = dict(provenance)
        mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1) * 2 - 1
        std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1) * 2
        self.register_buffer("mean", mean, persistent=False)
        self.register_buffer("std", std, persistent=False)
        self.requires_grad_(False).eval()

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        x = (images - self.mean.to(images.dtype)) / self.std.to(images.dtype)
        outputs = []
        for block in self.slices:
            x = block(x)
            outputs.append(x)
        return outputs


def load_vgg19(overrides: dict | None = None) -> VGG19Features:
    """The ImageNet VGG19 from the weights registry (a clear error when it is missing)."""
    from ffhq_tools import weights

    resolved = weights.resolve(WEIGHTS_NAME, overrides)
    state = torch.load(resolved.path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict) or "features.0.weight" not in state:
        raise WeightsError(f"{resolved.path}: not a torchvision VGG19 state dict "
                           "(no 'features.0.weight')")
    trunk = vgg19_trunk()
    prefix = "features."
    wanted = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)
              and int(k[len(prefix):].split(".")[0]) < SLICES[-1][1]}
    try:
        trunk.load_state_dict(wanted)
    except RuntimeError as exc:
        raise WeightsError(f"{resolved.path}: not a VGG19 ({str(exc).splitlines()[0]})") \
            from None
    return VGG19Features(trunk, resolved.provenance())


VGG19_LAYOUT = (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M",
                512)


def narrow_trunk(divisor: int) -> nn.Sequential:
    """vgg19.features[:30]'s layer layout with every width divided by `divisor`."""
    layers, channels = [], 3
    for item in VGG19_LAYOUT:
        if item == "M":
            layers.append(nn.MaxPool2d(2, 2))
            continue
        width = max(item // divisor, 1)
        layers += [nn.Conv2d(channels, width, 3, padding=1), nn.ReLU(inplace=True)]
        channels = width
    return nn.Sequential(*layers)


def seeded_vgg19(seed: int = 0, width_divisor: int = 1) -> VGG19Features:
    """VGG19 with deterministic random weights (He-normal convs, as torchvision initialises)
    for offline tests, optionally narrowed (`width_divisor`) for fast CPU tests; its
    provenance says so."""
    generator = torch.Generator().manual_seed(seed)
    trunk = vgg19_trunk() if width_divisor == 1 else narrow_trunk(width_divisor)
    with torch.no_grad():
        for layer in trunk:
            if isinstance(layer, nn.Conv2d):
                fan_out = layer.out_channels * 9
                layer.weight.copy_(torch.randn(layer.weight.shape, generator=generator)
                                   * (2 / fan_out) ** 0.5)
                layer.bias.zero_()
    tag = f"seeded-random-{seed}" + (f"-width/{width_divisor}" if width_divisor != 1 else "")
    return VGG19Features(trunk, {"name": WEIGHTS_NAME, "sha256": tag, "source": "random"})

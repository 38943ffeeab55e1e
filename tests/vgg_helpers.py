"""Architecture-exact torchvision VGG16 files with deterministic random weights."""

from __future__ import annotations

from pathlib import Path

import torch


def random_vgg16_state(seed: int = 1234, *, classifier: bool = False) -> dict:
    """A He-initialised VGG16 state dict in torchvision's layout.

    classifier=False zeroes the fully connected layers, which LPIPS never reads. They are
    stored as stride-0 views of one zero, so a saved file holds only the 15M conv weights
    (59 MB instead of 553 MB); the convolutions are the same numbers either way."""
    from eval.features.vgg16 import empty_vgg16

    generator = torch.Generator().manual_seed(seed)
    state = {}
    for name, tensor in empty_vgg16().state_dict().items():
        if name.startswith("classifier") and not classifier:
            state[name] = torch.zeros(1).expand(tensor.shape)
        elif name.endswith("bias"):
            state[name] = torch.randn(tensor.shape, generator=generator) * 0.01
        else:
            fan_in = tensor[0].numel()
            state[name] = torch.randn(tensor.shape, generator=generator) * (2 / fan_in) ** 0.5
    return state


def write_random_vgg16(path: Path, seed: int = 1234, *, classifier: bool = False) -> Path:
    torch.save(random_vgg16_state(seed, classifier=classifier), path)
    return path

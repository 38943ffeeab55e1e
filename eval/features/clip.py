"""The CLIP ViT-B/32 image encoder (`encode_image`, 512-d), in OpenAI's parameter layout.

Keys (prefix `visual.` in a whole-model checkpoint): `conv1` (no bias), `class_embedding`,
`positional_embedding` (7 x 7 + 1 positions at 224 px), `ln_pre`,
`transformer.resblocks.N.{ln_1, attn.in_proj_weight, attn.in_proj_bias, attn.out_proj,
ln_2, mlp.c_fc, mlp.c_proj}`, `ln_post`, `proj`. Activation QuickGELU (x * sigmoid(1.702 x)),
LayerNorm eps 1e-5; the output is ln_post(class token) @ proj.

The weights file is open_clip's state dict of OpenAI's ViT-B/32 (same keys and numbers as
OpenAI's release); OpenAI's own `ViT-B-32.pt` is a TorchScript archive, which this suite does
not execute or load.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ffhq_tools.errors import WeightsError

PREFIX = "visual."


@dataclass(frozen=True)
class ClipVisionConfig:
    width: int = 768
    layers: int = 12
    heads: int = 12
    patch_size: int = 32
    resolution: int = 224
    output_dim: int = 512

    @property
    def grid(self) -> int:
        return self.resolution // self.patch_size


VIT_B_32 = ClipVisionConfig()


class QuickGELU(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(1.702 * x)


class ResidualAttentionBlock(nn.Module):
    def __init__(self, width: int, heads: int):
        super().__init__()
        self.ln_1 = nn.LayerNorm(width)
        self.attn = nn.MultiheadAttention(width, heads)
        self.ln_2 = nn.LayerNorm(width)
        self.mlp = nn.Sequential()
        self.mlp.add_module("c_fc", nn.Linear(width, width * 4))
        self.mlp.add_module("gelu", QuickGELU())
        self.mlp.add_module("c_proj", nn.Linear(width * 4, width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.ln_1(x)
        x = x + self.attn(y, y, y, need_weights=False)[0]
        return x + self.mlp(self.ln_2(x))


class Transformer(nn.Module):
    def __init__(self, config: ClipVisionConfig):
        super().__init__()
        self.resblocks = nn.Sequential(*(ResidualAttentionBlock(config.width, config.heads)
                                         for _ in range(config.layers)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.resblocks(x)


class ClipVisionTransformer(nn.Module):
    """CLIP-normalised float NCHW images at config.resolution -> (N, output_dim)."""

    def __init__(self, config: ClipVisionConfig = VIT_B_32):
        super().__init__()
        self.config = config
        width = config.width
        self.conv1 = nn.Conv2d(3, width, config.patch_size, stride=config.patch_size,
                               bias=False)
        self.class_embedding = nn.Parameter(torch.zeros(width))
        self.positional_embedding = nn.Parameter(torch.zeros(config.grid ** 2 + 1, width))
        self.ln_pre = nn.LayerNorm(width)
        self.transformer = Transformer(config)
        self.ln_post = nn.LayerNorm(width)
        self.proj = nn.Parameter(torch.zeros(width, config.output_dim))
        self.eval().requires_grad_(False)

    @property
    def feature_dim(self) -> int:
        return self.config.output_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = self.config.resolution
        if tuple(x.shape[-2:]) != (size, size):
            raise ValueError(f"CLIP ViT input must be {size}x{size}, got "
                             f"{tuple(x.shape[-2:])}")
        tokens = self.conv1(x).flatten(2).transpose(1, 2)
        cls = self.class_embedding.to(tokens.dtype).expand(tokens.shape[0], 1, -1)
        tokens = torch.cat([cls, tokens], dim=1) + self.positional_embedding.to(tokens.dtype)
        tokens = self.ln_pre(tokens).transpose(0, 1)  # (tokens, batch, width)
        tokens = self.transformer(tokens).transpose(0, 1)
        return F.linear(self.ln_post(tokens[:, 0]), self.proj.T)


def visual_state(state: dict) -> dict[str, torch.Tensor]:
    """The image encoder's tensors of a whole-CLIP state dict, `visual.` prefix removed."""
    return {key[len(PREFIX):]: value for key, value in state.items() if key.startswith(PREFIX)}


def load_clip_vision(path, config: ClipVisionConfig = VIT_B_32) -> ClipVisionTransformer:
    """The image encoder from a CLIP state dict in OpenAI / open_clip layout (strict)."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is the user's file at fault
        raise WeightsError(f"{path}: not a PyTorch state dict ({exc}); OpenAI's TorchScript "
                           "ViT-B-32.pt is not read, use open_clip's state dict") from exc
    visual = visual_state(state) if isinstance(state, dict) else {}
    if "conv1.weight" not in visual:
        raise WeightsError(f"{path}: not a CLIP state dict (no 'visual.conv1.weight')")
    with torch.device("meta"):
        model = ClipVisionTransformer(config)
    model = model.to_empty(device="cpu")
    try:
        model.load_state_dict(visual, strict=True)
    except RuntimeError as exc:
        raise WeightsError(f"{path}: does not fit CLIP ViT-B/32 "
                           f"({str(exc).splitlines()[0]} ...)") from exc
    return model.float().eval().requires_grad_(False)


def seeded_visual_state(config: ClipVisionConfig, seed: int) -> dict[str, torch.Tensor]:
    """Deterministic random image-encoder weights for offline tests (NOT OpenAI's numbers),
    scaled like CLIP's initialisation so features spread across images."""
    generator = torch.Generator().manual_seed(seed)
    state = {}
    for key, value in ClipVisionTransformer(config).state_dict().items():
        if key.endswith(("ln_1.weight", "ln_2.weight", "ln_pre.weight", "ln_post.weight")):
            fresh = 1 + 0.1 * torch.randn(value.shape, generator=generator)
        elif value.ndim == 1 and key != "class_embedding":
            fresh = 0.02 * torch.randn(value.shape, generator=generator)
        else:
            fan_in = value.shape[0] if key == "proj" else value[0].numel()
            fresh = fan_in ** -0.5 * torch.randn(value.shape, generator=generator)
        state[key] = fresh
    return state

"""DINOv2 ViT-S/B/L/G-14 image encoders, architecture-exact for the official checkpoints.

The layout is facebookresearch/dinov2's (`dinov2_vits14_pretrain.pth` and its siblings load
with `strict=True`): `patch_embed.proj`, `cls_token`, `pos_embed` (a 37 x 37 grid + class
position: the models were trained at 518 px), `mask_token` (unused at inference),
`blocks.N.{norm1, attn.qkv, attn.proj, ls1.gamma, norm2, mlp.fc1, mlp.fc2, ls2.gamma}` (ViT-G:
SwiGLU `mlp.w12`, `mlp.w3`) and `norm`. The output is the class token after the final norm,
what dgm-eval and torch-fidelity use as the image's features.

At another input size the patch position embeddings are resampled as DINOv2's
`interpolate_pos_encoding` does: bicubic, no antialias, with the scale factor
(grid + 0.1) / 37 given to `F.interpolate` (not the output size), which moves the sampling
positions slightly; at 224 px (a 16 x 16 grid) that is not the same as resizing to 16 x 16.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ffhq_tools.errors import WeightsError

PATCH_SIZE = 14
TRAIN_GRID = 37            # 518 px / 14: the grid of the checkpoints' pos_embed
INTERPOLATE_OFFSET = 0.1   # dinov2's work-around offset for the scale factor
LAYER_NORM_EPS = 1e-6


@dataclass(frozen=True)
class VitConfig:
    embed_dim: int
    depth: int
    num_heads: int
    swiglu: bool = False
    mlp_ratio: float = 4.0
    train_grid: int = TRAIN_GRID

    @property
    def hidden_dim(self) -> int:
        hidden = int(self.embed_dim * self.mlp_ratio)
        if self.swiglu:  # dinov2's SwiGLUFFNFused: 2/3 of the MLP width, rounded up to 8
            return (int(hidden * 2 / 3) + 7) // 8 * 8
        return hidden


CONFIGS = {
    "dinov2-vit-s-14": VitConfig(384, 12, 6),
    "dinov2-vit-b-14": VitConfig(768, 12, 12),
    "dinov2-vit-l-14": VitConfig(1024, 24, 16),
    "dinov2-vit-g-14": VitConfig(1536, 40, 24, swiglu=True),
}


class PatchEmbed(nn.Module):
    def __init__(self, embed_dim: int):
        super().__init__()
        self.proj = nn.Conv2d(3, embed_dim, kernel_size=PATCH_SIZE, stride=PATCH_SIZE)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


class Attention(nn.Module):
    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, tokens, dim = x.shape
        qkv = self.qkv(x).reshape(batch, tokens, 3, self.num_heads, dim // self.num_heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.proj(out.transpose(1, 2).reshape(batch, tokens, dim))


class LayerScale(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.gamma = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class SwiGLU(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.w12 = nn.Linear(dim, 2 * hidden)
        self.w3 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, value = self.w12(x).chunk(2, dim=-1)
        return self.w3(F.silu(gate) * value)


class Block(nn.Module):
    def __init__(self, config: VitConfig):
        super().__init__()
        dim = config.embed_dim
        self.norm1 = nn.LayerNorm(dim, eps=LAYER_NORM_EPS)
        self.attn = Attention(dim, config.num_heads)
        self.ls1 = LayerScale(dim)
        self.norm2 = nn.LayerNorm(dim, eps=LAYER_NORM_EPS)
        self.mlp = (SwiGLU if config.swiglu else Mlp)(dim, config.hidden_dim)
        self.ls2 = LayerScale(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.ls1(self.attn(self.norm1(x)))
        return x + self.ls2(self.mlp(self.norm2(x)))


def interpolate_patch_positions(pos_embed: torch.Tensor, grid: int, train_grid: int) \
        -> torch.Tensor:
    """(1, 1 + train_grid^2, D) -> (1, 1 + grid^2, D) as DINOv2 resamples them (float32,
    bicubic, antialias off, scale factor (grid + 0.1) / train_grid)."""
    if grid == train_grid:
        return pos_embed
    dtype = pos_embed.dtype
    pos_embed = pos_embed.float()
    dim = pos_embed.shape[-1]
    patches = pos_embed[:, 1:].reshape(1, train_grid, train_grid, dim).permute(0, 3, 1, 2)
    scale = (grid + INTERPOLATE_OFFSET) / train_grid
    patches = F.interpolate(patches, scale_factor=(scale, scale), mode="bicubic",
                            antialias=False)
    if patches.shape[-2:] != (grid, grid):
        raise ValueError(f"position grid {tuple(patches.shape[-2:])}, expected {grid}x{grid}")
    patches = patches.permute(0, 2, 3, 1).reshape(1, grid * grid, dim)
    return torch.cat([pos_embed[:, :1], patches], dim=1).to(dtype)


class DinoV2(nn.Module):
    """Normalised float NCHW images (sides multiples of 14) -> class token after the norm."""

    def __init__(self, config: VitConfig):
        super().__init__()
        self.config = config
        dim = config.embed_dim
        self.patch_embed = PatchEmbed(dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + config.train_grid ** 2, dim))
        self.mask_token = nn.Parameter(torch.zeros(1, dim))
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.depth))
        self.norm = nn.LayerNorm(dim, eps=LAYER_NORM_EPS)
        self.eval().requires_grad_(False)

    @property
    def feature_dim(self) -> int:
        return self.config.embed_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[-2:]
        if height != width or height % PATCH_SIZE:
            raise ValueError(f"DINOv2 input must be square with sides divisible by "
                             f"{PATCH_SIZE}, got {height}x{width}")
        tokens = self.patch_embed(x)
        tokens = torch.cat([self.cls_token.expand(tokens.shape[0], -1, -1), tokens], dim=1)
        tokens = tokens + interpolate_patch_positions(self.pos_embed, height // PATCH_SIZE,
                                                      self.config.train_grid)
        for block in self.blocks:
            tokens = block(tokens)
        return self.norm(tokens)[:, 0]


def empty_dinov2(config: VitConfig) -> DinoV2:
    """The architecture with uninitialised storage (filled by `load_state_dict`)."""
    with torch.device("meta"):
        model = DinoV2(config)
    return model.to_empty(device="cpu")


def load_dinov2(path, name: str) -> DinoV2:
    """The DINOv2 network `name` from a facebookresearch/dinov2 checkpoint (strict)."""
    if name not in CONFIGS:
        raise WeightsError(f"unknown DINOv2 network '{name}'; expected one of "
                           f"{', '.join(CONFIGS)}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is the user's file at fault
        raise WeightsError(f"{path}: not a PyTorch state dict ({exc})") from exc
    if not isinstance(state, dict) or "cls_token" not in state:
        raise WeightsError(f"{path}: not a DINOv2 checkpoint (no 'cls_token')")
    model = empty_dinov2(CONFIGS[name])
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise WeightsError(f"{path}: does not fit {name} ({str(exc).splitlines()[0]} ...); "
                           "is it the checkpoint of another DINOv2 size?") from exc
    return model.eval().requires_grad_(False)


def seeded_state_dict(config: VitConfig, seed: int) -> dict[str, torch.Tensor]:
    """Deterministic random weights for offline tests (NOT the official numbers): layer-scale
    gammas near 1 and O(1) token embeddings so the class token depends on the image."""
    generator = torch.Generator().manual_seed(seed)
    model = DinoV2(config)
    state = {}
    for key, value in model.state_dict().items():
        if key.endswith("gamma"):
            fresh = 0.5 + torch.rand(value.shape, generator=generator)
        elif key.endswith(("norm1.weight", "norm2.weight", "norm.weight")):
            fresh = 1 + 0.1 * torch.randn(value.shape, generator=generator)
        elif value.ndim == 1:
            fresh = 0.02 * torch.randn(value.shape, generator=generator)
        else:
            fan_in = value[0].numel() if value.ndim > 1 and "token" not in key else 1
            scale = fan_in ** -0.5 if "embed" not in key or "proj" in key else 0.5
            fresh = scale * torch.randn(value.shape, generator=generator)
        state[key] = fresh.to(value.dtype)
    return state

"""pSp's GradualStyleEncoder (eladrich/pixel2style2pixel, `models/encoders/psp_encoders.py`;
DualStyleGAN's `model/encoder/`), and its official checkpoints (`encoder.pt`).

Architecture (names as the reference, so the checkpoints' `encoder.*` tensors load strictly):
- `input_layer` and `body`: the IR-SE50 trunk of `models.irse` (24 units);
- a feature pyramid on the body's outputs: c1 after unit 6 (128 channels, 1/4 of the input
  size), c2 after unit 20 (256, 1/8), c3 after unit 23 (512, 1/16);
  p2 = bilinear_up(c3) + latlayer1(c2), p1 = bilinear_up(p2) + latlayer2(c1) (1x1 convs to
  512; bilinear with align_corners=True);
- `styles`: one map2style block per latent layer, `n_styles = 2 log2(output size) - 2` (18 at
  1024, 14 at 256): layers 0-2 read c3 (coarse), 3-6 read p2 (middle), 7+ read p1 (fine). A
  block is log2(spatial) stride-2 3x3 convs (512 -> 512, LeakyReLU 0.01) down to 1x1, then
  an equalised linear 512 -> 512 (rosinality's EqualLinear, lr_mul 1).
Output: [N, n_styles, 512].

Checkpoint layout (pSp and DualStyleGAN): `torch.save({'state_dict': {'encoder.*',
'decoder.*'}, 'opts': {...}, 'latent_avg': [n_styles, 512]})`, read here with
`torch.load(weights_only=True)` only. pSp adds `latent_avg` to the codes when
`opts['start_from_latent_avg']`; so does this loader. The decoder is not needed (the codes go
to the DualStyleGAN's own base generator). DualStyleGAN's `encoder.pt` is its z+ variant (codes
are z+, each layer mapped by the mapping network: `z_plus_latent=True`); `encoder_wplus.pt` is
the original W+ pSp encoder. Images are pooled (area) to 256 px and in [-1, 1], as
`style_transfer.py` feeds them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ffhq_tools.errors import FfhqToolsError
from models.dualstylegan_codes import CodeSpace
from models.irse import input_layer, irse_body
from models.layers import EqualLinear

INPUT_SIZE = 256
STYLE_DIM = 512
COARSE, MIDDLE = 3, 7  # first middle and first fine style layer
C1_UNIT, C2_UNIT, C3_UNIT = 6, 20, 23
DEFAULT_OUTPUT_SIZE = 1024  # style_transfer.py's default when opts has no output_size


class EncoderError(FfhqToolsError):
    """A pSp encoder checkpoint that cannot be used."""


def n_styles_for(output_size: int) -> int:
    return int(math.log2(output_size)) * 2 - 2


class GradualStyleBlock(nn.Module):
    """map2style: stride-2 convs from `spatial` x `spatial` down to 1x1, then a linear."""

    def __init__(self, channels: int, spatial: int):
        super().__init__()
        layers: list[nn.Module] = []
        for _ in range(int(math.log2(spatial))):
            layers += [nn.Conv2d(channels, channels, 3, stride=2, padding=1), nn.LeakyReLU()]
        self.convs = nn.Sequential(*layers)
        self.linear = EqualLinear(channels, channels)
        self.channels = channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(self.convs(x).reshape(-1, self.channels))


def _upsample_add(top: torch.Tensor, lateral: torch.Tensor) -> torch.Tensor:
    return F.interpolate(top, size=lateral.shape[-2:], mode="bilinear",
                         align_corners=True) + lateral


class GradualStyleEncoder(nn.Module):
    """`GradualStyleEncoder(50, 'ir_se', opts)`: [N, 3, 256, 256] -> [N, n_styles, 512]."""

    def __init__(self, n_styles: int):
        super().__init__()
        self.input_layer = input_layer()
        self.body = irse_body()
        spatial = [16] * COARSE + [32] * (MIDDLE - COARSE) + [64] * max(n_styles - MIDDLE, 0)
        self.styles = nn.ModuleList(GradualStyleBlock(STYLE_DIM, s) for s in spatial[:n_styles])
        self.latlayer1 = nn.Conv2d(256, STYLE_DIM, 1)
        self.latlayer2 = nn.Conv2d(128, STYLE_DIM, 1)
        self.n_styles = n_styles

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.input_layer(x)
        taps = {}
        for i, unit in enumerate(self.body):
            x = unit(x)
            if i in (C1_UNIT, C2_UNIT, C3_UNIT):
                taps[i] = x
        c1, c2, c3 = taps[C1_UNIT], taps[C2_UNIT], taps[C3_UNIT]
        p2 = _upsample_add(c3, self.latlayer1(c2))
        p1 = _upsample_add(p2, self.latlayer2(c1))
        sources = ([c3] * COARSE + [p2] * (MIDDLE - COARSE)
                   + [p1] * max(self.n_styles - MIDDLE, 0))[:self.n_styles]
        return torch.stack([block(src) for block, src in zip(self.styles, sources,
                                                             strict=True)], dim=1)


@dataclass(frozen=True)
class EncoderInfo:
    path: str
    sha256: str
    space: CodeSpace
    n_styles: int
    start_from_latent_avg: bool

    def to_dict(self) -> dict:
        return {"path": self.path, "sha256": self.sha256, "space": self.space.value,
                "n_styles": self.n_styles, "start_from_latent_avg": self.start_from_latent_avg,
                "input_size": INPUT_SIZE}


class PSPEncoder(nn.Module):
    """`encode(images [N, 3, R, R] in [-1, 1]) -> codes [N, n_styles, 512]` in `info.space`
    (pooled to 256 px, the encoder, + latent_avg when the checkpoint asks for it)."""

    def __init__(self, encoder: GradualStyleEncoder, latent_avg: torch.Tensor | None,
                 info: EncoderInfo):
        super().__init__()
        self.encoder = encoder
        self.register_buffer("latent_avg", latent_avg, persistent=False)
        self.info = info
        self.requires_grad_(False).eval()

    def train(self, mode: bool = True) -> "PSPEncoder":
        return super().train(False)

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        x = F.adaptive_avg_pool2d(images, INPUT_SIZE)
        codes = self.encoder(x)
        if self.latent_avg is not None:
            codes = codes + self.latent_avg
        return codes

    def describe(self) -> dict:
        return {"kind": "psp-encoder", **self.info.to_dict()}


def check_encoder_fits(encoder: PSPEncoder, space: CodeSpace, num_ws: int, dim: int,
                       takes: str) -> None:
    """Refuses an encoder whose codes are not `space` codes [1, num_ws, dim], the codes the
    network named by `takes` reads."""
    info = encoder.info
    if info.space is not space:
        raise EncoderError(f"--encoder {info.path}: a {info.space.value} encoder, but {takes} "
                           f"takes {space.value} codes (DualStyleGAN's encoder.pt gives z+, "
                           "encoder_wplus.pt w+)")
    if (info.n_styles, STYLE_DIM) != (num_ws, dim):
        raise EncoderError(f"--encoder {info.path}: {space.value} codes of shape "
                           f"[1, {info.n_styles}, {STYLE_DIM}], but {takes} takes "
                           f"[1, {num_ws}, {dim}] (n_styles must equal num_ws)")


def _opts(ckpt: dict, path: Path) -> dict:
    opts = ckpt.get("opts", {})
    if not isinstance(opts, dict):
        raise EncoderError(f"--encoder {path}: 'opts' is a {type(opts).__name__}, not a dict")
    kind = opts.get("encoder_type", "GradualStyleEncoder")
    if kind != "GradualStyleEncoder":
        raise EncoderError(f"--encoder {path}: encoder_type {kind!r}; only pSp's "
                           "GradualStyleEncoder is supported")
    if int(opts.get("input_nc", 3)) != 3:
        raise EncoderError(f"--encoder {path}: input_nc {opts['input_nc']}; an RGB face "
                           "encoder takes 3")
    return opts


def _read(path: Path) -> dict:
    if not path.is_file():
        raise EncoderError(f"--encoder {path}: file not found")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise EncoderError(f"--encoder {path}: not a weights-only torch file "
                           f"({type(exc).__name__})") from None
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("state_dict"), dict):
        raise EncoderError(f"--encoder {path}: no 'state_dict' (expected a pSp checkpoint "
                           "such as DualStyleGAN's encoder.pt)")
    return ckpt


def _latent_avg(ckpt: dict, opts: dict, n_styles: int, path: Path) -> torch.Tensor | None:
    if not opts.get("start_from_latent_avg", False):
        return None
    avg = ckpt.get("latent_avg")
    if not isinstance(avg, torch.Tensor):
        raise EncoderError(f"--encoder {path}: opts start_from_latent_avg but no latent_avg")
    avg = avg.float()
    if avg.shape == (STYLE_DIM,):
        avg = avg.repeat(n_styles, 1)
    if tuple(avg.shape) != (n_styles, STYLE_DIM):
        raise EncoderError(f"--encoder {path}: latent_avg of shape {list(avg.shape)}, "
                           f"expected [{n_styles}, {STYLE_DIM}]")
    return avg


def load_psp_encoder(path: str | Path, space: CodeSpace = CodeSpace.Z_PLUS,
                     device="cpu") -> PSPEncoder:
    """A pSp checkpoint's encoder; `space` says what its codes are (DualStyleGAN's
    `encoder.pt`: z+, the default; `encoder_wplus.pt` and pSp's own: w+)."""
    from ffhq_tools.hashing import sha256_file

    path = Path(path)
    ckpt = _read(path)
    opts = _opts(ckpt, path)
    n_styles = n_styles_for(int(opts.get("output_size", DEFAULT_OUTPUT_SIZE)))
    prefix = "encoder."
    state = {k[len(prefix):]: v for k, v in ckpt["state_dict"].items()
             if str(k).startswith(prefix)}
    latent_avg = _latent_avg(ckpt, opts, n_styles, path)
    with torch.device("meta"):  # no random init: a strict load fills every tensor
        encoder = GradualStyleEncoder(n_styles)
    try:
        encoder.load_state_dict(state, strict=True, assign=True)
    except RuntimeError as exc:
        first = (str(exc).splitlines() or [""])[0]
        raise EncoderError(f"--encoder {path}: its encoder.* tensors are not a 50-layer ir_se "
                           f"GradualStyleEncoder with {n_styles} styles ({first})") from None
    encoder = encoder.float()
    info = EncoderInfo(str(path), sha256_file(path), space, n_styles, latent_avg is not None)
    return PSPEncoder(encoder, latent_avg, info).to(device)

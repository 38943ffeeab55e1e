"""Adaptive discriminator augmentation (ADA, Karras et al., NeurIPS 2020): the pipeline.

    from models.augment import AugmentPipe, pipeline_spec
    pipe = AugmentPipe(pipeline_spec("bgc"), p=0.2)
    augmented = pipe(images)          # NCHW in [-1, 1], differentiable w.r.t. the images

Every image D sees (reals, fakes, the R1 / gradient-penalty inputs) goes through the same
pipe, so the augmentations do not leak into G's output as long as p stays below ~0.8.

The 15 transforms and their strengths are stylegan2-ada's (training/augment.py); each is
applied to a sample with probability `multiplier * p` (rotations: pre and post each with
1 - sqrt(1 - p), so one of the two happens with p):
- pixel blitting: xflip, rotate90, xint (integer translation up to 1/8 of the size);
- general geometry: scale (log2 std 0.2), rotate (full circle), aniso (log2 std 0.2),
  xfrac (std 1/8 of the size); all geometry is one 3x3 matrix per sample
  (`models.augment_geometry.warp`);
- colour: brightness (std 0.2), contrast (log2 std 0.5), lumaflip, hue (full circle),
  saturation (log2 std 1); one 4x4 matrix per sample;
- imgfilter: 4 octave bands (sym2), each amplified with log2 std 1, power-normalised;
- noise: additive Gaussian, sigma ~ |N(0, 0.1)|; cutout: a zeroed square of half the size.

Random numbers come from an `AugmentRandom` (per-sample draws for the batch): the trainer
hands in its per-(step, phase) generator so that the augmentation of an image does not depend
on how the batch is split over ranks; by default the global torch generator is used.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Protocol

import torch
from torch import nn

from ffhq_tools.errors import FfhqToolsError
from models import augment_geometry as geo

BLIT = ("xflip", "rotate90", "xint")
GEOM = ("scale", "rotate", "aniso", "xfrac")
COLOR = ("brightness", "contrast", "lumaflip", "hue", "saturation")
TRANSFORMS = BLIT + GEOM + COLOR + ("imgfilter", "noise", "cutout")
EXPECTED_BAND_POWER = (10 / 13, 1 / 13, 1 / 13, 1 / 13)  # a 1/f image spectrum over 4 octaves
LUMA_AXIS = (1 / math.sqrt(3), 1 / math.sqrt(3), 1 / math.sqrt(3), 0.0)


@dataclass(frozen=True)
class AugmentSpec:
    """Probability multipliers (0 = off) and strengths of every transform."""

    xflip: float = 0.0
    rotate90: float = 0.0
    xint: float = 0.0
    xint_max: float = 0.125  # of the image size
    scale: float = 0.0
    rotate: float = 0.0
    aniso: float = 0.0
    xfrac: float = 0.0
    scale_std: float = 0.2  # log2
    rotate_max: float = 1.0  # 1 = full circle
    aniso_std: float = 0.2  # log2
    xfrac_std: float = 0.125  # of the image size
    brightness: float = 0.0
    contrast: float = 0.0
    lumaflip: float = 0.0
    hue: float = 0.0
    saturation: float = 0.0
    brightness_std: float = 0.2
    contrast_std: float = 0.5  # log2
    hue_max: float = 1.0  # 1 = full circle
    saturation_std: float = 1.0  # log2
    imgfilter: float = 0.0
    imgfilter_bands: tuple[float, ...] = (1.0, 1.0, 1.0, 1.0)
    imgfilter_std: float = 1.0  # log2
    noise: float = 0.0
    cutout: float = 0.0
    noise_std: float = 0.1
    cutout_size: float = 0.5  # of the image size

    def to_dict(self) -> dict:
        data = dataclasses.asdict(self)
        data["imgfilter_bands"] = list(self.imgfilter_bands)
        return data


def _on(*names: str) -> dict[str, float]:
    return {name: 1.0 for name in names}


# stylegan2-ada train.py `augpipe_specs`: every multiplier of a named pipeline is 1.
PIPELINES: dict[str, dict[str, float]] = {
    "blit": _on(*BLIT),
    "geom": _on(*GEOM),
    "color": _on(*COLOR),
    "filter": _on("imgfilter"),
    "noise": _on("noise"),
    "cutout": _on("cutout"),
    "bg": _on(*BLIT, *GEOM),
    "bgc": _on(*BLIT, *GEOM, *COLOR),
    "bgcf": _on(*BLIT, *GEOM, *COLOR, "imgfilter"),
    "bgcfn": _on(*BLIT, *GEOM, *COLOR, "imgfilter", "noise"),
    "bgcfnc": _on(*BLIT, *GEOM, *COLOR, "imgfilter", "noise", "cutout"),
}
DEFAULT_PIPELINE = "bgc"


def pipeline_spec(name: str) -> AugmentSpec:
    if name not in PIPELINES:
        raise FfhqToolsError(f"--augpipe {name}: expected one of {', '.join(PIPELINES)}")
    return AugmentSpec(**PIPELINES[name])


class AugmentRandom(Protocol):
    """Per-sample random tensors [n, *shape] (the trainer's StepRandom is one)."""

    def uniform(self, n: int, *shape: int) -> torch.Tensor: ...

    def normal(self, n: int, *shape: int) -> torch.Tensor: ...


class TorchRandom:
    """AugmentRandom over a torch.Generator (None: the global generator)."""

    def __init__(self, device: torch.device, generator: torch.Generator | None = None):
        self.device, self.generator = device, generator

    def uniform(self, n: int, *shape: int) -> torch.Tensor:
        return torch.rand((n, *shape), generator=self.generator, device=self.device)

    def normal(self, n: int, *shape: int) -> torch.Tensor:
        return torch.randn((n, *shape), generator=self.generator, device=self.device)


@dataclass
class AugmentParams:
    """One batch's draws: each enabled transform's per-sample value (identity where it was
    not applied), and the composed matrices."""

    values: dict[str, torch.Tensor] = field(default_factory=dict)
    G_inv: torch.Tensor | None = None  # [N, 3, 3]: output pixel -> input pixel
    C: torch.Tensor | None = None  # [N, 4, 4]: input colour -> output colour
    band_gains: torch.Tensor | None = None  # [N, 4]
    noise: torch.Tensor | None = None  # [N, C, H, W], already times sigma
    cutout_mask: torch.Tensor | None = None  # [N, 1, H, W]


class AugmentPipe(nn.Module):
    def __init__(self, spec: AugmentSpec, p: float = 0.0):
        super().__init__()
        self.spec = spec
        self.p = float(p)
        self.register_buffer("geom_filter", geo.wavelet_filter(geo.SYM6), persistent=False)
        bank = torch.as_tensor(geo.filter_bank(geo.SYM2), dtype=torch.float32)
        self.register_buffer("band_filters", bank, persistent=False)

    def extra_repr(self) -> str:
        enabled = [name for name in TRANSFORMS if getattr(self.spec, name) > 0]
        return f"p={self.p:.4f}, transforms={','.join(enabled)}"

    def forward(self, images: torch.Tensor, rand: AugmentRandom | None = None) -> torch.Tensor:
        if self.p == 0:
            return images  # identity, bit for bit (and no random numbers drawn)
        rand = rand or TorchRandom(images.device)
        return self.apply(images, self.sample(images.shape, rand))

    # ----- drawing --------------------------------------------------------------------------
    def _chosen(self, rand: AugmentRandom, n: int, probability: float, *shape: int):
        return rand.uniform(n, *shape) < probability

    def sample(self, shape, rand: AugmentRandom) -> AugmentParams:
        n, channels, height, width = shape
        params = AugmentParams()
        params.G_inv = self._sample_geometry(params, rand, n, height, width)
        params.C = self._sample_color(params, rand, n, channels)
        s, p = self.spec, self.p
        if s.imgfilter > 0:
            params.band_gains = self._sample_bands(params, rand, n)
        if s.noise > 0:
            sigma = rand.normal(n).abs() * s.noise_std
            sigma = torch.where(self._chosen(rand, n, s.noise * p), sigma, 0.0)
            params.values["noise"] = sigma
            params.noise = rand.normal(n, channels, height, width) * sigma[:, None, None, None]
        if s.cutout > 0:
            size = torch.where(self._chosen(rand, n, s.cutout * p), s.cutout_size, 0.0)
            center = rand.uniform(n, 2)
            params.values["cutout_size"], params.values["cutout_center"] = size, center
            params.cutout_mask = cutout_mask(size, center, height, width)
        return params

    def _sample_geometry(self, params, rand, n, height, width) -> torch.Tensor | None:
        s, p, values = self.spec, self.p, params.values
        matrices = []
        if s.xflip > 0:
            i = torch.floor(rand.uniform(n) * 2)
            values["xflip"] = i = torch.where(self._chosen(rand, n, s.xflip * p), i, 0.0)
            matrices.append(geo.scale2d(1 - 2 * i, torch.ones_like(i)))
        if s.rotate90 > 0:
            i = torch.floor(rand.uniform(n) * 4)
            values["rotate90"] = i = torch.where(self._chosen(rand, n, s.rotate90 * p), i, 0.0)
            matrices.append(geo.rotate2d(math.pi / 2 * i))
        if s.xint > 0:
            t = (rand.uniform(n, 2) * 2 - 1) * s.xint_max
            t = torch.where(self._chosen(rand, n, s.xint * p, 1), t, 0.0)
            t = torch.stack([torch.round(t[:, 0] * width), torch.round(t[:, 1] * height)], 1)
            values["xint"] = t
            matrices.append(geo.translate2d(-t[:, 0], -t[:, 1]))
        if s.scale > 0:
            v = torch.exp2(rand.normal(n) * s.scale_std)
            values["scale"] = v = torch.where(self._chosen(rand, n, s.scale * p), v, 1.0)
            matrices.append(geo.scale2d(1 / v, 1 / v))
        p_rot = 1 - math.sqrt(min(max(1 - s.rotate * p, 0.0), 1.0))  # P(pre or post) = p
        if s.rotate > 0:
            theta = (rand.uniform(n) * 2 - 1) * math.pi * s.rotate_max
            theta = torch.where(self._chosen(rand, n, p_rot), theta, 0.0)
            values["rotate_pre"] = theta
            matrices.append(geo.rotate2d(theta))
        if s.aniso > 0:
            v = torch.exp2(rand.normal(n) * s.aniso_std)
            values["aniso"] = v = torch.where(self._chosen(rand, n, s.aniso * p), v, 1.0)
            matrices.append(geo.scale2d(1 / v, v))
        if s.rotate > 0:
            theta = (rand.uniform(n) * 2 - 1) * math.pi * s.rotate_max
            theta = torch.where(self._chosen(rand, n, p_rot), theta, 0.0)
            values["rotate_post"] = theta
            matrices.append(geo.rotate2d(theta))
        if s.xfrac > 0:
            t = rand.normal(n, 2) * s.xfrac_std
            t = torch.where(self._chosen(rand, n, s.xfrac * p, 1), t, 0.0)
            t = torch.stack([t[:, 0] * width, t[:, 1] * height], 1)
            values["xfrac"] = t
            matrices.append(geo.translate2d(-t[:, 0], -t[:, 1]))
        return compose(matrices)

    def _sample_color(self, params, rand, n, channels) -> torch.Tensor | None:
        s, p, values = self.spec, self.p, params.values
        matrices = []  # applied in order: later ones act on the output of earlier ones
        if s.brightness > 0:
            b = rand.normal(n) * s.brightness_std
            values["brightness"] = b = torch.where(self._chosen(rand, n, s.brightness * p),
                                                   b, 0.0)
            matrices.append(geo.translate3d(b))
        if s.contrast > 0:
            c = torch.exp2(rand.normal(n) * s.contrast_std)
            values["contrast"] = c = torch.where(self._chosen(rand, n, s.contrast * p), c, 1.0)
            matrices.append(geo.scale3d(c))
        axis = torch.tensor(LUMA_AXIS, device=self.band_filters.device)
        vv = torch.outer(axis, axis)
        eye = torch.eye(4, device=axis.device)
        if s.lumaflip > 0:
            i = torch.floor(rand.uniform(n) * 2)
            values["lumaflip"] = i = torch.where(self._chosen(rand, n, s.lumaflip * p), i, 0.0)
            matrices.append(eye - 2 * vv * i[:, None, None])  # Householder reflection
        if s.hue > 0 and channels > 1:
            theta = (rand.uniform(n) * 2 - 1) * math.pi * s.hue_max
            values["hue"] = theta = torch.where(self._chosen(rand, n, s.hue * p), theta, 0.0)
            matrices.append(geo.rotate3d(axis, theta))
        if s.saturation > 0 and channels > 1:
            v = torch.exp2(rand.normal(n) * s.saturation_std)
            values["saturation"] = v = torch.where(self._chosen(rand, n, s.saturation * p),
                                                   v, 1.0)
            matrices.append(vv + (eye - vv) * v[:, None, None])
        return compose(matrices[::-1])

    def _sample_bands(self, params, rand, n) -> torch.Tensor:
        s, p = self.spec, self.p
        bands = self.band_filters.shape[0]
        if len(s.imgfilter_bands) != bands:
            raise FfhqToolsError(f"imgfilter_bands: expected {bands} values, got "
                                 f"{len(s.imgfilter_bands)}")
        power = torch.tensor(EXPECTED_BAND_POWER, device=self.band_filters.device)
        gains = torch.ones(n, bands, device=power.device)
        for band, strength in enumerate(s.imgfilter_bands):
            t = torch.exp2(rand.normal(n) * s.imgfilter_std)
            t = torch.where(self._chosen(rand, n, s.imgfilter * p * strength), t, 1.0)
            one = torch.ones(n, bands, device=power.device)
            one[:, band] = t
            gains = gains * one / (power * one.square()).sum(dim=1, keepdim=True).sqrt()
        params.values["imgfilter"] = gains
        return gains

    # ----- applying -------------------------------------------------------------------------
    def apply(self, images: torch.Tensor, params: AugmentParams) -> torch.Tensor:
        if params.G_inv is not None:
            images = geo.warp(images, params.G_inv, self.geom_filter)
        if params.C is not None:
            images = geo.apply_color(images, params.C)
        if params.band_gains is not None:
            images = geo.apply_band_filter(images, params.band_gains, self.band_filters)
        if params.noise is not None:
            images = images + params.noise.to(images.dtype)
        if params.cutout_mask is not None:
            images = images * params.cutout_mask.to(images.dtype)
        return images


def compose(matrices: list[torch.Tensor]) -> torch.Tensor | None:
    """M0 @ M1 @ ... (None when the list is empty)."""
    if not matrices:
        return None
    out = matrices[0]
    for m in matrices[1:]:
        out = out @ m
    return out


def cutout_mask(size: torch.Tensor, center: torch.Tensor, height: int, width: int):
    """[N, 1, H, W] float: 0 inside a square of side `size` (of the image) around `center`."""
    xs = (torch.arange(width, device=size.device) + 0.5) / width
    ys = (torch.arange(height, device=size.device) + 0.5) / height
    outside_x = (xs[None, None, None, :] - center[:, 0, None, None, None]).abs() \
        >= size[:, None, None, None] / 2
    outside_y = (ys[None, None, :, None] - center[:, 1, None, None, None]).abs() \
        >= size[:, None, None, None] / 2
    return (outside_x | outside_y).float()


def describe(spec: AugmentSpec) -> str:
    """The enabled transforms, e.g. 'xflip,rotate90,xint,...'."""
    return ",".join(name for name in TRANSFORMS if getattr(spec, name) > 0)


__all__ = ["AugmentPipe", "AugmentSpec", "AugmentParams", "AugmentRandom", "TorchRandom",
           "PIPELINES", "DEFAULT_PIPELINE", "TRANSFORMS", "pipeline_spec", "describe",
           "compose", "cutout_mask"]

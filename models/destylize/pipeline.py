"""Facial destylization of one exemplar (DualStyleGAN's destylize.py; our projection stands in
for the pSp encoder unless one is given):

1. z+_e: the exemplar's code in the original G (the encoder's z+ of the exemplar, a z+
   projection from the central z, or given);
2. z^+_e: z+ and the noise maps optimised on the fine-tuned G' from z+_e (distance + 0.1 x
   identity + std over layers + 1e5 x noise regularisation, 300 steps);
3. layers 8.. of z^+_e replaced by z+_e's (the colour layers), rendered by G at truncation
   0.7 towards 0 with the optimised noise maps: the destylized face;
4. z+_i: that face (clamped to [-1, 1]) encoded, or projected into G, its layers 8..
   replaced by z+_e's again.

`exstyle_code.npy` gets z+_e (the extrinsic code, as upstream), `instyle_code.npy` z+_i.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from ffhq_tools.errors import FfhqToolsError
from models.destylize.identity import FaceEmbedder, IdentityTerm
from models.destylize.zplus import Distance, Fit, FitSettings, central_z, fit_zplus, render_zplus
from models.dualstylegan_codes import CodeSpace
from models.project.projector import (
    area_downsample,
    check_projectable,
    network_dtype,
    pixels_to_tensor,
)
from models.psp_encoder import PSPEncoder, check_encoder_fits

COLOUR_FROM = 8
ENCODER, PROJECTION, INIT = "encoder", "projection", "init"
BOTH_STARTS = "--init and --encoder both give the start codes z+_e; give one of the two"


class DestylizeError(FfhqToolsError):
    """Generators, exemplars or codes that destylization cannot use."""


@dataclass(frozen=True)
class DestylizeProtocol:
    steps: int = 300
    project_steps: int = 1000
    learning_rate: float = 0.1
    id_weight: float = 0.1
    std_weight: float = 1.0
    noise_weight: float = 1e5
    truncation: float = 0.7
    colour_from: int = COLOUR_FROM
    distance_resolution: int = 256

    def __post_init__(self):
        if self.steps < 1 or self.project_steps < 1:
            raise DestylizeError(f"--steps {self.steps} / --project-steps "
                                 f"{self.project_steps}: need at least one step each")
        if not 0 <= self.truncation <= 1:
            raise DestylizeError(f"--truncation {self.truncation}: expected a value in [0, 1]")
        if self.id_weight < 0:
            raise DestylizeError(f"--id-weight {self.id_weight}: must be >= 0")

    def destylize_fit(self) -> FitSettings:
        return FitSettings(self.steps, self.learning_rate, id_weight=self.id_weight,
                           std_weight=self.std_weight, noise_weight=self.noise_weight,
                           distance_resolution=self.distance_resolution)

    def projection_fit(self) -> FitSettings:
        return FitSettings(self.project_steps, self.learning_rate, id_weight=0.0,
                           std_weight=self.std_weight, noise_weight=self.noise_weight,
                           distance_resolution=self.distance_resolution)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class ExemplarResult:
    z_e: np.ndarray  # [1, L, z_dim] float32: the extrinsic code
    z_hat: np.ndarray  # optimised on G', before the layer copy
    z_i: np.ndarray  # the intrinsic code
    noise: dict[str, np.ndarray]
    curves: dict[str, list[dict]]  # stage -> rows
    previews: list[np.ndarray]  # HWC uint8: target, G(z_e), G'(z^_e), destylized, G(z_i)
    sources: dict[str, str] = field(default_factory=dict)  # z_e / z_i -> ENCODER, ...


def check_pair(G, G_prime, labels: tuple[str, str]) -> None:
    """G and G' must be z+ generators of one shape (G' fine-tuned from G)."""
    for net, label in zip((G, G_prime), labels, strict=True):
        check_projectable(net, label)
    for attr in ("img_resolution", "img_channels", "num_ws", "z_dim", "w_dim"):
        a, b = getattr(G, attr), getattr(G_prime, attr)
        if a != b:
            raise DestylizeError(f"{labels[1]} has {attr} {b} but {labels[0]} has {a}: the "
                                 "fine-tuned generator must be fine-tuned from the original "
                                 "one (same resolution and latent layout)")


def copy_colour_layers(z: torch.Tensor, source: torch.Tensor, start: int) -> torch.Tensor:
    """z with layers start.. taken from source (layers 8-17 at 1024 px)."""
    out = z.clone()
    out[:, start:] = source[:, start:]
    return out


def to_uint8(images: torch.Tensor) -> np.ndarray:
    from models.generate import to_uint8 as convert

    return convert(images.detach().float())[0]


class Destylizer:
    """`Destylizer(G, G_prime, distance, protocol, identity=None, encoder=None)`;
    `run(pixels, seed)`. With a z+ pSp `encoder`, z+_e and the re-encoding come from it."""

    def __init__(self, G, G_prime, distance: Distance, protocol: DestylizeProtocol, *,
                 identity: FaceEmbedder | None = None, encoder: PSPEncoder | None = None,
                 device="cpu", labels: tuple[str, str] = ("original G", "fine-tuned G'")):
        check_pair(G, G_prime, labels)
        if encoder is not None:
            check_encoder_fits(encoder, CodeSpace.Z_PLUS, G.num_ws, G.z_dim, labels[0])
        if protocol.id_weight and identity is None:
            raise DestylizeError(f"--id-weight {protocol.id_weight} needs an identity network "
                                 "(--identity); use --id-weight 0 or --identity none")
        self.G = G.eval().requires_grad_(False)
        self.G_prime = G_prime.eval().requires_grad_(False)
        self.distance, self.protocol, self.identity = distance, protocol, identity
        self.encoder = encoder
        self.device = torch.device(device)
        self.dtype = network_dtype(G)
        self.colour_from = min(protocol.colour_from, G.num_ws)
        self._start = None

    def start_code(self) -> torch.Tensor:
        if self._start is None:
            self._start = central_z(self.G)[None, None].repeat(1, self.G.num_ws, 1) \
                .to(self.device)
        return self._start

    def target_tensor(self, pixels: np.ndarray) -> torch.Tensor:
        """HWC uint8 at G's resolution -> [1, C, r, r] in [-1, 1] at the distance resolution."""
        return area_downsample(pixels_to_tensor(pixels, self.device, self.dtype),
                               self.protocol.distance_resolution) / 127.5 - 1

    def project(self, target: torch.Tensor, seed: int, desc: str, progress: bool) -> Fit:
        return fit_zplus(self.G, self.distance, target, self.start_code(),
                         self.protocol.projection_fit(), seed=seed, desc=desc,
                         progress=progress)

    def check_code(self, code: np.ndarray, what: str) -> torch.Tensor:
        shape = (1, self.G.num_ws, self.G.z_dim)
        if tuple(code.shape) != shape:
            raise DestylizeError(f"{what}: code of shape {list(code.shape)}, the generators "
                                 f"take z+ codes {list(shape)}")
        return torch.from_numpy(np.ascontiguousarray(code)).to(self.device, self.dtype)

    @torch.no_grad()
    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """The encoder's z+ of images in about [-1, 1], clamped first (as destylize.py)."""
        return self.encoder.encode(images.clamp(-1, 1).float()).to(self.dtype)

    def extrinsic(self, pixels: np.ndarray, target: torch.Tensor, z_e: np.ndarray | None,
                  seed: int, name: str, progress: bool):
        """(z+_e, its source, the projection's curve or None)."""
        if z_e is not None:
            if self.encoder is not None:
                raise DestylizeError(BOTH_STARTS)
            return self.check_code(z_e, f"--init code of {name}"), INIT, None
        if self.encoder is not None:
            exemplar = pixels_to_tensor(pixels, self.device, self.dtype) / 127.5 - 1
            return self.encode(exemplar), ENCODER, None
        fit = self.project(target, seed, f"{name}: project into G", progress)
        return fit.z, PROJECTION, fit.curve

    def reencoded(self, destylized: torch.Tensor, seed: int, name: str, progress: bool):
        """(the destylized face's code in G, its source, the projection's curve or None)."""
        if self.encoder is not None:
            return self.encode(destylized), ENCODER, None
        fit = self.project(area_downsample(destylized, self.protocol.distance_resolution),
                           seed + 2, f"{name}: re-encode", progress)
        return fit.z, PROJECTION, fit.curve

    def destylize(self, target: torch.Tensor, code_e: torch.Tensor, seed: int, name: str,
                  progress: bool) -> Fit:
        identity = IdentityTerm(self.identity, target) \
            if self.identity is not None and self.protocol.id_weight else None
        return fit_zplus(self.G_prime, self.distance, target, code_e,
                         self.protocol.destylize_fit(), seed=seed + 1, identity=identity,
                         desc=f"{name}: destylize on G'", progress=progress)

    def run(self, pixels: np.ndarray, seed: int, *, z_e: np.ndarray | None = None,
            name: str = "exemplar", progress: bool = True) -> ExemplarResult:
        target = self.target_tensor(pixels)
        code_e, source_e, start_curve = self.extrinsic(pixels, target, z_e, seed, name,
                                                       progress)
        fit = self.destylize(target, code_e, seed, name, progress)
        with torch.no_grad():
            copied = copy_colour_layers(fit.z, code_e, self.colour_from)
            destylized = render_zplus(self.G, copied, fit.noise, self.protocol.truncation)
        code, source_i, reencode_curve = self.reencoded(destylized, seed, name, progress)
        code_i = copy_colour_layers(code, code_e, self.colour_from)
        curves = {stage: curve for stage, curve in (
            ("project", start_curve), ("destylize", fit.curve), ("reencode", reencode_curve))
            if curve is not None}
        previews = self.previews(pixels, code_e, fit, destylized, code_i)
        return ExemplarResult(*(c.cpu().float().numpy() for c in (code_e, fit.z, code_i)),
                              {k: v.cpu().float().numpy()[0, 0] for k, v in fit.noise.items()},
                              curves, previews, {"z_e": source_e, "z_i": source_i})

    @torch.no_grad()
    def previews(self, pixels, code_e, fit: Fit, destylized, code_i) -> list[np.ndarray]:
        truncation = self.protocol.truncation
        return [pixels, to_uint8(render_zplus(self.G, code_e, {})),
                to_uint8(render_zplus(self.G_prime, fit.z, fit.noise)), to_uint8(destylized),
                to_uint8(render_zplus(self.G, code_i, fit.noise, truncation))]

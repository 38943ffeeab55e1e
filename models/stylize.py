"""Exemplar-based style transfer with DualStyleGAN, as the official `style_transfer.py` does it.

Both codes carry their space (`CodeSpace`). The intrinsic code (the content face) is z+
[1, num_ws, z_dim] (the official encoder's and destylize's codes) or w+ [1, num_ws, w_dim] (a
projection's); the extrinsic code is the exemplar's z+ from the exstyle file, mapped to W+ by
the base generator's mapping network (`generator.generator.style(latent)` upstream), or a w+
code from projecting a new exemplar image, which skips that mapping. Truncation pulls the
intrinsic w+ towards 0 (`truncation_latent=0` upstream), by 0.75 by default. Interpolation
weights: one per latent layer, the first res_index + 1 (7) for structure (ModRes), the rest for
colour; upstream's default is 0.75 x 7, 1 x 11. `preserve_color` copies the content's colour
layers into the extrinsic code: in z+ before mapping when both codes are z+ (as upstream), else
in W+ (the mapping works layer by layer, so the two agree for z+ codes).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from ffhq_tools.errors import FfhqToolsError
from models.dualstylegan import DualStyleGAN
from models.dualstylegan_codes import Code, CodeSet, CodeSpace

DEFAULT_TRUNCATION = 0.75
DEFAULT_STRUCTURE_WEIGHT = 0.75
DEFAULT_COLOUR_WEIGHT = 1.0
SWEEP_WEIGHTS = (0.0, 0.25, 0.5, 0.75, 1.0)


class StylizeError(FfhqToolsError):
    """Bad stylize input: weights, style id, code files."""


def split_weights(net: DualStyleGAN, structure_weight: float, colour_weight: float) -> list[float]:
    """One weight per layer: layers 0..res_index (fewer in a small model) take the first."""
    structure = min(net.res_index + 1, net.num_ws)
    return [structure_weight] * structure + [colour_weight] * (net.num_ws - structure)


def default_weights(net: DualStyleGAN) -> list[float]:
    return split_weights(net, DEFAULT_STRUCTURE_WEIGHT, DEFAULT_COLOUR_WEIGHT)


def parse_weights(text: str, num_ws: int, flag: str = "--weight") -> list[float]:
    """'0.75x7,1x11' or num_ws comma / space separated floats; errors name `flag`."""
    weights = []
    for part in text.replace(" ", ",").split(","):
        if not part:
            continue
        value, _, count = part.partition("x")
        try:
            weights += [float(value)] * (int(count) if count else 1)
        except ValueError:
            raise StylizeError(f"{flag} {text!r}: expected floats or VALUExCOUNT items "
                               "such as 0.75x7,1x11") from None
    if len(weights) != num_ws:
        raise StylizeError(f"{flag} {text!r}: {len(weights)} weights, but the model has "
                           f"{num_ws} latent layers (one weight each)")
    return weights


@dataclass(frozen=True)
class StylizeSettings:
    weights: tuple[float, ...]
    truncation: float = DEFAULT_TRUNCATION
    preserve_color: bool = False
    noise_mode: str = "const"
    sweep: tuple[float, ...] = field(default=SWEEP_WEIGHTS)

    def __post_init__(self):
        if not 0 <= self.truncation <= 1:
            raise StylizeError(f"--truncation {self.truncation}: expected a value in [0, 1]")

    def to_dict(self) -> dict:
        return {"weights": list(self.weights), "truncation": self.truncation,
                "truncation_latent": 0.0, "preserve_color": self.preserve_color,
                "noise_mode": self.noise_mode, "sweep_weights": list(self.sweep)}


def exemplar(codes: CodeSet, style_id: int, flag: str = "--style-id") -> Code:
    """Entry `style_id` of an exstyle file ([1, num_ws, dim], in the file's order)."""
    if not 0 <= style_id < len(codes.names):
        raise StylizeError(f"{flag} {style_id}: {codes.source} holds {len(codes.names)} "
                           f"exemplar codes (ids 0..{len(codes.names) - 1})")
    return codes.code(style_id)


def code_dim(net: DualStyleGAN, space: CodeSpace) -> int:
    return net.generator.z_dim if space is CodeSpace.Z_PLUS else net.w_dim


def check_code(code: Code, net: DualStyleGAN, what: str) -> None:
    dim = code_dim(net, code.space)
    if tuple(code.values.shape) != (1, net.num_ws, dim):
        raise StylizeError(f"{what}: {code.space.value} code of shape "
                           f"{list(code.values.shape)}, but the model takes "
                           f"[1, {net.num_ws}, {dim}]")


def _device(net: DualStyleGAN) -> torch.device:
    return next(net.parameters()).device


def as_tensor(values: np.ndarray, net: DualStyleGAN) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(values, dtype=np.float32)).to(_device(net))


def to_w_plus(net: DualStyleGAN, values: torch.Tensor, space: CodeSpace) -> torch.Tensor:
    """A code of `space` as W+: z+ through the base mapping layer by layer, w+ as it is."""
    return net.map_z(values) if space is CodeSpace.Z_PLUS else values


def extrinsic_w(net: DualStyleGAN, instyle: Code, exstyle: Code,
                settings: StylizeSettings) -> torch.Tensor:
    """The exemplar's W+ code, with the content's colour layers when preserving colour."""
    colour = slice(net.res_index + 1, None)
    ex = as_tensor(exstyle.values, net)
    if not settings.preserve_color:
        return to_w_plus(net, ex, exstyle.space)
    content = as_tensor(instyle.values, net)
    if instyle.space is exstyle.space:
        ex[:, colour] = content[:, colour]
        return to_w_plus(net, ex, exstyle.space)
    ex_w = to_w_plus(net, ex, exstyle.space).clone()
    ex_w[:, colour] = to_w_plus(net, content, instyle.space)[:, colour]
    return ex_w


def render(net: DualStyleGAN, instyle: Code, ex_w: torch.Tensor, weights: Sequence[float],
           settings: StylizeSettings) -> torch.Tensor:
    wplus = instyle.space is CodeSpace.W_PLUS
    return net(as_tensor(instyle.values, net), ex_w, interp_weights=weights,
               z_plus_latent=not wplus, input_is_latent=wplus, truncation=settings.truncation,
               truncation_latent=0.0, noise_mode=settings.noise_mode)


def stylize(net: DualStyleGAN, instyle: Code, exstyle: Code,
            settings: StylizeSettings) -> torch.Tensor:
    """The stylised image [1, C, H, W] of one content code and one exemplar code."""
    with torch.no_grad():
        ex_w = extrinsic_w(net, instyle, exstyle, settings)
        return render(net, instyle, ex_w, settings.weights, settings)


def weight_sweep(net: DualStyleGAN, instyle: Code, exstyle: Code,
                 settings: StylizeSettings) -> torch.Tensor:
    """Images [R * C, ...]: row r = structure weight sweep[r] on layers 0..res_index, column
    c = colour weight sweep[c] on the others (the paper's weight-control figures)."""
    images = []
    with torch.no_grad():
        ex_w = extrinsic_w(net, instyle, exstyle, settings)
        for s in settings.sweep:
            for c in settings.sweep:
                images.append(render(net, instyle, ex_w, split_weights(net, s, c), settings))
    return torch.cat(images)


def render_exemplar(net: DualStyleGAN, exstyle: Code, noise_mode: str = "const"):
    """The exemplar as the model sees it: its code as both intrinsic and extrinsic code,
    all weights 1, no truncation (shown when the exemplar image itself is not at hand)."""
    with torch.no_grad():
        ws = to_w_plus(net, as_tensor(exstyle.values, net), exstyle.space)
        return net.synthesize(ws, ws, interp_weights=[1.0] * net.num_ws,
                              noise_mode=noise_mode)

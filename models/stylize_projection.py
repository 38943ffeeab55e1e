"""Codes for `stylize` by projection (models.project) into DualStyleGAN's base generator.

Without an encoder, the content's intrinsic code and a new exemplar's extrinsic code both come
from projecting the image into the base StyleGAN2 generator (`net.generator`), in W+ by
default. Why the base for the exemplar too: the official extrinsic code is the pSp encoder's
z+ of the exemplar (`destylize.py`: `exstyle_code.npy` is `encoder(S)`), and that encoder
inverts the base generator; `style_transfer.py` then maps it with the base mapping network
(`generator.generator.style`). Projecting into the base yields a code of that same W+, so it
is used without the mapping (its `CodeSpace` is w+). The fine-tuned generator's optimised
codes (destylize's latent optimisation) are a step of destylization, not the extrinsic code.

Each projection lands in OUT/projection/<role>/<name>/ (projected_w.npz, proj.png, strip,
curve, result.json), with the options frozen per role folder: a rerun reuses finished codes and
refuses other projection options; a target whose image changed since is refused by name.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ffhq_tools.errors import FfhqToolsError
from models.dualstylegan import DualStyleGAN
from models.dualstylegan_codes import Code, CodeSpace
from models.project import ProjectionProtocol, Projector
from models.project.outputs import load_projected_w
from models.project.projector import pixel_digest
from models.project.run import project_targets
from models.project.targets import Target, safe_name

PROJECTION_FOLDER = "projection"
DEFAULT_SPACE = "w+"


@dataclass(frozen=True)
class ProjectionSettings:
    """What a stylize projection takes from the command line (the rest is the reference
    protocol of models.project)."""

    steps: int = 1000
    seed: int = 303
    distance: str = "vgg16-ts"
    space: str = DEFAULT_SPACE
    optimize_noise: bool = True
    batch: int = 4

    def protocol(self) -> ProjectionProtocol:
        return ProjectionProtocol(steps=self.steps, space=self.space,
                                  optimize_noise=self.optimize_noise)


@dataclass(frozen=True)
class ProjectionSource:
    """One image to project: its output name, where it came from and its pixels (HWC uint8
    at the generator's resolution)."""

    name: str
    source: str
    pixels: np.ndarray


def make_projector(net: DualStyleGAN, distance: Callable, settings: ProjectionSettings,
                   device, label: str) -> Projector:
    return Projector(net.generator, distance, settings.protocol(), device=device,
                     label=f"{label} (base generator)")


def _targets(items: list[ProjectionSource]) -> list[Target]:
    return [Target(item.name, item.source, lambda pixels=item.pixels: pixels) for item in items]


def _check_unchanged(folder: Path, done: set[str], item: ProjectionSource) -> None:
    """The saved target.png (lossless) must hold the pixels this run projects."""
    from ffhq_tools.images import load_rgb

    if item.name not in done:
        raise FfhqToolsError(f"{item.source}: not projected (see {folder / 'rejects.jsonl'})")
    saved = load_rgb(folder / item.name / "target.png")
    if pixel_digest(saved) != pixel_digest(item.pixels):
        raise FfhqToolsError(f"{folder / item.name}: projected from another image than "
                             f"{item.source} now gives; delete that folder or use another --out")


def project_sources(projector: Projector, items: list[ProjectionSource], out: Path, role: str,
                    seed: int, options: dict, batch: int, progress: bool) -> dict[str, Code]:
    """w+ codes [1, num_ws, w_dim] by name, projected (or reused) under OUT/projection/<role>."""
    folder = out / PROJECTION_FOLDER / role
    stamped = [ProjectionSource(safe_name(i.name), i.source, i.pixels) for i in items]
    summary = project_targets(projector, _targets(stamped), folder, seed=seed, options=options,
                              batch_size=batch, progress=progress)
    done = {row["target"] for row in summary.done}
    codes = {}
    for original, item in zip(items, stamped, strict=True):
        _check_unchanged(folder, done, item)
        w = load_projected_w(folder / item.name / "projected_w.npz", projector.G)
        codes[original.name] = Code(item.name, w, CodeSpace.W_PLUS)
    return codes


def code_file(out: Path, role: str, code: Code) -> Path:
    return out / PROJECTION_FOLDER / role / code.name / "projected_w.npz"

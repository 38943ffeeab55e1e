"""A DualStyleGAN checkpoint with one fixed exemplar, as a contract generator for metrics.

`metrics --network` and `score` take a DualStyleGAN only with `--style-id N` (an entry of the
exstyle file, `--exstyle FILE` or the one beside the checkpoint) and optional `--style-weight`
(one interpolation weight per latent layer; default 0.75 structure, 1 colour). The wrapped
generator (`DualStyleGANGenerator`) samples z through the base mapping network and renders
every image with that exemplar's extrinsic code. Its identity for rows, resume partials and
"already scored" checks is a hash of the checkpoint, the exstyle file, the id and the weights,
and the exemplar is written into every row's protocol, so rows of different exemplars (or
weights) never share a column entry. Torch loads inside `with_fixed_exemplar`, so the flags
cost the root parser nothing.
"""

from __future__ import annotations

import argparse
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from ffhq_tools.errors import FfhqToolsError

EXSTYLE_NAMES = ("refined_exstyle_code.npz", "exstyle_code.npz", "refined_exstyle_code.npy",
                 "exstyle_code.npy")


@dataclass(frozen=True)
class ExemplarChoice:
    """What the command line says about the exemplar (all None: none given)."""

    style_id: int | None = None
    exstyle: str | None = None
    weights: str | None = None

    @property
    def given(self) -> bool:
        return self.style_id is not None or self.exstyle is not None or self.weights is not None


def add_exemplar_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("DualStyleGAN checkpoints (one fixed exemplar)")
    group.add_argument("--style-id", type=int, default=None,
                       help="exemplar index in the exstyle file (required for a DualStyleGAN)")
    group.add_argument("--exstyle", default=None,
                       help="exemplar codes (.npz or the official .npy); default: "
                            "refined_exstyle_code / exstyle_code beside the checkpoint")
    group.add_argument("--style-weight", default=None,
                       help="interpolation weights, one per latent layer, e.g. 0.75x7,1x11 "
                            "(default: 0.75 structure, 1 colour)")


def exemplar_choice(args) -> ExemplarChoice:
    return ExemplarChoice(args.style_id, args.exstyle, args.style_weight)


def exstyle_beside(checkpoint: Path) -> Path:
    for name in EXSTYLE_NAMES:
        if (checkpoint.parent / name).is_file():
            return checkpoint.parent / name
    raise FfhqToolsError(f"--exstyle: not given and none of {', '.join(EXSTYLE_NAMES)} beside "
                         f"{checkpoint}")


def with_fixed_exemplar(G, info: dict, choice: ExemplarChoice, checkpoint: str | Path):
    """(generator, info) to score: a DualStyleGAN wrapped with its exemplar, anything else
    unchanged. Refuses a DualStyleGAN without --style-id and exemplar flags for other nets."""
    import torch

    from ffhq_tools.hashing import sha256_file
    from models.dualstylegan import DualStyleGAN, DualStyleGANGenerator
    from models.dualstylegan_codes import CodeSpace, read_codes
    from models.stylize import (
        as_tensor,
        check_code,
        default_weights,
        exemplar,
        parse_weights,
        to_w_plus,
    )

    checkpoint = Path(checkpoint)
    if not isinstance(G, DualStyleGAN):
        if choice.given:
            raise FfhqToolsError(f"--style-id / --exstyle / --style-weight apply to DualStyleGAN "
                                 f"checkpoints; {checkpoint} is a {type(G).__name__}")
        return G, info
    if choice.style_id is None:
        raise FfhqToolsError(f"{checkpoint}: a DualStyleGAN is scored for one fixed exemplar; "
                             "give --style-id N (and --exstyle FILE unless the exstyle file "
                             "sits beside the checkpoint)")
    ex_path = Path(choice.exstyle) if choice.exstyle else exstyle_beside(checkpoint)
    code = exemplar(read_codes(ex_path, default_space=CodeSpace.Z_PLUS), choice.style_id)
    check_code(code, G, f"--exstyle {ex_path}")
    weights = parse_weights(choice.weights, G.num_ws, "--style-weight") if choice.weights \
        else default_weights(G)
    with torch.no_grad():
        ex_w = to_w_plus(G, as_tensor(code.values, G), code.space)
    record = {"exstyle": ex_path.name, "exstyle_sha256": sha256_file(ex_path),
              "style_id": choice.style_id, "name": code.name, "space": code.space.value,
              "weights": list(weights)}
    return DualStyleGANGenerator(G, ex_w, weights), exemplar_info(info, record)


def exemplar_info(info: dict, record: dict) -> dict:
    """The wrapped generator's identity: its own hash (checkpoint + exemplar) and the exemplar
    in the protocol of every row."""
    info = dict(info)
    file_sha = info.get("sha256") or ""
    tag = json.dumps({"checkpoint": file_sha, "exemplar": record}, sort_keys=True)
    info["checkpoint_file_sha256"] = file_sha
    info["sha256"] = hashlib.sha256(tag.encode()).hexdigest()
    info["exemplar"] = record
    info["protocol"] = {**info.get("protocol", {}), "exemplar": record}
    return info

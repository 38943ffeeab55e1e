"""Refine a style set's extrinsic codes into an output folder, resumably.

Reads the set's exstyle and instyle codes (any file `read_codes` takes, keyed by exemplar file
name), refines each exemplar's z+_e (models.destylize.refine) and writes
`refined_exstyle_code.npy` (upstream's layout) and `refined_exstyle_code.npz` (ours) after
every exemplar, plus OUT/<exemplar>/ refined.npz, preview.png (exemplar | start | refined),
losses.jsonl and, last, result.json (done: skipped on a rerun).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from ffhq_tools.atomic import write_json_atomic
from models.destylize.pipeline import DestylizeError, to_uint8
from models.destylize.refine import Features, RefineSettings, refine_exstyle
from models.destylize.run import (
    Exemplar,
    checked_pixels,
    exemplars_of,
    freeze_options,
    save_official,
    write_rows,
)
from models.destylize.zplus import Distance
from models.dualstylegan import DualStyleGAN
from models.dualstylegan_codes import CodeSet, write_codes
from models.project.outputs import save_npz, save_png
from models.project.projector import area_downsample, pixels_to_tensor
from models.project.targets import Target

REFINED = "refined_exstyle_code"


def code_of(codes: CodeSet, exemplar: Exemplar, net: DualStyleGAN) -> torch.Tensor:
    for name in (exemplar.key, exemplar.target.name, Path(exemplar.key).stem):
        if name in codes.names:
            i = codes.names.index(name)
            code = codes.codes[i:i + 1]
            shape = (1, net.num_ws, net.generator.z_dim)
            if code.shape != shape:
                raise DestylizeError(f"{codes.source}: code {name!r} has shape "
                                     f"{list(code.shape)}, the model takes {list(shape)}")
            return torch.from_numpy(code)
    raise DestylizeError(f"{codes.source}: no code named {exemplar.key!r}")


def refine_one(net, distance, features, exemplar: Exemplar, codes, settings, seed, progress,
               folder: Path) -> dict:
    device = next(net.parameters()).device
    pixels = checked_pixels(exemplar.target, net.img_resolution,
                            min(net.img_resolution, settings.distance_resolution))
    target = area_downsample(pixels_to_tensor(pixels, device),
                             settings.distance_resolution) / 127.5 - 1
    exstyle, instyle = (code_of(c, exemplar, net).to(device) for c in codes)
    refined = refine_exstyle(net, distance, features, target, exstyle, instyle, settings,
                             seed=seed, progress=progress)
    folder.mkdir(parents=True, exist_ok=True)
    save_npz(folder / "refined.npz", code=refined.code.cpu().numpy())
    strip = [to_uint8(target), to_uint8(refined.first), to_uint8(refined.last)]
    save_png(folder / "preview.png", np.concatenate(strip, axis=1))
    write_rows(folder / "losses.jsonl", [{"exemplar": exemplar.key, **r} for r in refined.curve])
    summary = {"exemplar": exemplar.key, "source": exemplar.target.source,
               "final": refined.curve[-1]}
    write_json_atomic(folder / "result.json", summary)
    return summary


def write_refined(out: Path, finished: list[Exemplar]) -> None:
    keys = [e.key for e in finished]
    codes = []
    for exemplar in finished:
        with np.load(out / exemplar.target.name / "refined.npz", allow_pickle=False) as data:
            codes.append(data["code"])
    save_official(out / f"{REFINED}.npy", dict(zip(keys, codes, strict=True)))
    write_codes(out / f"{REFINED}.npz", CodeSet(keys, np.concatenate(codes), REFINED))


def refine_set(net: DualStyleGAN, distance: Distance, features: Features,
               targets: list[Target], exstyle: CodeSet, instyle: CodeSet, out: str | Path, *,
               settings: RefineSettings, seed: int, options: dict,
               progress: bool = True) -> list[dict]:
    from tqdm import tqdm

    out = Path(out)
    exemplars = exemplars_of(targets)
    if not exemplars:
        raise DestylizeError("no exemplars given")
    for exemplar in exemplars:
        for codes in (exstyle, instyle):
            code_of(codes, exemplar, net)
    out.mkdir(parents=True, exist_ok=True)
    freeze_options(out, {**options, "settings": settings.to_dict(), "seed": int(seed)})
    done, finished = [], []
    for exemplar in tqdm(exemplars, desc="refine", unit="exemplar", disable=not progress):
        folder = out / exemplar.target.name
        if (folder / "result.json").is_file():
            done.append(json.loads((folder / "result.json").read_text()))
        else:
            done.append(refine_one(net, distance, features, exemplar, (exstyle, instyle),
                                   settings, seed, progress, folder))
        finished.append(exemplar)
        write_refined(out, finished)
    return done

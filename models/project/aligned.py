"""`project --align`: FFHQ-align photos with our aligner before projecting them.

Each target (an image or a folder of photos) is aligned into OUT/aligned/<name>/ at the
generator's resolution (transform size 4x, FFHQ's ratio); the projection then reads that
folder's align.jsonl. Photos without a usable face go to OUT/rejects.jsonl.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from ffhq_tools.atomic import append_jsonl, read_jsonl
from ffhq_tools.errors import FfhqToolsError
from models.project.targets import safe_name

TRANSFORM_RATIO = 4


def _staged_folder(spec: Path, out: Path) -> Path:
    """align_folder reads folders: a single photo is copied into OUT/aligned/.input/<name>/."""
    if spec.is_dir():
        return spec
    folder = out / "aligned" / ".input" / safe_name(spec.stem)
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(spec, folder / spec.name)
    return folder


def align_targets(specs: list[str], out: Path, resolution: int, *, landmarks: str = "dlib",
                  weights_overrides: dict | None = None, device: str = "cpu",
                  progress: bool = True) -> tuple[list[str], list[dict]]:
    """(align.jsonl paths to project, rejects) for photos given as files or folders."""
    from ffhq_tools.align import AlignConfig, AlignOptions, align_folder

    options = AlignOptions(output_size=resolution,
                           transform_size=max(TRANSFORM_RATIO * resolution, resolution))
    config = AlignConfig(options=options, landmarks=landmarks)
    aligned, rejects = [], []
    for spec in specs:
        path = Path(spec)
        if not path.exists():
            raise FfhqToolsError(f"target {spec}: no such file or folder")
        if not (path.is_dir() or path.is_file()) or path.suffix.lower() in (".h5", ".jsonl"):
            raise FfhqToolsError(f"--align {spec}: expected photos (an image or a folder); "
                                 ".h5 files and align.jsonl are aligned already")
        dst = out / "aligned" / safe_name(path.stem if path.is_file() else path.name)
        align_folder(_staged_folder(path, out), dst, config, weights_overrides=weights_overrides,
                     device=device, progress=progress)
        for reject in read_jsonl(dst / "rejects.jsonl"):
            if reject.get("skipped_face"):  # a false or small face beside the one aligned
                continue
            rejects.append({"target": reject["source"], "source": str(path / reject["source"])
                            if path.is_dir() else str(path), "reason": reject["reason"],
                            "detail": reject.get("detail", "")})
        if (dst / "align.jsonl").is_file() and read_jsonl(dst / "align.jsonl"):
            aligned.append(str(dst / "align.jsonl"))
    return aligned, rejects


def record_rejects(out: Path, rejects: list[dict]) -> None:
    known = {(r["target"], r["source"]) for r in read_jsonl(out / "rejects.jsonl")}
    for reject in rejects:
        if (reject["target"], reject["source"]) not in known:
            append_jsonl(out / "rejects.jsonl", reject)

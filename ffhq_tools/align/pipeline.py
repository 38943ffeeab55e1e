"""The align pipeline: SRC (folder / manifest) -> OUT/<name>_NN.png + align.jsonl + rejects.jsonl.

One line per output face in align.jsonl (source, face index, rect, score, 68 landmarks, quad,
output path, file md5, pixel md5, detector + model SHA-256, source size, license / author ...),
one line per rejected photo and per skipped face (below `--min-score` or `--min-face`, or not
the largest: score, rect, reason) in rejects.jsonl, which every run writes (empty when nothing
was rejected). Each face records its upscale factor (output size / quad side); a face
magnified more than MAX_UPSCALE times is flagged and warned about on stderr. A PNG is written
atomically before its line, so a killed run resumes: a rerun skips photos whose every face has
a line and a file with that md5, or a reject line, and redoes the rest. `--shard i/n` takes
every n-th photo and writes its own align.shard-i-of-n.jsonl; `pack` reads them all.
"""

from __future__ import annotations

import hashlib
import io
import multiprocessing
import os
import sys
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from ffhq_tools import __version__
from ffhq_tools.align.bounded import (
    Photo,
    detect_bounded,
    open_photo,
    refine_faces,
    warp_source,
)
from ffhq_tools.align.landmarks import (
    DEFAULT_MIN_SCORE,
    Face,
    check_backend_weights,
    make_detector,
    partition_faces,
)
from ffhq_tools.align.quad import AlignOptions, choose_quad, face_frame, plan_warp
from ffhq_tools.align.sources import AlignItem, discover
from ffhq_tools.atomic import append_jsonl, read_jsonl, write_bytes_atomic, write_json_atomic
from ffhq_tools.errors import FfhqToolsError
from ffhq_tools.hashing import md5_file, pixel_md5
from ffhq_tools.images import DEFAULT_MAX_PIXELS, ImageRejected
from ffhq_tools.safe_paths import contained, fitted_name

METHODS = ("fast", "reference")
MAX_UPSCALE = 4.0  # output size / quad side beyond which a face is flagged as magnified


@dataclass(frozen=True)
class AlignConfig:
    """Everything that changes the output pixels or the set of faces (frozen per OUT folder)."""

    options: AlignOptions = AlignOptions()
    method: str = "fast"
    landmarks: str = "dlib"
    min_face: float = 0.0
    min_score: float | None = None  # None: the backend's default (DEFAULT_MIN_SCORE)
    largest_only: bool = False
    seed: int = 0
    max_pixels: int = DEFAULT_MAX_PIXELS

    def __post_init__(self):
        if self.method not in METHODS:
            raise FfhqToolsError(f"--method {self.method}: expected one of {', '.join(METHODS)}")

    @property
    def score_threshold(self) -> float:
        return DEFAULT_MIN_SCORE[self.landmarks] if self.min_score is None else self.min_score

    def to_dict(self) -> dict:
        data = asdict(self)
        data["min_score"] = self.score_threshold if self.landmarks != "given" else None
        return data


@dataclass
class AlignSummary:
    items: int = 0
    resumed: int = 0
    aligned: int = 0
    faces: int = 0
    rejects: Counter = field(default_factory=Counter)
    skipped: Counter = field(default_factory=Counter)
    magnified: int = 0

    def text(self) -> str:
        lines = [f"{self.items} photos: {self.aligned} aligned ({self.faces} faces), "
                 f"{self.resumed} already done, {sum(self.rejects.values())} rejected, "
                 f"{sum(self.skipped.values())} faces skipped"
                 + (f", {self.magnified} faces magnified over {MAX_UPSCALE:g}x"
                    if self.magnified else "")]
        lines += [f"  rejected: {n} x {reason}" for reason, n in self.rejects.most_common()]
        lines += [f"  skipped: {n} x {reason}" for reason, n in self.skipped.most_common()]
        return "\n".join(lines)


def align_image(image: Photo | np.ndarray, landmarks: np.ndarray,
                options: AlignOptions | None = None, method: str = "fast",
                rng: np.random.RandomState | None = None) -> tuple[np.ndarray, np.ndarray] | None:
    """Align one face: (HWC uint8 pixels, quad) or None when --retry-crops found no crop inside."""
    from ffhq_tools.align.fast import warp_fast
    from ffhq_tools.align.reference import warp_reference

    options = options or AlignOptions()
    if isinstance(image, np.ndarray):
        image = Image.fromarray(image)
    if isinstance(image, Image.Image):
        image = image.convert("RGB")
    quad = choose_quad(face_frame(landmarks, options.rotate_level), image.size, options, rng)
    if quad is None:
        return None
    source, plan = warp_source(image, plan_warp(quad, image.size, options))
    warp = warp_fast if method == "fast" else warp_reference
    return warp(source, plan, options), quad


def face_rng(seed: int, key: str, face_index: int) -> np.random.RandomState:
    """Per-face random stream for --random-shift: independent of order, workers and shards."""
    digest = hashlib.sha256(f"{seed}/{key}/{face_index}".encode()).digest()
    return np.random.RandomState(int.from_bytes(digest[:4], "little"))


def _given_faces(item: AlignItem) -> list[Face]:
    faces = []
    for lm in item.given:
        faces.append(Face((float(lm[:, 0].min()), float(lm[:, 1].min()),
                           float(lm[:, 0].max()), float(lm[:, 1].max())), float("inf"), lm))
    return faces


class _Worker:
    """Per-process state: the detector is built once, on the first photo that needs it."""

    def __init__(self, config: AlignConfig, out: Path, overrides: dict | None, device: str):
        self.config, self.out, self.overrides, self.device = config, out, overrides, device
        self._detector = None

    def detector(self):
        if self._detector is None:
            self._detector = make_detector(self.config.landmarks, self.overrides, self.device)
        return self._detector

    def output_name(self, item: AlignItem, face_index: int) -> str:
        stem = fitted_name(item.key)
        return f"{stem}.png" if item.numbered else f"{stem}_{face_index:02d}.png"

    def faces(self, item: AlignItem, image: Photo) -> tuple[list[Face], list, str, dict]:
        """(kept faces, [(skipped face, reason, detail)], detector name, model hashes)."""
        if item.given is not None:
            return _given_faces(item), [], "given", {}
        if self.config.landmarks == "given":
            return [], [], "given", {}
        detector = self.detector()
        kept, skipped = partition_faces(detect_bounded(detector, image, refine=False),
                                        self.config.min_face, self.config.score_threshold,
                                        self.config.largest_only)
        return refine_faces(detector, image, kept), skipped, detector.name, dict(detector.models)

    def process(self, item: AlignItem) -> tuple[list[dict], list[dict]]:
        try:
            return self._process(item, open_photo(item.path, self.config.max_pixels,
                                                  item.source))
        except ImageRejected as exc:  # on open, or while a large PNG is read in bands
            detail = exc.detail + ("; raise --max-pixels to align it"
                                   if exc.reason == "decompression bomb" else "")
            return [], [_reject(item, exc.reason, detail)]

    def _process(self, item: AlignItem, image: Photo) -> tuple[list[dict], list[dict]]:
        faces, skipped, detector, models = self.faces(item, image)
        rejects = [_skipped_face(item, face, reason, detail) for face, reason, detail in skipped]
        if not faces:
            detail = (f"{len(skipped)} detected, none with size >= {self.config.min_face} and "
                      f"score >= {self.config.score_threshold}" if detector != "given"
                      else "no landmarks given for this photo")
            return [], rejects + [_reject(item, "no face", detail)]
        records = []
        for index, face in enumerate(faces):
            rng = face_rng(self.config.seed, item.key, index)
            try:
                result = align_image(image, face.landmarks, self.config.options,
                                     self.config.method, rng)
            except FfhqToolsError as exc:
                rejects.append(_reject(item, "bad landmarks", str(exc), index))
                continue
            if result is None:
                rejects.append(_reject(item, "no crop inside the image", "--retry-crops", index))
                continue
            aligned, quad = result
            records.append(self.write(item, index, len(faces), face, aligned, quad,
                                      image.size, detector, models))
        return records, rejects

    def write(self, item, index, total, face, aligned, quad, size, detector, models) -> dict:
        name = self.output_name(item, index)
        buffer = io.BytesIO()
        Image.fromarray(aligned).save(buffer, format="PNG")
        data = buffer.getvalue()
        write_bytes_atomic(contained(self.out, name), data)
        upscale = self.config.options.output_size / float(np.hypot(*(quad[3] - quad[0])))
        return {
            "source": item.source, "face_index": index, "faces_total": total,
            "face_rect": [float(v) for v in face.rect],
            "face_score": None if detector == "given" else float(face.score),
            "landmarks": np.round(face.landmarks, 4).tolist(),
            "quad": np.round(quad, 4).tolist(), "output": name,
            "file_md5": hashlib.md5(data).hexdigest(), "pixel_md5": pixel_md5(aligned),
            "pixel_size": [int(aligned.shape[1]), int(aligned.shape[0])],
            "upscale": round(upscale, 4), "magnified": upscale > MAX_UPSCALE,
            "detector": detector, "models": models, "source_size": list(size),
            **{k: v for k, v in item.metadata.items() if k in ("license", "author", "country",
                                                                 "category", "file_url",
                                                                 "license_url", "photo_url")},
        }


def _reject(item: AlignItem, reason: str, detail: str = "", face: int | None = None) -> dict:
    record = {"source": item.source, "reason": reason, "detail": detail}
    if face is not None:
        record["face_index"] = face
    return record


def _skipped_face(item: AlignItem, face: Face, reason: str, detail: str) -> dict:
    """A detected face no output was made for (not a face index: those number the outputs)."""
    return {"source": item.source, "reason": reason, "detail": detail, "skipped_face": True,
            "face_score": float(face.score), "face_rect": [float(v) for v in face.rect]}


_STATE: _Worker | None = None


def _init_worker(config, out, overrides, device, parent_pid: int) -> None:
    global _STATE
    import torch

    from ffhq_tools.parent_death import die_with_parent

    die_with_parent(parent_pid)  # a killed `align` must not leave workers writing

    torch.set_num_threads(1)  # one process per core; small tiles stall with more threads
    _STATE = _Worker(config, out, overrides, device)


def _process_in_worker(item: AlignItem):
    return _STATE.process(item)


def shard_files(out: Path, shard: tuple[int, int]) -> tuple[Path, Path]:
    index, count = shard
    if count == 1:
        return out / "align.jsonl", out / "rejects.jsonl"
    tag = f"shard-{index}-of-{count}"
    return out / f"align.{tag}.jsonl", out / f"rejects.{tag}.jsonl"


def completed_sources(out: Path, align_file: Path, rejects_file: Path) -> set[str]:
    """Sources whose every face has a line with an output file of that md5 or a reject line."""
    faces_total: dict[str, int] = {}
    covered: dict[str, set[int]] = {}
    done = set()
    for record in read_jsonl(rejects_file):
        if record.get("skipped_face"):
            continue
        if "face_index" in record:
            covered.setdefault(record["source"], set()).add(record["face_index"])
        else:
            done.add(record["source"])
    broken = set()
    for record in read_jsonl(align_file):
        source = record["source"]
        faces_total[source] = record["faces_total"]
        path = out / record["output"]
        if path.is_file() and md5_file(path) == record["file_md5"]:
            covered.setdefault(source, set()).add(record["face_index"])
        else:
            broken.add(source)
    done |= {source for source, total in faces_total.items()
             if source not in broken and covered.get(source, set()) >= set(range(total))}
    return done


def _check_options(out: Path, config: AlignConfig) -> bool:
    """True when OUT has no align-options.json yet; an error when it holds other options."""
    path = out / "align-options.json"
    if not path.exists():
        return True
    import json

    if json.loads(path.read_text()).get("config") != config.to_dict():
        raise FfhqToolsError(f"{out} was aligned with other options ({path}); "
                             "resume with the same options or use a new OUT folder")
    return False


def _write_options(out: Path, config: AlignConfig) -> None:
    write_json_atomic(out / "align-options.json",
                      {"config": config.to_dict(), "ffhq_tools": __version__})


def parse_shard(spec: str | None) -> tuple[int, int]:
    if not spec:
        return 0, 1
    try:
        index, count = (int(v) for v in spec.split("/"))
    except ValueError:
        raise FfhqToolsError(f"--shard {spec}: expected i/n, e.g. 0/4") from None
    if count < 1 or not 0 <= index < count:
        raise FfhqToolsError(f"--shard {spec}: need 0 <= i < n")
    return index, count


def align_folder(src: str | Path, out: str | Path, config: AlignConfig = AlignConfig(), *,
                 landmarks_file: Path | None = None, images_root: Path | None = None,
                 workers: int = 1, shard: tuple[int, int] = (0, 1),
                 weights_overrides: dict | None = None, device: str = "cpu",
                 progress: bool = True) -> AlignSummary:
    """Align every photo of SRC into OUT (see the module docstring)."""
    from tqdm import tqdm

    out = Path(out)
    new_folder = not out.is_dir() or _check_options(out, config)
    items = discover(Path(src), landmarks_file, images_root)[shard[0]::shard[1]]
    align_file, rejects_file = shard_files(out, shard)
    done = completed_sources(out, align_file, rejects_file)
    todo = [item for item in items if item.source not in done]
    if config.landmarks != "given" and any(item.given is None for item in todo):
        check_backend_weights(config.landmarks, weights_overrides)
    out.mkdir(parents=True, exist_ok=True)
    if new_folder:
        _write_options(out, config)
    rejects_file.touch()
    summary = AlignSummary(items=len(items), resumed=len(items) - len(todo))
    bar = tqdm(total=len(todo), desc="align", unit="photo", disable=not progress)
    if workers <= 1:
        worker = _Worker(config, out, weights_overrides, device)
        results = map(worker.process, todo)
        _collect(results, align_file, rejects_file, summary, bar)
    else:
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(workers, mp_context=context, initializer=_init_worker,
                                 initargs=(config, out, weights_overrides, device,
                                           os.getpid())) as pool:
            _collect(pool.map(_process_in_worker, todo, chunksize=1), align_file, rejects_file,
                     summary, bar)
    bar.close()
    return summary


def _collect(results, align_file: Path, rejects_file: Path, summary: AlignSummary, bar) -> None:
    """Append each photo's lines: rejects first (a photo redone after a kill does not repeat
    the lines already there), then its faces, whose lines make it done."""
    import json

    from tqdm import tqdm

    written = {json.dumps(r, sort_keys=True) for r in read_jsonl(rejects_file)}
    for records, rejects in results:
        for reject in rejects:
            tally = summary.skipped if reject.get("skipped_face") else summary.rejects
            tally[reject["reason"]] += 1
            line = json.dumps(reject, sort_keys=True)
            if line not in written:
                append_jsonl(rejects_file, reject)
                written.add(line)
        for record in records:
            append_jsonl(align_file, record)
        for record in records:
            if record["magnified"]:
                summary.magnified += 1
                tqdm.write(f"align: warning: {record['output']} ({record['source']}) is "
                           f"magnified {record['upscale']:.1f}x (over {MAX_UPSCALE:g}x): the face "
                           "is small for this --size and will look blurry", file=sys.stderr)
        summary.aligned += bool(records)
        summary.faces += len(records)
        bar.update(1)

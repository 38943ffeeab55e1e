"""`ffhq-tools align SRC OUT`: FFHQ-style aligned faces from a folder or a manifest."""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from ffhq_tools.images import DEFAULT_MAX_PIXELS
from ffhq_tools.weights_cli import add_weights_flag


def _align(args) -> int:
    from ffhq_tools import weights
    from ffhq_tools.align.landmarks import BACKENDS
    from ffhq_tools.align.pipeline import AlignConfig, align_folder, parse_shard
    from ffhq_tools.align.quad import AlignOptions
    from ffhq_tools.errors import FfhqToolsError

    if args.landmarks not in BACKENDS:
        raise FfhqToolsError(f"--landmarks {args.landmarks}: expected one of {', '.join(BACKENDS)}")
    if args.landmarks == "given" and args.landmarks_file is None and not Path(args.src).is_file():
        raise FfhqToolsError("--landmarks given needs --landmarks-file (or a manifest with "
                             "in_the_wild.face_landmarks as SRC)")
    for flag, value in (("--min-face", args.min_face), ("--min-score", args.min_score)):
        if value is not None and math.isnan(value):
            raise FfhqToolsError(f"{flag} nan: expected a number")
    if args.max_pixels < 1:
        raise FfhqToolsError(f"--max-pixels {args.max_pixels}: must be >= 1")
    if args.workers < 1:
        raise FfhqToolsError(f"--workers {args.workers}: must be >= 1")
    options = AlignOptions(output_size=args.size, transform_size=args.transform_size,
                           enable_padding=not args.no_padding, rotate_level=not args.no_rotation,
                           random_shift=args.random_shift, retry_crops=args.retry_crops)
    config = AlignConfig(options=options, method=args.method, landmarks=args.landmarks,
                         min_face=args.min_face, min_score=args.min_score,
                         largest_only=args.largest_only, seed=args.seed,
                         max_pixels=args.max_pixels)
    summary = align_folder(args.src, args.out, config, landmarks_file=args.landmarks_file,
                           images_root=args.images_root, workers=args.workers,
                           shard=parse_shard(args.shard),
                           weights_overrides=weights.parse_overrides(args.weights),
                           device=args.device, progress=not args.quiet)
    print(summary.text())
    return 0


def add_verbs(verbs) -> None:
    p = verbs.add_parser(
        "align",
        help="FFHQ-style aligned faces from photos, a crawl manifest or ffhq-dataset-v2.json",
        description="Detect faces and 68 landmarks, then crop/rotate/pad exactly as FFHQ's "
                    "recreate_aligned_images. Writes OUT/<name>_NN.png, OUT/align.jsonl and "
                    "OUT/rejects.jsonl; a rerun resumes.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("src", metavar="SRC", help="folder of photos (recursive), or a JSON manifest "
                   "(FFHQ v2 schema: in_the_wild.file_path [+ face_landmarks], metadata)")
    p.add_argument("out", metavar="OUT", help="output folder")
    p.add_argument("--images-root", type=Path, default=None,
                   help="folder the manifest's file_path values are relative to "
                        "(default: the manifest's folder)")
    p.add_argument("--method", default="fast", choices=("fast", "reference"),
                   help="fast (agrees with reference within 2 levels) or reference (PIL, step "
                        "by step as the FFHQ script)")
    p.add_argument("--landmarks", default="dlib", metavar="dlib|dlib-cnn|face-alignment|given",
                   help="landmark backend")
    p.add_argument("--landmarks-file", type=Path, default=None,
                   help="JSON {path: 68x2 or [faces]} or CSV (path, face, x0, y0 ... y67)")
    p.add_argument("--min-face", type=float, default=0.0, help="minimum detection box side (px)")
    p.add_argument("--min-score", type=float, default=None,
                   help="minimum detector score (default: dlib HOG 0.5, dlib-cnn 0.5, "
                        "face-alignment 0.9)")
    p.add_argument("--largest-only", action="store_true", help="keep only the largest face")
    p.add_argument("--size", type=int, default=1024, help="output size (power of two)")
    p.add_argument("--transform-size", type=int, default=4096,
                   help="FFHQ's intermediate QUAD transform size")
    p.add_argument("--no-padding", action="store_true", help="no blur/median reflect padding")
    p.add_argument("--no-rotation", action="store_true", help="keep the photo's orientation")
    p.add_argument("--random-shift", type=float, default=0.0,
                   help="std of the random crop-centre shift, in quad sizes (FFHQ-U: 0.2)")
    p.add_argument("--retry-crops", action="store_true",
                   help="redraw shifted crops until one lies inside the photo (up to 1000)")
    p.add_argument("--seed", type=int, default=0, help="seed of --random-shift")
    p.add_argument("--max-pixels", type=int, default=DEFAULT_MAX_PIXELS,
                   help="photos with more pixels go to rejects.jsonl as decompression bombs "
                        "(a photo is decoded whole: 3 bytes per pixel)")
    p.add_argument("--workers", type=int, default=1, help="processes")
    p.add_argument("--shard", default=None, metavar="i/n", help="process every n-th photo from i")
    p.add_argument("--device", default="cpu", help="device for face-alignment")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    add_weights_flag(p)
    p.set_defaults(func=_align)

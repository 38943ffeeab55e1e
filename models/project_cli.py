"""`ffhq-tools project --network CKPT TARGET... --out DIR` (and `--attribution`).

A thin wrapper over models.project; it wires the perceptual distance from eval's feature
networks (the one place that layer is imported) and torch loads inside the handler.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ffhq_tools.errors import FfhqToolsError
from ffhq_tools.runtime import add_device_flag, add_threads_flag
from ffhq_tools.weights_cli import add_weights_flag

DISTANCES = ("vgg16-ts", "lpips-vgg")


def load_distance(name: str, overrides: dict, device, used: dict):
    """The registry's perceptual distance `name`; records each weights file's SHA-256."""
    from eval.features import lpips, vgg16
    from ffhq_tools import weights

    def resolve(entry: str):
        resolved = weights.resolve(entry, overrides)
        used[entry] = resolved.sha256
        return resolved

    source = {"vgg16-ts": vgg16.TORCHSCRIPT, "lpips-vgg": lpips.OURS}[name]
    distance = lpips.load_distance(resolve, source, device)
    if isinstance(distance, lpips.TorchScriptLpips):  # embed each target once, as ada does
        from models.project import EmbeddingDistance

        module = distance.module
        return EmbeddingDistance(lambda x: module(x, resize_images=False, return_lpips=True))
    return distance


def _load_network(path: str, device):
    from models.checkpoint import checkpoint_info, load_generator

    info = checkpoint_info(path)
    G = load_generator(path, device)
    return G, info


def _targets(args, G, out: Path, overrides: dict, device):
    from models.project.aligned import align_targets, record_rejects
    from models.project.targets import collect_targets

    specs = list(args.targets)
    if args.align:
        specs, rejects = align_targets(specs, out, G.img_resolution, landmarks=args.landmarks,
                                       weights_overrides=overrides, device=str(device),
                                       progress=not args.quiet)
        record_rejects(out, rejects)
    return collect_targets(specs, G.img_resolution, args.limit) if specs else []


def _options(args, info: dict, weights_used: dict, protocol) -> dict:
    return {"network": {"sha256": info["sha256"], "config": info["config"],
                        "resolution": info["resolution"]},
            "distance": args.distance, "weights": dict(sorted(weights_used.items())),
            "protocol": protocol.to_dict(), "align": bool(args.align)}


def _project(args) -> int:
    from ffhq_tools.runtime import using_threads

    with using_threads(args.threads) as threads:
        return _project_with(args, threads)


def _project_with(args, threads: int) -> int:
    from ffhq_tools import weights
    from ffhq_tools.runtime import select_device
    from models.project import ProjectionProtocol, Projector, check_projectable
    from models.project.outputs import video_encoder

    if args.batch < 1:
        raise FfhqToolsError(f"--batch {args.batch}: must be >= 1")
    if not args.targets:
        raise FfhqToolsError("no TARGET given (images, folders, align.jsonl or .h5 files)")
    device = select_device(args.device)
    print(f"project: device {device}, {threads} CPU thread(s)", file=sys.stderr)
    protocol = ProjectionProtocol(steps=args.steps, space=args.space,
                                  optimize_noise=args.noise_opt)
    G, info = _load_network(args.network, device)
    label = f"{args.network} (config {info['config']})"
    check_projectable(G, label)
    out = Path(args.out)
    overrides = weights.parse_overrides(args.weights)
    used: dict[str, str] = {}
    distance = load_distance(args.distance, overrides, device, used)
    projector = Projector(G, distance, protocol, device=device, label=label)
    out.mkdir(parents=True, exist_ok=True)
    targets = _targets(args, G, out, overrides, device)
    options = _options(args, info, used, protocol)
    common = dict(seed=args.seed, options=options, batch_size=args.batch,
                  checkpoint_every=args.checkpoint_every, progress=not args.quiet)
    if args.attribution:
        return _attribution(args, projector, targets, out, common)
    video = None
    if args.video:
        video = video_encoder()
        if video == "gif":
            print("note: imageio-ffmpeg is not installed (pip install 'ffhq-tools[video]'); "
                  "writing GIF videos", file=sys.stderr)
    from models.project.run import project_targets

    summary = project_targets(projector, targets, out, video=video, **common)
    for row in summary.done:
        print(f"{row['target']}: distance {row['distance']:.4f} -> "
              f"{out / row['target'] / 'projected_w.npz'}")
    print(f"{len(summary.done)} projected ({summary.skipped} already done), "
          f"{len(summary.rejects)} rejected" + (f" (see {out / 'rejects.jsonl'})"
                                                if summary.rejects else ""))
    return 0


def _attribution(args, projector, targets, out: Path, common: dict) -> int:
    from models.project.attribution import report_table, run_attribution

    if args.num < 1:
        raise FfhqToolsError(f"--num {args.num}: must be >= 1")
    report = run_attribution(projector, targets, out, num=args.num, threshold=args.threshold,
                             **common)
    print(report_table(report), end="")
    print(f"rows: {out / 'attribution.jsonl'}, histogram: {out / 'attribution.png'}")
    return 0


def add_verbs(verbs) -> None:
    p = verbs.add_parser(
        "project", formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        help="project real faces into W / W+ (stylegan2-ada projector protocol), or run "
             "StyleGAN2's attribution test")
    p.add_argument("targets", nargs="*", metavar="TARGET",
                   help="image, folder, an aligned folder's align.jsonl, FILE.h5 or "
                        "FILE.h5:LEVEL (with --attribution: the real images)")
    p.add_argument("--network", required=True, help="our checkpoint (.pt)")
    p.add_argument("--out", required=True, help="output folder (one subfolder per target)")
    p.add_argument("--space", choices=("w", "w+"), default="w",
                   help="w: one w for all layers; w+: one w per layer")
    p.add_argument("--steps", type=int, default=1000, help="optimisation steps")
    p.add_argument("--seed", type=int, default=303, help="noise and w-noise seed per target")
    p.add_argument("--noise-opt", action=argparse.BooleanOptionalAction, default=True,
                   help="optimise the noise maps too (regularised, renormalised every step)")
    p.add_argument("--distance", choices=DISTANCES, default="vgg16-ts",
                   help="vgg16-ts: NVIDIA's vgg16.pt LPIPS features (as ada); lpips-vgg: "
                        "torchvision VGG16 + lpips' linear layers")
    add_weights_flag(p)
    p.add_argument("--batch", type=int, default=4, help="targets optimised together")
    p.add_argument("--limit", type=int, default=None, help="project only the first N targets")
    p.add_argument("--checkpoint-every", type=int, default=100,
                   help="steps between per-target checkpoints (resume after a kill)")
    p.add_argument("--video", action="store_true",
                   help="write the optimisation as proj.mp4 (imageio-ffmpeg) or proj.gif")
    p.add_argument("--align", action="store_true",
                   help="FFHQ-align the photos first (ffhq_tools.align)")
    p.add_argument("--landmarks", default="dlib", help="landmark backend for --align")
    p.add_argument("--attribution", action="store_true",
                   help="StyleGAN2's attribution test: project --num generated images and "
                        "--num of the TARGETs (real images), compare the distances")
    p.add_argument("--num", type=int, default=100, help="images per class for --attribution")
    p.add_argument("--threshold", type=float, default=None,
                   help="attribution threshold (default: the best split of the two sets)")
    add_threads_flag(p)
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    add_device_flag(p)
    p.set_defaults(func=_project)

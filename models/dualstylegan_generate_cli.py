"""`ffhq-tools generate CKPT --dualstylegan`: random intrinsic x extrinsic grids and style
interpolation between two exemplars (models.dualstylegan_generate).

Writes OUT/dualstylegan-grid.png (header row: the exemplars; header column: the contents
without the extrinsic path), OUT/dualstylegan.json (every seed, code and setting) and, with
`--interpolate-styles A,B`, OUT/style-interp/frame-NNNN.png plus OUT/style-interp.mp4 (GIF
without imageio-ffmpeg).
"""

from __future__ import annotations

import math
from pathlib import Path

from ffhq_tools.errors import FfhqToolsError

DEFAULT_SEEDS = "0-3"
DEFAULT_STYLES = "0-3"
MAX_GRID = 64
NOT_FOR_DUALSTYLEGAN = (("--projected-w", "projected_w"), ("--style-mixing", "style_mixing"),
                        ("--noise-variation", "noise_variation"),
                        ("--truncation-sweep", "truncation_sweep"),
                        ("--interpolate", "interpolate"), ("--class", "class_idx"),
                        ("--trunc-cutoff", "trunc_cutoff"))


def _check_flags(args) -> None:
    for flag, name in NOT_FOR_DUALSTYLEGAN:
        if getattr(args, name) is not None:
            raise FfhqToolsError(f"{flag} does not apply to --dualstylegan (its grid is seeds x "
                                 "exemplars; --interpolate-styles A,B interpolates styles)")
    if args.sampler and args.style_ids:
        raise FfhqToolsError("--style-ids picks exemplars of the exstyle file, --sampler draws "
                             "them (with --style-seeds); give one of the two")
    if args.style_seeds and not args.sampler:
        raise FfhqToolsError("--style-seeds needs --sampler (the converted sampler.pt)")
    if args.frames < 2:
        raise FfhqToolsError(f"--frames {args.frames}: must be at least 2")
    for flag, value in (("--fps", args.fps), ("--batch", args.batch)):
        if value is not None and value < 1:
            raise FfhqToolsError(f"{flag} {value}: must be a positive integer")
    if args.trunc is not None and not math.isfinite(args.trunc):
        raise FfhqToolsError(f"--trunc {args.trunc}: must be a finite number")


def _load(args, device):
    from models.checkpoint import checkpoint_sha256, load_generator
    from models.dualstylegan import DualStyleGAN

    net = load_generator(args.ckpt, device)
    if not isinstance(net, DualStyleGAN):
        raise FfhqToolsError(f"--dualstylegan: {args.ckpt} is a {type(net).__name__} "
                             "checkpoint, not a DualStyleGAN (drop --dualstylegan)")
    return net, checkpoint_sha256(args.ckpt)


def _seeds(spec: str, flag: str) -> list[int]:
    from models.generate import parse_seeds

    seeds = parse_seeds(spec, flag)
    if len(seeds) > MAX_GRID:
        raise FfhqToolsError(f"{flag} {spec}: at most {MAX_GRID} (the grid is built in memory)")
    return list(seeds)


class Exemplars:
    """Exemplar codes by id (exstyle file) or by seed (samplers), and where they came from."""

    def __init__(self, args, net):
        from models.dualstylegan_codes import CodeSpace, load_samplers, read_codes
        from models.dualstylegan_exemplar import exstyle_beside

        self.net = net
        if args.sampler:
            self.samplers, self.flag = load_samplers(args.sampler), "--style-seeds"
            self.source = {"sampler": str(args.sampler)}
        else:
            path = Path(args.exstyle) if args.exstyle else exstyle_beside(Path(args.ckpt))
            self.codes, self.flag = read_codes(path, CodeSpace.Z_PLUS), "--style-ids"
            self.samplers, self.source = None, {"exstyle": str(path)}

    def __call__(self, keys: list[int], flag: str | None = None):
        from models.dualstylegan_generate import sampled_exemplars
        from models.stylize import check_code, exemplar

        if self.samplers is not None:
            return sampled_exemplars(self.net, self.samplers, keys)
        codes = [exemplar(self.codes, key, flag or self.flag) for key in keys]
        for code in codes:
            check_code(code, self.net, f"--exstyle {self.codes.source}")
        return codes


def _pair(spec: str) -> list[int]:
    parts = [p.strip() for p in spec.split(",")]
    try:
        pair = [int(p) for p in parts]
    except ValueError:
        pair = []
    if len(pair) != 2:
        raise FfhqToolsError(f"--interpolate-styles {spec!r}: expected two exemplars A,B "
                             "(style ids, or style seeds with --sampler)")
    return pair


def generate_dualstylegan(args) -> int:
    from ffhq_tools.atomic import write_json_atomic
    from ffhq_tools.runs import create_run_dir
    from ffhq_tools.runtime import select_device
    from models import dualstylegan_generate as dg
    from models.generate_video import VideoWriter
    from models.project.outputs import save_png
    from models.stylize import default_weights, parse_weights

    _check_flags(args)
    seeds = _seeds(args.seeds or DEFAULT_SEEDS, "--seeds")
    styles = _seeds(args.style_seeds or args.style_ids or DEFAULT_STYLES,
                    "--style-seeds" if args.sampler else "--style-ids")
    pair = _pair(args.interpolate_styles) if args.interpolate_styles else None
    net, sha256 = _load(args, select_device(args.device))
    weights = parse_weights(args.weight, net.num_ws) if args.weight else default_weights(net)
    truncation = dg.DEFAULT_TRUNCATION if args.trunc is None else float(args.trunc)
    exemplars = Exemplars(args, net)
    codes = exemplars(styles)
    out = Path(args.out) if args.out else create_run_dir(Path("generated"),
                                                         f"{Path(args.ckpt).stem}-dualstylegan")
    out.mkdir(parents=True, exist_ok=True)
    batch = args.batch or 8
    grid = dg.random_grid(net, seeds, codes, weights, truncation, args.noise_mode, batch)
    save_png(out / "dualstylegan-grid.png", grid)
    record = {"checkpoint": str(args.ckpt), "checkpoint_sha256": sha256, "seeds": seeds,
              **exemplars.source, "styles": styles,
              "exemplars": [c.to_dict() for c in codes], "weights": list(weights),
              "truncation": truncation, "truncation_latent": 0.0,
              "noise_mode": args.noise_mode}
    if not args.quiet:
        print(f"grid ({len(seeds)} seeds x {len(codes)} exemplars): "
              f"{out / 'dualstylegan-grid.png'}")
    if pair is not None:
        start, end = exemplars(pair, "--interpolate-styles")
        frames_dir = out / "style-interp"
        frames_dir.mkdir(exist_ok=True)
        with VideoWriter(out / "style-interp", args.fps) as video:
            for i, frame in enumerate(dg.style_interpolation(
                    net, seeds, start, end, args.frames, weights, truncation, args.noise_mode)):
                save_png(frames_dir / f"frame-{i:04d}.png", frame)
                video.add(frame)
        record["interpolation"] = {"styles": pair, "frames": args.frames,
                                   "video": video.path.name}
        if not args.quiet:
            print(f"{args.frames} style interpolation frames: {frames_dir}, video: {video.path}")
    write_json_atomic(out / "dualstylegan.json", record)
    return 0

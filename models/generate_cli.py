"""`ffhq-tools generate CKPT ...`: samples streamed into a folder that records what made them,
a bounded grid beside them, and the papers' figures in OUT/figures/.

A thin wrapper over models.generate, models.generate_folder and models.projected_w; torch is
imported inside the handler so the root parser stays instant.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

from ffhq_tools.errors import FfhqToolsError
from ffhq_tools.runtime import add_device_flag

DEFAULT_SEEDS = "0-15"
DEFAULT_ROOT = Path("generated")
FIGURE_MAX_SEEDS = 64  # style mixing / truncation sweep grids are built in memory
NOISE_MAX_DRAWS = 64


# ------------------------------------------------------------------------------------------
# checks before anything is loaded
# ------------------------------------------------------------------------------------------
def _positive(value, flag: str) -> None:
    if value is not None and value < 1:
        raise FfhqToolsError(f"{flag} {value}: must be a positive integer")


def parse_psis(spec: str) -> list[float]:
    psis = []
    for part in spec.split(","):
        try:
            psi = float(part)
        except ValueError:
            psi = math.nan
        if not math.isfinite(psi):
            raise FfhqToolsError(f"--truncation-sweep {spec}: {part.strip()!r} is not a finite "
                                 "number (expected e.g. 1,0.7,0.5,0,-0.5,-1)")
        psis.append(psi)
    return psis


def _check_flags(args) -> None:
    for flag, value in (("--batch", args.batch), ("--grid-cols", args.grid_cols),
                        ("--noise-variation", args.noise_variation), ("--fps", args.fps),
                        ("--trunc-cutoff", args.trunc_cutoff)):
        _positive(value, flag)
    if args.frames < 2:
        raise FfhqToolsError(f"--frames {args.frames}: must be at least 2")
    if args.trunc is not None and not math.isfinite(args.trunc):
        raise FfhqToolsError(f"--trunc {args.trunc}: must be a finite number (1 = no "
                             "truncation, 0.7 = the papers' figures)")
    if args.noise_variation is not None and args.noise_variation > NOISE_MAX_DRAWS:
        raise FfhqToolsError(f"--noise-variation {args.noise_variation}: at most "
                             f"{NOISE_MAX_DRAWS} draws (they are rendered in one pass)")
    if args.truncation_sweep is not None:
        parse_psis(args.truncation_sweep)
    if args.projected_w:
        _check_projected_flags(args)


def _check_projected_flags(args) -> None:
    for flag, value in (("--seeds", args.seeds), ("--trunc", args.trunc),
                        ("--trunc-cutoff", args.trunc_cutoff), ("--class", args.class_idx),
                        ("--style-mixing", args.style_mixing),
                        ("--noise-variation", args.noise_variation),
                        ("--truncation-sweep", args.truncation_sweep)):
        if value is not None:
            raise FfhqToolsError(f"{flag} does not apply to --projected-w: the saved codes are "
                                 "already in W (drop one of the two)")
    if args.interpolate == "z":
        raise FfhqToolsError("--interpolate z: projected codes have no z; use --interpolate w")


def _figure_seeds(args, seeds) -> None:
    from models.generate import parse_seeds

    if args.style_mixing is not None:
        rows = parse_seeds(args.style_mixing, "--style-mixing")
        if len(rows) > FIGURE_MAX_SEEDS:
            raise FfhqToolsError(f"--style-mixing {args.style_mixing}: at most "
                                 f"{FIGURE_MAX_SEEDS} row seeds")
    if args.interpolate is not None and len(seeds) < 2:
        raise FfhqToolsError(f"--interpolate needs at least two --seeds (got {seeds.spec()})")
    for flag, value in (("--style-mixing", args.style_mixing),
                        ("--truncation-sweep", args.truncation_sweep)):
        if value is not None and len(seeds) > FIGURE_MAX_SEEDS:
            raise FfhqToolsError(f"{flag} draws every --seeds seed into one figure: at most "
                                 f"{FIGURE_MAX_SEEDS} seeds (got {len(seeds)}); run the figure "
                                 "with fewer --seeds")


def default_batch(device, resolution: int) -> int:
    """About 8 (CUDA) or 4 (CPU) megapixels per pass, between 1 and 32 images."""
    budget = (8 if device.type == "cuda" else 4) * 1024 * 1024
    return max(1, min(32, budget // (resolution * resolution)))


# ------------------------------------------------------------------------------------------
# the verb
# ------------------------------------------------------------------------------------------
def _load(args, device):
    from models.checkpoint import checkpoint_sha256, load_generator
    from models.contract import ImageGenerator

    ckpt = Path(args.ckpt)
    G = load_generator(ckpt, device)
    if not isinstance(G, ImageGenerator):
        raise FfhqToolsError(f"{ckpt}: a {type(G).__name__} checkpoint needs an exemplar: "
                             "generate --dualstylegan for random grids, ffhq-tools stylize for "
                             "photos")
    return G, checkpoint_sha256(ckpt)


def _load_codes(args, G):
    from models.projected_w import check_generator_has_w, load_projected_w

    if not args.projected_w:
        return []
    check_generator_has_w(G)
    codes = [load_projected_w(path, G.num_ws, G.w_dim) for path in args.projected_w]
    if args.interpolate is not None and sum(len(c.w) for c in codes) < 2:
        raise FfhqToolsError("--interpolate needs at least two projected codes (one file of "
                             "N >= 2 codes, or --projected-w given twice)")
    return codes


def _open_folder(args, settings, codes):
    from ffhq_tools.runs import create_run_dir
    from models.generate_folder import SampleFolder

    record = {"checkpoint": str(args.ckpt),
              "projected_w_files": [str(c.path) for c in codes]}
    if args.out is None:
        desc = f"{Path(args.ckpt).stem}-{'proj' if codes else 'seeds'}"
        root = create_run_dir(DEFAULT_ROOT, desc)
    else:
        root = Path(args.out)
    return SampleFolder(root, settings, record)


def _say(args, message: str) -> None:
    if not args.quiet:
        print(message)


def _generate(args) -> int:
    from ffhq_tools.runtime import select_device
    from models import generate as gen
    from models.generate_folder import SampleSettings

    if args.dualstylegan:
        from models.dualstylegan_generate_cli import generate_dualstylegan

        return generate_dualstylegan(args)
    _check_flags(args)
    seeds = None if args.projected_w else gen.parse_seeds(args.seeds or DEFAULT_SEEDS)
    if seeds is not None:
        _figure_seeds(args, seeds)
    device = select_device(args.device)
    G, sha256 = _load(args, device)
    codes = _load_codes(args, G)
    if seeds is not None:
        gen.class_labels(G, 1, args.class_idx)
    settings = SampleSettings(
        checkpoint_sha256=sha256, resolution=int(G.img_resolution),
        img_channels=int(G.img_channels),
        truncation_psi=1.0 if args.trunc is None else float(args.trunc),
        truncation_cutoff=args.trunc_cutoff, noise_mode=args.noise_mode,
        class_idx=args.class_idx, projected_w_sha256=tuple(c.sha256 for c in codes))
    folder = _open_folder(args, settings, codes)
    batch = args.batch or default_batch(device, settings.resolution)
    items = _write_samples(args, G, folder, seeds, codes, batch)
    if not args.no_grid:
        from models.generate_folder import write_grid

        write_grid(folder, items, args.grid_cols)
        _say(args, f"grid: {folder.grid}")
    for line in _figures(args, G, folder, seeds, codes, batch):
        _say(args, line)
    return 0


def _figures(args, G, folder, seeds, codes, batch: int):
    """Write each requested figure into OUT/figures; yields one line per figure."""
    from models import generate as gen
    from models import generate_figures as figs

    if args.style_mixing is not None:
        rows = list(gen.parse_seeds(args.style_mixing, "--style-mixing"))
        for name, path in figs.write_style_mixing(G, folder, list(seeds), rows, batch).items():
            yield f"style mixing ({name} styles from rows): {path}"
    if args.noise_variation is not None:
        count = figs.write_noise_variation(G, folder, seeds, args.noise_variation)
        yield f"noise variation of {count} seeds: {folder.figures}/noise-seed*.png (+ -std.png)"
    if args.truncation_sweep is not None:
        psis = parse_psis(args.truncation_sweep)
        path = figs.write_truncation_sweep(G, folder, list(seeds), psis, batch)
        yield f"truncation sweep psi={psis}: {path}"
    if args.interpolate is not None:
        frames, video, count = _interpolate(args, G, folder, seeds, codes, batch)
        yield f"{count} interpolation frames ({args.interpolate}): {frames}, video: {video}"


def _interpolate(args, G, folder, seeds, codes, batch: int):
    from models import generate as gen
    from models import generate_figures as figs
    from models.projected_w import stack_codes

    if codes:
        ws = gen.code_interpolation_ws(stack_codes(codes), args.frames)
        description = {"codes": [c.sha256 for c in codes]}
    else:
        s = folder.settings
        ws = gen.seed_interpolation_ws(G, seeds, args.frames, args.interpolate,
                                       truncation_psi=s.truncation_psi,
                                       truncation_cutoff=s.truncation_cutoff,
                                       class_idx=s.class_idx)
        description = {"seeds": seeds.spec()}
    return figs.write_interpolation(G, folder, ws, f"interp-{args.interpolate}", batch, args.fps,
                                    {**description, "frames_per_segment": args.frames})


def _write_samples(args, G, folder, seeds, codes, batch: int):
    """Stream every sample to OUT/samples; returns the first grid items."""
    from tqdm import tqdm

    from models import generate_folder as gf
    from models.generate_folder import GRID_MAX_IMAGES
    from models.projected_w import stack_codes

    if codes:
        stacked = stack_codes(codes)
        count = len(stacked)
        folder.record_codes([{"file": str(c.path), "sha256": c.sha256, "count": len(c.w)}
                             for c in codes])
        items, ws_for = (lambda: gf.code_items(count)), gf.codes_to_ws(stacked)
    else:
        count = len(seeds)
        folder.record_seeds(seeds)
        items, ws_for = (lambda: gf.seed_items(seeds)), gf.seeds_to_ws(G, folder.settings)
    progress = tqdm(total=count, desc="generate", unit="img", file=sys.stderr,
                    disable=args.quiet)
    with progress:
        counts = gf.write_samples(G, folder, items(), ws_for, batch, progress.update,
                                  rerender=args.overwrite)
    for name in counts.repaired if not args.quiet else ():
        print(f"warning: {folder.samples / name} was damaged and has been rendered again",
              file=sys.stderr)
    _say(args, f"{counts.total} images in {folder.samples} ({counts.new} new, {counts.kept} "
               f"kept), settings in {folder.options_path}")
    first = []
    for item in items():
        if len(first) == GRID_MAX_IMAGES:
            break
        first.append(item)
    return first


def add_generate_verb(verbs) -> None:
    p = verbs.add_parser(
        "generate", help="images, grids and paper figures from a checkpoint",
        description="Render seeded samples (or saved W codes) into OUT/samples/, streamed in "
                    "batches; OUT/options.json and each PNG record the settings, a rerun "
                    "with the same settings resumes and one with other settings is refused. "
                    "grid.png sits beside samples/, figures in OUT/figures/.")
    p.add_argument("ckpt", help="our checkpoint (.pt); convert official ones first")
    p.add_argument("--out", default=None,
                   help="output folder (default: a fresh generated/NNNNN-<checkpoint> folder)")
    p.add_argument("--seeds", default=None, help=f"seeds, e.g. 0-63,100 (default {DEFAULT_SEEDS})")
    p.add_argument("--projected-w", action="append", default=None, metavar="FILE",
                   help="render saved codes (projected_w.npz, key w: [N, num_ws, w_dim]) "
                        "instead of seeds; repeat to chain files")
    p.add_argument("--trunc", type=float, default=None, help="truncation psi (default 1)")
    p.add_argument("--trunc-cutoff", type=int, default=None,
                   help="truncate only the first N layers (default: all)")
    p.add_argument("--noise-mode", choices=("const", "random", "none"), default="const",
                   help="default const; random: each image's noise is drawn from its own "
                        "seed")
    p.add_argument("--class", dest="class_idx", type=int, default=None,
                   help="class index for conditional generators")
    p.add_argument("--batch", type=int, default=None,
                   help="images per forward pass (default: about 4 megapixels on CPU, 8 on "
                        "CUDA, at most 32)")
    p.add_argument("--grid-cols", type=int, default=None,
                   help="grid columns (default: a square grid)")
    p.add_argument("--no-grid", action="store_true",
                   help="no grid.png (otherwise: the first 64 samples)")
    p.add_argument("-q", "--quiet", action="store_true",
                   help="no progress bar and no printing except errors")
    p.add_argument("--overwrite", action="store_true", help="render existing PNGs again")
    p.add_argument("--style-mixing", metavar="ROW_SEEDS", default=None,
                   help="style-mixing figure: --seeds are the columns (source A), these seeds "
                        "the rows (source B)")
    p.add_argument("--noise-variation", type=int, metavar="N", default=None,
                   help="N noise draws per seed plus the per-pixel std map")
    p.add_argument("--truncation-sweep", metavar="PSIS", default=None,
                   help="comma-separated psi values, e.g. 1,0.7,0.5,0,-0.5,-1")
    p.add_argument("--interpolate", choices=("z", "w"), default=None,
                   help="frames between consecutive seeds or codes (slerp in z, lerp in w), "
                        "plus an MP4 (GIF without imageio-ffmpeg)")
    p.add_argument("--frames", type=int, default=16,
                   help="frames per interpolation segment (default 16)")
    p.add_argument("--fps", type=int, default=30,
                   help="interpolation video frame rate (default 30)")
    _add_dualstylegan_flags(p)
    add_device_flag(p)
    p.set_defaults(func=_generate)


def _add_dualstylegan_flags(p) -> None:
    group = p.add_argument_group(
        "DualStyleGAN (--dualstylegan): --seeds are the intrinsic codes (rows), truncated "
        "towards 0 by --trunc (default 0.5, as the official generate.py)")
    group.add_argument("--dualstylegan", action="store_true",
                       help="random intrinsic x extrinsic grid of a DualStyleGAN checkpoint")
    group.add_argument("--exstyle", default=None,
                       help="exemplar codes (default: refined_exstyle_code / exstyle_code "
                            "beside CKPT)")
    group.add_argument("--style-ids", default=None,
                       help="exemplars of the exstyle file, e.g. 0-3,17 (default 0-3)")
    group.add_argument("--sampler", default=None,
                       help="converted sampler.pt: draw exemplars instead, by --style-seeds")
    group.add_argument("--style-seeds", default=None, help="seeds of sampled exemplars")
    group.add_argument("--weight", default=None,
                       help="interpolation weights, e.g. 0.75x7,1x11 (default: 0.75 "
                            "structure, 1 colour)")
    group.add_argument("--interpolate-styles", metavar="A,B", default=None,
                       help="frames (--frames) and a video (--fps) between two exemplars")

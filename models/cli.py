"""`ffhq-tools configs list|show NAME`, `import-checkpoint SRC DST`, `generate CKPT ...`.

Thin wrappers over models.configs, models.legacy_import and models.generate; torch is
imported inside the handlers so the root parser stays instant.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ffhq_tools.errors import FfhqToolsError
from ffhq_tools.runtime import add_device_flag


# ------------------------------------------------------------------------------------------
# configs
# ------------------------------------------------------------------------------------------
def _configs_list(args) -> int:
    from models.configs import CONFIGS

    for name, config in CONFIGS.items():
        print(f"{name:16s} {config.arch:10s} {config.description}")
    return 0


def _configs_show(args) -> int:
    from models.configs import CONFIGS, get_config

    config = get_config(args.name)
    if args.res is not None:
        from models.layers import log2_resolution

        try:
            log2_resolution(args.res)
        except ValueError as exc:
            raise FfhqToolsError(f"--res {args.res}: {exc}") from None
    if args.json:
        print(json.dumps(config.to_dict(), indent=2, sort_keys=True))
        return 0
    print(f"{config.name}: {config.description}")
    if config.base:
        diffs = config.differences(CONFIGS[config.base])
        print(f"differences from {config.base}:")
        for key, (old, new) in diffs.items():
            print(f"  {key}: {old} -> {new}")
    print("all fields:")
    for key, value in config.to_dict().items():
        if key not in ("name", "description"):
            print(f"  {key}: {value}")
    if args.res is not None:
        _print_parameter_counts(config, args.res)
    return 0


def _print_parameter_counts(config, resolution: int) -> None:
    """Counted on the meta device: no memory, instant even for 1024 px full-width networks."""
    import torch

    from models.configs import build_networks
    from models.layers import count_parameters

    with torch.device("meta"):
        G, D = build_networks(config, resolution)
    mapping = f" (mapping {count_parameters(G.mapping):,})" if hasattr(G, "mapping") else ""
    print(f"parameters at {resolution} px: G {count_parameters(G):,}{mapping}, "
          f"D {count_parameters(D):,}")


# ------------------------------------------------------------------------------------------
# import-checkpoint
# ------------------------------------------------------------------------------------------
def _source_path(spec: str) -> Path:
    """A file path, or the name of a registered weights entry (cached and hash-checked)."""
    path = Path(spec)
    if path.exists():
        return path
    from ffhq_tools import weights

    if spec in weights.REGISTRY:
        return weights.resolve(spec).path
    raise FfhqToolsError(f"{spec}: no such file (nor a registered weights name; see "
                         "`ffhq-tools weights list`)")


def _import_checkpoint(args) -> int:
    from models.dualstylegan_import import convert_side_file
    from models.legacy_import import import_checkpoint

    if Path(args.dst).exists() and not args.overwrite:
        raise FfhqToolsError(f"{args.dst} exists (pass --overwrite to replace it)")
    src = _source_path(args.src)
    side_file = convert_side_file(src, Path(args.dst))
    if side_file is not None:
        print("\n".join(side_file))
        return 0
    result = import_checkpoint(src, args.dst)
    counts: dict[str, int] = {}
    for net, *_ in result.mapped:
        counts[net] = counts.get(net, 0) + 1
    print(f"{args.src}: {result.source_format} -> {args.dst}")
    print(f"architecture: {result.config.arch} {result.resolution}px, "
          f"c_dim {result.c_dim}, channel_base {result.config.channel_base}, channel_max "
          f"{result.config.channel_max}, G {result.config.g_architecture}, "
          f"D {result.config.d_architecture}, mapping {result.config.mapping_layers}")
    for net, count in counts.items():
        print(f"{net}: {count} tensors mapped")
    if args.verbose:
        for net, src, ours, shape in result.mapped:
            print(f"  {net}: {src} -> {ours} {list(shape)}")
    for note in result.notes:
        print(f"note: {note}")
    if args.verify and result.source_format == "dualstylegan":
        raise FfhqToolsError("--verify renders plain generators; render a DualStyleGAN "
                             f"checkpoint with: ffhq-tools stylize CONTENT --model {args.dst}")
    if args.verify:
        _print_verification(args)
    return 0


def _print_verification(args) -> None:
    from models.import_verify import format_table, verify_checkpoint

    rows = verify_checkpoint(args.dst, seeds=args.verify_seeds, truncation_psi=args.verify_psi,
                             class_index=args.verify_class)
    print(f"verification: z = np.random.RandomState(seed).randn(1, z_dim), psi "
          f"{args.verify_psi}, noise const (README 'Verifying an import' computes the same "
          "numbers with the official code)")
    print(format_table(rows))


def _seed_list(text: str) -> list[int]:
    try:
        seeds = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated seeds, got {text!r}") from None
    if not seeds or any(not 0 <= s < 2 ** 32 for s in seeds):
        raise argparse.ArgumentTypeError(f"seeds must be in 0..2^32-1, got {text!r}")
    return seeds


# ------------------------------------------------------------------------------------------
# generate
# ------------------------------------------------------------------------------------------
def _save_png(path: Path, array) -> None:
    from PIL import Image

    from ffhq_tools.atomic import atomic_path

    with atomic_path(path, suffix=".png") as tmp:
        Image.fromarray(array.squeeze(-1) if array.shape[-1] == 1 else array).save(tmp,
                                                                                   format="PNG")


def _load_png(path: Path):
    import numpy as np
    from PIL import Image

    array = np.asarray(Image.open(path))
    return array[..., None] if array.ndim == 2 else array


def _generate(args) -> int:
    from tqdm import tqdm

    from ffhq_tools.runtime import select_device
    from models import generate as gen
    from models.checkpoint import load_generator
    from models.contract import ImageGenerator

    device = select_device(args.device)
    G = load_generator(args.ckpt, device)
    if not isinstance(G, ImageGenerator):
        raise FfhqToolsError(f"{args.ckpt}: a {type(G).__name__} checkpoint samples through "
                             "its own verb (DualStyleGAN: ffhq-tools stylize)")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    seeds = gen.parse_seeds(args.seeds)
    common = dict(truncation_cutoff=args.trunc_cutoff, class_idx=args.class_idx)
    images = []
    todo = [s for s in seeds if args.overwrite or not (out / f"seed{s:04d}.png").exists()]
    done = {s: _load_png(out / f"seed{s:04d}.png") for s in seeds if s not in todo}
    progress = tqdm(total=len(todo), desc="generate", unit="img", file=sys.stderr,
                    disable=not todo)
    for seed, img in gen.generate_images(G, todo, truncation_psi=args.trunc,
                                         noise_mode=args.noise_mode, batch_size=args.batch,
                                         **common):
        _save_png(out / f"seed{seed:04d}.png", img)
        done[seed] = img
        progress.update(1)
    progress.close()
    images = [done[s] for s in seeds]
    _save_png(out / "grid.png", gen.make_grid(images, args.grid_cols))
    print(f"{len(seeds)} images in {out} ({len(todo)} new), grid: {out / 'grid.png'}")
    _figures(args, G, seeds, out, common)
    return 0


def _figures(args, G, seeds, out: Path, common: dict) -> None:
    from models import generate as gen

    if args.style_mixing:
        rows = gen.parse_seeds(args.style_mixing)
        grids = gen.style_mixing_grids(G, seeds, rows, truncation_psi=args.trunc,
                                       noise_mode=args.noise_mode, batch_size=args.batch,
                                       **common)
        for name, grid in grids.items():
            _save_png(out / f"style-mixing-{name}.png", grid)
            print(f"style mixing ({name} styles from rows): {out / f'style-mixing-{name}.png'}")
    if args.noise_variation:
        for seed in seeds:
            imgs, std = gen.noise_variation(G, seed, args.noise_variation,
                                            truncation_psi=args.trunc, **common)
            _save_png(out / f"noise-seed{seed:04d}.png", gen.make_grid(imgs, len(imgs)))
            _save_png(out / f"noise-seed{seed:04d}-std.png", std[..., None])
        print(f"noise variation: {out}/noise-seed*.png (+ -std.png maps)")
    if args.truncation_sweep:
        psis = [float(p) for p in args.truncation_sweep.split(",")]
        grid = gen.truncation_sweep(G, seeds, psis, noise_mode=args.noise_mode,
                                    batch_size=args.batch, **common)
        _save_png(out / "truncation-sweep.png", grid)
        print(f"truncation sweep psi={psis}: {out / 'truncation-sweep.png'}")
    if args.interpolate:
        frames = gen.interpolation_frames(G, seeds, args.frames, args.interpolate,
                                          truncation_psi=args.trunc,
                                          noise_mode=args.noise_mode, batch_size=args.batch,
                                          **common)
        folder = out / f"interp-{args.interpolate}"
        folder.mkdir(exist_ok=True)
        for i, frame in enumerate(frames):
            _save_png(folder / f"frame{i:05d}.png", frame)
        print(f"{len(frames)} interpolation frames ({args.interpolate}): {folder}")


def add_verbs(verbs) -> None:
    configs = verbs.add_parser("configs", help="list the named model configs or show one")
    sub = configs.add_subparsers(dest="configs_verb", metavar="list|show")
    sub.required = True
    p = sub.add_parser("list", help="every named config with its paper row")
    p.set_defaults(func=_configs_list)
    p = sub.add_parser("show", help="a config's fields and its differences from its base")
    p.add_argument("name")
    p.add_argument("--json", action="store_true", help="print the config as JSON")
    p.add_argument("--res", type=int, metavar="R",
                   help="also print G and D parameter counts at resolution R (e.g. 1024)")
    p.set_defaults(func=_configs_show)

    p = verbs.add_parser("import-checkpoint",
                         help="convert an official checkpoint (TF pickle, stylegan2-ada "
                              "pickle, rosinality .pt, DualStyleGAN generator.pt, code .npy, "
                              "sampler.pt) to our format without running its code")
    p.add_argument("src", help="official checkpoint file (or a registered weights name)")
    p.add_argument("dst", help="our checkpoint to write (.pt)")
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("-v", "--verbose", action="store_true", help="list every mapped tensor")
    p.add_argument("--verify", action="store_true",
                   help="after import, render fixed seeds (constant noise) and print image and "
                        "D statistics to compare with the official code")
    p.add_argument("--verify-seeds", type=_seed_list, default=[0, 1, 2, 3], metavar="S,S,...",
                   help="seeds for --verify (default 0,1,2,3)")
    p.add_argument("--verify-psi", type=float, default=1.0, metavar="PSI",
                   help="truncation psi for --verify (default 1)")
    p.add_argument("--verify-class", type=int, default=None, metavar="C",
                   help="class index for conditional networks (default 0)")
    p.set_defaults(func=_import_checkpoint)

    p = verbs.add_parser("generate", help="images, grids and paper figures from a checkpoint",
                         formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("ckpt", help="our checkpoint (.pt); convert official ones first")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--seeds", default="0-15", help="seeds, e.g. 0-63,100")
    p.add_argument("--trunc", type=float, default=1.0, help="truncation psi")
    p.add_argument("--trunc-cutoff", type=int, default=None,
                   help="truncate only the first N layers (default: all)")
    p.add_argument("--noise-mode", choices=("const", "random", "none"), default="const")
    p.add_argument("--class", dest="class_idx", type=int, default=None,
                   help="class index for conditional generators")
    p.add_argument("--batch", type=int, default=16, help="images per forward pass")
    p.add_argument("--grid-cols", type=int, default=None)
    p.add_argument("--overwrite", action="store_true", help="regenerate existing PNGs")
    p.add_argument("--style-mixing", metavar="ROW_SEEDS", default=None,
                   help="style-mixing figure: --seeds are the columns (source A), these seeds "
                        "the rows (source B)")
    p.add_argument("--noise-variation", type=int, metavar="N", default=0,
                   help="N noise draws per seed plus the per-pixel std map")
    p.add_argument("--truncation-sweep", metavar="PSIS", default=None,
                   help="comma-separated psi values, e.g. 1,0.7,0.5,0,-0.5,-1")
    p.add_argument("--interpolate", choices=("z", "w"), default=None,
                   help="frames between consecutive seeds (slerp in z, lerp in w)")
    p.add_argument("--frames", type=int, default=16, help="frames per interpolation segment")
    add_device_flag(p)
    p.set_defaults(func=_generate)

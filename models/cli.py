"""`ffhq-tools configs list|show NAME`, `import-checkpoint SRC DST`, and (from
models.generate_cli) `generate CKPT ...`.

Thin wrappers over models.configs and models.legacy_import; torch is imported inside the
handlers so the root parser stays instant.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ffhq_tools.errors import FfhqToolsError
from models.generate_cli import add_generate_verb


# ------------------------------------------------------------------------------------------
# configs
# ------------------------------------------------------------------------------------------
def _configs_list(args) -> int:
    from models.configs import CONFIGS

    for name, config in CONFIGS.items():
        print(f"{name:16s} {config.arch:10s} {config.description}")
    return 0


def _configs_show(args) -> int:
    from models.configs import CONFIGS, NETWORK_FIELDS, TRAINING_FIELDS, get_config

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
    print(f"arch: {config.arch}")
    for title, names in (("network", NETWORK_FIELDS), ("training", TRAINING_FIELDS)):
        print(f"{title} fields:")
        for key, value in config.section(names).items():
            if key != "dualstylegan" or value is not None:
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
    if path.is_dir():
        raise FfhqToolsError(f"{path}: a folder, not a checkpoint file")
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
    add_generate_verb(verbs)

"""`ffhq-tools configs list|show NAME`, `import-checkpoint SRC DST`, and (from
models.generate_cli) `generate CKPT ...`.

Thin wrappers over models.configs and models.legacy_import; torch is imported inside the
handlers so the root parser stays instant.
"""

from __future__ import annotations

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
    from models.configs import CONFIGS, get_config

    config = get_config(args.name)
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
    return 0


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
    from models.legacy_import import import_checkpoint

    if Path(args.dst).exists() and not args.overwrite:
        raise FfhqToolsError(f"{args.dst} exists (pass --overwrite to replace it)")
    result = import_checkpoint(_source_path(args.src), args.dst)
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
    return 0


def add_verbs(verbs) -> None:
    configs = verbs.add_parser("configs", help="list the named model configs or show one")
    sub = configs.add_subparsers(dest="configs_verb", metavar="list|show")
    sub.required = True
    p = sub.add_parser("list", help="every named config with its paper row")
    p.set_defaults(func=_configs_list)
    p = sub.add_parser("show", help="a config's fields and its differences from its base")
    p.add_argument("name")
    p.add_argument("--json", action="store_true", help="print the config as JSON")
    p.set_defaults(func=_configs_show)

    p = verbs.add_parser("import-checkpoint",
                         help="convert an official checkpoint (TF pickle, stylegan2-ada "
                              "pickle, rosinality .pt) to our format without running its code")
    p.add_argument("src", help="official checkpoint file (or a registered weights name)")
    p.add_argument("dst", help="our checkpoint to write (.pt)")
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("-v", "--verbose", action="store_true", help="list every mapped tensor")
    p.set_defaults(func=_import_checkpoint)
    add_generate_verb(verbs)

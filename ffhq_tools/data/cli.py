"""`ffhq-tools pack | info | export`: HDF5 datasets in the ProGAN h5tool layout."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def _pack(args) -> int:
    from ffhq_tools.align.pipeline import parse_shard
    from ffhq_tools.data.info import format_tables
    from ffhq_tools.data.layout import DatasetError
    from ffhq_tools.data.writer import PackOptions, merge_shards, pack

    if args.merge:
        if len(args.paths) < 2:
            raise DatasetError("pack --merge SHARD.h5 [SHARD.h5 ...] OUT.h5")
        info = merge_shards(args.paths[:-1], args.paths[-1])
    else:
        if len(args.paths) != 2:
            raise DatasetError("pack SRC OUT.h5 (or pack --merge SHARD.h5 ... OUT.h5)")
        options = PackOptions(min_res=args.min_res, compression=args.compression)
        info = pack(args.paths[0], args.paths[1], options, labels_file=args.labels,
                    attributes_file=args.attributes, shard=parse_shard(args.shard),
                    progress=not args.quiet)
    print(f"{info['path']}: {info['count']} images, levels {info['levels']}")
    if args.verbose:
        print(format_tables(info))
    return 0


def _info(args) -> int:
    from ffhq_tools.data.info import dataset_info, format_tables, unfinished_problem, verify

    unfinished = unfinished_problem(args.path) if args.verify else None
    if unfinished:
        print(f"FAILED: {unfinished}\nverify: 1 problem(s)")
        return 1
    info = dataset_info(args.path)
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        print(f"{info['path']}: {info['count']} images, {info['channels']} channels, "
              f"levels {', '.join(str(r) for r in info['levels'])}, compression "
              f"{info['compression']}{', virtual (merged shards)' if info['virtual'] else ''}")
        print(f"labels: {info['labels'] or 'none'}; attributes: "
              f"{'yes' if info['attributes'] else 'no'}; complete: {info['complete']}")
        print(format_tables(info))
    if args.verify:
        problems = verify(args.path)
        for problem in problems:
            print(f"FAILED: {problem}")
        print("verify: OK" if not problems else f"verify: {len(problems)} problem(s)")
        return 1 if problems else 0
    return 0


def _export(args) -> int:
    from ffhq_tools.data.export import export

    count = export(args.path, args.out, args.res, args.format, progress=not args.quiet)
    print(f"{args.out}: {count} images")
    return 0


def add_verbs(verbs) -> None:
    fmt = argparse.ArgumentDefaultsHelpFormatter
    p = verbs.add_parser("pack", formatter_class=fmt,
                         help="aligned images -> multi-resolution HDF5 (ProGAN h5tool layout)",
                         description="Pack an aligned folder, align.jsonl, or a stylegan2-ada "
                                     "dataset (zip/folder) into OUT.h5; resumable; --merge joins "
                                     "--shard outputs with HDF5 virtual datasets.")
    p.add_argument("paths", nargs="+", metavar="SRC OUT.h5",
                   help="SRC then OUT.h5; with --merge: shard files then OUT.h5")
    p.add_argument("--merge", action="store_true", help="merge shard files into OUT.h5")
    p.add_argument("--min-res", type=int, default=4, help="smallest level")
    p.add_argument("--compression", default="none", metavar="none|lzf|gzip[-N]",
                   help="none reads fastest (see BENCHMARKS.md); lzf/gzip save disk space")
    p.add_argument("--labels", type=Path, default=None,
                   help="CSV (name, values...) or JSON {name: values} / stylegan2-ada dataset.json")
    p.add_argument("--attributes", type=Path, default=None,
                   help="CelebA-HQ attributes per image (40 values of -1/0/1), CSV or JSON")
    p.add_argument("--shard", default=None, metavar="i/n", help="pack the i-th of n blocks")
    p.add_argument("-v", "--verbose", action="store_true", help="print the statistics tables")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_pack)

    p = verbs.add_parser("info", help="what a packed dataset holds; --verify checks it")
    p.add_argument("path", metavar="OUT.h5")
    p.add_argument("--verify", action="store_true",
                   help="recompute the SHA-256 of every dataset and check the pyramid")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=_info)

    p = verbs.add_parser("export", formatter_class=fmt,
                         help="a level of a packed dataset as PNGs or a stylegan2-ada zip")
    p.add_argument("path", metavar="OUT.h5")
    p.add_argument("--res", type=int, default=None, help="level (default: the largest)")
    p.add_argument("--format", default="png", choices=("png", "stylegan2-ada-zip"))
    p.add_argument("--out", required=True, help="folder (png) or .zip (stylegan2-ada-zip)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_export)

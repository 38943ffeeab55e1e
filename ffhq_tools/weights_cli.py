"""`ffhq-tools weights list | fetch NAME | import NAME PATH | verify [NAME...]`."""

from __future__ import annotations

import argparse

from ffhq_tools import weights
from ffhq_tools.errors import WeightsError


def add_weights_flag(parser: argparse.ArgumentParser) -> None:
    """The `--weights NAME=PATH` flag every verb that uses a registered network accepts."""
    parser.add_argument("--weights", action="append", default=[], metavar="NAME=PATH",
                        help="use this file for registered weights NAME (repeatable); "
                             "its SHA-256 is recorded with every result")


def _list(args) -> int:
    print(f"cache: {weights.cache_dir()}")
    for name, entry in weights.REGISTRY.items():
        if args.verbose:
            print(f"{name:26s} {weights.status(name):17s} {entry.filename}  [{entry.loader}] "
                  f"{entry.description}")
        else:
            print(f"{name:26s} {weights.status(name):17s} {entry.filename}")
    return 0


def _fetch(args) -> int:
    for name in args.names:
        path = weights.fetch(name, retries=args.retries, timeout=args.timeout)
        print(f"{name}: {path}")
    return 0


def _import(args) -> int:
    path = weights.import_file(args.name, args.path)
    print(f"{args.name}: verified and stored as {path}")
    return 0


def _verify(args) -> int:
    names = args.names or list(weights.REGISTRY)
    failed = 0
    for name in names:
        try:
            resolved = weights.resolve(name)
        except WeightsError as exc:
            if args.names or weights.status(name) == "MISMATCH":
                print(f"{name}: FAILED: {exc}")
                failed += 1
            else:
                print(f"{name}: missing")
            continue
        print(f"{name}: OK sha256={resolved.sha256} ({resolved.path})")
    return 1 if failed else 0


def add_verbs(verbs) -> None:
    parser = verbs.add_parser("weights", help="list, fetch, import and verify network weights",
                              description=weights.__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="weights_verb", metavar="ACTION")
    sub.required = True

    p = sub.add_parser("list", help="every registered entry and whether it is cached")
    p.add_argument("-v", "--verbose", action="store_true", help="show loader and description")
    p.set_defaults(func=_list)

    p = sub.add_parser("fetch", help="download entries into the cache (verified)")
    p.add_argument("names", nargs="+", metavar="NAME")
    p.add_argument("--retries", type=int, default=4)
    p.add_argument("--timeout", type=float, default=60.0, help="seconds per connection/read")
    p.set_defaults(func=_fetch)

    p = sub.add_parser("import", help="copy a downloaded file into the cache after verifying it")
    p.add_argument("name", metavar="NAME")
    p.add_argument("path", metavar="PATH")
    p.set_defaults(func=_import)

    p = sub.add_parser("verify", help="re-check the SHA-256 of cached entries")
    p.add_argument("names", nargs="*", metavar="NAME")
    p.set_defaults(func=_verify)

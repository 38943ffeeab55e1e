"""The `ffhq-tools` command: a root parser whose verbs come from each package's `cli` module.

Each provider module exposes `add_verbs(subparsers)`; it must import heavy libraries (torch,
dlib, h5py) inside its handlers only, so `ffhq-tools --help` stays instant.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from ffhq_tools import __version__
from ffhq_tools.errors import FfhqToolsError

VERB_PROVIDERS = (
    "ffhq_tools.doctor",
    "ffhq_tools.weights_cli",
    "ffhq_tools.crawl.cli",
    "ffhq_tools.align.cli",
    "ffhq_tools.data.cli",
    "leaderboards.cli",
    "ffhq_tools.demo",
    "models.train_cli",
    "models.cli",
    "models.project_cli",
    "models.stylize_cli",
    "models.dualstylegan_train_cli",
    "models.destylize_cli",
    "eval.cli",
    "eval.classifiers_cli",
)


# What a user does after Ctrl-C (or a kill) for the verbs that keep their finished work.
RESUME_HINTS = {
    "crawl": "rerun the same command: verified files are kept and skipped",
    "align": "rerun the same command: finished faces are kept and skipped",
    "pack": "rerun the same command: it continues from its partial file",
    "metrics": "rerun the same command: partial statistics are kept and resumed",
    "fid": "rerun the same command: partial real-data statistics are kept and resumed",
    "score": "rerun the same command: finished rows are kept and partial statistics resumed",
    "train": "continue with the same options plus --resume <run dir> (or --resume auto)",
    "dualstylegan-train": "continue with: ffhq-tools dualstylegan-train STAGE --resume "
                          "<run dir>",
    "demo": "continue with: ffhq-tools demo --resume <run dir>",
    "destylize": "rerun with the same --out: finished exemplars are kept, the others start "
                 "again",
    "refine-exstyle": "rerun with the same --out: finished exemplars are kept",
    "project": "rerun the same command: finished targets are kept, the others continue from "
               "their last checkpointed step",
}


def interrupted_message(verb: str) -> str:
    hint = RESUME_HINTS.get(verb)
    return f"interrupted; {hint}" if hint else "interrupted"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ffhq-tools",
        description="Build FFHQ-style face datasets, train StyleGAN-family models, score them "
                    "with the papers' metrics and regenerate the papers' tables.",
    )
    parser.add_argument("--version", action="version", version=f"ffhq-tools {__version__}")
    verbs = parser.add_subparsers(dest="verb", metavar="VERB")
    verbs.required = True
    for provider in VERB_PROVIDERS:
        importlib.import_module(provider).add_verbs(verbs)
    return parser


def verb_names(parser: argparse.ArgumentParser | None = None) -> list[list[str]]:
    """Every verb path (including nested ones such as ['weights', 'list'])."""
    parser = parser or build_parser()
    paths: list[list[str]] = []

    def walk(p: argparse.ArgumentParser, prefix: list[str]) -> None:
        for action in p._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    paths.append(prefix + [name])
                    walk(sub, prefix + [name])

    walk(parser, [])
    return paths


def main(argv: list[str] | None = None) -> int:
    from ffhq_tools.packages import prefer_our_packages

    try:
        prefer_our_packages()
    except FfhqToolsError as exc:
        print(f"ffhq-tools: error: {exc}", file=sys.stderr)
        return 2
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        result = args.func(args)
    except FfhqToolsError as exc:
        print(f"ffhq-tools {args.verb}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(interrupted_message(args.verb), file=sys.stderr)
        return 130
    return int(result or 0)


if __name__ == "__main__":
    raise SystemExit(main())

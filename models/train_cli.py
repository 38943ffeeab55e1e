"""`ffhq-tools train`: a thin wrapper over models.train.train.

    ffhq-tools train --config stylegan2-F --data ffhq.h5 --kimg 25000 --batch 32 --mirror
    torchrun --nproc_per_node 8 -m ffhq_tools train --config stylegan2-F --data ffhq.h5 ...

Metrics named by --metrics are computed through eval.registry at every snapshot (the
training code itself never imports eval).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from ffhq_tools.errors import FfhqToolsError
from ffhq_tools.runtime import add_device_flag
from ffhq_tools.weights_cli import add_weights_flag


def _metric_names(text: str | None) -> tuple[str, ...]:
    if not text or text.strip().lower() == "none":
        return ()
    return tuple(name.strip() for name in text.split(",") if name.strip())


def options_from_args(args):
    from models.train_options import TrainOptions, parse_config_overrides

    return TrainOptions(
        config=args.config or "", data=args.data, resolution=args.res, kimg=args.kimg,
        batch=args.batch, batch_gpu=args.batch_gpu, gamma=args.gamma, mirror=args.mirror,
        cond=args.cond,
        metrics=_metric_names(args.metrics), resume=args.resume, transfer=args.transfer,
        channels_last=args.channels_last, compile=args.compile, device=args.device,
        outdir=args.outdir,
        workers=args.workers, channel_max=args.channel_max, max_images=args.max_images,
        progress=not args.no_progress, config_overrides=parse_config_overrides(args.cfg),
        p=args.p, target=args.target,
        ada_kimg=args.ada_kimg, freezed=args.freezed, threads=args.threads,
        **{field: getattr(args, dest) for dest, field in DEFAULTED_FLAGS.items()
           if hasattr(args, dest)})


# Flags whose defaults live in TrainOptions: argparse leaves them unset when not given, so a
# resumed run can tell "not given" (keep the frozen value) from "given again" (override).
DEFAULTED_FLAGS = {"snap": "snap", "tick": "tick_kimg", "seed": "seed",
                   "precision": "precision", "grid": "grid_size", "aug": "aug",
                   "augpipe": "augpipe"}


def _given_fields(args) -> set[str]:
    """TrainOptions fields set on the command line."""
    given = {field for dest, field in DEFAULTED_FLAGS.items() if hasattr(args, dest)}
    flags = {"kimg": "kimg", "batch": "batch", "batch_gpu": "batch_gpu", "gamma": "gamma",
             "metrics": "metrics", "max_images": "max_images", "mirror": "mirror",
             "cond": "cond", "channels_last": "channels_last", "p": "p", "target": "target",
             "ada_kimg": "ada_kimg"}
    return given | {field for dest, field in flags.items()
                    if getattr(args, dest) not in (None, False)}


def _resumed_run_folder(options) -> Path | None:
    """The run folder `--resume` continues in (a folder or 'auto'), else None."""
    from models.train import latest_run, run_desc

    if options.resume == "auto":
        if not options.config:
            return None  # resolve_run reports the missing --config
        return latest_run(options.outdir, run_desc(options.data, options.config))
    folder = Path(options.resume) if options.resume else None
    return folder if folder is not None and folder.is_dir() else None


def continue_resumed_run(options, given: set[str], record: bool = True):
    """Options of a resumed run folder: its frozen options.json values, except the ones given
    again, each of which is reported on stderr and (with `record`) in the run's log.txt."""
    from ffhq_tools.runs import read_options
    from models.train_options import continue_frozen_options

    folder = _resumed_run_folder(options)
    if folder is None:
        return options
    frozen = read_options(folder).get("options")
    if not isinstance(frozen, dict) or not {"config", "data"} <= set(frozen):
        raise FfhqToolsError(f"{folder / 'options.json'}: no training options to resume "
                             f"(expected an 'options' table with config and data)")
    options, notes = continue_frozen_options(options, frozen, given)
    if int(os.environ.get("RANK", "0")) == 0:
        for note in notes:
            line = f"resume {folder}: {note}"
            print(line, file=sys.stderr)
            if not record:
                continue
            with open(folder / "log.txt", "a", encoding="utf-8") as log:
                log.write(line + "\n")
    return options


def eval_metric_fn(names: tuple[str, ...], data: str, weights: list[str], seed: int,
                   num_gen: int | None):
    """A metric callable for the trainer, computing rows through eval.registry."""
    if not names:
        return None
    try:
        from eval.registry import MetricContext, compute_metric, get_metric
    except ImportError as exc:
        raise FfhqToolsError(f"--metrics needs the eval package ({exc})") from None
    from ffhq_tools import weights as registry_weights
    from models.checkpoint import checkpoint_info

    overrides = registry_weights.parse_overrides(weights)
    for name in names:  # fail now, not at the first snapshot hours later
        entries = get_metric(name).weights  # unknown names: error with close matches
        if entries and not any(registry_weights.is_available(e, overrides) for e in entries):
            registry_weights.resolve(entries[0], overrides)  # raises the "how to get it" error

    def compute(metric_names: list, snapshot: Path, G_ema) -> dict:
        device = next(G_ema.parameters()).device
        rows = {}
        for name in metric_names:
            ctx = MetricContext(generator=G_ema, generator_info=checkpoint_info(snapshot),
                                data=Path(data), device=device, seed=seed, num_gen=num_gen,
                                weights_overrides=overrides, progress=False)
            rows[name] = compute_metric(name, ctx)
        return rows

    return compute


def _train(args) -> int:
    from models.train import dry_run_description, resolve_run, train

    options = continue_resumed_run(options_from_args(args), _given_fields(args),
                                   record=not args.dry_run)
    if args.dry_run:
        print(json.dumps(dry_run_description(resolve_run(options)), indent=2, sort_keys=True))
        return 0
    metric_fn = eval_metric_fn(options.metrics, options.data, args.weights, options.seed,
                               args.metric_num_gen)
    run_dir = train(options, metric_fn)
    if int(os.environ.get("RANK", "0")) == 0:
        print(f"run folder: {run_dir}")
    return 0


def _default(field: str):
    from models.train_options import TrainOptions

    return TrainOptions.__dataclass_fields__[field].default


def add_verbs(verbs) -> None:
    p = verbs.add_parser(
        "train", help="train a named config (StyleGAN / StyleGAN2 / ProGAN) on an HDF5 dataset",
        description="Train a named config on an HDF5 dataset into runs/NNNNN-<data>-<config>/. "
                    "Multi-GPU / multi-process: torchrun --nproc_per_node K -m ffhq_tools train",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--config", help="named config (ffhq-tools configs list); optional with "
                                    "--resume")
    p.add_argument("--data", required=True, help="HDF5 dataset (data{R}x{R} layout)")
    p.add_argument("--res", type=int, help="training resolution (default: largest stored)")
    p.add_argument("--kimg", type=float, help="train until this many thousand real images "
                                              "(default: the config's total)")
    p.add_argument("--batch", type=int, help="total batch over all ranks (default: config's; "
                                             "replaces the per-resolution table)")
    p.add_argument("--batch-gpu", type=int, help="batch per rank and accumulation round")
    p.add_argument("--gamma", type=float, help="R1 weight (default: config's)")
    p.add_argument("--mirror", action="store_true", help="random x-flips of the reals")
    p.add_argument("--cond", action="store_true",
                   help="conditional training on the dataset's labels (c_dim from the file)")
    p.add_argument("--snap", type=int, default=argparse.SUPPRESS,
                   help=f"ticks between snapshots (0: end only; default: {_default('snap')})")
    p.add_argument("--tick", type=float, default=argparse.SUPPRESS,
                   help=f"kimg per tick (default: {_default('tick_kimg')})")
    p.add_argument("--seed", type=int, default=argparse.SUPPRESS,
                   help=f"default: {_default('seed')}")
    p.add_argument("--metrics", help="comma-separated metric names run at every snapshot")
    p.add_argument("--metric-num-gen", type=int, help="shrink the metrics' generated count")
    p.add_argument("--resume", help="snapshot file (new run folder), run folder (continue in "
                                    "it with its frozen options.json; flags given again "
                                    "override and are logged) or 'auto' (newest run of this "
                                    "data + config, if any)")
    p.add_argument("--transfer", action="store_true",
                   help="with --resume SNAPSHOT: start a new run from its weights only (new "
                        "data, --config, optimisers and kimg from zero), as imported "
                        "checkpoints always do; a snapshot with training state otherwise "
                        "continues its run")
    p.add_argument("--precision", default=argparse.SUPPRESS, choices=("fp32", "bf16", "fp16"),
                   help="autocast for the main losses (fp16 needs CUDA; default: "
                        f"{_default('precision')})")
    p.add_argument("--channels-last", action="store_true", help="channels_last memory format")
    p.add_argument("--compile", action="store_true",
                   help="torch.compile G's synthesis network and D for the main passes (the "
                        "R1 / path-length passes stay eager); StyleGAN2 configs only")
    p.add_argument("--outdir", default="runs")
    p.add_argument("--workers", type=int, default=2, help="data loader processes")
    p.add_argument("--channel-max", type=int, help="cap network widths (small runs)")
    p.add_argument("--max-images", type=int, help="use only the first N dataset images")
    p.add_argument("--grid", type=int, default=argparse.SUPPRESS,
                   help=f"images in the fakes grids (default: {_default('grid_size')})")
    p.add_argument("--cfg", action="append", default=[], metavar="FIELD=VALUE",
                   help="override a config field, e.g. --cfg mixing_prob=0.5 (repeatable)")
    p.add_argument("--aug", default=argparse.SUPPRESS, choices=("ada", "fixed", "noaug"),
                   help="discriminator augmentation: adaptive p, fixed p, or none (default: "
                        f"{_default('aug')})")
    p.add_argument("--augpipe", default=argparse.SUPPRESS,
                   choices=("blit", "geom", "color", "filter", "noise", "cutout", "bg", "bgc",
                            "bgcf", "bgcfn", "bgcfnc"),
                   help=f"augmentation pipeline (ADA's; default: {_default('augpipe')})")
    p.add_argument("--p", type=float, help="augmentation probability (--aug fixed), or the "
                                           "starting p (--aug ada; default 0)")
    p.add_argument("--target", type=float, help="ADA target for E[sign(D(real))] (0.6)")
    p.add_argument("--ada-kimg", type=float,
                   help="ADA speed: kimg for p to move by 1 (500; 100 for transfer learning)")
    p.add_argument("--freezed", type=int, default=0,
                   help="Freeze-D: keep D's first N layers fixed (transfer learning)")
    p.add_argument("--threads", type=int,
                   help="CPU threads per rank (default: the cores this process may use)")
    p.add_argument("--no-progress", action="store_true", help="no tqdm bar on stderr")
    p.add_argument("--dry-run", action="store_true", help="print resolved options and exit")
    add_device_flag(p)
    add_weights_flag(p)
    p.set_defaults(func=_train)

"""`ffhq-tools metrics` (registered metrics of a checkpoint) and `ffhq-tools fid A B`.

Thin wrappers over eval.registry / eval.runner / eval.fid; heavy imports happen inside the
handlers. Results go to stdout as JSON lines, progress to stderr, rows to the run directory.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from eval import defaults
from ffhq_tools.errors import FfhqToolsError
from ffhq_tools.runtime import add_device_flag, add_threads_flag
from ffhq_tools.weights_cli import add_weights_flag
from models.dualstylegan_exemplar import add_exemplar_flags


def _names(spec: str) -> list[str]:
    names = [n.strip() for n in spec.split(",") if n.strip()]
    if not names:
        raise FfhqToolsError("--metrics: give at least one metric name (see --list)")
    return names


def _init_distributed(device_spec: str):
    """Join the torchrun process group when WORLD_SIZE > 1; returns (rank, world_size)."""
    import torch

    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return 0, 1
    if not torch.distributed.is_initialized():
        backend = "nccl" if torch.cuda.is_available() and device_spec != "cpu" else "gloo"
        torch.distributed.init_process_group(backend=backend)
    return torch.distributed.get_rank(), torch.distributed.get_world_size()


def context_from_args(args, **fields):
    """A MetricContext from the flags every eval verb shares."""
    from eval.registry import MetricContext
    from ffhq_tools.runtime import select_device
    from ffhq_tools.weights import parse_overrides

    rank, world_size = _init_distributed(args.device)
    inception_mode = args.mode is None or args.mode in defaults.MODES
    return MetricContext(device=select_device(args.device), seed=args.seed,
                         batch_size=args.batch_size,
                         mode=args.mode if args.mode and inception_mode else defaults.DEFAULT_MODE,
                         embedding_mode=None if inception_mode else args.mode,
                         covariance=args.covariance, features=args.features,
                         weights_overrides=parse_overrides(args.weights),
                         stats_cache=Path(args.stats_cache) if args.stats_cache else None,
                         progress=not args.no_progress, rank=rank, world_size=world_size,
                         **fields)


def _print_row(row: dict, rank: int) -> None:
    if rank == 0:
        print(json.dumps(row, sort_keys=True), flush=True)


def _metrics(args) -> int:
    from eval.registry import get_metric, list_metrics

    if args.markdown:
        if not args.list:
            raise FfhqToolsError("--markdown goes with --list")
        from eval.metrics_doc import metrics_markdown

        print(metrics_markdown(), end="")
        return 0
    if args.list:
        for name in list_metrics():
            spec = get_metric(name)
            print(f"{name:22s} needs {'+'.join(spec.needs) or '-':15s} {spec.description}")
        return 0
    names = _names(args.metrics)
    for name in names:
        get_metric(name).check_features(args.features)  # fail before any work
    if args.network is None and args.data is None:
        raise FfhqToolsError("give --network CKPT and/or --data DATA (see --help)")
    if args.network is None and args.style_id is not None:
        raise FfhqToolsError("--style-id picks a DualStyleGAN exemplar: it needs --network CKPT")
    from ffhq_tools.runtime import using_threads

    with using_threads(args.threads) as threads:
        return _run_metrics(args, names, threads)


def _run_metrics(args, names: list[str], threads: int) -> int:
    from eval.runner import run_metrics
    from ffhq_tools.runs import capture_log, create_run_dir, write_options

    generator, info = None, {}
    if args.network:
        from ffhq_tools.runtime import select_device
        from models.checkpoint import checkpoint_info, load_generator
        from models.checkpoint_hints import require_checkpoint_file

        require_checkpoint_file(args.network, "--network")
        from models.dualstylegan_exemplar import exemplar_choice, with_fixed_exemplar

        generator = load_generator(args.network, select_device(args.device))
        generator, info = with_fixed_exemplar(generator, checkpoint_info(args.network),
                                              exemplar_choice(args), args.network)
    data = Path(args.data) if args.data else None
    if data is not None and not data.exists():
        raise FfhqToolsError(f"--data {data}: no such file or folder")
    test_data = Path(args.test_data) if args.test_data else None
    if test_data is not None and not test_data.exists():
        raise FfhqToolsError(f"--test-data {test_data}: no such file or folder")
    ctx = context_from_args(args, generator=generator, generator_info=info, data=data,
                            test_data=test_data, num_gen=args.num_gen, max_real=args.max_real)
    if ctx.rank == 0:
        print(f"metrics: device {ctx.device}, {threads} CPU thread(s)", file=sys.stderr)
    run_dir = None
    if ctx.rank == 0 and not args.no_run_dir:
        run_dir = create_run_dir(args.run_root, "metrics-" + "-".join(names))
        write_options(run_dir, {k: v for k, v in vars(args).items() if k != "func"})
    if run_dir is None:
        for row in run_metrics(names, ctx, None):
            _print_row(row, ctx.rank)
        return 0
    with capture_log(run_dir):
        for row in run_metrics(names, ctx, run_dir):
            _print_row(row, ctx.rank)
        print(f"rows written to {run_dir}", file=sys.stderr)
    return 0


def _fid(args) -> int:
    from eval.fid import fid_between, source_stats

    ctx = context_from_args(args)
    if args.save_stats:
        source, target = args.paths
        stats = source_stats(ctx, source, args.num)
        network = ctx.features or ctx.feature_network
        mode = ctx.used.get("preprocessing", ctx.mode)
        stats.save(target, ctx.covariance, {"source": str(source), "mode": mode,
                                            "network": ctx.weights_used.get(network),
                                            "feature_network": network})
        _print_row({"saved": str(target), "num": stats.num, "mode": mode,
                    "features": network, "weights": ctx.weights_used}, ctx.rank)
        return 0
    _print_row(fid_between(args.paths[0], args.paths[1], ctx, args.num), ctx.rank)
    return 0


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--mode", choices=defaults.MODES + defaults.EMBEDDING_MODES,
                   help="preprocessing convention of the feature network, recorded with every "
                        f"result (default: the network's own; Inception: {defaults.DEFAULT_MODE}, "
                        "the papers' TF1 resize; DINOv2: dgm-eval; CLIP: clean-fid)")
    p.add_argument("--covariance", default=defaults.DEFAULT_COVARIANCE,
                   choices=defaults.COVARIANCES,
                   help="unbiased = N-1 (pytorch-fid, TF StyleGAN); biased = N (stylegan2-ada)")
    p.add_argument("--features", "--feature-network", dest="features", metavar="NAME",
                   choices=defaults.ALL_FEATURE_NETWORKS,
                   help="feature network of fid/kid/pr/prdc and the other feature-space "
                        "metrics, in place of each protocol's own (recorded with its SHA-256): "
                        f"{', '.join(defaults.ALL_FEATURE_NETWORKS)}")
    p.add_argument("--batch-size", type=int, default=defaults.DEFAULT_BATCH_SIZE)
    p.add_argument("--seed", type=int, default=defaults.DEFAULT_SEED)
    p.add_argument("--stats-cache", metavar="DIR",
                   help="folder for cached real-data statistics (default: <weights cache>/stats)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars on stderr")
    add_device_flag(p)
    add_weights_flag(p)


def add_verbs(verbs) -> None:
    p = verbs.add_parser("metrics", help="score a checkpoint with registered metrics",
                         description="Compute registered metrics (fid50k_full, kid50k_full, "
                                     "is50k, ...) of a generator checkpoint against real data. "
                                     "One JSON line per metric on stdout and in the run dir.")
    p.add_argument("--metrics", default=",".join(defaults.DEFAULT_METRICS),
                   help="comma-separated metric names (default: %(default)s)")
    p.add_argument("--network", metavar="CKPT", help="generator checkpoint")
    p.add_argument("--data", metavar="DATA",
                   help="real data: dataset .h5, image folder, or statistics .npz")
    p.add_argument("--num-gen", type=int, help="override the protocol's generated count")
    p.add_argument("--max-real", type=int, help="override the protocol's real count")
    p.add_argument("--test-data", metavar="DATA",
                   help="held-out real images (folder or .h5) for the memorisation metric fld")
    p.add_argument("--run-root", default=defaults.DEFAULT_RUN_ROOT,
                   help="where run dirs NNNNN-metrics-*/ are created (default: %(default)s)")
    p.add_argument("--no-run-dir", action="store_true", help="print rows only")
    p.add_argument("--list", action="store_true", help="list registered metrics and exit")
    p.add_argument("--markdown", action="store_true",
                   help="with --list: every metric's protocol constants as Markdown "
                        "(the text of METRICS.md)")
    add_threads_flag(p)
    _add_common(p)
    add_exemplar_flags(p)
    p.set_defaults(func=_metrics)

    p = verbs.add_parser("fid", help="FID between two image sources (like pytorch-fid)",
                         description="FID between A and B: image folders (recursive), dataset "
                                     ".h5 files or statistics .npz. With --save-stats, write "
                                     "the statistics of A to the .npz B (pytorch-fid layout).")
    p.add_argument("paths", nargs=2, metavar="PATH")
    p.add_argument("--save-stats", action="store_true",
                   help="compute statistics of the first PATH and save them to the second")
    p.add_argument("--num", type=int, help="use at most this many images of each source")
    _add_common(p)
    p.set_defaults(func=_fid)

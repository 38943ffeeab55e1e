"""`ffhq-tools score` and `ffhq-tools leaderboard show | table | compare | plot | baselines`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ffhq_tools.errors import FfhqToolsError
from models.dualstylegan_exemplar import add_exemplar_flags

DEFAULT_BOARD = "leaderboard.csv"


def _write_or_print(text: str, out: str | None) -> None:
    if out:
        from ffhq_tools.atomic import write_bytes_atomic

        write_bytes_atomic(out, text.encode())
        print(f"wrote {out}", file=sys.stderr)
    else:
        sys.stdout.write(text)


def _list_weights_status(overrides: dict) -> int:
    from leaderboards.score import metric_weights_status

    for entry in metric_weights_status(overrides):
        print(f"{entry['metric']:22s} {entry['status']:40s} {entry['weights']}")
    return 0


def _score(args) -> int:
    from ffhq_tools.weights import parse_overrides
    from leaderboards.score import ScoreSettings, score_checkpoints
    from models.dualstylegan_exemplar import exemplar_choice

    if args.list:
        return _list_weights_status(parse_overrides(args.weights))
    if not args.checkpoints:
        raise FfhqToolsError("score: give at least one CKPT (or --list)")
    if args.test_data and not Path(args.test_data).exists():
        raise FfhqToolsError(f"--test-data {args.test_data}: no such file or folder")

    dataset = args.dataset or (Path(args.data).stem if args.data else "")
    settings = ScoreSettings(
        board=Path(args.board), dataset=dataset, device=args.device, seed=args.seed,
        num_gen=args.num_gen, max_real=args.max_real, batch_size=args.batch, mode=args.mode,
        weights_overrides=parse_overrides(args.weights),
        stats_cache=Path(args.stats_cache) if args.stats_cache else None,
        progress=not args.no_progress, note=args.note, features=args.features,
        test_data=Path(args.test_data) if args.test_data else None,
        exemplar=exemplar_choice(args))
    metrics = [m for m in (args.metrics or "").split(",") if m]
    outcome = score_checkpoints(args.checkpoints, args.data, settings, table=args.table,
                                metrics=metrics or None, config_name=args.config)
    for row in outcome.rows:
        print(f"{row['checkpoint']}\t{row['config']}\t{row['result']}\t{row['value']:.6g}")
    for entry in outcome.reused:
        print(f"already on the board (skipped): {entry}", file=sys.stderr)
    print(f"appended {len(outcome.rows)} rows to {args.board}", file=sys.stderr)
    return 0


def _show(args) -> int:
    from leaderboards.board import read_board

    frame = read_board(args.board)
    if args.metric:
        frame = frame[frame["metric"] == args.metric]
    if args.config:
        frame = frame[frame["config"] == args.config]
    columns = args.columns.split(",") if args.columns else [
        "date", "config", "kimg", "dataset", "result", "value", "num_gen", "num_real", "mode",
        "feature_network", "checkpoint"]
    unknown = [c for c in columns if c not in frame.columns]
    if unknown:
        raise FfhqToolsError(f"--columns: unknown {', '.join(unknown)}; "
                             f"known: {', '.join(frame.columns)}")
    text = frame[columns].to_csv(index=False) if args.csv else (
        frame[columns].to_string(index=False) + "\n")
    _write_or_print(text, args.out)
    return 0


def _table_frame(args):
    from leaderboards.board import read_board
    from leaderboards.layouts import get_layout
    from leaderboards.tables import dataset_mapping, marked_table, pivot_published

    layout = get_layout(args.name)
    if args.published:
        return layout, pivot_published(layout), "published values"
    datasets = dataset_mapping(layout, args.dataset)
    frame = marked_table(read_board(args.board), layout, datasets, args.aggregate,
                         text=args.format != "csv")
    mapped = ", ".join(f"{k} <- {v}" for k, v in datasets.items() if k != v)
    caption = f"measured ({args.aggregate})" + (f"; datasets {mapped}" if mapped else "")
    return layout, frame, caption


def _table(args) -> int:
    from leaderboards.tables import to_markdown

    layout, frame, caption = _table_frame(args)
    if args.format == "csv":
        _write_or_print(frame.to_csv(), args.out)
    else:
        _write_or_print(to_markdown(frame, layout, f"{layout.title} - {caption}"), args.out)
    return 0


def _compare(args) -> int:
    from leaderboards.board import read_board
    from leaderboards.layouts import get_layout
    from leaderboards.tables import compare, dataset_mapping

    layout = get_layout(args.baseline)
    table = compare(read_board(args.board), layout, dataset_mapping(layout, args.dataset),
                    args.aggregate, allow_mixed=args.allow_mixed)
    if table.empty:
        raise FfhqToolsError(f"no leaderboard row matches a row/column of {args.baseline} "
                             "(check config names, result names and --dataset)")
    if args.format == "csv":
        _write_or_print(table.to_csv(index=False), args.out)
    else:
        shown = table.drop(columns=["weights", "checkpoints"])
        _write_or_print(shown.to_string(index=False, float_format=lambda v: f"{v:.4g}") + "\n",
                        args.out)
    if args.plot:
        from leaderboards.plots import plot_comparison

        plot_comparison(table, args.plot, title=f"{layout.paper} {layout.name}")
        print(f"wrote {args.plot}", file=sys.stderr)
    return 0


def _plot_run(run: Path, out: Path) -> None:
    from leaderboards.plots import (
        load_loss_history,
        load_metric_history,
        plot_metric_history,
        plot_series,
    )

    if not run.is_dir():
        raise FfhqToolsError(f"{run}: no such run folder")
    metrics, losses = load_metric_history(run), load_loss_history(run)
    if not metrics and not losses:
        raise FfhqToolsError(f"{run}: no metric-*.jsonl (train with --metrics, or score its "
                             "snapshots with `ffhq-tools metrics --network SNAPSHOT`) and no "
                             "stats.jsonl losses")
    if metrics:
        path = plot_metric_history(metrics, out / "metrics-vs-kimg.png", title=str(run))
        print(f"wrote {path}")
    if losses:
        path = plot_series(losses, out / "losses-vs-kimg.png", title=f"{run}: training losses")
        print(f"wrote {path}")


def _plot(args) -> int:
    from leaderboards.plots import plot_comparison

    if not args.run and not args.baseline:
        raise FfhqToolsError("leaderboard plot: give RUN_DIR (metric vs kimg) and/or "
                             "--baseline TABLE (bars against the published values)")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.run:
        _plot_run(Path(args.run), out)
    if args.baseline:
        from leaderboards.board import read_board
        from leaderboards.layouts import get_layout
        from leaderboards.tables import compare, dataset_mapping

        layout = get_layout(args.baseline)
        table = compare(read_board(args.board), layout, dataset_mapping(layout, args.dataset),
                        args.aggregate, allow_mixed=args.allow_mixed)
        path = plot_comparison(table, out / f"{layout.name}-vs-published.png",
                               title=f"{layout.paper} {layout.name}: ours vs published")
        print(f"wrote {path}")
    return 0


def _baselines(args) -> int:
    from leaderboards.layouts import LAYOUTS

    for name, layout in LAYOUTS.items():
        print(f"{name:26s} {layout.paper}: {layout.title}")
    return 0


def _add_table_flags(p: argparse.ArgumentParser, formats: tuple[str, ...]) -> None:
    p.add_argument("--board", default=DEFAULT_BOARD, help=f"leaderboard CSV ({DEFAULT_BOARD})")
    p.add_argument("--dataset", action="append", metavar="NAME|PAPER=NAME",
                   help="leaderboard dataset standing for the paper's dataset (repeatable)")
    p.add_argument("--aggregate", default="last", choices=("last", "min", "max", "mean"),
                   help="several rows per cell: latest (default), min (the papers' 'lowest "
                        "over training'), max or mean (StyleGAN2's average of 10 seeds)")
    p.add_argument("--format", default=formats[0], choices=formats)
    p.add_argument("--out", help="write to this file instead of stdout")


def _add_score(verbs) -> None:
    from eval import defaults
    from ffhq_tools.runtime import add_device_flag
    from ffhq_tools.weights_cli import add_weights_flag

    p = verbs.add_parser("score", help="score checkpoints with a paper table's metrics and "
                                       "append the rows to a leaderboard")
    p.add_argument("checkpoints", nargs="*", metavar="CKPT")
    p.add_argument("--list", action="store_true",
                   help="list every metric with its weights and whether they are on this "
                        "machine (offline), then exit")
    p.add_argument("--data", help="real data: .h5, image folder or .npz statistics")
    p.add_argument("--table", help="run exactly the metrics this paper table needs "
                                   "(see `ffhq-tools leaderboard baselines`)")
    p.add_argument("--metrics", help="comma-separated metric names instead of --table")
    p.add_argument("--config", help="score the checkpoint as this named config (table row)")
    p.add_argument("--dataset", help="dataset name recorded in the rows (default: data stem)")
    p.add_argument("--board", default=DEFAULT_BOARD, help=f"leaderboard CSV ({DEFAULT_BOARD})")
    p.add_argument("--num-gen", type=int, help="shrink the protocols' generated count")
    p.add_argument("--max-real", type=int, help="shrink the protocols' real count")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--mode", choices=defaults.MODES + defaults.EMBEDDING_MODES,
                   help="preprocessing mode of the feature network (default: its own)")
    p.add_argument("--features", metavar="NAME", choices=defaults.ALL_FEATURE_NETWORKS,
                   help="feature network of every metric that takes one (fid, kid, pr, prdc, "
                        "...) in place of the protocol's own")
    p.add_argument("--test-data", metavar="DATA",
                   help="held-out real images (folder or .h5) for the memorisation metric fld")
    p.add_argument("--stats-cache", help="folder for cached real-data statistics")
    p.add_argument("--note", default="", help="free text stored with every row")
    p.add_argument("--no-progress", action="store_true")
    add_device_flag(p)
    add_weights_flag(p)
    add_exemplar_flags(p)
    p.set_defaults(func=_score)


def add_verbs(verbs) -> None:
    _add_score(verbs)
    parser = verbs.add_parser("leaderboard", help="show, pivot, compare and plot leaderboards")
    sub = parser.add_subparsers(dest="leaderboard_verb", metavar="ACTION")
    sub.required = True

    p = sub.add_parser("show", help="the leaderboard rows")
    p.add_argument("--board", default=DEFAULT_BOARD)
    p.add_argument("--metric", help="only this metric protocol")
    p.add_argument("--config", help="only this config")
    p.add_argument("--columns", help="comma-separated columns to show")
    p.add_argument("--csv", action="store_true", help="CSV instead of an aligned text table")
    p.add_argument("--out")
    p.set_defaults(func=_show)

    p = sub.add_parser("table", help="pivot rows into a paper table's layout (CSV / Markdown)")
    p.add_argument("name", metavar="TABLE")
    p.add_argument("--published", action="store_true", help="the published numbers instead")
    _add_table_flags(p, ("markdown", "csv"))
    p.set_defaults(func=_table)

    p = sub.add_parser("compare", help="measured vs published values with deltas")
    p.add_argument("--baseline", required=True, metavar="TABLE")
    p.add_argument("--allow-mixed", action="store_true",
                   help="compare even numbers from different feature weights or modes")
    p.add_argument("--plot", metavar="PNG", help="also write a bar chart")
    _add_table_flags(p, ("text", "csv"))
    p.set_defaults(func=_compare)

    p = sub.add_parser("plot", help="PNGs: metric vs kimg from a run's metric-*.jsonl, and/or "
                                    "bars of leaderboard values against a published table")
    p.add_argument("run", metavar="RUN_DIR", nargs="?")
    p.add_argument("--out", default="plots", help="folder for the PNGs (default: plots)")
    p.add_argument("--baseline", metavar="TABLE", help="bars against this published table")
    p.add_argument("--board", default=DEFAULT_BOARD)
    p.add_argument("--dataset", action="append", metavar="NAME|PAPER=NAME")
    p.add_argument("--aggregate", default="last", choices=("last", "min", "max", "mean"))
    p.add_argument("--allow-mixed", action="store_true")
    p.set_defaults(func=_plot)

    p = sub.add_parser("baselines", help="the published tables shipped with the suite")
    p.set_defaults(func=_baselines)

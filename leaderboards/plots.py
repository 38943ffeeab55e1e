"""PNG plots (matplotlib, Agg backend): metric vs kimg, bars against baselines, training curves.

A run's metric history is read from its `metric-<name>.jsonl` files: one
`eval.registry.compute_metric` record per line whose kimg is either a top-level `kimg` field or
the `network.kimg` the trainer passes as generator info.
"""

from __future__ import annotations

import math
from pathlib import Path

from ffhq_tools.atomic import atomic_path, read_jsonl
from ffhq_tools.errors import FfhqToolsError
from leaderboards.board import qualified_result


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, out: Path) -> Path:
    out = Path(out)
    with atomic_path(out, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    _pyplot().close(fig)
    return out


def _kimg(record: dict, source: Path) -> float:
    if record.get("kimg") is not None:
        return float(record["kimg"])
    network = record.get("network") or {}
    if network.get("kimg") is not None:
        return float(network["kimg"])
    raise FfhqToolsError(f"{source}: a metric record has neither 'kimg' nor 'network.kimg'")


def _scored_here(record: dict, run_dir: Path) -> bool:
    """A `metrics --network` record of one of this run's snapshots (matched by run folder and
    file name, so relative and absolute paths both count)."""
    path = Path(str((record.get("network") or {}).get("path", "")))
    return path.parent.name == run_dir.name and (run_dir / path.name).is_file()


def load_metric_history(run_dir: str | Path) -> dict[str, list[tuple[float, float]]]:
    """{result name: [(kimg, value), ...]}, sorted by kimg, from the run's own metric-*.jsonl
    (what training wrote) and from the metric-*.jsonl of sibling run folders whose records
    score this run's snapshots (what `ffhq-tools metrics --network SNAPSHOT` wrote)."""
    run_dir = Path(run_dir)
    sources = [(path, False) for path in sorted(run_dir.glob("metric-*.jsonl"))]
    sources += [(path, True) for path in sorted(run_dir.parent.glob("*/metric-*.jsonl"))
                if path.parent != run_dir]
    history: dict[str, list[tuple[float, float]]] = {}
    for path, foreign in sources:
        for record in read_jsonl(path):
            if foreign and not _scored_here(record, run_dir):
                continue
            kimg = _kimg(record, path)
            for name, value in (record.get("results") or {}).items():
                if isinstance(value, (int, float)):
                    name = qualified_result(record.get("metric", ""), name)
                    history.setdefault(name, []).append((kimg, float(value)))
    return {name: sorted(set(points)) for name, points in history.items()}


def load_loss_history(run_dir: str | Path) -> dict[str, list[tuple[float, float]]]:
    """{loss name: [(kimg, value), ...]} from a training run's stats.jsonl (`Loss/*`)."""
    path = Path(run_dir) / "stats.jsonl"
    losses: dict[str, list[tuple[float, float]]] = {}
    if not path.is_file():
        return losses
    for record in read_jsonl(path):
        for key, value in record.items():
            if key.startswith("Loss/") and isinstance(value, (int, float)):
                losses.setdefault(key[len("Loss/"):], []).append((record["kimg"], value))
    return losses


def plot_metric_history(history: dict[str, list[tuple[float, float]]], out: str | Path,
                        title: str = "") -> Path:
    """One panel per result: value against kimg."""
    if not history:
        raise FfhqToolsError("nothing to plot: the metric history is empty")
    plt = _pyplot()
    names = sorted(history)
    fig, axes = plt.subplots(len(names), 1, figsize=(6, 2.4 * len(names)), squeeze=False)
    for ax, name in zip(axes[:, 0], names, strict=True):
        kimg, values = zip(*history[name], strict=True)
        ax.plot(kimg, values, marker="o")
        ax.set_ylabel(name)
        ax.grid(alpha=0.3)
    axes[-1, 0].set_xlabel("kimg")
    if title:
        fig.suptitle(title)
    return _save(fig, out)


def plot_comparison(comparison, out: str | Path, title: str = "") -> Path:
    """Grouped bars, ours vs published, one panel per paper column (scales differ)."""
    if comparison is None or len(comparison) == 0:
        raise FfhqToolsError("nothing to plot: no measured value has a published counterpart")
    plt = _pyplot()
    columns = list(dict.fromkeys(comparison["column"]))
    fig, axes = plt.subplots(1, len(columns), figsize=(3.2 * len(columns) + 1, 3.4),
                             squeeze=False)
    for ax, column in zip(axes[0], columns, strict=True):
        part = comparison[comparison["column"] == column]
        x = range(len(part))
        ax.bar([i - 0.2 for i in x], part["ours"], width=0.4, label="ours")
        published = [v if not math.isnan(v) else 0.0 for v in part["published"]]
        ax.bar([i + 0.2 for i in x], published, width=0.4, label="published")
        ax.set_xticks(list(x))
        ax.set_xticklabels(part["row"], rotation=30, ha="right", fontsize=8)
        ax.set_title(column, fontsize=9)
    axes[0, 0].legend(fontsize=8)
    if title:
        fig.suptitle(title)
    return _save(fig, out)


def plot_series(series: dict[str, list[tuple[float, float]]], out: str | Path,
                xlabel: str = "kimg", title: str = "") -> Path:
    """Several named curves on one axis (training losses and the like)."""
    if not series:
        raise FfhqToolsError("nothing to plot: no series")
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 3.4))
    for name, points in sorted(series.items()):
        xs, ys = zip(*points, strict=True)
        ax.plot(xs, ys, label=name)
    ax.set_xlabel(xlabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    if title:
        ax.set_title(title)
    return _save(fig, out)

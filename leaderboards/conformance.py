"""Does a leaderboard row follow the protocol the paper's number was computed with?

A row deviates when its counts differ from its registered protocol's (a `fid50k` from 64
generated images against 19 reals is not an `fid50k`), when a `_full` protocol saw fewer reals
than the paper's dataset holds, when the generator's resolution is not the paper's, when the
row's feature network is not of the protocol's feature space (`--features`), or when the
feature weights are not the registry's files. Every deviation is a short reason; `compare`
refuses such cells and `table` marks them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

# The papers' datasets: images in the training set and the generators' output resolution.
PAPER_DATASETS = {
    "FFHQ": {"images": 70_000, "resolution": 1024},
    "CelebA-HQ": {"images": 30_000, "resolution": 1024},
    "LSUN Car": {"images": 893_000, "resolution": 512},
    "CIFAR-10": {"images": 50_000, "resolution": 32},
}
GENERATED_COUNTS = ("num_gen", "num_samples", "num_keep")
REAL_COUNTS = ("num_real", "max_real")


def _protocol(row: Mapping) -> dict:
    try:
        value = json.loads(row.get("protocol") or "{}")
    except (TypeError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def _spec(metric: str):
    from eval.registry import METRICS, load_builtin_metrics

    load_builtin_metrics()
    return METRICS.get(metric)


def _nominal_protocol(metric: str) -> dict | None:
    spec = _spec(metric)
    return None if spec is None else spec.protocol


def feature_space_deviation(row: Mapping) -> str | None:
    """'features X (protocol: Y)' when the row's feature network is not of its protocol's
    feature space (e.g. `fid50k_full --features dinov2-vit-l-14`); None when it is."""
    from eval.defaults import FEATURE_SPACES

    spec = _spec(str(row.get("metric", "")))
    if spec is None:
        return None
    expected = {FEATURE_SPACES[w] for w in spec.weights if w in FEATURE_SPACES}
    used = [n for n in str(row.get("feature_network") or "").split("+") if n in FEATURE_SPACES]
    foreign = [n for n in used if FEATURE_SPACES[n] not in expected]
    if not foreign or not expected:
        return None
    return f"features {', '.join(foreign)} (protocol: {', '.join(sorted(expected))})"


def _expected_reals(metric: str, nominal, paper: dict | None):
    """The real count the paper's protocol used: all of the dataset (up to a cap) for `_full`
    protocols, the protocol's number otherwise; None when unknown."""
    full = metric.endswith("_full") or nominal == "all"
    if not full:
        return nominal if isinstance(nominal, int) else None
    if paper is None:
        return None
    return min(paper["images"], nominal) if isinstance(nominal, int) else paper["images"]


def _as_int(value):
    try:
        return int(float(value))
    except (TypeError, ValueError):
        return None


def row_deviations(row: Mapping, paper_dataset: str | None = None) -> list[str]:
    """Reasons why `row` (a leaderboard row) is not the paper's protocol; empty if it is."""
    metric = str(row.get("metric", ""))
    nominal = _nominal_protocol(metric)
    if nominal is None:
        return [f"'{metric}' is not a registered protocol"]
    used = _protocol(row)
    paper = PAPER_DATASETS.get(paper_dataset or "")
    found = []
    for key in GENERATED_COUNTS:
        expected = nominal.get(key)
        got = _as_int(used.get(key))
        if isinstance(expected, int) and got is not None and got != expected:
            found.append(f"{key} {got:,} (protocol {expected:,})")
    real_key = next((k for k in REAL_COUNTS if k in nominal), None)
    if real_key is not None:
        expected = _expected_reals(metric, nominal[real_key], paper)
        got = _as_int(used.get("num_real", used.get(real_key)))
        if expected is not None and got is not None and got != expected:
            full = metric.endswith("_full") or nominal[real_key] == "all"
            where = f"{paper_dataset} has {paper['images']:,}" if full else \
                f"protocol {expected:,}"
            found.append(f"reals {got:,} ({where})")
    space = feature_space_deviation(row)
    if space:
        found.append(space)
    resolution = _as_int(used.get("resolution"))
    if paper and resolution and resolution != paper["resolution"]:
        found.append(f"resolution {resolution} px ({paper_dataset}: {paper['resolution']} px)")
    return found

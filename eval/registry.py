"""The metric registry: metrics are functions registered under protocol-encoding names.

    @register_metric("fid50k_full", protocol={"num_gen": 50000, ...}, needs=("generator", "data"),
                     weights=("inception-fid",), description="...")
    def fid50k_full(ctx: MetricContext) -> dict: ...

`compute_metric(name, ctx)` runs one and returns a JSON-able row that records the counts really
used (`ctx.use`), the SHA-256 of every network file (`ctx.resolve_weights`), the preprocessing
mode, seed, device, timing and versions.
"""

from __future__ import annotations

import difflib
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from eval import defaults
from ffhq_tools.errors import FfhqToolsError

NEEDS = ("generator", "data", "test_data")


class UnknownMetricError(FfhqToolsError):
    """A metric name that is not registered."""


class MetricInputError(FfhqToolsError):
    """A metric was asked for without an input it needs (generator, data)."""


@dataclass
class MetricContext:
    """Everything a metric needs; fields left as None mean "not given" or "protocol default"."""

    generator: Any = None                      # nn.Module following the G contract, or None
    generator_info: dict = field(default_factory=dict)  # path, sha256, config name, kimg
    data: Path | None = None                   # .h5 / image folder / .npz statistics
    device: Any = "cpu"
    seed: int = defaults.DEFAULT_SEED
    num_gen: int | None = None                 # override of the protocol's generated count
    max_real: int | None = None                # override of the protocol's real count
    batch_size: int = defaults.DEFAULT_BATCH_SIZE
    weights_overrides: dict = field(default_factory=dict)  # registry name -> Path
    stats_cache: Path | None = None            # folder for cached real statistics
    progress: bool = True
    mode: str = defaults.DEFAULT_MODE
    rank: int = 0
    world_size: int = 1
    covariance: str = defaults.DEFAULT_COVARIANCE
    feature_network: str = defaults.DEFAULT_FEATURE_NETWORK
    features: str | None = None                # --features: network for every metric (None:
    #                                            each protocol's own)
    embedding_mode: str | None = None          # DINOv2 / CLIP preprocessing (None: default)
    test_data: Path | None = None              # held-out reals (memorisation metrics)
    # Filled while a metric runs (reset by compute_metric):
    protocol: dict = field(default_factory=dict)
    used: dict = field(default_factory=dict)
    weights_used: dict = field(default_factory=dict)
    notes: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.features in defaults.FEATURE_NETWORKS:  # an Inception: its own passes use it
            self.feature_network = self.features

    def count(self, key: str, override: int | None) -> int:
        """The protocol's `key` unless `override` is given; recorded as the count used."""
        value = int(override) if override is not None else int(self.protocol[key])
        if value < 1:
            raise FfhqToolsError(f"{key} must be at least 1 (got {value})")
        self.use(key, value)
        return value

    def use(self, key: str, value) -> None:
        """Record a protocol quantity as really used (e.g. the number of reals available)."""
        self.used[key] = value

    def resolve_weights(self, name: str):
        """Resolve a registry entry (honouring --weights overrides) and record its SHA-256."""
        from ffhq_tools import weights

        resolved = weights.resolve(name, self.weights_overrides)
        self.weights_used[name] = resolved.sha256
        return resolved

    def require(self, needs: tuple[str, ...], metric: str) -> None:
        missing = [n for n in needs if getattr(self, n) is None]
        if missing:
            flags = {"generator": "--network", "data": "--data", "test_data": "--test-data"}
            raise MetricInputError(f"metric '{metric}' needs "
                                   + " and ".join(f"{flags[m]} ({m})" for m in missing))


@dataclass(frozen=True)
class MetricSpec:
    name: str
    fn: Callable[[MetricContext], dict]
    protocol: dict
    needs: tuple[str, ...]
    weights: tuple[str, ...]
    description: str
    # Sets of weights entries of which any one, fully available, lets the metric run
    # (PPL: NVIDIA's vgg16.pt, or torchvision VGG16 + lpips' layers); default: all `weights`.
    weight_options: tuple[tuple[str, ...], ...] = ()
    takes_features: bool = False  # computes in the space of any `--features` network

    def check_features(self, features: str | None) -> None:
        """An Inception-only metric (IS, PPL, ...) refuses another `--features` network."""
        if features is None or self.takes_features or features in defaults.FEATURE_NETWORKS:
            return
        raise FfhqToolsError(f"metric '{self.name}' does not take --features {features}: it "
                             "is defined on its own network; the metrics that do: "
                             f"{', '.join(n for n, s in METRICS.items() if s.takes_features)}")

    def missing_weights(self, overrides: dict | None = None) -> list[str]:
        """Entries to provide before this metric can run (empty when it can)."""
        from ffhq_tools.weights import is_available

        options = self.weight_options or (self.weights,)
        missing = [[w for w in option if not is_available(w, overrides)] for option in options]
        if any(not m for m in missing):
            return []
        return min(missing, key=len)


METRICS: dict[str, MetricSpec] = {}


def register_metric(name: str, *, protocol: dict, needs: tuple[str, ...],
                    weights: tuple[str, ...], description: str,
                    weight_options: tuple[tuple[str, ...], ...] = (),
                    takes_features: bool = False):
    """Decorator registering `fn(ctx) -> dict of numbers` under `name`."""
    unknown = [n for n in needs if n not in NEEDS]
    if unknown:
        raise ValueError(f"metric {name}: unknown needs {unknown}; expected a subset of {NEEDS}")

    def decorate(fn):
        if name in METRICS and METRICS[name].fn is not fn:
            raise ValueError(f"metric '{name}' registered twice")
        METRICS[name] = MetricSpec(name, fn, dict(protocol), tuple(needs), tuple(weights),
                                   description, tuple(tuple(o) for o in weight_options),
                                   takes_features)
        return fn

    return decorate


# Modules whose import registers metrics; metrics II adds its own modules here.
METRIC_MODULES = (
    "eval.fid",
    "eval.mixed_latents",
    "eval.kid",
    "eval.inception_score",
    "eval.ppl",
    "eval.separability",
    "eval.precision_recall",
    "eval.face_space",
    "eval.embedding_metrics",
)


def load_builtin_metrics() -> None:
    """Import every metric module so its decorators run."""
    import importlib

    for module in METRIC_MODULES:
        importlib.import_module(module)


def list_metrics() -> list[str]:
    load_builtin_metrics()
    return sorted(METRICS)


def get_metric(name: str) -> MetricSpec:
    load_builtin_metrics()
    if name not in METRICS:
        close = difflib.get_close_matches(name, METRICS, n=3, cutoff=0.5)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        raise UnknownMetricError(f"unknown metric '{name}'.{hint} "
                                 f"Known metrics: {', '.join(sorted(METRICS))}")
    return METRICS[name]


def _check_finite(name: str, results: dict) -> None:
    for key, value in results.items():
        if isinstance(value, float) and not math.isfinite(value):
            raise FfhqToolsError(f"metric '{name}' produced a non-finite {key} ({value})")


def _versions() -> dict:
    import torch

    from ffhq_tools import __version__

    return {"ffhq_tools": __version__, "torch": torch.__version__}


def compute_metric(name: str, ctx: MetricContext) -> dict:
    """Run metric `name` on `ctx`; returns one JSON-able result row."""
    spec = get_metric(name)
    ctx.require(spec.needs, name)
    spec.check_features(ctx.features)
    ctx.protocol, ctx.used, ctx.weights_used, ctx.notes = dict(spec.protocol), {}, {}, {}
    start = time.perf_counter()
    results = spec.fn(ctx)
    _check_finite(name, results)
    row = {
        "metric": name,
        "results": {k: (float(v) if isinstance(v, (int, float)) else v)
                    for k, v in results.items()},
        "protocol": {**spec.protocol, **(ctx.generator_info or {}).get("protocol", {}),
                     **ctx.used},
        "weights": dict(ctx.weights_used),
        "mode": ctx.used.get("preprocessing", ctx.mode),
        "seed": ctx.seed,
        "device": str(ctx.device),
        "world_size": ctx.world_size,
        "total_time_s": round(time.perf_counter() - start, 3),
        **_versions(),
    }
    if ctx.generator_info:
        row["network"] = dict(ctx.generator_info)
    if ctx.data is not None:
        row["data"] = str(ctx.data)
    if ctx.notes:
        row["notes"] = dict(ctx.notes)
    from ffhq_tools.weights import custom_weights

    custom = custom_weights(ctx.weights_used)
    if custom:
        row["custom_weights"] = custom
    return row

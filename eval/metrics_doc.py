"""METRICS.md from the registry: every metric's protocol constants, inputs and weights files,
so the document cannot drift from the code (`ffhq-tools metrics --list --markdown > METRICS.md`;
a test compares the committed file with this output)."""

from __future__ import annotations

import json

from eval.registry import METRIC_MODULES, get_metric, list_metrics

PREAMBLE = """\
# Metrics

Generated from the metric registry by `ffhq-tools metrics --list --markdown > METRICS.md`; a
test keeps this file equal to that output. A metric's name encodes its protocol (`fid50k_full`:
50,000 generated images against every real image); the constants below are the ones a run
uses unless `--num-gen` / `--max-real` shrink it, and every result row records the counts
really used, the SHA-256 of each network file, the preprocessing mode, the seed and the
versions (see the README, "Metrics I" and "Metrics II").

Conventions shared by all metrics:
- Generated images: z ~ N(0, I) seeded per (seed, batch index), quantised as the reference
  code does (`clamp(x * 127.5 + 128, 0, 255)` truncated to uint8); the same seed and batch
  size give the same images on any number of ranks.
- `--mode tf` (default) resizes for Inception with TF1's bilinear resize, as the papers' code;
  `pytorch-fid` and `clean` are the other named conventions; the mode is part of every cache
  key and row.
- DINOv2 / CLIP metrics resize by their own named mode (`dgm-eval` for DINOv2, `clean-fid`
  for CLIP, `torch-fidelity` for either; `--mode`, `MetricContext.embedding_mode`), recorded
  in each row as `preprocessing` beside the network's name and SHA-256.
- `--features NAME` (`MetricContext.features`) computes a metric marked "takes --features"
  in the space of any network of the table below instead of its protocol's own; the row
  records the network and its SHA-256, the statistics cache keys on both and on the mode, and
  `leaderboard compare` refuses a row whose feature space is not its protocol's.
- Long passes resume after a kill from partials under the statistics cache; see the README.
"""


def _value(value) -> str:
    return f"`{json.dumps(value, sort_keys=True)}`"


def feature_networks_section() -> str:
    """The feature-network registry as a table: name, family, width, modes, file, SHA-256."""
    from eval.features.networks import FEATURE_NETWORKS
    from ffhq_tools.weights import REGISTRY

    lines = ["## Feature networks", "",
             "| `--features` | family | dim | modes (default first) | weights file "
             "| SHA-256 (or its published prefix) |",
             "|---|---|---|---|---|---|"]
    for net in FEATURE_NETWORKS.values():
        entry = REGISTRY[net.name]
        sha = f"`{entry.sha256}`" if entry.sha256 else "recorded on import"
        lines.append(f"| `{net.name}` | {net.family} | {net.dim} | "
                     f"{', '.join(net.modes)} | `{entry.filename}` | {sha} |")
    return "\n".join(lines) + "\n"


def metric_section(name: str) -> str:
    spec = get_metric(name)
    lines = [f"## `{name}`", "", spec.description, "",
             f"- needs: {' and '.join(spec.needs) or 'nothing'}",
             f"- weights: {', '.join(f'`{w}`' for w in spec.weights) or 'none'}",
             f"- takes --features: {'yes' if spec.takes_features else 'no'}", ""]
    if spec.protocol:
        lines += ["| protocol constant | value |", "|---|---|"]
        lines += [f"| `{key}` | {_value(value)} |" for key, value in sorted(spec.protocol.items())]
        lines.append("")
    return "\n".join(lines)


def metrics_markdown() -> str:
    """The built-in metrics (not ones a caller registered) as METRICS.md."""
    built_in = [name for name in list_metrics() if get_metric(name).fn.__module__ in METRIC_MODULES]
    return (PREAMBLE + "\n" + feature_networks_section() + "\n"
            + "\n".join(metric_section(name) for name in built_in))

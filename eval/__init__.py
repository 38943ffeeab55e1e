"""Metrics for style-based face GANs: `from eval import compute_metric, MetricContext`."""

from eval.registry import MetricContext, compute_metric, get_metric, list_metrics

__all__ = ["MetricContext", "compute_metric", "get_metric", "list_metrics"]

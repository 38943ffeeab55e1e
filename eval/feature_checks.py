"""Checks that keep a Frechet distance from misleading: features that do not vary, too few
samples for the feature dimension, and weights that are not the registry's files."""

from __future__ import annotations

import sys

import numpy as np

from ffhq_tools.errors import FfhqToolsError

# Real Inception pool features vary across images with a per-dimension std of ~0.1-1; below
# this the network maps every image to (nearly) one point and any distance is ~0.
COLLAPSE_STD = 1e-6


class CollapsedFeaturesError(FfhqToolsError):
    """The feature network gives (nearly) the same features for every image."""


def feature_std(sigma: np.ndarray) -> float:
    """Root mean per-dimension variance of a covariance matrix."""
    return float(np.sqrt(max(np.trace(sigma), 0.0) / sigma.shape[0]))


def check_spread(sigma: np.ndarray, label: str, weights: dict[str, str]) -> None:
    std = feature_std(sigma)
    if std < COLLAPSE_STD:
        used = ", ".join(f"{name} (sha256 {sha[:12]}...)" for name, sha in weights.items())
        raise CollapsedFeaturesError(
            f"{label}: the features barely vary across images (mean std {std:.2g}, below "
            f"{COLLAPSE_STD:g}): the network {used or '?'} maps every image to nearly one "
            "point, so any distance would be ~0 and meaningless. Use the registered weights "
            "(`ffhq-tools weights verify`) or a trained network")


def rank_warning(num: int | None, dim: int, label: str) -> str | None:
    """A covariance of N < dim + 1 samples is rank-deficient; the distance is biased."""
    if num is None or num > dim:
        return None
    return (f"{label}: {num} images for {dim}-d features: the covariance has rank at most "
            f"{num - 1} < {dim}, so the distance is strongly biased (use more than {dim} "
            "images; the protocols use 50,000)")


def warn(message: str | None) -> None:
    if message:
        print(f"warning: {message}", file=sys.stderr)

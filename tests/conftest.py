"""Shared fixtures: every test gets its own empty weights cache and never touches the user's."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path_factory, monkeypatch):
    cache = tmp_path_factory.mktemp("ffhq-tools-cache")
    monkeypatch.setenv("FFHQ_TOOLS_CACHE", str(cache))
    return cache


@pytest.fixture(scope="session")
def astronaut():
    """A real photo of a face shipped inside scikit-image (512x512 RGB uint8)."""
    from skimage import data

    return data.astronaut()

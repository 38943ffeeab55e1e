"""Shared fixtures: every test gets its own empty weights cache and never touches the user's."""

from __future__ import annotations

import os
import shutil

import pytest


def pytest_configure(config):
    """Under pytest-xdist each worker gets one torch thread: the workers already share the
    cores, and two-thread networks on contended cores run slower than one-thread ones."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        import torch

        torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path_factory, monkeypatch):
    """Removed after the test: weights a test installs (hundreds of MB for the real
    architectures) would otherwise pile up for the whole session."""
    cache = tmp_path_factory.mktemp("ffhq-tools-cache")
    monkeypatch.setenv("FFHQ_TOOLS_CACHE", str(cache))
    yield cache
    shutil.rmtree(cache, ignore_errors=True)


@pytest.fixture(scope="session")
def astronaut():
    """A real photo of a face shipped inside scikit-image (512x512 RGB uint8)."""
    from skimage import data

    return data.astronaut()


@pytest.fixture
def small_vit_l(tmp_path, monkeypatch):
    """DINOv2 at a test size registered as ViT-L/14 (see embedding_helpers)."""
    from embedding_helpers import install_small_vit_l

    return install_small_vit_l(tmp_path / "weights", monkeypatch)


@pytest.fixture
def one_thread():
    """Tiny networks run far faster on one torch thread than on two contended ones."""
    import torch

    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(saved)

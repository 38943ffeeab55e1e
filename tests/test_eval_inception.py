"""The FID Inception: TF1 resize bit-exact with torch-fidelity's, the preprocessing modes and
clear errors for wrong files (NVIDIA's TorchScript layout: test_eval_nvidia_networks.py).
Folder-level agreement with pytorch-fid and torch-fidelity on identical weights is in
test_eval_fid_peers.py."""

import numpy as np
import pytest
import torch
from eval_helpers import as_batch, photos, random_crops, shared_inception_file

from eval.features import load_inception
from eval.features.preprocess import preprocess, tf_resize_bilinear
from eval.registry import MetricContext
from ffhq_tools.errors import WeightsError


@pytest.fixture(scope="module")
def inception_file(tmp_path_factory):
    return shared_inception_file(tmp_path_factory)


@pytest.fixture(scope="module")
def images():
    return as_batch(random_crops(2, 48, seed=11, sources=photos()))


def _ctx(path, **changes):
    return MetricContext(weights_overrides={"inception-fid": path}, progress=False, **changes)


def test_tf_resize_matches_torch_fidelity():
    from torch_fidelity.interpolate_compat_tensorflow import (
        interpolate_bilinear_2d_like_tensorflow1x,
    )

    x = torch.rand(2, 3, 37, 53) * 255
    ours = tf_resize_bilinear(x, 299)
    theirs = interpolate_bilinear_2d_like_tensorflow1x(x, size=(299, 299), align_corners=False)
    assert torch.equal(ours, theirs)  # TF's float32 order of operations, bit for bit
    assert not torch.allclose(ours, torch.nn.functional.interpolate(
        x, size=(299, 299), mode="bilinear", align_corners=False), atol=1e-2)


def test_modes_differ_and_are_named(images):
    x_tf = preprocess(images, "tf")
    x_pf = preprocess(images, "pytorch-fid")
    x_clean = preprocess(images, "clean")
    assert x_tf.shape == x_pf.shape == x_clean.shape == (2, 3, 299, 299)
    assert (x_tf - x_pf).abs().max() > 1e-3 and (x_tf - x_clean).abs().max() > 1e-3
    from ffhq_tools.errors import FfhqToolsError
    with pytest.raises(FfhqToolsError, match="--mode"):
        preprocess(images, "bilinear")


def test_wrong_files_are_clear_errors(tmp_path):
    bad = tmp_path / "pt_inception-2015-12-05-6726825d.pth"
    torch.save({"conv.weight": torch.zeros(1)}, bad)
    with pytest.raises(WeightsError, match="layout"):
        load_inception(_ctx(bad))
    with pytest.raises(WeightsError, match="inception-fid"):
        load_inception(MetricContext())  # empty cache, offline: says how to get the file


def test_clean_mode_resize_matches_clean_fid(images):
    from cleanfid.resize import make_resizer

    from eval.features.preprocess import resize_299

    resizer = make_resizer("PIL", False, "bicubic", (299, 299))
    theirs = np.stack([resizer(img) for img in images.permute(0, 2, 3, 1).numpy()])
    ours = resize_299(images, "clean").permute(0, 2, 3, 1).numpy()
    np.testing.assert_array_equal(ours, theirs)

"""LPIPS-VGG16 and VGG16 fc2 features against the peer libraries on identical weights."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from vgg_helpers import random_vgg16_state, write_random_vgg16

lpips_pkg = pytest.importorskip("lpips")


def _photos(size: int = 64) -> torch.Tensor:
    from skimage import data

    crops = [data.astronaut()[:256, 128:384], data.chelsea()[:256, :256],
             data.coffee()[:256, :256], data.astronaut()[200:456, 200:456]]
    batch = torch.from_numpy(np.stack(crops)).permute(0, 3, 1, 2).float()
    return torch.nn.functional.interpolate(batch, size=(size, size), mode="area")


@pytest.fixture(scope="module")
def random_vgg_state():
    return random_vgg16_state(classifier=False)


@pytest.fixture(scope="module")
def vgg_path(random_vgg_state, tmp_path_factory):
    path = tmp_path_factory.mktemp("vgg") / "vgg16-random.pth"
    torch.save(random_vgg_state, path)
    return path


@pytest.fixture(scope="module")
def full_vgg_path(tmp_path_factory):
    return write_random_vgg16(tmp_path_factory.mktemp("vgg") / "vgg16-random-full.pth",
                              classifier=True)


@pytest.fixture(scope="module")
def peer_lpips(random_vgg_state):
    with torch.device("meta"):  # skip torchvision's random init; every weight is set below
        model = lpips_pkg.LPIPS(net="vgg", pretrained=False, pnet_rand=True, verbose=False)
    model = model.to_empty(device="cpu")
    model.scaling_layer = lpips_pkg.lpips.ScalingLayer()  # the package's own constants
    from ffhq_tools import weights

    lins = torch.load(weights.resolve("lpips-vgg-lin").path, map_location="cpu")
    model.load_state_dict(lins, strict=False)  # the shipped v0.1 linear layers
    for slice_name in ("slice1", "slice2", "slice3", "slice4", "slice5"):
        for index, layer in getattr(model.net, slice_name).named_children():
            if isinstance(layer, torch.nn.Conv2d):  # children keep torchvision's indices
                layer.weight.data.copy_(random_vgg_state[f"features.{index}.weight"])
                layer.bias.data.copy_(random_vgg_state[f"features.{index}.bias"])
    return model.eval()


@pytest.fixture(scope="module")
def ours(vgg_path):
    from eval.features import lpips
    from ffhq_tools import weights

    return lpips.load_distance(lambda name: weights.resolve(name, {"vgg16": vgg_path}),
                               lpips.OURS)


def test_lpips_matches_lpips_package(ours, peer_lpips):
    images = _photos(32)
    x0, x1 = images, images.roll(1, dims=0)
    with torch.no_grad():
        expected = peer_lpips(x0 / 127.5 - 1, x1 / 127.5 - 1).flatten()
        got = ours(x0, x1)
    assert expected.min() > 0 and expected.std() / expected.mean() > 0.05  # distances spread
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-7)
    assert torch.all(ours(x0, x0) < 1e-10)


def test_lpips_uses_the_shipped_linear_layers(ours):
    from eval.features import lpips
    from ffhq_tools import weights

    lin_path = weights.resolve("lpips-vgg-lin").path
    lins = lpips.load_lin_weights(lin_path)
    assert [w.shape[1] for w in lins] == list(lpips.CHANNELS)
    assert all((w >= 0).all() for w in lins)  # LPIPS v0.1 weights are non-negative
    for conv, w in zip(ours.lpips.lins, lins, strict=True):
        torch.testing.assert_close(conv.weight.flatten(), w.flatten())


@pytest.mark.slow
def test_vgg16_fc2_matches_torch_fidelity(full_vgg_path):
    fidelity = pytest.importorskip("torch_fidelity.feature_extractor_vgg16")
    from eval.features import vgg16
    from ffhq_tools import weights

    path = full_vgg_path
    ours = vgg16.load_feature_network(lambda n: weights.resolve(n, {"vgg16": path}),
                                      vgg16.TORCHVISION)
    peer = fidelity.FeatureExtractorVGG16("vgg16-fc2", ["fc2_relu"],
                                          feature_extractor_weights_path=str(path))
    images = _photos(96).round().to(torch.uint8)
    with torch.no_grad():
        got, expected = ours(images), peer(images)[0]
    assert got.shape == (4, vgg16.FEATURE_DIM)
    assert torch.pdist(expected).min() > 0.1 * torch.pdist(expected).max()
    # float32 through 15 layers: kernels differ across CPUs (AVX2 vs AVX-512), so the bound
    # scales with the features rather than being a fixed 1e-5
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4 * expected.abs().max().item())


def test_tf1_resize_is_bit_exact_with_torch_fidelity():
    tf1 = pytest.importorskip("torch_fidelity.interpolate_compat_tensorflow")
    from eval.features.vgg16 import resize_bilinear_tf1

    torch.manual_seed(0)
    for shape in [(2, 3, 37, 50), (1, 3, 256, 256), (1, 1, 16, 16)]:
        x = (torch.rand(shape) * 255).round()
        expected = tf1.interpolate_bilinear_2d_like_tensorflow1x(x, size=(224, 224),
                                                                 align_corners=False)
        assert torch.equal(resize_bilinear_tf1(x, 224), expected)


def test_missing_vgg_weights_name_the_entry_and_command():
    from eval.features import lpips
    from ffhq_tools import weights
    from ffhq_tools.errors import WeightsError

    with pytest.raises(WeightsError, match="(?s)vgg16.*weights fetch vgg16"):
        lpips.load_distance(weights.resolve, lpips.OURS)



"""NVIDIA's TorchScript metric networks through the data reader and our own modules.

Files in the published layout are built here (tests/nvidia_torchscript.py) with seeded random
weights; our modules must give what `torch.jit.load` of the same file gives (jit.load runs
only here, on files this test made). A hostile TorchScript file goes through every loading
route and must never get to write its marker files.
"""

from __future__ import annotations

import pytest
import torch
from eval_helpers import as_batch, photos, random_crops
from nvidia_torchscript import (
    NARROW_STAGES,
    VGG_STAGES,
    HostileForward,
    HostileLoad,
    NvInceptionV3,
    inception_module,
    save_scripted,
    vgg16_module,
)

from eval import defaults
from eval.features import load_inception, lpips, nvidia_vgg16, vgg16
from eval.features.nvidia_inception import (
    MIXED,
    STEM,
    inception_from_tensors,
    load_nvidia_inception,
)
from eval.features.nvidia_vgg16 import load_nvidia_vgg16, vgg16_from_tensors
from eval.registry import MetricContext
from ffhq_tools import weights
from ffhq_tools.errors import HashMismatchError, WeightsError
from ffhq_tools.torchscript_archive import read_torchscript


def _photos(count: int, size: int, seed: int) -> torch.Tensor:
    return as_batch(random_crops(count, size, seed, photos()))


def _assert_spread(features: torch.Tensor) -> None:
    """Different photos must give clearly different features, or agreement means nothing."""
    distances = torch.cdist(features.double(), features.double())
    off_diagonal = distances[~torch.eye(len(features), dtype=torch.bool)]
    assert off_diagonal.min() > 0.05 * features.double().norm(dim=1).mean()


# ---- Inception -------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def uncalibrated_inception(tmp_path_factory):
    torch.manual_seed(21)
    module = NvInceptionV3().eval().requires_grad_(False)
    path = tmp_path_factory.mktemp("nv-inception") / "inception-2015-12-05.pt"
    save_scripted(module, path)
    return path


def test_every_inception_block_matches_the_jit_module(uncalibrated_inception):
    """Block by block on small inputs: each of our blocks, filled from the data reader, computes
    what the file's block computes (towers, kernel orientations, pools, concat order)."""
    theirs = torch.jit.load(str(uncalibrated_inception)).eval()
    ours = inception_from_tensors(uncalibrated_inception,
                                  read_torchscript(uncalibrated_inception).tensors())
    channels = {"mixed": 192, "mixed_1": 256, "mixed_2": 288, "mixed_3": 288, "mixed_4": 768,
                "mixed_5": 768, "mixed_6": 768, "mixed_7": 768, "mixed_8": 768,
                "mixed_9": 1280, "mixed_10": 2048}
    generator = torch.Generator().manual_seed(3)
    with torch.no_grad(), torch.jit.optimized_execution(False):
        for nv_name, our_name, _ in MIXED:
            x = torch.randn(2, channels[nv_name], 9, 9, generator=generator).relu()
            expected = getattr(theirs.layers, nv_name)(x)
            got = getattr(ours, our_name)(x)
            torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5, msg=nv_name)
        x = torch.randn(2, 3, 35, 35, generator=generator)
        for nv_name, our_name in STEM.items():
            expected, got = getattr(theirs.layers, nv_name)(x), getattr(ours, our_name)(x)
            torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5, msg=nv_name)
            x = expected


def test_inception_layout_errors_name_the_file_and_first_mismatch(uncalibrated_inception):
    tensors = read_torchscript(uncalibrated_inception).tensors()
    missing = {k: v for k, v in tensors.items() if k != "layers.mixed_4.tower.conv_1.weight"}
    with pytest.raises(WeightsError, match=r"inception-2015-12-05.pt: not NVIDIA's inception"
                                           r".*'layers.mixed_4.tower.conv_1.weight' is missing"):
        inception_from_tensors(uncalibrated_inception, missing)
    swapped = dict(tensors)
    swapped["layers.mixed_4.tower.conv_1.weight"] = tensors["layers.mixed_4.tower.conv_2.weight"]
    with pytest.raises(WeightsError, match=r"'layers.mixed_4.tower.conv_1.weight' has shape "
                                           r"\(192, 128, 7, 1\), expected \(128, 128, 1, 7\)"):
        inception_from_tensors(uncalibrated_inception, swapped)
    extra = {**tensors, "layers.mixed_4.gamma": torch.ones(3)}
    with pytest.raises(WeightsError, match="unexpected tensor 'layers.mixed_4.gamma'"):
        inception_from_tensors(uncalibrated_inception, extra)


@pytest.mark.slow
def test_inception_ts_through_the_registry(uncalibrated_inception):
    """`--feature-network inception-ts`: our extractor resizes per mode, then the data-read
    network gives what the jit module gives on the same resized input."""
    from eval.features.preprocess import resize_299

    ctx = MetricContext(weights_overrides={"inception-ts": uncalibrated_inception},
                        progress=False, feature_network=defaults.INCEPTION_TORCHSCRIPT)
    images = _photos(1, 96, 43)
    pool, probs = load_inception(ctx)(images, want_probs=True)
    theirs = torch.jit.load(str(uncalibrated_inception)).eval()
    resized = resize_299(images, defaults.MODE_TF)
    with torch.no_grad(), torch.jit.optimized_execution(False):
        expected = theirs(resized, return_features=True)
        torch.testing.assert_close(pool, expected, rtol=1e-4,
                                   atol=2e-5 * expected.abs().max().item())
        torch.testing.assert_close(probs.float(), theirs(resized, no_output_bias=True),
                                   rtol=1e-3, atol=1e-7)
    assert set(ctx.weights_used) == {"inception-ts"}


@pytest.mark.slow
def test_calibrated_inception_equals_jit_on_photos(tmp_path):
    """Whole network, BN calibrated on photos: features and probabilities within 1e-5 of the
    jit module at 299 (what our extractor feeds) and through the network's own resize."""
    path = tmp_path / "inception-2015-12-05.pt"
    save_scripted(inception_module(5, _photos(4, 299, 40)), path)
    theirs = torch.jit.load(str(path)).eval()
    ours, fused = load_nvidia_inception(path, fuse=False), load_nvidia_inception(path)
    with torch.no_grad(), torch.jit.optimized_execution(False):
        for images, bias in ((_photos(3, 299, 41), False), (_photos(2, 173, 42), True)):
            expected = theirs(images, return_features=True)
            _assert_spread(expected)
            torch.testing.assert_close(ours(images, return_features=True), expected,
                                       rtol=1e-5, atol=1e-5)
            # BN folded into the convs rounds differently; CI's CPU kernels showed 4.4e-5 x max
            torch.testing.assert_close(fused(images, return_features=True), expected,
                                       rtol=1e-4, atol=1e-4 * expected.abs().max().item())
            probs = theirs(images, return_features=False, no_output_bias=bias)
            torch.testing.assert_close(ours(images, no_output_bias=bias), probs,
                                       rtol=1e-4, atol=1e-7)


# ---- VGG16 -----------------------------------------------------------------------------------

@pytest.fixture
def narrow_vgg(tmp_path, monkeypatch):
    """A VGG16 file in the published layout with narrow widths (official ones: slow test), and
    the loaders told to expect those widths."""
    monkeypatch.setattr(nvidia_vgg16, "ARCHITECTURE", (NARROW_STAGES, 64, 10))
    path = tmp_path / "vgg16.pt"
    save_scripted(vgg16_module(8), path)
    return path


def _compare_vgg(ours, theirs, images) -> None:
    with torch.no_grad(), torch.jit.optimized_execution(False):
        expected = theirs(images, return_features=True)
        _assert_spread(expected)
        torch.testing.assert_close(ours(images, return_features=True), expected,
                                   rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(ours(images), theirs(images), rtol=1e-5, atol=1e-7)
        floats = images.float()[:, :, :256, :256]
        lp_expected = theirs(floats, resize_images=False, return_lpips=True)
        torch.testing.assert_close(ours(floats, resize_images=False, return_lpips=True),
                                   lp_expected, rtol=1e-5, atol=1e-6)
        distances = (lp_expected - lp_expected.roll(1, 0)).square().sum(1)
        assert (distances > 1e-3).all()


def test_narrow_vgg16_equals_jit_on_photos(narrow_vgg):
    theirs = torch.jit.load(str(narrow_vgg)).eval()
    _compare_vgg(load_nvidia_vgg16(narrow_vgg), theirs, _photos(3, 300, 50))


def test_vgg16_paths_through_the_registry(narrow_vgg):
    theirs = torch.jit.load(str(narrow_vgg)).eval()
    overrides = {"vgg16-ts": narrow_vgg}
    assert lpips.preferred_source(overrides) == vgg16.TORCHSCRIPT
    used = []

    def resolve(name):
        used.append(name)
        return weights.resolve(name, overrides)

    images = _photos(3, 256, 51).float()
    distance = lpips.load_distance(resolve, lpips.preferred_source(overrides))
    with torch.no_grad(), torch.jit.optimized_execution(False):
        f0 = theirs(images, resize_images=False, return_lpips=True)
        f1 = theirs(images.roll(1, 0), resize_images=False, return_lpips=True)
        torch.testing.assert_close(distance(images, images.roll(1, 0)),
                                   (f0 - f1).square().sum(1), rtol=1e-5, atol=1e-7)
        features = vgg16.load_feature_network(resolve, vgg16.TORCHSCRIPT)
        gray = _photos(2, 90, 52)[:, :1]
        torch.testing.assert_close(features(gray), theirs(gray.repeat(1, 3, 1, 1),
                                                          return_features=True))
    assert used == ["vgg16-ts", "vgg16-ts"]


def test_vgg16_layout_errors_name_the_file(narrow_vgg):
    tensors = read_torchscript(narrow_vgg).tensors()
    with pytest.raises(WeightsError, match=r"vgg16.pt: not NVIDIA's vgg16.pt .*'layers.conv1"):
        vgg16_from_tensors(narrow_vgg, tensors)  # the published widths, not these
    negative = {**tensors, "lpips2": -tensors["lpips2"]}
    with pytest.raises(WeightsError, match="'lpips2' are negative"):
        vgg16_from_tensors(narrow_vgg, negative, NARROW_STAGES, 64, 10)


@pytest.mark.slow
def test_full_size_vgg16_equals_jit_on_photos(tmp_path):
    path = tmp_path / "vgg16.pt"
    save_scripted(vgg16_module(9, VGG_STAGES, 4096, 1000), path)
    theirs = torch.jit.load(str(path)).eval()
    _compare_vgg(load_nvidia_vgg16(path), theirs, _photos(2, 300, 53))


# ---- a hostile TorchScript file through every route -----------------------------------------

@pytest.fixture(params=["forward", "load"])
def hostile(request, tmp_path):
    """(file, marker files it writes): when run, and for "load" also when jit-loaded."""
    marker = tmp_path / "marker"
    path = tmp_path / f"hostile-{request.param}.pt"
    kind = HostileLoad if request.param == "load" else HostileForward
    torch.jit.script(kind(str(marker))).save(str(path))
    markers = [marker] + ([marker.with_name("marker.load")] if request.param == "load" else [])
    return path, markers


def test_hostile_file_really_writes_when_jit_loaded(hostile):
    """The control: what the product avoids is real (jit.load here, on our own file only)."""
    path, markers = hostile
    module = torch.jit.load(str(path))
    module(torch.zeros(1, 3, 8, 8))
    assert all(marker.exists() for marker in markers)


def test_hostile_file_never_runs_through_any_loading_route(hostile):
    path, markers = hostile
    for name in ("inception-ts", "vgg16-ts"):
        with pytest.raises(HashMismatchError, match=path.name):
            weights.import_file(name, path)
    assert not list(weights.cache_dir().glob("*.pt"))
    ctx = MetricContext(weights_overrides={"inception-ts": path}, progress=False,
                        feature_network=defaults.INCEPTION_TORCHSCRIPT)
    refusal = f"{path.name}: (not NVIDIA's|object .* has a custom state)"
    with pytest.raises(WeightsError, match=refusal):
        load_inception(ctx)  # FID, KID, IS

    def resolve(name):
        return weights.resolve(name, {"vgg16-ts": path})

    with pytest.raises(WeightsError, match=refusal):
        vgg16.load_feature_network(resolve, vgg16.TORCHSCRIPT)  # precision/recall
    with pytest.raises(WeightsError, match=refusal):
        lpips.load_distance(resolve, vgg16.TORCHSCRIPT)  # perceptual path length
    assert not any(marker.exists() for marker in markers)


def test_published_hashes_are_pinned():
    assert weights.get_entry("inception-ts").sha256 == weights.INCEPTION_TS_SHA256
    assert weights.get_entry("vgg16-ts").sha256 == weights.VGG16_TS_SHA256
    assert all(len(h) == 64 for h in (weights.INCEPTION_TS_SHA256, weights.VGG16_TS_SHA256))


def test_no_product_code_calls_torch_jit_load():
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    calls = [str(path.relative_to(root)) for package in ("ffhq_tools", "models", "eval",
                                                         "leaderboards")
             for path in (root / package).rglob("*.py")
             if "jit.load(" in path.read_text() or "jit.load (" in path.read_text()]
    assert calls == []

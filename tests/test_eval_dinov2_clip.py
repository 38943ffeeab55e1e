"""DINOv2 and CLIP encoders against independent implementations on PyPI (timm, open_clip)
with identical seeded weights, loaded through the weights registry and its SHA-256 check."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from embedding_helpers import register_file, write_clip_file, write_dinov2_file
from eval_helpers import as_batch, photos, random_crops

from eval.features import dinov2
from eval.features.embedders import load_embedder
from ffhq_tools import weights
from ffhq_tools.errors import HashMismatchError, WeightsError


def _photo_batch(count=4, size=160, seed=0):
    return as_batch(random_crops(count, size, seed, photos()))


def _timm_state(state: dict, grid: int) -> dict:
    """Our (= dinov2's) keys -> timm's: no mask token, SwiGLU w12/w3 named fc1/fc2, and the
    position embeddings resampled by DINOv2's rule (timm then uses them as they are)."""
    mapped = {key.replace("mlp.w12", "mlp.fc1").replace("mlp.w3", "mlp.fc2"): value
              for key, value in state.items() if key != "mask_token"}
    mapped["pos_embed"] = dinov2.interpolate_patch_positions(state["pos_embed"], grid,
                                                             dinov2.TRAIN_GRID)
    return mapped


def test_dinov2_vit_s_matches_timm_through_the_registry(tmp_path, monkeypatch):
    timm = pytest.importorskip("timm")
    path = write_dinov2_file(tmp_path, "dinov2-vit-s-14", seed=1)
    digest = register_file(monkeypatch, "dinov2-vit-s-14", path)
    embedder = load_embedder("dinov2-vit-s-14", weights.resolve)
    assert embedder.sha256 == digest and embedder.mode == "dgm-eval"
    reference = timm.create_model("vit_small_patch14_dinov2", pretrained=False, img_size=224,
                                  num_classes=0).eval()
    reference.load_state_dict(_timm_state(torch.load(path, weights_only=True), 16), strict=True)
    images = _photo_batch()
    ours = embedder(images)["dinov2-vit-s-14"]
    with torch.no_grad():
        theirs = reference(embedder.preprocess(images))
    assert ours.shape == (4, 384)
    assert torch.allclose(ours, theirs, atol=1e-5, rtol=0)
    assert ours.std(dim=0).mean() > 0.05  # features spread across photos: a real comparison


def test_dinov2_swiglu_block_matches_timm_giant_layout():
    timm = pytest.importorskip("timm")
    config = dinov2.VitConfig(192, 2, 3, swiglu=True)  # ViT-g's block at a test size
    state = dinov2.seeded_state_dict(config, seed=2)
    ours = dinov2.DinoV2(config)
    ours.load_state_dict(state, strict=True)
    reference = timm.create_model("vit_giant_patch14_dinov2", pretrained=False, img_size=224,
                                  num_classes=0, embed_dim=192, depth=2, num_heads=3).eval()
    reference.load_state_dict(_timm_state(state, 16), strict=True)
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.allclose(ours(x), reference(x), atol=1e-5, rtol=0)
    assert ours.blocks[0].mlp.w12.out_features == 2 * 512  # (int(768 * 2/3) + 7) // 8 * 8


def _keys_cubic(t: np.ndarray, a: float = -0.75) -> np.ndarray:
    t = np.abs(t)
    near = ((a + 2) * t - (a + 3)) * t * t + 1
    far = ((a * t - 5 * a) * t + 8 * a) * t - 4 * a
    return np.where(t <= 1, near, np.where(t < 2, far, 0.0))


def _bicubic_matrix(in_size: int, out_size: int, scale_factor: float) -> np.ndarray:
    """Rows of weights of a bicubic resize whose source position is (dst + 0.5) /
    scale_factor - 0.5 (half-pixel centres, borders clamped), from the definition."""
    matrix = np.zeros((out_size, in_size))
    for dst in range(out_size):
        src = (dst + 0.5) / scale_factor - 0.5
        base = int(np.floor(src))
        for tap in range(base - 1, base + 3):
            matrix[dst, min(max(tap, 0), in_size - 1)] += _keys_cubic(src - tap)
    return matrix


def test_position_embeddings_resampled_with_dinov2_offset_rule():
    generator = torch.Generator().manual_seed(3)
    pos = torch.randn(1, 1 + 37 * 37, 8, generator=generator)
    ours = dinov2.interpolate_patch_positions(pos, 16, 37)
    weights_1d = _bicubic_matrix(37, 16, (16 + 0.1) / 37)
    grid = pos[0, 1:].reshape(37, 37, 8).double().numpy()
    expected = np.einsum("ai,bj,ijc->abc", weights_1d, weights_1d, grid).reshape(256, 8)
    assert torch.equal(ours[0, 0], pos[0, 0])
    np.testing.assert_allclose(ours[0, 1:].numpy(), expected, atol=1e-5)
    plain = _bicubic_matrix(37, 16, 16 / 37)  # resizing to 16 x 16 is a different grid
    assert np.abs(np.einsum("ai,bj,ijc->abc", plain, plain, grid).reshape(256, 8)
                  - expected).max() > 1e-2


@pytest.mark.slow  # a full-size ViT-B/32 file is written, hashed and built twice (~30 s)
def test_clip_vit_b_32_matches_open_clip_encode_image(tmp_path, monkeypatch):
    open_clip = pytest.importorskip("open_clip")
    path, visual = write_clip_file(tmp_path, seed=3)
    register_file(monkeypatch, "clip-vit-b-32", path)
    embedder = load_embedder("clip-vit-b-32", weights.resolve)
    assert embedder.mode == "clean-fid"
    reference = open_clip.create_model("ViT-B-32", pretrained=None, quick_gelu=True).eval()
    full = reference.state_dict()
    full.update({f"visual.{key}": value for key, value in visual.items()})
    reference.load_state_dict(full, strict=True)
    images = _photo_batch(count=3, size=200, seed=1)
    ours = embedder(images)["clip-vit-b-32"]
    with torch.no_grad():
        theirs = reference.encode_image(embedder.preprocess(images))
    assert ours.shape == (3, 512)
    assert torch.allclose(ours, theirs, atol=1e-5, rtol=0)
    assert ours.std(dim=0).mean() > 0.05


def test_weights_of_another_size_or_hash_are_refused(tmp_path, monkeypatch):
    path = write_dinov2_file(tmp_path, "dinov2-vit-s-14", seed=1)
    with pytest.raises(WeightsError, match="does not fit dinov2-vit-b-14"):
        dinov2.load_dinov2(path, "dinov2-vit-b-14")
    register_file(monkeypatch, "dinov2-vit-s-14", path)
    cached = weights.expected_path("dinov2-vit-s-14")
    cached.write_bytes(cached.read_bytes()[:-1] + b"x")
    with pytest.raises(HashMismatchError, match="dinov2-vit-s-14"):
        load_embedder("dinov2-vit-s-14", weights.resolve)


def test_missing_weights_name_the_file_and_the_command():
    with pytest.raises(WeightsError) as info:
        load_embedder("dinov2-vit-l-14", weights.resolve)
    message = str(info.value)
    assert "dinov2_vitl14_pretrain.pth" in message
    assert "ffhq-tools weights import dinov2-vit-l-14" in message
    assert "https://dl.fbaipublicfiles.com/dinov2/dinov2_vitl14/" in message

"""dlib face-space metrics (the demo's offline scoring): chip geometry, descriptors, metrics."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from eval.face_space import DLIB_CHIP_BOX, DlibFaceDescriptor
from eval.registry import MetricContext, compute_metric
from ffhq_tools import weights


@pytest.fixture(scope="module")
def dlib_models():
    import dlib

    return (dlib.get_frontal_face_detector(),
            dlib.shape_predictor(str(weights.resolve("dlib-landmarks-68").path)),
            DlibFaceDescriptor(weights.resolve("dlib-face-resnet").path))


def _landmarks(detector, predictor, image):
    rects = detector(image, 1)
    shape = predictor(image, max(rects, key=lambda r: r.area()))
    return shape, np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float64)


def _ffhq_quad(lm):
    """FFHQ's oriented square (REFERENCE.md): centre c, half-axes x (right) and y (down)."""
    eye_left, eye_right = lm[36:42].mean(0), lm[42:48].mean(0)
    eye_avg, eye_to_eye = (eye_left + eye_right) / 2, eye_right - eye_left
    eye_to_mouth = (lm[48] + lm[54]) / 2 - eye_avg
    x = eye_to_eye - np.array([-eye_to_mouth[1], eye_to_mouth[0]])
    x /= np.hypot(*x)
    x *= max(np.hypot(*eye_to_eye) * 2.0, np.hypot(*eye_to_mouth) * 1.8)
    y = np.array([-x[1], x[0]])
    return eye_avg + eye_to_mouth * 0.1, x, y


def _aligned(image, lm, size=256):
    c, x, y = _ffhq_quad(lm)
    quad = np.stack([c - x - y, c - x + y, c + x + y, c + x - y])
    return np.asarray(Image.fromarray(image).transform(
        (size, size), Image.QUAD, (quad + 0.5).flatten(), Image.BILINEAR))


def _variants(astronaut):
    from skimage import transform

    yield astronaut
    for angle in (12, -9):
        rotated = transform.rotate(astronaut, angle, resize=True, mode="edge")
        yield (rotated * 255).round().astype(np.uint8)


def test_chip_box_matches_dlibs_chip_in_ffhq_coordinates(astronaut, dlib_models):
    import dlib

    detector, predictor, _ = dlib_models
    for image in _variants(astronaut):
        shape, lm = _landmarks(detector, predictor, image)
        c, x, y = _ffhq_quad(lm)
        origin, side = c - x - y, 2 * np.hypot(*x)
        chip = dlib.get_face_chip_details(shape, 150, 0.25)
        rect, angle = chip.rect, chip.angle
        centre = np.array([(rect.left() + rect.right()) / 2, (rect.top() + rect.bottom()) / 2])
        rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
        half = rect.width() / 2
        corners = [centre + rot @ np.array([-half, -half]), centre + rot @ np.array([half, half])]
        unit = [((p - origin) @ x / np.hypot(*x) / side, (p - origin) @ y / np.hypot(*y) / side)
                for p in corners]
        derived = (unit[0][0], unit[0][1], unit[1][0], unit[1][1])
        assert derived == pytest.approx(DLIB_CHIP_BOX, abs=0.01)
        assert np.degrees(angle) == pytest.approx(np.degrees(np.arctan2(x[1], x[0])), abs=1.0)


def test_descriptor_of_an_aligned_face_matches_dlibs_own_chip(astronaut, dlib_models):
    detector, predictor, extractor = dlib_models
    shape, lm = _landmarks(detector, predictor, astronaut)
    reference = np.asarray(extractor.model.compute_face_descriptor(astronaut, shape))
    aligned = _aligned(astronaut, lm)
    ours = extractor(aligned.transpose(2, 0, 1)[None])[0]
    other = extractor(aligned[::-1].transpose(2, 0, 1)[None])[0]  # upside down: far away
    assert np.linalg.norm(ours - reference) < 0.25  # dlib's same-person threshold is 0.6
    assert np.linalg.norm(other - reference) > 2 * np.linalg.norm(ours - reference)


class ReplayGenerator(torch.nn.Module):
    """Follows the G contract; 'generates' fixed images (chosen by z) in [-1, 1]."""

    def __init__(self, images: np.ndarray, noise: float = 0.0):
        super().__init__()
        self.z_dim, self.c_dim, self.w_dim, self.img_channels = 4, 0, 4, 3
        self.img_resolution = images.shape[-1]
        self.register_buffer("bank", torch.from_numpy(images).float() / 127.5 - 1)
        self.noise = noise

    def forward(self, z, c=None, truncation_psi=1.0, noise_mode="random"):
        index = (z[:, 0].abs() * 1000).long() % len(self.bank)
        images = self.bank[index]
        return images + self.noise * torch.randn_like(images)


@pytest.fixture(scope="module")
def aligned_bank(astronaut, dlib_models):
    detector, predictor, _ = dlib_models
    faces = []
    for image in _variants(astronaut):
        _, lm = _landmarks(detector, predictor, image)
        for shift in (0, 3):
            face = _aligned(image, lm, 64)
            faces.append(np.roll(face, shift, axis=1).transpose(2, 0, 1))
            faces.append(face[:, ::-1].transpose(2, 0, 1))
    return np.ascontiguousarray(np.stack(faces))


@pytest.mark.slow
def test_face_metrics_through_the_registry(aligned_bank, tmp_path, monkeypatch):
    real = tmp_path / "real"
    real.mkdir()
    for i, face in enumerate(aligned_bank):
        Image.fromarray(face.transpose(1, 2, 0)).save(real / f"{i:03d}.png")

    calls = []
    original = DlibFaceDescriptor.__call__

    def counting(self, images):
        calls.append(len(images))
        return original(self, images)

    monkeypatch.setattr(DlibFaceDescriptor, "__call__", counting)

    def run(metric, G):
        ctx = MetricContext(generator=G, data=real, num_gen=12, max_real=100, batch_size=12,
                            progress=False)
        return compute_metric(metric, ctx)

    clean, noisy = ReplayGenerator(aligned_bank), ReplayGenerator(aligned_bank, noise=0.6)
    same = run("fd_dlib_face", clean)
    assert same["protocol"]["num_real"] == len(aligned_bank) and same["protocol"]["num_gen"] == 12
    assert same["weights"] == {"dlib-face-resnet": weights.resolve("dlib-face-resnet").sha256}
    pr = run("pr_dlib_face", clean)["results"]
    assert sum(calls) == len(aligned_bank) + 12  # pr reused fd's features
    assert pr["pr_dlib_face_precision"] == 1.0
    assert run("fd_dlib_face", noisy)["results"]["fd_dlib_face"] > \
        5 * same["results"]["fd_dlib_face"]
    assert run("pr_dlib_face", noisy)["results"]["pr_dlib_face_precision"] < 0.5
    assert sum(calls) == len(aligned_bank) + 24  # reals extracted once, each generator once
    with torch.no_grad():
        noisy.bank.add_(0.01)  # trained further in place: features must be recomputed
    run("fd_dlib_face", noisy)
    assert sum(calls) == len(aligned_bank) + 36

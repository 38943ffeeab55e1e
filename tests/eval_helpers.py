"""Shared helpers for the eval tests: photo-derived image folders and an architecture-exact
FID Inception with seeded random weights whose BatchNorm is calibrated on real photos (so
features spread), saved in pytorch-fid's file format. Imported by tests/test_eval_*.py."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

INCEPTION_FILENAME = "pt_inception-2015-12-05-6726825d.pth"
PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry", "cat")


def photos() -> list[np.ndarray]:
    from skimage import data

    return [getattr(data, name)() for name in PHOTOS]


def random_crops(count: int, size: int, seed: int, sources: list[np.ndarray]) -> list[np.ndarray]:
    """`count` random square crops of the photos, resized to `size` (PIL bicubic)."""
    rng = np.random.default_rng(seed)
    crops = []
    for _ in range(count):
        photo = sources[rng.integers(len(sources))]
        side = int(rng.integers(min(photo.shape[:2]) // 4, min(photo.shape[:2]) + 1))
        top = int(rng.integers(0, photo.shape[0] - side + 1))
        left = int(rng.integers(0, photo.shape[1] - side + 1))
        crop = Image.fromarray(photo[top:top + side, left:left + side])
        crops.append(np.asarray(crop.resize((size, size), Image.Resampling.BICUBIC)))
    return crops


def write_folder(folder: Path, images: list[np.ndarray]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i, image in enumerate(images):
        Image.fromarray(image).save(folder / f"{i:05d}.png")
    return folder


def as_batch(images: list[np.ndarray]) -> torch.Tensor:
    return torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).contiguous()


def make_inception_file(folder: Path, seed: int = 7, calibration_images: int = 8) -> Path:
    """Random FID Inception, BatchNorm calibrated on photo crops, saved as pytorch-fid's file."""
    from eval.features.inception import random_calibrated
    from eval.features.preprocess import preprocess

    crops = random_crops(calibration_images, 64, seed + 1000, photos())
    model = random_calibrated(seed, preprocess(as_batch(crops), "tf"))
    path = folder / INCEPTION_FILENAME
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), path)
    return path


_SHARED: dict[str, Path] = {}  # weights files made once per test session


def seeded_inception_file(tmp_path_factory) -> Path:
    """The architecture-exact FID Inception with default initialisation after
    torch.manual_seed(0), uncalibrated (its features barely spread: for plumbing tests).
    One file per test session, made without touching the global RNG."""
    from eval.features.inception import FIDInception

    if "seeded" not in _SHARED:
        path = tmp_path_factory.mktemp("raw") / INCEPTION_FILENAME
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            torch.save(FIDInception().state_dict(), path)
        _SHARED["seeded"] = path
    return _SHARED["seeded"]


class MomentExtractor:
    """Any image size -> 2048 "features" projected from per-channel moments: a fast,
    size-agnostic stand-in with the Inception extractor's call contract."""

    def __init__(self, sha256: str, seed: int):
        self.sha256 = sha256
        self.project = torch.randn(9, 2048, generator=torch.Generator().manual_seed(seed))

    def __call__(self, batch, want_probs=False):
        x = batch.double() / 255
        moments = torch.cat([x.mean((2, 3)), x.std((2, 3)), x[:, :, :, :2].mean((2, 3))], 1)
        pool = (moments @ self.project.double()).float()
        return pool, torch.softmax(pool[:, :1008].double(), 1) if want_probs else None


def shared_inception_file(tmp_path_factory) -> Path:
    """One calibrated network per test session (calibration is the slow part)."""
    if "inception" not in _SHARED:
        _SHARED["inception"] = make_inception_file(tmp_path_factory.mktemp("inception"))
    return _SHARED["inception"]


class LinearTanhG(torch.nn.Module):
    """The generator contract at its smallest: z (8-d) -> tanh(linear) image, no truncation or
    noise; weights from `seed` (or the global RNG)."""

    def __init__(self, resolution: int = 16, seed: int | None = None):
        super().__init__()
        if seed is not None:
            torch.manual_seed(seed)
        self.z_dim, self.c_dim, self.w_dim, self.num_ws = 8, 0, 8, 1
        self.img_resolution, self.img_channels = resolution, 3
        self.fc = torch.nn.Linear(8, 3 * resolution * resolution)

    def forward(self, z, c=None, truncation_psi=1.0, truncation_cutoff=None,
                noise_mode="random"):
        r = self.img_resolution
        return torch.tanh(self.fc(z)).view(-1, 3, r, r)

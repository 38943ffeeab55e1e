"""FFHQ's oriented crop quad and the shrink / crop / pad plan both warp implementations share.

Coordinates are PIL's: x right, y down, pixel centres at integer + 0.5 (the FFHQ script adds
0.5 to the quad before its QUAD transform). Every step reproduces NVlabs' recreate_aligned_images.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ffhq_tools.errors import FfhqToolsError


@dataclass(frozen=True)
class AlignOptions:
    """Options of the FFHQ procedure (defaults = FFHQ; the FFHQ-U variant sets the last four)."""

    output_size: int = 1024
    transform_size: int = 4096
    enable_padding: bool = True
    rotate_level: bool = True
    random_shift: float = 0.0
    retry_crops: bool = False

    def __post_init__(self):
        sizes = (("--size", self.output_size), ("--transform-size", self.transform_size))
        for flag, value in sizes:
            if value < 4 or value & (value - 1):
                raise FfhqToolsError(f"{flag} {value}: expected a power of two >= 4")
        if self.transform_size < self.output_size:
            raise FfhqToolsError(f"--transform-size {self.transform_size} is smaller than "
                                 f"--size {self.output_size}")
        if self.random_shift < 0:
            raise FfhqToolsError(f"--random-shift {self.random_shift}: must be >= 0")


@dataclass(frozen=True)
class FaceFrame:
    """The oriented square FFHQ crops: centre c0, half-axes x and y (|x| = |y| = qsize / 2)."""

    c0: np.ndarray
    x: np.ndarray
    y: np.ndarray

    def quad(self, center: np.ndarray | None = None) -> np.ndarray:
        c = self.c0 if center is None else center
        return np.stack([c - self.x - self.y, c - self.x + self.y,
                         c + self.x + self.y, c + self.x - self.y])

    @property
    def qsize(self) -> float:
        return float(np.hypot(*self.x) * 2)


def face_frame(landmarks: np.ndarray, rotate_level: bool = True) -> FaceFrame:
    """FFHQ's frame from 68 iBUG landmarks (0-based): eyes 36-41 / 42-47, mouth corners 48, 54."""
    lm = np.asarray(landmarks, dtype=np.float64)
    if lm.shape != (68, 2) or not np.all(np.isfinite(lm)):
        raise FfhqToolsError(f"landmarks: expected 68 finite (x, y) points, got shape {lm.shape}")
    eye_left = lm[36:42].mean(axis=0)
    eye_right = lm[42:48].mean(axis=0)
    eye_avg = (eye_left + eye_right) * 0.5
    eye_to_eye = eye_right - eye_left
    mouth_avg = (lm[48] + lm[54]) * 0.5
    eye_to_mouth = mouth_avg - eye_avg
    scale = max(np.hypot(*eye_to_eye) * 2.0, np.hypot(*eye_to_mouth) * 1.8)
    if rotate_level:
        x = eye_to_eye - np.array([-eye_to_mouth[1], eye_to_mouth[0]])
        norm = np.hypot(*x)
        if norm == 0:
            raise FfhqToolsError("landmarks: degenerate face (eyes and mouth coincide)")
        x = x / norm * scale
    else:
        x = np.array([1.0, 0.0]) * scale
    y = np.array([-x[1], x[0]])
    return FaceFrame(c0=eye_avg + eye_to_mouth * 0.1, x=x, y=y)


def _bbox(quad: np.ndarray) -> tuple[int, int, int, int]:
    return (int(np.floor(quad[:, 0].min())), int(np.floor(quad[:, 1].min())),
            int(np.ceil(quad[:, 0].max())), int(np.ceil(quad[:, 1].max())))


def choose_quad(frame: FaceFrame, image_size: tuple[int, int], options: AlignOptions,
                rng: np.random.RandomState | None) -> np.ndarray | None:
    """The crop quad; with --random-shift draws shifted centres (None: every retry fell outside)."""
    if options.random_shift == 0:
        return frame.quad()
    if rng is None:
        raise FfhqToolsError("--random-shift needs a seeded random generator")
    width, height = image_size
    for _ in range(1000):
        center = frame.c0 + frame.qsize * options.random_shift * rng.normal(0, 1, 2)
        quad = frame.quad(center)
        left, top, right, bottom = _bbox(quad)
        outside = left < 0 or top < 0 or right >= width or bottom >= height
        if not options.retry_crops or not outside:
            return quad
    return None


@dataclass(frozen=True)
class WarpPlan:
    """What to do to the source before the QUAD transform, in FFHQ's order.

    shrink: integer factor (1 = none) and the shrunk size; crop: box in shrunk coordinates or
    None; pad: (left, top, right, bottom) or None; quad: the final quad in the prepared image.
    """

    shrink: int
    shrunk_size: tuple[int, int]
    crop: tuple[int, int, int, int] | None
    pad: tuple[int, int, int, int] | None
    quad: np.ndarray
    qsize: float


def plan_warp(quad: np.ndarray, image_size: tuple[int, int], options: AlignOptions) -> WarpPlan:
    quad = np.array(quad, dtype=np.float64)
    qsize = float(np.hypot(*(quad[3] - quad[0])))
    width, height = image_size
    shrink = int(np.floor(qsize / options.output_size * 0.5))
    if shrink > 1:
        width, height = int(np.rint(float(width) / shrink)), int(np.rint(float(height) / shrink))
        quad /= shrink
        qsize /= shrink
    else:
        shrink = 1
    shrunk_size = (width, height)

    border = max(int(np.rint(qsize * 0.1)), 3)
    left, top, right, bottom = _bbox(quad)
    crop = (max(left - border, 0), max(top - border, 0),
            min(right + border, width), min(bottom + border, height))
    if crop[2] - crop[0] < width or crop[3] - crop[1] < height:
        quad -= crop[0:2]
        width, height = crop[2] - crop[0], crop[3] - crop[1]
    else:
        crop = None

    left, top, right, bottom = _bbox(quad)
    pad = (max(-left + border, 0), max(-top + border, 0),
           max(right - width + border, 0), max(bottom - height + border, 0))
    if options.enable_padding and max(pad) > border - 4:
        pad = tuple(int(p) for p in np.maximum(pad, int(np.rint(qsize * 0.3))))
        quad += pad[:2]
    else:
        pad = None
    return WarpPlan(shrink, shrunk_size, crop, pad, quad, qsize)


def pad_weights(height: int, width: int,
                pad: tuple[int, int, int, int]) -> tuple[np.ndarray, np.ndarray]:
    """FFHQ's blend mask is max(across, down): across (1, W, 1) and down (H, 1, 1), each 1 at
    the padded edge and falling inwards (negative deep inside). Same dtypes as the FFHQ script
    (float32 coordinates over int64 pads, hence float64)."""
    y, x, _ = np.ogrid[:height, :width, :1]
    left, top, right, bottom = (np.int64(p) for p in pad)  # all > 0 (at least 0.3 qsize)
    horizontal = np.minimum(np.float32(x) / left, np.float32(width - 1 - x) / right)
    vertical = np.minimum(np.float32(y) / top, np.float32(height - 1 - y) / bottom)
    return 1.0 - horizontal, 1.0 - vertical


def pad_mask(height: int, width: int, pad: tuple[int, int, int, int]) -> np.ndarray:
    """FFHQ's blend mask (H, W, 1): 0 deep inside, rising to 1 at the padded edges."""
    return np.maximum(*pad_weights(height, width, pad))

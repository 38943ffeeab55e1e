"""Face detection on a bounded copy of a large photo.

Detectors scale with the pixels they see (dlib HOG upsamples once: a 12000x12000 photo becomes
576 Mpx and 7.5 GB). A photo over MAX_DETECTION_PIXELS is detected on `Image.reduce(f)`, the
smallest integer box-average that brings it under the bound, and every coordinate is mapped
back exactly: reduced pixel i averages full pixels f*i .. f*i + f - 1, so its centre is
f*i + (f - 1) / 2. Backends that can (dlib's 68-point predictor) then place the landmarks again
on a full-resolution crop around each mapped box, so the landmarks keep full precision.
Faces narrower than about 40 * f full pixels are below what the detector sees in the copy.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image

from ffhq_tools.align.landmarks import Detector, Face

MAX_DETECTION_PIXELS = 4096 * 4096


def detection_factor(size: tuple[int, int], max_pixels: int = MAX_DETECTION_PIXELS) -> int:
    """The smallest integer f with ceil(w / f) * ceil(h / f) <= max_pixels."""
    width, height = size
    factor = max(1, math.ceil(math.sqrt(width * height / max_pixels)))
    while math.ceil(width / factor) * math.ceil(height / factor) > max_pixels:
        factor += 1
    return factor


def to_full_resolution(points: np.ndarray, factor: int) -> np.ndarray:
    """Reduced-copy pixel coordinates -> full-resolution pixel coordinates."""
    return np.asarray(points, dtype=np.float64) * factor + (factor - 1) / 2.0


def _scaled(face: Face, factor: int) -> Face:
    corners = to_full_resolution(np.reshape(face.rect, (2, 2)), factor)
    return Face(tuple(float(v) for v in corners.ravel()), face.score,
                to_full_resolution(face.landmarks, factor))


def detect_bounded(detector: Detector, image: Image.Image,
                   max_pixels: int = MAX_DETECTION_PIXELS) -> list[Face]:
    """`detector.detect` on a copy of at most `max_pixels`, in full-resolution coordinates."""
    factor = detection_factor(image.size, max_pixels)
    if factor == 1:
        return detector.detect(np.asarray(image))
    found = detector.detect(np.asarray(image.reduce(factor)))
    return [detector.refine(image, _scaled(face, factor)) for face in found]

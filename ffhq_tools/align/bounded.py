"""Face detection on a bounded copy of a large photo.

Detectors scale with the pixels they see (dlib HOG upsamples once: a 12000x12000 photo becomes
576 Mpx and 7.5 GB). A photo over MAX_DETECTION_PIXELS is detected on `Image.reduce(f)`, the
smallest integer box-average that brings it under the bound, and every coordinate is mapped
back exactly: reduced pixel i averages full pixels f*i .. f*i + f - 1, so its centre is
f*i + (f - 1) / 2. Backends that can (dlib's 68-point predictor) then place the landmarks again
on a full-resolution crop around each mapped box, so the landmarks keep full precision.
Faces narrower than about 40 * f full pixels are below what the detector sees in the copy.

Such a photo, when it is a PNG that `banded_png` can read in bands, is never decoded whole:
the reduced copy is built band by band, and each face's warp reads only its FFHQ crop box
(`warp_source`). A face so large that FFHQ shrinks the whole photo first (quad over 4x the
output size) is the one case that still decodes the whole photo, under --max-pixels.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
from PIL import Image

from ffhq_tools.align.landmarks import Detector, Face
from ffhq_tools.align.quad import WarpPlan
from ffhq_tools.banded_png import BandedPng
from ffhq_tools.images import check_pixel_count, decode_image, read_image_bytes

MAX_DETECTION_PIXELS = 4096 * 4096
Photo = Image.Image | BandedPng


def open_photo(path: str | Path, max_pixels: int, name: str) -> Photo:
    """The photo at `path`: a BandedPng when it is a band-readable PNG of more than
    MAX_DETECTION_PIXELS, else the decoded RGB image (`images.open_image`)."""
    data = read_image_bytes(path, name)
    if data[12:16] == b"IHDR":
        size = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
        if size[0] * size[1] > MAX_DETECTION_PIXELS:
            check_pixel_count(size, max_pixels, name)
            banded = BandedPng.parse(data, name)
            if banded is not None:
                return banded
    return decode_image(data, max_pixels, name)


def warp_source(photo: Photo, plan: WarpPlan) -> tuple[Image.Image, WarpPlan]:
    """The pixels a warp reads and the plan in their coordinates: the photo itself, or for a
    BandedPng without shrink only its crop box (the plan's crop then already done)."""
    if isinstance(photo, Image.Image):
        return photo, plan
    if plan.shrink == 1 and plan.crop is not None:
        left, top, right, bottom = plan.crop
        return photo.crop(plan.crop), dataclasses.replace(
            plan, crop=None, shrunk_size=(right - left, bottom - top))
    return photo.full(), plan


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


def detect_bounded(detector: Detector, image: Photo, max_pixels: int | None = None,
                   refine: bool = True) -> list[Face]:
    """`detector.detect` on a copy of at most `max_pixels` (MAX_DETECTION_PIXELS), in
    full-resolution coordinates; `refine=False` leaves the landmarks mapped from the copy, for
    `refine_faces` on the faces kept (each refinement reads a full-resolution region)."""
    factor = detection_factor(image.size, max_pixels or MAX_DETECTION_PIXELS)
    if factor == 1:
        return detector.detect(np.asarray(image if isinstance(image, Image.Image)
                                          else image.full()))
    found = [_scaled(face, factor) for face in detector.detect(np.asarray(image.reduce(factor)))]
    return refine_faces(detector, image, found, max_pixels) if refine else found


def refine_faces(detector: Detector, image: Photo, faces: list[Face],
                 max_pixels: int | None = None) -> list[Face]:
    """The landmarks of faces from `detect_bounded(..., refine=False)` placed again at full
    resolution when they were found on a reduced copy."""
    if detection_factor(image.size, max_pixels or MAX_DETECTION_PIXELS) == 1:
        return faces
    return [detector.refine(image, face) for face in faces]

"""Alignment at 1024 output: `--method fast` against `--method reference` (the FFHQ script's
PIL/SciPy steps) on the same ~3000x2000 photos and the same landmarks, in this process: a smooth
one (an upscaled photo) and sharp mosaics, where `fast` recomputes many tiles exactly.

Runs alternate (reference, fast, reference, ...) so machine load hits both alike; medians are
reported with the ratio, and the pixel agreement of the two outputs. Both run on one core
(PIL is single-threaded; `warp_fast` pins torch to one thread: use `align --workers`)."""

from __future__ import annotations

import statistics
import time

import numpy as np
from PIL import Image
from skimage import data

from ffhq_tools.align.fast import intermediate_size, warp_fast
from ffhq_tools.align.landmarks import make_detector, select_faces
from ffhq_tools.align.quad import AlignOptions, face_frame, plan_warp
from ffhq_tools.align.reference import warp_reference

REPEATS = 5


def photo_3000x2000() -> tuple[Image.Image, np.ndarray]:
    """skimage's astronaut upscaled x4 inside a 3000x2000 frame (face quad ~700 px)."""
    astronaut = data.astronaut()
    faces = select_faces(make_detector("dlib").detect(astronaut), min_score=0.5)
    big = Image.fromarray(astronaut).resize((2048, 2048), Image.LANCZOS)
    canvas = Image.new("RGB", (3000, 2000), (40, 60, 80))
    canvas.paste(big.crop((0, 0, 2048, 2000)), (476, 0))
    return canvas, faces[0].landmarks * 4 + [476, 0]


def sharp_3000x2000(face_scale: float, at_top: bool = False) -> tuple[Image.Image, np.ndarray]:
    """A 3000x2000 mosaic of skimage's photos at their native (sharp) resolution, with the
    astronaut Lanczos-upscaled by face_scale in the middle (or cut by the top edge, which makes
    the FFHQ procedure pad): many strong edges near the face."""
    astronaut = data.astronaut()
    faces = select_faces(make_detector("dlib").detect(astronaut), min_score=0.5)
    canvas = Image.new("RGB", (3000, 2000))
    for k, name in enumerate(("coffee", "chelsea", "rocket", "coffee", "chelsea", "rocket")):
        pixels = getattr(data, name)()
        canvas.paste(Image.fromarray(pixels).resize((1000, 1000), Image.LANCZOS),
                     (1000 * (k % 3), 1000 * (k // 3)))
    size = round(512 * face_scale)
    corner = np.array([1500 - size // 2, -size // 6 if at_top else 1000 - size // 2])
    canvas.paste(Image.fromarray(astronaut).resize((size, size), Image.LANCZOS), tuple(corner))
    return canvas, faces[0].landmarks * (size / 512) + corner


def timed(function) -> tuple[float, np.ndarray]:
    start = time.perf_counter()
    result = function()
    return time.perf_counter() - start, result


def compare(name: str, image: Image.Image, landmarks: np.ndarray) -> None:
    options = AlignOptions(output_size=1024, transform_size=4096)
    plan = plan_warp(face_frame(landmarks).quad(), image.size, options)
    warp_fast(image, plan, options)  # warm-up (imports, allocator)
    reference_times, fast_times = [], []
    for _ in range(REPEATS):
        seconds, reference = timed(lambda: warp_reference(image, plan, options))
        reference_times.append(seconds)
        seconds, fast = timed(lambda: warp_fast(image, plan, options))
        fast_times.append(seconds)
    diff = np.abs(fast.astype(int) - reference)
    ref, ours = statistics.median(reference_times), statistics.median(fast_times)
    print(f"{name}: qsize {plan.qsize:.0f}, intermediate {intermediate_size(plan.qsize, options)}"
          f": reference {ref:.3f} s, fast {ours:.3f} s -> "
          f"{ref / ours:.2f}x; agreement max {diff.max()} mean {diff.mean():.3f}", flush=True)


def main() -> None:
    image, landmarks = photo_3000x2000()
    image.load()
    compare("3000x2000 photo", image, landmarks)
    for face_scale in (1.5, 3.0):
        compare(f"3000x2000 sharp mosaic, face x{face_scale}", *sharp_3000x2000(face_scale))
    compare("3000x2000 sharp mosaic, face x3.0 cut by the top edge (padded)",
            *sharp_3000x2000(3.0, at_top=True))
    camera = Image.fromarray(np.stack([data.camera()] * 3, axis=-1))
    centred = landmarks - [476, 0] - (landmarks - [476, 0]).mean(axis=0)
    compare("512x512 sharp photo (camera), face quad 608 px, padded: the worst case seen",
            camera, centred * 3.5 / 4 + 256)
    large = Image.fromarray(data.astronaut()).resize((4096, 4096), Image.BILINEAR)
    compare("4096x4096 photo, large face (PIL's warp)", large, (landmarks - [476, 0]) * 2)


if __name__ == "__main__":
    main()

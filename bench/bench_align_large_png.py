"""Peak memory and time of aligning one face in a 12000x12000 PNG (1.8 MB on disk, 432 MB of
pixels): read in bands (`ffhq_tools.align.bounded.open_photo`, what `align` does) against the
whole decode (`images.open_image`, as the FFHQ script and a plain PIL pipeline decode it),
each in a fresh spawned process, given landmarks so detection does not dominate. Both must
give the same pixels; the ratio of the peaks is printed."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image
from skimage import data

from bench.memory import in_spawned_child

OFFSET = (5000, 7000)


def write_photo(folder: Path) -> tuple[Path, np.ndarray]:
    from ffhq_tools.align.landmarks import make_detector, select_faces

    astronaut = data.astronaut()
    face = select_faces(make_detector("dlib").detect(astronaut), min_score=0.5)[0]
    canvas = Image.new("RGB", (12000, 12000), (96, 120, 150))
    canvas.paste(Image.fromarray(astronaut).resize((1024, 1024), Image.LANCZOS), OFFSET)
    path = folder / "huge.png"
    canvas.save(path)
    return path, face.landmarks * 2 + OFFSET


def _align(path: Path, landmarks: np.ndarray, banded: bool, queue) -> None:
    import resource

    from ffhq_tools.align import align_image
    from ffhq_tools.align.bounded import open_photo
    from ffhq_tools.images import open_image

    start = time.perf_counter()
    photo = open_photo(path, 10**9, path.name) if banded else open_image(path, 10**9)
    aligned, _ = align_image(photo, landmarks)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    queue.put((type(photo).__name__, peak, time.perf_counter() - start, aligned))


def main() -> None:
    with tempfile.TemporaryDirectory(dir=".") as folder:
        path, landmarks = write_photo(Path(folder))
        runs = {name: in_spawned_child(_align, path, landmarks, name == "banded")
                for name in ("whole", "banded")}
    for name, (kind, peak, seconds, _) in runs.items():
        print(f"{name:>6} ({kind}): peak {peak:.2f} GiB, {seconds:.1f} s")
    same = np.array_equal(runs["whole"][3], runs["banded"][3])
    print(f"peak ratio whole / banded: {runs['whole'][1] / runs['banded'][1]:.2f}x; "
          f"identical pixels: {same}")

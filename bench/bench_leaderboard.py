"""Face-space features for the offline demo metrics: ours vs dlib's own face-chip path.

Ours (eval.face_space): FFHQ-aligned images -> one fixed crop -> 150x150 chips -> dlib's
face-recognition ResNet in batches. Baseline: what dlib's documentation does per image - HOG
face detection, 68-point landmarks, `compute_face_descriptor(img, shape)` (its own chip).
Same images (aligned astronaut variants at 256 px: shifts and colour changes), same network,
one process. Also printed: how often the baseline finds a face at all, and how far apart the
two descriptors are.
"""

from __future__ import annotations

import time

import numpy as np

NUM_IMAGES = 48
SIZE = 256


def _aligned_faces(num: int, size: int) -> np.ndarray:
    """FFHQ-aligned astronaut faces under shifts and colour changes (uint8 NCHW).

    Landmarks are detected once; a shifted photo's landmarks are the same points shifted.
    """
    from PIL import Image
    from skimage import data

    from ffhq_tools.align import AlignOptions, align_image
    from ffhq_tools.align.landmarks import make_detector

    photo = data.astronaut()
    landmarks = max(make_detector("dlib").detect(photo), key=lambda f: f.size).landmarks
    options = AlignOptions(output_size=size, transform_size=2 * size)
    rng = np.random.default_rng(0)
    faces = []
    for _ in range(num):
        dy, dx = rng.integers(-20, 21, size=2)
        shifted = np.roll(photo, (dy, dx), axis=(0, 1)).astype(np.float64)
        shifted = np.clip(shifted * rng.uniform(0.85, 1.1, size=3), 0, 255).astype(np.uint8)
        aligned, _ = align_image(Image.fromarray(shifted), landmarks + [dx, dy], options)
        faces.append(aligned.transpose(2, 0, 1))
    return np.stack(faces)


def _ours(extractor, faces: np.ndarray) -> tuple[np.ndarray, float]:
    start = time.perf_counter()
    features = np.concatenate([extractor(faces[i:i + 16]) for i in range(0, len(faces), 16)])
    return features, time.perf_counter() - start


def _dlib_path(extractor, faces: np.ndarray) -> tuple[list, float]:
    import dlib

    from ffhq_tools import weights

    detector = dlib.get_frontal_face_detector()
    predictor = dlib.shape_predictor(str(weights.resolve("dlib-landmarks-68").path))
    start = time.perf_counter()
    out = []
    for face in faces:
        image = np.ascontiguousarray(face.transpose(1, 2, 0))
        rects = detector(image, 1)
        if not rects:
            out.append(None)
            continue
        shape = predictor(image, max(rects, key=lambda r: r.area()))
        out.append(np.asarray(extractor.model.compute_face_descriptor(image, shape)))
    return out, time.perf_counter() - start


def main() -> None:
    from eval.face_space import DlibFaceDescriptor
    from ffhq_tools import weights

    faces = _aligned_faces(NUM_IMAGES, SIZE)
    extractor = DlibFaceDescriptor(weights.resolve("dlib-face-resnet").path)
    extractor(faces[:2])  # warm-up
    ours, t_ours = _ours(extractor, faces)
    theirs, t_theirs = _dlib_path(extractor, faces)
    found = [i for i, f in enumerate(theirs) if f is not None]
    gaps = [np.linalg.norm(ours[i] - theirs[i]) for i in found]
    print(f"images: {NUM_IMAGES} aligned faces at {SIZE}px")
    print(f"ours (fixed crop, batched): {NUM_IMAGES / t_ours:.1f} img/s")
    print(f"dlib detect + landmarks + chip: {NUM_IMAGES / t_theirs:.1f} img/s; "
          f"faces found {len(found)}/{NUM_IMAGES}")
    print(f"speed ratio ours / dlib path: {t_theirs / t_ours:.2f}x")
    if gaps:
        print(f"descriptor distance ours vs dlib chip: median {np.median(gaps):.3f}, "
              f"max {np.max(gaps):.3f} (dlib's same-person threshold: 0.6)")


if __name__ == "__main__":
    main()

"""Face detection + 68-point iBUG landmarks: dlib HOG (FFHQ's choice), dlib MMOD CNN,
face-alignment (FAN + S3FD, optional) and landmarks given in a file.

Every network file comes from the weights registry (SHA-256 verified, offline-friendly) and is
recorded in each align.jsonl line. Scores are the detector's own: dlib HOG's SVM margin (the
false face skimage's astronaut shows on her suit patch scores 0.12, her face 1.16), MMOD's
confidence, S3FD's probability; `--min-score` filters on them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ffhq_tools import weights
from ffhq_tools.errors import FfhqToolsError

BACKENDS = ("dlib", "dlib-cnn", "face-alignment", "given")
REFINE_MARGIN = 0.5  # context around a box for the landmark predictor, in box sides
DEFAULT_MIN_SCORE = {"dlib": 0.5, "dlib-cnn": 0.5, "face-alignment": 0.9, "given": float("-inf")}


@dataclass(frozen=True)
class Face:
    rect: tuple[float, float, float, float]  # left, top, right, bottom (pixels)
    score: float
    landmarks: np.ndarray  # (68, 2) float, x then y

    @property
    def size(self) -> float:
        """Side of the detection box (the `--min-face` measure)."""
        return float(min(self.rect[2] - self.rect[0], self.rect[3] - self.rect[1]))


@dataclass
class Detector:
    """A landmark backend: `detect(rgb HWC uint8) -> [Face]` plus the provenance of its files."""

    name: str
    models: dict[str, str] = field(default_factory=dict)  # registry name -> sha256

    def detect(self, image: np.ndarray) -> list[Face]:
        raise NotImplementedError

    def refine(self, image, face: Face) -> Face:
        """Landmarks placed again on the full-resolution PIL `image` around `face.rect` (a face
        found on a reduced copy); backends without a separate landmark step keep the mapped
        ones."""
        return face


def _shape_to_array(shape) -> np.ndarray:
    return np.array([[p.x, p.y] for p in shape.parts()], dtype=np.float64)


class DlibHogDetector(Detector):
    """dlib's HOG frontal face detector (upsampled `upsample` times) + the 68-point predictor."""

    def __init__(self, overrides: dict[str, Path] | None = None, upsample: int = 1):
        import dlib

        predictor = weights.resolve("dlib-landmarks-68", overrides)
        super().__init__("dlib", {predictor.name: predictor.sha256})
        self.upsample = upsample
        self._detector = dlib.get_frontal_face_detector()
        self._predictor = dlib.shape_predictor(str(predictor.path))

    def _rects(self, image: np.ndarray):
        rects, scores, _ = self._detector.run(image, self.upsample, -0.5)
        return list(zip(rects, scores, strict=True))

    def detect(self, image: np.ndarray) -> list[Face]:
        image = np.ascontiguousarray(image)
        faces = []
        for rect, score in self._rects(image):
            shape = self._predictor(image, rect)
            faces.append(Face((rect.left(), rect.top(), rect.right(), rect.bottom()),
                              float(score), _shape_to_array(shape)))
        return faces

    def refine(self, image, face: Face) -> Face:
        import dlib

        left, top, right, bottom = face.rect
        margin = REFINE_MARGIN * max(right - left, bottom - top)
        x0, y0 = max(0, int(left - margin)), max(0, int(top - margin))
        x1 = min(image.width, int(math.ceil(right + margin)) + 1)
        y1 = min(image.height, int(math.ceil(bottom + margin)) + 1)
        crop = np.ascontiguousarray(np.asarray(image.crop((x0, y0, x1, y1))))
        rect = dlib.rectangle(round(left) - x0, round(top) - y0, round(right) - x0,
                              round(bottom) - y0)
        landmarks = _shape_to_array(self._predictor(crop, rect)) + (x0, y0)
        return Face(face.rect, face.score, landmarks)


class DlibCnnDetector(DlibHogDetector):
    """dlib's MMOD CNN face detector (face_recognition_models) + the 68-point predictor."""

    def __init__(self, overrides: dict[str, Path] | None = None, upsample: int = 1):
        import dlib

        super().__init__(overrides, upsample)
        mmod = weights.resolve("dlib-mmod", overrides)
        self.name = "dlib-cnn"
        self.models[mmod.name] = mmod.sha256
        self._cnn = dlib.cnn_face_detection_model_v1(str(mmod.path))

    def _rects(self, image: np.ndarray):
        return [(d.rect, d.confidence) for d in self._cnn(image, self.upsample)]


class FaceAlignmentDetector(Detector):
    """face-alignment's S3FD detector + 2D-FAN-4, both loaded from the weights registry."""

    def __init__(self, overrides: dict[str, Path] | None = None, device: str = "cpu"):
        try:
            import face_alignment  # noqa: F401
        except ImportError as exc:
            raise FfhqToolsError("--landmarks face-alignment needs the optional package: "
                                 "pip install face-alignment") from exc
        fan = weights.resolve("fan-2d", overrides)
        s3fd = weights.resolve("s3fd", overrides)
        super().__init__("face-alignment", {fan.name: fan.sha256, s3fd.name: s3fd.sha256})
        self._model = _registry_face_alignment(fan.path, s3fd.path, device)

    def detect(self, image: np.ndarray) -> list[Face]:
        results = self._model.get_landmarks_from_image(image, return_bboxes=True)
        landmarks, _, boxes = results if results is not None else (None, None, None)
        faces = []
        for points, box in zip(landmarks or [], boxes or [], strict=True):
            faces.append(Face(tuple(float(v) for v in box[:4]), float(box[4]),
                              np.asarray(points[:, :2], dtype=np.float64)))
        return faces


def _registry_face_alignment(fan_path: Path, s3fd_path: Path, device: str):
    import face_alignment
    import torch
    from face_alignment.models import FAN

    class RegistryFaceAlignment(face_alignment.FaceAlignment):
        def _load_native(self, network_name, network_size, device, dtype):
            net = FAN(network_size)
            net.load_state_dict(torch.load(fan_path, map_location=device, weights_only=True))
            return net.to(device, dtype=dtype).eval()

    return RegistryFaceAlignment(face_alignment.LandmarksType.TWO_D, device=device,
                                 face_detector="sfd", compile=False, flip_input=False,
                                 face_detector_kwargs={"path_to_detector": str(s3fd_path)})


def make_detector(name: str, overrides: dict[str, Path] | None = None,
                  device: str = "cpu") -> Detector:
    if name == "dlib":
        return DlibHogDetector(overrides)
    if name == "dlib-cnn":
        return DlibCnnDetector(overrides)
    if name == "face-alignment":
        return FaceAlignmentDetector(overrides, device)
    raise FfhqToolsError(f"--landmarks {name}: expected one of {', '.join(BACKENDS)}")


def partition_faces(faces: list[Face], min_face: float = 0.0, min_score: float = float("-inf"),
                    largest_only: bool = False) -> tuple[list[Face], list[tuple[Face, str, str]]]:
    """(kept faces left to right, [(skipped face, reason, detail)]): the faces at least
    `min_face` pixels wide scoring at least `min_score` are kept (only the largest one with
    `largest_only`); every other face is skipped with the filter that dropped it."""
    kept, skipped = [], []
    for face in faces:
        if face.score < min_score:
            skipped.append((face, "score below --min-score",
                            f"score {face.score:.3f} < {min_score}"))
        elif face.size < min_face:
            skipped.append((face, "smaller than --min-face",
                            f"box side {face.size:.0f} px < {min_face}"))
        else:
            kept.append(face)
    if largest_only and kept:
        largest = max(kept, key=lambda f: f.size)
        skipped += [(f, "not the largest face (--largest-only)",
                     f"box side {f.size:.0f} px < {largest.size:.0f}") for f in kept
                    if f is not largest]
        kept = [largest]
    return sorted(kept, key=lambda f: (f.rect[0], f.rect[1])), skipped


def select_faces(faces: list[Face], min_face: float = 0.0, min_score: float = float("-inf"),
                 largest_only: bool = False) -> list[Face]:
    """Faces at least `min_face` pixels wide scoring at least `min_score`, left to right."""
    return partition_faces(faces, min_face, min_score, largest_only)[0]


BACKEND_WEIGHTS = {"dlib": ("dlib-landmarks-68",), "dlib-cnn": ("dlib-landmarks-68", "dlib-mmod"),
                   "face-alignment": ("fan-2d", "s3fd"), "given": ()}


def check_backend_weights(name: str, overrides: dict[str, Path] | None = None) -> None:
    """Fail now, naming the file and how to get it, if a weights file of backend `name` is
    missing or has the wrong hash."""
    for weights_name in BACKEND_WEIGHTS[name]:
        weights.resolve(weights_name, overrides)

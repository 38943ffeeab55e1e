"""Offline face-space metrics: Frechet distance and precision/recall in dlib's face-descriptor
space. These are NOT the papers' FID or pr50k3 (Inception / VGG16 features); their result names
say so (`fd_dlib_face`, `pr_dlib_face_*`) and they never land in a paper column.

Features: dlib's ResNet face-recognition network (`dlib_face_recognition_resnet_model_v1.dat`,
weights entry "dlib-face-resnet", shipped by `face_recognition_models`, so it works offline)
maps a 150x150 face chip aligned the way `dlib.get_face_chip` does it to a 128-d descriptor.
FFHQ-aligned images (real and generated) are turned into such chips by one fixed crop,
`DLIB_CHIP_BOX` (`models.dlib_chip`), then resized to 150x150 (bilinear). `models.dlib_face_resnet`
is the same network in torch, for differentiable identity losses.
"""

from __future__ import annotations

import numpy as np

from eval.registry import MetricContext, register_metric
from ffhq_tools.errors import FfhqToolsError
from models.dlib_chip import CHIP_SIZE, DLIB_CHIP_BOX, chip_box
from models.dlib_chip import WEIGHTS_NAME as DLIB_WEIGHTS

WEIGHTS = DLIB_WEIGHTS
FACE_PROTOCOL = {"num_gen": 10_000, "max_real": 10_000, "feature_space": "dlib-face-resnet-128",
                 "chip_box": list(DLIB_CHIP_BOX)}
NHOOD_SIZE = 3


class DlibFaceDescriptor:
    """uint8 NCHW images (FFHQ-aligned) -> float64 [N, 128] dlib face descriptors."""

    def __init__(self, weights_path):
        import dlib

        self.model = dlib.face_recognition_model_v1(str(weights_path))

    @staticmethod
    def chips(images) -> list[np.ndarray]:
        from PIL import Image

        array = np.asarray(images.cpu() if hasattr(images, "cpu") else images)
        if array.ndim != 4 or array.shape[1] not in (1, 3) or array.dtype != np.uint8:
            raise ValueError(f"expected uint8 NCHW images, got {array.dtype} {array.shape}")
        height, width = array.shape[2:]
        box = chip_box(width, height)
        out = []
        for image in array:
            hwc = np.repeat(image, 3, axis=0) if image.shape[0] == 1 else image
            pil = Image.fromarray(np.ascontiguousarray(hwc.transpose(1, 2, 0)))
            chip = pil.resize((CHIP_SIZE, CHIP_SIZE), Image.BILINEAR, box=box)
            out.append(np.ascontiguousarray(np.asarray(chip)))
        return out

    def __call__(self, images) -> np.ndarray:
        descriptors = self.model.compute_face_descriptor(self.chips(images))
        return np.array([np.asarray(d) for d in descriptors], dtype=np.float64)


# One remembered feature set per side, so fd_dlib_face and pr_dlib_face on the same inputs
# extract features once. Generated features are keyed by a hash of the generator's parameters
# and buffers (plus the object's identity), so a generator trained further in place is never
# served stale features.
_MEMO: dict[str, tuple[tuple, np.ndarray]] = {}


def _generator_fingerprint(G) -> str:
    import hashlib

    digest = hashlib.sha1()
    for name, tensor in sorted(G.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def _remembered(side: str, key: tuple, compute) -> np.ndarray:
    if side in _MEMO and _MEMO[side][0] == key:
        return _MEMO[side][1]
    features = compute()
    _MEMO[side] = (key, features)
    return features


def _extract(extractor, batches, total: int, desc: str, progress: bool) -> np.ndarray:
    from tqdm import tqdm

    chunks = []
    with tqdm(total=total, desc=desc, unit="img", disable=not progress) as bar:
        for batch in batches:
            chunks.append(extractor(batch))
            bar.update(len(batch))
    return np.concatenate(chunks)


def _features(ctx: MetricContext) -> tuple[np.ndarray, np.ndarray]:
    from pathlib import Path

    from eval.sampling import iterate_generated, iterate_real, real_count
    from eval.stats import gather_blocks  # under torchrun every rank gets every image

    resolved = ctx.resolve_weights(WEIGHTS)
    extractor = DlibFaceDescriptor(resolved.path)
    resolution = ctx.generator.img_resolution
    num_real = min(ctx.count("max_real", ctx.max_real), real_count(ctx.data, resolution))
    ctx.use("num_real", num_real)
    num_gen = ctx.count("num_gen", ctx.num_gen)
    data = Path(ctx.data)
    real_key = (str(data.resolve()), data.stat().st_mtime_ns, num_real, resolution,
                resolved.sha256)
    real = _remembered("real", real_key, lambda: _extract(
        extractor, iterate_real(data, num_real, ctx.batch_size, resolution=resolution),
        num_real, "dlib face features (real)", ctx.progress))
    gen_key = (id(ctx.generator), type(ctx.generator).__qualname__,
               _generator_fingerprint(ctx.generator), ctx.seed, num_gen, ctx.batch_size,
               str(ctx.device), resolved.sha256)
    gen = _remembered("gen", gen_key, lambda: np.concatenate(gather_blocks([_extract(
        extractor, iterate_generated(ctx.generator, num_gen, ctx.batch_size, ctx.seed,
                                     ctx.device),
        num_gen, "dlib face features (generated)", ctx.progress and ctx.rank == 0)])))
    return real, gen


def _mean_cov(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return features.mean(axis=0), np.cov(features, rowvar=False)


@register_metric(
    "fd_dlib_face", protocol=FACE_PROTOCOL, needs=("generator", "data"), weights=(WEIGHTS,),
    description="Frechet distance in dlib's 128-d face-descriptor space (offline; not FID)")
def fd_dlib_face(ctx: MetricContext) -> dict:
    from eval.frechet import frechet_distance

    real, gen = _features(ctx)
    if len(real) < 2 or len(gen) < 2:
        raise FfhqToolsError("fd_dlib_face needs at least 2 real and 2 generated images")
    ctx.notes["covariance"] = "unbiased (N - 1)"
    return {"fd_dlib_face": frechet_distance(*_mean_cov(real), *_mean_cov(gen),
                                             labels=("real", "generated"))}


@register_metric(
    "pr_dlib_face", protocol={**FACE_PROTOCOL, "nhood_size": NHOOD_SIZE},
    needs=("generator", "data"), weights=(WEIGHTS,),
    description="Precision/recall (k = 3) in dlib's 128-d face-descriptor space (offline)")
def pr_dlib_face(ctx: MetricContext) -> dict:
    import torch

    from eval.knn import precision_recall

    real, gen = _features(ctx)
    k = ctx.protocol["nhood_size"]
    if len(real) <= k or len(gen) <= k:
        raise FfhqToolsError(f"pr_dlib_face needs more than {k} real and generated images")
    result = precision_recall(real, gen, k=k, dtype=torch.float64)
    return {"pr_dlib_face_precision": result.precision, "pr_dlib_face_recall": result.recall}

"""uint8 NCHW images -> normalised 224 x 224 input of a DINOv2 or CLIP encoder, by named mode.

- `dgm-eval` (DINOv2's default): dgm-eval's transform, torchvision `Resize((224, 224),
  BICUBIC)` on the PIL image, i.e. PIL's bicubic resize of the uint8 RGB image to 224 x 224
  (no crop, re-quantised to uint8 by PIL), then x / 255 and the ImageNet mean / std.
- `torch-fidelity`: torch-fidelity 0.4's DINOv2 and CLIP extractors: TF1 bilinear resize
  (half_pixel_centers=False) of the float image in [0, 255] to 224 x 224, then the mean / std
  times 255. Its numbers differ from dgm-eval's.
- `clean-fid` (CLIP's default): clean-fid's `clip_vit_b_32`, i.e. OpenAI's preprocessing:
  PIL bicubic resize of the shorter side to 224 (torchvision's rule for the longer side),
  centre crop to 224 x 224, x / 255 and the CLIP mean / std.

The mode is part of every cache key and result row.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from eval import defaults
from eval.features.preprocess import tf_resize_bilinear
from ffhq_tools.errors import FfhqToolsError

MODE_DGM_EVAL = defaults.MODE_DGM_EVAL
MODE_TORCH_FIDELITY = defaults.MODE_TORCH_FIDELITY
MODE_CLEAN_FID = defaults.MODE_CLEAN_FID
MODES = defaults.EMBEDDING_MODES
INPUT_SIZE = 224

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def _check_images(images: torch.Tensor) -> torch.Tensor:
    if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] not in (1, 3):
        raise FfhqToolsError(f"expected uint8 images (N, 1|3, H, W), got {images.dtype} "
                             f"{tuple(images.shape)}")
    return images.expand(-1, 3, -1, -1) if images.shape[1] == 1 else images


def shorter_side_size(height: int, width: int, size: int) -> tuple[int, int]:
    """torchvision's `Resize(size)` output (height, width): the shorter side becomes `size`,
    the longer one int(size * long / short)."""
    if height <= width:
        return size, int(size * width / height)
    return int(size * height / width), size


def centre_crop_box(height: int, width: int, size: int) -> tuple[int, int, int, int]:
    """torchvision's `CenterCrop(size)` box (left, top, right, bottom) for PIL."""
    top = int(round((height - size) / 2.0))
    left = int(round((width - size) / 2.0))
    return left, top, left + size, top + size


def pil_bicubic_224(image: np.ndarray, crop_shorter_side: bool) -> np.ndarray:
    """One HWC uint8 RGB image through PIL's bicubic resize (and centre crop) to 224 x 224."""
    pil = Image.fromarray(image)
    if crop_shorter_side:
        height, width = shorter_side_size(image.shape[0], image.shape[1], INPUT_SIZE)
        pil = pil.resize((width, height), resample=Image.Resampling.BICUBIC)
        pil = pil.crop(centre_crop_box(height, width, INPUT_SIZE))
    else:
        pil = pil.resize((INPUT_SIZE, INPUT_SIZE), resample=Image.Resampling.BICUBIC)
    return np.asarray(pil)


def _pil_batch(images: torch.Tensor, crop_shorter_side: bool) -> torch.Tensor:
    """uint8 NCHW -> float32 NCHW in [0, 1] at 224 x 224 through PIL, one image at a time."""
    hwc = images.permute(0, 2, 3, 1).cpu().numpy()
    out = np.stack([pil_bicubic_224(np.ascontiguousarray(image), crop_shorter_side)
                    for image in hwc])
    return torch.from_numpy(out).permute(0, 3, 1, 2).to(images.device).float().div(255)


def _normalise(x: torch.Tensor, mean, std, scale: float) -> torch.Tensor:
    """(x - mean * scale) / (std * scale), the products in Python floats as the references."""
    mean = torch.tensor([m * scale for m in mean], dtype=x.dtype, device=x.device)
    std = torch.tensor([s * scale for s in std], dtype=x.dtype, device=x.device)
    return (x - mean.view(1, 3, 1, 1)) / std.view(1, 3, 1, 1)


def check_vit_mode(mode: str, allowed: tuple[str, ...]) -> str:
    if mode not in allowed:
        raise FfhqToolsError(f"preprocessing mode '{mode}': this network takes "
                             f"{', '.join(allowed)}")
    return mode


def vit_input(images: torch.Tensor, mode: str, mean, std) -> torch.Tensor:
    """uint8 NCHW (1 or 3 channels, any size) -> normalised float32 N x 3 x 224 x 224."""
    images = _check_images(images)
    if mode == MODE_TORCH_FIDELITY:
        x = tf_resize_bilinear(images.float(), INPUT_SIZE)
        return _normalise(x, mean, std, 255.0)
    if mode in (MODE_DGM_EVAL, MODE_CLEAN_FID):
        x = _pil_batch(images, crop_shorter_side=mode == MODE_CLEAN_FID)
        return _normalise(x, mean, std, 1.0)
    raise FfhqToolsError(f"preprocessing mode '{mode}': expected one of {', '.join(MODES)}")

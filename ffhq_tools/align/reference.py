"""`--method reference`: the FFHQ alignment executed step by step with PIL and SciPy, in the same
order and with the same operations as NVlabs' recreate_aligned_images (shrink with Lanczos,
crop, reflect pad blended towards blur and median, QUAD transform to transform_size, Lanczos
down to output_size). It is the yardstick `--method fast` is tested against."""

from __future__ import annotations

import numpy as np
import scipy.ndimage
from PIL import Image

from ffhq_tools.align.quad import AlignOptions, WarpPlan, pad_mask


def blend_padding(padded: np.ndarray, pad: tuple[int, int, int, int], qsize: float,
                  blurred: np.ndarray) -> Image.Image:
    """FFHQ's pad blend on a reflect-padded float32 HWC image, given its Gaussian blur."""
    height, width, _ = padded.shape
    mask = pad_mask(height, width, pad)
    padded = padded.copy()  # float32, updated in place as the FFHQ script does
    padded += (blurred - padded) * np.clip(mask * 3.0 + 1.0, 0.0, 1.0)
    padded += (np.median(padded, axis=(0, 1)) - padded) * np.clip(mask, 0.0, 1.0)
    return Image.fromarray(np.uint8(np.clip(np.rint(padded), 0, 255)), "RGB")


def reflect_pad(image: Image.Image, pad: tuple[int, int, int, int]) -> np.ndarray:
    left, top, right, bottom = pad
    return np.pad(np.float32(image), ((top, bottom), (left, right), (0, 0)), "reflect")


def prepare_reference(image: Image.Image, plan: WarpPlan) -> Image.Image:
    """Shrink, crop and pad exactly as the FFHQ script does."""
    if plan.shrink > 1:
        image = image.resize(plan.shrunk_size, Image.LANCZOS)
    if plan.crop is not None:
        image = image.crop(plan.crop)
    if plan.pad is not None:
        padded = reflect_pad(image, plan.pad)
        sigma = plan.qsize * 0.02
        blurred = scipy.ndimage.gaussian_filter(padded, [sigma, sigma, 0])
        image = blend_padding(padded, plan.pad, plan.qsize, blurred)
    return image


def warp_reference(image: Image.Image, plan: WarpPlan, options: AlignOptions) -> np.ndarray:
    """The aligned face as HWC uint8."""
    return warp_prepared(prepare_reference(image.convert("RGB"), plan), plan, options)


def warp_prepared(image: Image.Image, plan: WarpPlan, options: AlignOptions) -> np.ndarray:
    """QUAD transform of the shrunk / cropped / padded image, then Lanczos to output_size."""
    size = options.transform_size
    image = image.transform((size, size), Image.QUAD, tuple((plan.quad + 0.5).flatten()),
                            Image.BILINEAR)
    if options.output_size < size:
        image = image.resize((options.output_size, options.output_size), Image.LANCZOS)
    return np.asarray(image)

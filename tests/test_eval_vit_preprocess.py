"""Each DINOv2 / CLIP preprocessing mode against the reference library's own transform on
real photos, bit-exact (PIL for dgm-eval and clean-fid, TF1 bilinear for torch-fidelity)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torchvision.transforms as T
from PIL import Image

from eval.features import vit_preprocess as vp
from ffhq_tools.errors import FfhqToolsError

PHOTO_NAMES = ("astronaut", "chelsea", "coffee", "rocket")


def _photo(name: str) -> np.ndarray:
    from skimage import data

    return getattr(data, name)()


def _nchw(image: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(image).permute(2, 0, 1).unsqueeze(0).contiguous()


@pytest.mark.parametrize("name", PHOTO_NAMES)
def test_dgm_eval_mode_is_torchvision_resize_on_the_pil_image(name):
    photo = _photo(name)
    reference = T.Compose([T.Resize((224, 224), T.InterpolationMode.BICUBIC), T.ToTensor(),
                           T.Normalize(vp.IMAGENET_MEAN, vp.IMAGENET_STD)])
    expected = reference(Image.fromarray(photo).convert("RGB"))
    ours = vp.vit_input(_nchw(photo), vp.MODE_DGM_EVAL, vp.IMAGENET_MEAN, vp.IMAGENET_STD)
    assert ours.shape == (1, 3, 224, 224)
    assert torch.equal(ours[0], expected)


@pytest.mark.parametrize("name", PHOTO_NAMES)
def test_clean_fid_clip_mode_is_shorter_side_resize_and_centre_crop(name):
    photo = _photo(name)  # chelsea, coffee and rocket are not square: the crop matters
    crop = T.Compose([T.Resize(224, interpolation=T.InterpolationMode.BICUBIC),
                      T.CenterCrop(224)])  # clean-fid's img_preprocess_clip
    resized = np.asarray(crop(Image.fromarray(photo).convert("RGB"))).clip(0, 255)
    expected = T.Normalize(vp.CLIP_MEAN, vp.CLIP_STD)(
        T.ToTensor()(resized.astype(np.uint8)) * 255 / 255.0)
    ours = vp.vit_input(_nchw(photo), vp.MODE_CLEAN_FID, vp.CLIP_MEAN, vp.CLIP_STD)
    assert torch.equal(ours[0], expected)


@pytest.mark.parametrize("name", PHOTO_NAMES)
def test_torch_fidelity_mode_is_its_tf1_bilinear_resize(name):
    tf1 = pytest.importorskip("torch_fidelity.interpolate_compat_tensorflow")
    photo = _photo(name)
    x = _nchw(photo).float()
    resized = tf1.interpolate_bilinear_2d_like_tensorflow1x(x, size=(224, 224),
                                                            align_corners=False)
    expected = T.functional.normalize(resized, [255 * m for m in vp.IMAGENET_MEAN],
                                      [255 * s for s in vp.IMAGENET_STD])
    ours = vp.vit_input(_nchw(photo), vp.MODE_TORCH_FIDELITY, vp.IMAGENET_MEAN,
                        vp.IMAGENET_STD)
    assert torch.equal(ours, expected)
    dgm = vp.vit_input(_nchw(photo), vp.MODE_DGM_EVAL, vp.IMAGENET_MEAN, vp.IMAGENET_STD)
    assert (ours - dgm).abs().max() > 0.05  # the two conventions really differ


def test_grey_images_are_repeated_and_bad_input_is_named():
    grey = torch.from_numpy(_photo("camera")).view(1, 1, 512, 512)
    out = vp.vit_input(grey, vp.MODE_DGM_EVAL, vp.IMAGENET_MEAN, vp.IMAGENET_STD)
    assert out.shape == (1, 3, 224, 224)
    with pytest.raises(FfhqToolsError, match="expected uint8"):
        vp.vit_input(grey.float(), vp.MODE_DGM_EVAL, vp.IMAGENET_MEAN, vp.IMAGENET_STD)
    with pytest.raises(FfhqToolsError, match="preprocessing mode 'tf'"):
        vp.vit_input(grey, "tf", vp.IMAGENET_MEAN, vp.IMAGENET_STD)

"""NVIDIA's TorchScript `inception-2015-12-05.pt`, read as data into our FID Inception.

The file (stylegan2-ada-pytorch, clean-fid) is a direct translation of the TF graph
inception-2015-12-05; its module tree (layout established from public transcriptions of
its code and weight converters written against the real file):

    layers: conv, conv_1, conv_2, pool0, conv_3, conv_4, pool1, mixed, mixed_1 ... mixed_10,
            pool2 (8x8 average pool)
    output: Linear(2048, 1008)  (weight, bias)

Every convolution layer holds `weight` (no conv bias) and the TF batch norm's `beta`, `mean`,
`var` (no gamma, eps 0.001). Inside the blocks: A (mixed..mixed_2): conv, tower.{conv,conv_1},
tower_1.{conv,conv_1,conv_2}, tower_2.{pool,conv}; B (mixed_3): conv, tower.{conv,conv_1,
conv_2}, pool; C (mixed_4..7): conv, tower.{conv..conv_2}, tower_1.{conv..conv_4},
tower_2.{pool,conv}; D (mixed_8): tower.{conv,conv_1}, tower_1.{conv..conv_3}, pool;
E (mixed_9, mixed_10): conv, tower_conv, tower_mixed_conv, tower_mixed_conv_1, tower_1_conv,
tower_1_conv_1, tower_1_mixed_conv, tower_1_mixed_conv_1, tower_2_pool, tower_2_conv.
That is the architecture of `eval.features.inception.FIDInception`; `TENSOR_MAP` names the
counterpart of every tensor, and a file is refused unless its 378 tensors are exactly these
names with exactly our shapes (kernel shapes such as 1x7 / 7x1 tell the towers apart).

`forward(img, return_features, no_output_bias)` does what the file's code does: float
images in [0, 255], the grid-sample TF1 resize to 299 (identity at 299), (x - 128) / 128,
2048-d pool features, or softmax over the 1008 logits (without the output bias on request).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from eval.features.inception import FIDInception
from eval.features.nvidia_common import checked_tensors, grid_sample_resize
from ffhq_tools.torchscript_archive import read_torchscript

INPUT_SIZE = 299
WHAT = "NVIDIA's inception-2015-12-05.pt layout"

STEM = {"conv": "Conv2d_1a_3x3", "conv_1": "Conv2d_2a_3x3", "conv_2": "Conv2d_2b_3x3",
        "conv_3": "Conv2d_3b_1x1", "conv_4": "Conv2d_4a_3x3"}
BLOCK_A = {"conv": "branch1x1", "tower.conv": "branch5x5_1", "tower.conv_1": "branch5x5_2",
           "tower_1.conv": "branch3x3dbl_1", "tower_1.conv_1": "branch3x3dbl_2",
           "tower_1.conv_2": "branch3x3dbl_3", "tower_2.conv": "branch_pool"}
BLOCK_B = {"conv": "branch3x3", "tower.conv": "branch3x3dbl_1",
           "tower.conv_1": "branch3x3dbl_2", "tower.conv_2": "branch3x3dbl_3"}
BLOCK_C = {"conv": "branch1x1", "tower.conv": "branch7x7_1", "tower.conv_1": "branch7x7_2",
           "tower.conv_2": "branch7x7_3", "tower_1.conv": "branch7x7dbl_1",
           "tower_1.conv_1": "branch7x7dbl_2", "tower_1.conv_2": "branch7x7dbl_3",
           "tower_1.conv_3": "branch7x7dbl_4", "tower_1.conv_4": "branch7x7dbl_5",
           "tower_2.conv": "branch_pool"}
BLOCK_D = {"tower.conv": "branch3x3_1", "tower.conv_1": "branch3x3_2",
           "tower_1.conv": "branch7x7x3_1", "tower_1.conv_1": "branch7x7x3_2",
           "tower_1.conv_2": "branch7x7x3_3", "tower_1.conv_3": "branch7x7x3_4"}
BLOCK_E = {"conv": "branch1x1", "tower_conv": "branch3x3_1",
           "tower_mixed_conv": "branch3x3_2a", "tower_mixed_conv_1": "branch3x3_2b",
           "tower_1_conv": "branch3x3dbl_1", "tower_1_conv_1": "branch3x3dbl_2",
           "tower_1_mixed_conv": "branch3x3dbl_3a", "tower_1_mixed_conv_1": "branch3x3dbl_3b",
           "tower_2_conv": "branch_pool"}
MIXED = (("mixed", "Mixed_5b", BLOCK_A), ("mixed_1", "Mixed_5c", BLOCK_A),
         ("mixed_2", "Mixed_5d", BLOCK_A), ("mixed_3", "Mixed_6a", BLOCK_B),
         ("mixed_4", "Mixed_6b", BLOCK_C), ("mixed_5", "Mixed_6c", BLOCK_C),
         ("mixed_6", "Mixed_6d", BLOCK_C), ("mixed_7", "Mixed_6e", BLOCK_C),
         ("mixed_8", "Mixed_7a", BLOCK_D), ("mixed_9", "Mixed_7b", BLOCK_E),
         ("mixed_10", "Mixed_7c", BLOCK_E))
CONV_TENSORS = {"weight": "conv.weight", "beta": "bn.bias", "mean": "bn.running_mean",
                "var": "bn.running_var"}


def _conv_layers() -> dict[str, str]:
    """NVIDIA conv layer path -> our BasicConv2d path."""
    layers = {f"layers.{nv}": ours for nv, ours in STEM.items()}
    for nv_block, our_block, block in MIXED:
        layers.update({f"layers.{nv_block}.{nv}": f"{our_block}.{ours}"
                       for nv, ours in block.items()})
    return layers


def _tensor_map() -> dict[str, str]:
    out = {f"{nv}.{suffix}": f"{ours}.{our_suffix}"
           for nv, ours in _conv_layers().items() for suffix, our_suffix in CONV_TENSORS.items()}
    out.update({"output.weight": "fc.weight", "output.bias": "fc.bias"})
    return out


TENSOR_MAP = _tensor_map()


def _expected_shapes() -> dict[str, tuple[int, ...]]:
    with torch.device("meta"):
        ours = FIDInception().state_dict()
    return {nv: tuple(ours[name].shape) for nv, name in TENSOR_MAP.items()}


class NvidiaInception(nn.Module):
    """Our FID Inception behind the call signature of NVIDIA's TorchScript module."""

    def __init__(self, inception: FIDInception):
        super().__init__()
        self.inception = inception

    def forward(self, img: torch.Tensor, return_features: bool = False,
                no_output_bias: bool = False) -> torch.Tensor:
        x = grid_sample_resize(img.to(torch.float32), INPUT_SIZE)
        x = (x - 128) / 128
        features = self.inception.pool_features(x)
        if return_features:
            return features
        return self.probabilities(features, no_output_bias)

    def probabilities(self, features: torch.Tensor, no_output_bias: bool) -> torch.Tensor:
        """Softmax over the 1008 logits of `forward(..., return_features=True)`'s features."""
        fc = self.inception.fc
        logits = F.linear(features, fc.weight, None if no_output_bias else fc.bias)
        return torch.softmax(logits, dim=1)


def inception_from_tensors(path, tensors: dict[str, torch.Tensor]) -> FIDInception:
    """The FID Inception holding the file's tensors, each checked by name and shape."""
    checked = checked_tensors(path, WHAT, tensors, _expected_shapes())
    state = {TENSOR_MAP[name]: tensor for name, tensor in checked.items()}
    for layer in _conv_layers().values():
        state[f"{layer}.bn.weight"] = torch.ones_like(state[f"{layer}.bn.bias"])
        state[f"{layer}.bn.num_batches_tracked"] = torch.zeros((), dtype=torch.long)
    with torch.device("meta"):
        model = FIDInception()
    model.load_state_dict(state, strict=True, assign=True)
    return model.eval().requires_grad_(False)


def load_nvidia_inception(path, fuse: bool = True) -> NvidiaInception:
    """NVIDIA's TorchScript Inception file as our module, read as data (never executed).
    `fuse` folds BatchNorm into the convolutions (same function to float rounding)."""
    model = inception_from_tensors(path, read_torchscript(path).tensors())
    return NvidiaInception(model.fuse_() if fuse else model).eval()

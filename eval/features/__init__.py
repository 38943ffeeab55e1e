"""Feature networks for metrics, loaded through the weights registry.

`load_inception(ctx)` returns an `InceptionExtractor`: uint8 NCHW images of any size ->
(2048-d pool features, 1008-class probabilities or None), preprocessing per `ctx.mode`.

NVIDIA's TorchScript `inception-2015-12-05.pt` is read as data (never executed) into our
`eval.features.nvidia_inception.NvidiaInception`, which does what the file's code does: takes
images in [0, 255] (uint8 or float), emulates TF's resize with grid_sample (the identity at
299x299) and normalises (x - 128) / 128; we resize to 299 per mode first and feed floats, so
`tf` and `clean` modes mean the same with either network. Its `return_features=False,
no_output_bias=True` output is softmax probabilities (what the IS reference uses).
"""

from __future__ import annotations

import torch

from eval import defaults
from eval.features.preprocess import check_mode, preprocess, resize_299
from ffhq_tools.errors import FfhqToolsError


class InceptionExtractor:
    """Callable wrapper around the FID Inception (state dict or NVIDIA TorchScript layout)."""

    def __init__(self, network, kind: str, mode: str, sha256: str, device):
        self.network, self.kind, self.mode = network, kind, check_mode(mode)
        self.sha256, self.device = sha256, torch.device(device)
        if kind == defaults.INCEPTION_TORCHSCRIPT and mode == defaults.MODE_PYTORCH_FID:
            raise FfhqToolsError("--mode pytorch-fid needs the state-dict Inception "
                                 "(inception-fid): the TorchScript network normalises inputs "
                                 "as (x - 128) / 128 itself")

    @torch.inference_mode()
    def __call__(self, images: torch.Tensor, want_probs: bool = False):
        images = images.to(self.device)
        if self.kind == defaults.INCEPTION_TORCHSCRIPT:
            return self._torchscript(images, want_probs)
        x = preprocess(images, self.mode).contiguous(memory_format=torch.channels_last)
        pool, logits = self.network(x)
        probs = torch.softmax(logits.double(), dim=1) if want_probs else None
        return pool.float(), probs

    def _torchscript(self, images, want_probs):
        x = resize_299(images, self.mode)  # the network skips its own resize at 299
        pool = self.network(x, return_features=True)
        probs = None
        if want_probs:
            probs = self.network.probabilities(pool, no_output_bias=True).double()
        return pool.float(), probs


def _load_torchscript(path):
    from eval.features.nvidia_inception import load_nvidia_inception

    return load_nvidia_inception(path)


def load_inception(ctx) -> InceptionExtractor:
    """The Inception named by `ctx.feature_network`, verified, its SHA-256 recorded in ctx."""
    from eval.features.inception import load_state_dict_file

    name = ctx.feature_network
    if name not in defaults.FEATURE_NETWORKS:
        raise FfhqToolsError(f"--feature-network {name}: expected one of "
                             f"{', '.join(defaults.FEATURE_NETWORKS)}")
    resolved = ctx.resolve_weights(name)
    if name == defaults.INCEPTION_TORCHSCRIPT:
        network = _load_torchscript(resolved.path)
    else:
        network = load_state_dict_file(resolved.path).fuse_()
    return InceptionExtractor(network.to(ctx.device), name, ctx.mode, resolved.sha256,
                              ctx.device)

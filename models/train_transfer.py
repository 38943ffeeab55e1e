"""Transfer learning: start a run from trained networks (ours or an imported official
checkpoint) on a new dataset, optionally with D's first layers frozen (Freeze-D).

As stylegan2-ada does (`copy_params_and_buffers(..., require_all=False)`), tensors are copied
by name; tensors the source lacks (e.g. a label embedding when the new run is conditional)
keep their fresh initialisation. A tensor present in both with another shape is an error
naming it: the networks do not match.
"""

from __future__ import annotations

from torch import nn

from ffhq_tools.errors import FfhqToolsError

LAYER_NAMES = ("fromrgb", "conv0", "conv1", "skip")


def discriminator_layers(D: nn.Module) -> list[tuple[str, nn.Module]]:
    """(name, layer) of D's blocks in stylegan2-ada's layer order, highest resolution first."""
    resolutions = getattr(D, "block_resolutions", None)
    if resolutions is None or getattr(D, "progressive", False):
        raise FfhqToolsError("--freezed needs a non-progressive StyleGAN2 discriminator "
                             f"({type(D).__name__} has no stylegan2-ada layer order)")
    layers = []
    for res in resolutions:
        block = getattr(D, f"b{res}")
        for name in LAYER_NAMES:
            if isinstance(getattr(block, name, None), nn.Module):
                layers.append((f"b{res}.{name}", getattr(block, name)))
    return layers


def copy_matching(target: nn.Module, source: nn.Module, what: str) -> tuple[int, int]:
    """Copy source's parameters and buffers into target by name; (copied, left as is)."""
    theirs = {**dict(source.named_parameters()), **dict(source.named_buffers())}
    copied = kept = 0
    for name, tensor in [*target.named_parameters(), *target.named_buffers()]:
        other = theirs.get(name)
        if other is None:
            kept += 1
            continue
        if other.shape != tensor.shape:
            raise FfhqToolsError(f"--resume: {what}.{name} has shape {tuple(other.shape)} in the "
                                 f"checkpoint and {tuple(tensor.shape)} in the new network")
        tensor.detach().copy_(other.detach().to(tensor.device, tensor.dtype))
        copied += 1
    if copied == 0:
        raise FfhqToolsError(f"--resume: no {what} tensor of the checkpoint matches the network")
    return copied, kept

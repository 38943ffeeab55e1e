"""What NVIDIA's two TorchScript metric networks share: their resize and strict tensor checks.

Both `inception-2015-12-05.pt` and `vgg16.pt` (stylegan2-ada-pytorch) resize inside their
`forward` with the same trick: an identity `affine_grid` whose translation is shifted by
`1/in - 1/out` per axis, sampled with `grid_sample(bilinear, border, align_corners=False)`.
That puts output pixel i at source coordinate i * in / out, the sampling of TF1's
`resize_bilinear` (no half-pixel centres), with edge clamping. The transcriptions of the
file's code in public ports (PaddleGAN-style ports of the Inception, genforce's VGG16 port)
agree on this; `grid_sample_resize` is our own implementation of it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ffhq_tools.errors import WeightsError


def grid_sample_resize(x: torch.Tensor, size: int) -> torch.Tensor:
    """Float NCHW -> NC(size)(size) the way NVIDIA's TorchScript networks resize."""
    batch, channels, height, width = x.shape
    theta = torch.eye(2, 3, dtype=x.dtype, device=x.device)
    theta[0, 2] += theta[0, 0] / width - theta[0, 0] / size
    theta[1, 2] += theta[1, 1] / height - theta[1, 1] / size
    grid = F.affine_grid(theta.unsqueeze(0).repeat(batch, 1, 1),
                         [batch, channels, size, size], align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def checked_tensors(path, what: str, found: dict[str, torch.Tensor],
                    expected: dict[str, tuple[int, ...]]) -> dict[str, torch.Tensor]:
    """`found` as float32, refused unless its names and shapes are exactly `expected`."""
    prefix = f"{path}: not {what}"
    missing = [name for name in expected if name not in found]
    if missing:
        raise WeightsError(f"{prefix}: tensor '{missing[0]}' is missing ({len(missing)} of "
                           f"{len(expected)} expected tensors missing, {len(found)} found)")
    extra = [name for name in found if name not in expected]
    if extra:
        raise WeightsError(f"{prefix}: unexpected tensor '{extra[0]}' ({len(found)} tensors, "
                           f"expected {len(expected)})")
    out = {}
    for name, shape in expected.items():
        tensor = found[name]
        if tuple(tensor.shape) != tuple(shape):
            raise WeightsError(f"{prefix}: tensor '{name}' has shape {tuple(tensor.shape)}, "
                               f"expected {tuple(shape)}")
        if not tensor.is_floating_point():
            raise WeightsError(f"{prefix}: tensor '{name}' has dtype {tensor.dtype}, "
                               "expected floating point")
        out[name] = tensor.float()
        if not torch.isfinite(out[name]).all():
            raise WeightsError(f"{prefix}: tensor '{name}' holds NaN or Inf")
    return out

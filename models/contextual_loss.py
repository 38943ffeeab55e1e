"""The contextual loss (Mechrez et al., ECCV 2018) as DualStyleGAN's `model/contextual_loss`
computes it with `loss_type='cosine'`:

    d_ij  = 1 - cos(x_i - mu, y_j - mu)       mu: the channel mean of y over N, H, W
    d~_ij = d_ij / (min_k d_ik + 1e-5)
    CX_ij = exp((1 - d~_ij) / h) / sum_k exp((1 - d~_ik) / h)
    loss  = mean_n [ -log( mean_j max_i CX_ij + 1e-5 ) ]

i runs over x's positions, j over y's; h is the bandwidth (0.2 in refine_exstyle.py and the
fine-tuning).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

BANDWIDTH = 0.2
EPS = 1e-5


def cosine_feature_distances(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """[N, HW_x, HW_y] cosine distances of x's and y's feature vectors, centred on y's mean."""
    mu = y.mean(dim=(0, 2, 3), keepdim=True)
    x_unit = F.normalize((x - mu).flatten(2), dim=1)
    y_unit = F.normalize((y - mu).flatten(2), dim=1)
    return 1 - torch.bmm(x_unit.transpose(1, 2), y_unit)


def contextual_loss_cosine(x: torch.Tensor, y: torch.Tensor,
                           bandwidth: float = BANDWIDTH) -> torch.Tensor:
    """Scalar contextual loss of feature maps x, y [N, C, H, W] (same shape)."""
    if x.shape != y.shape:
        raise ValueError(f"contextual loss: feature maps of shapes {tuple(x.shape)} and "
                         f"{tuple(y.shape)}; they must match")
    distances = cosine_feature_distances(x, y)
    relative = distances / (distances.min(dim=2, keepdim=True).values + EPS)
    similarity = torch.softmax((1 - relative) / bandwidth, dim=2)
    per_image = similarity.max(dim=1).values.mean(dim=1)
    return (-torch.log(per_image + EPS)).mean()

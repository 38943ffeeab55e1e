"""DualStyleGAN's training losses on VGG19 features (williamyang1991/DualStyleGAN scripts).

All take the feature lists of `models.vgg19.VGG19Features` (relu1_1 ... relu5_1) and return
scalars, as the official scripts compute them:
- `feature_l1`: sum_i weight_i * mean |fake_i - real_i| (pretraining: 0.5, 0.5, 0.5, 0, 0;
  the fine-tuning perceptual loss: 0, 0.5, 1, 0, 0);
- `style_loss`: mean squared difference of the spatially averaged features 1 and 2 (the
  official "feature matching" loss: channel means, not Gram matrices);
- `contextual_loss`: Mechrez et al. 2018 on one feature map (feature 2, bandwidth 0.2,
  cosine distance), the official `model/contextual_loss` definition;
- `identity_loss`: mean of 1 - <e(fake), e(content)> for unit embeddings;
- `res_l2`: sum over the `res` parameters of their L2 (Frobenius) norms, not squared.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch
import torch.nn.functional as F

PRETRAIN_FEATURE_WEIGHTS = (0.5, 0.5, 0.5, 0.0, 0.0)
PERCEPTUAL_FEATURE_WEIGHTS = (0.0, 0.5, 1.0, 0.0, 0.0)
STYLE_FEATURES = (1, 2)
CONTEXTUAL_FEATURE = 2
CONTEXTUAL_BANDWIDTH = 0.2
CX_EPS = 1e-5


def feature_l1(fake: Sequence[torch.Tensor], real: Sequence[torch.Tensor],
               weights: Sequence[float]) -> torch.Tensor:
    if len(weights) != len(fake) or len(fake) != len(real):
        raise ValueError(f"{len(weights)} weights for {len(fake)} / {len(real)} feature maps")
    total = fake[0].new_zeros(())
    for weight, x, y in zip(weights, fake, real, strict=True):
        if weight > 0:
            total = total + F.l1_loss(x, y.detach()) * weight
    return total


def pooled(features: torch.Tensor) -> torch.Tensor:
    """[N, C, H, W] -> [N, C]: the spatial mean of each channel."""
    return features.mean(dim=(2, 3))


def style_loss(fake: Sequence[torch.Tensor], real: Sequence[torch.Tensor],
               layers: Sequence[int] = STYLE_FEATURES) -> torch.Tensor:
    total = fake[0].new_zeros(())
    for i in layers:
        total = total + F.mse_loss(pooled(fake[i]), pooled(real[i]).detach())
    return total


def cosine_distances(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """[N, HW_x, HW_y] = 1 - cos(x_i - mu, y_j - mu), mu the channel mean of y over N, H, W."""
    centre = y.mean(dim=(0, 2, 3), keepdim=True)
    x_unit = F.normalize((x - centre).flatten(2), dim=1)
    y_unit = F.normalize((y - centre).flatten(2), dim=1)
    return 1 - torch.bmm(x_unit.transpose(1, 2), y_unit)


def contextual_similarity(distances: torch.Tensor, band_width: float) -> torch.Tensor:
    """CX_ij: distances relative to each x_i's nearest y, exp((1 - d~) / h), normalised over j."""
    relative = distances / (distances.min(dim=2, keepdim=True).values + CX_EPS)
    affinity = torch.exp((1 - relative) / band_width)
    return affinity / affinity.sum(dim=2, keepdim=True)


def contextual_loss(x: torch.Tensor, y: torch.Tensor,
                    band_width: float = CONTEXTUAL_BANDWIDTH) -> torch.Tensor:
    """-log(mean_j max_i CX_ij + 1e-5), averaged over the batch (cosine distances)."""
    if x.shape != y.shape:
        raise ValueError(f"contextual loss: feature maps {tuple(x.shape)} and "
                         f"{tuple(y.shape)} differ")
    cx = contextual_similarity(cosine_distances(x, y), band_width)
    per_sample = cx.max(dim=1).values.mean(dim=1)
    return (-torch.log(per_sample + CX_EPS)).mean()


def identity_loss(fake_embeddings: torch.Tensor, content_embeddings: torch.Tensor):
    return (1 - (fake_embeddings * content_embeddings.detach()).sum(dim=1)).mean()


def res_l2(parameters: Iterable[torch.Tensor]) -> torch.Tensor:
    return sum(torch.linalg.vector_norm(p) for p in parameters)

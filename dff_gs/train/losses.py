"""Training losses: photometric (L1 + D-SSIM) and feature distillation."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from dff_gs.core.utils import fit_side
from dff_gs.eval.metrics import ssim_map


def photometric_loss(pred: Tensor, target: Tensor, ssim_lambda: float) -> Tensor:
    """(1 - λ) L1 + λ (1 - SSIM), as 3DGS.

    Args:
        pred: Tensor  # [B, H, W, 3]
        target: Tensor  # [B, H, W, 3]
    """
    l1 = (pred - target).abs().mean()
    if ssim_lambda == 0:
        return l1
    return (1 - ssim_lambda) * l1 + ssim_lambda * (1 - ssim_map(pred, target).mean())


def feature_grid(height: int, width: int, max_side: int) -> tuple[int, int]:
    """The ``(h, w)`` the distillation loss is computed at: the render's size, shrunk to at most ``max_side`` on
    the longer side (``max_side <= 0``: the render's size)."""
    return fit_side(height, width, max_side)


def pool_features(features: Tensor, height: int, width: int) -> Tensor:
    """Area-average rendered features to ``height x width`` (the decoder is linear, so pooling before decoding
    equals pooling the decoded features).  features: Tensor  # [B, H, W, D] -> [B, height, width, D]"""
    if features.shape[1:3] == (height, width):
        return features
    x = F.interpolate(features.permute(0, 3, 1, 2), size=(height, width), mode="area")
    return x.permute(0, 2, 3, 1)


def feature_loss(pred: Tensor, target: Tensor) -> Tensor:
    """L1 distillation loss over pixels where the teacher has a feature (non-zero vector): the mean absolute
    error over those pixels and all channels.

    Args:
        pred: Tensor  # [B, H, W, C] decoded rendered features
        target: Tensor  # [B, H, W, C] teacher features at the same pixels
    """
    valid = (target.abs().sum(-1, keepdim=True) > 0).to(pred.dtype)  # [B, H, W, 1]
    n = valid.sum()
    if not n > 0:
        return pred.sum() * 0
    return ((pred - target).abs() * valid).sum() / (n * pred.shape[-1])

"""Training losses: photometric (L1 + D-SSIM) and feature distillation."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

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


def upsample_features(maps: Tensor, height: int, width: int) -> Tensor:
    """Bilinearly resize teacher maps to the render resolution.

    Args:
        maps: Tensor  # [B, h, w, C]
    Returns:
        Tensor  # [B, height, width, C]
    """
    if maps.shape[1] == height and maps.shape[2] == width:
        return maps
    x = F.interpolate(maps.permute(0, 3, 1, 2).float(), size=(height, width), mode="bilinear", align_corners=False)
    return x.permute(0, 2, 3, 1)


def feature_loss(pred: Tensor, target: Tensor) -> Tensor:
    """L1 distillation loss over pixels where the teacher has a feature (non-zero vector).

    Args:
        pred: Tensor  # [B, H, W, C] decoded rendered features
        target: Tensor  # [B, H, W, C] teacher features at the same pixels
    """
    valid = target.abs().sum(-1) > 0  # [B, H, W]
    if not valid.any():
        return pred.sum() * 0
    return (pred - target).abs()[valid].mean()

"""Image, segmentation and depth metrics (the paper's Table 1/2 quantities).

All functions take tensors on any device and return Python floats (or small dicts).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from dff_gs.core.utils import IGNORE_LABEL, has_depth


def psnr(pred: Tensor, target: Tensor, mask: Tensor | None = None) -> float:
    """Peak signal-to-noise ratio in dB for images in [0, 1].

    Args:
        pred: Tensor  # [..., H, W, 3]
        target: Tensor  # [..., H, W, 3]
        mask: optional bool Tensor  # [..., H, W]; only these pixels count
    """
    err = (pred.clamp(0, 1) - target) ** 2
    if mask is not None:
        err = err[mask]
    mse = float(err.mean())
    return float("inf") if mse == 0 else -10.0 * math.log10(mse)


def _gaussian_window(size: int, sigma: float, device, dtype) -> Tensor:
    x = torch.arange(size, device=device, dtype=dtype) - (size - 1) / 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    return g / g.sum()


SSIM_WINDOW = 11
"""Side of the SSIM window (the loss's :func:`ssim_map`, and torchmetrics' of the evaluation): the smallest image
side a run trains and evaluates on (:func:`dff_gs.engine.validate.check_image_size`)."""


def ssim_map(pred: Tensor, target: Tensor, window: int = SSIM_WINDOW, sigma: float = 1.5) -> Tensor:
    """Per-pixel SSIM (Gaussian window, as 3DGS), differentiable.

    Args:
        pred: Tensor  # [B, H, W, C]
        target: Tensor  # [B, H, W, C]
    Returns:
        Tensor  # [B, H, W, C], "valid" region padded by reflection so the shape is kept
    """
    c = pred.shape[-1]
    x = pred.permute(0, 3, 1, 2)
    y = target.permute(0, 3, 1, 2)
    g = _gaussian_window(window, sigma, pred.device, pred.dtype)
    kx = g.view(1, 1, 1, -1).expand(c, 1, 1, window)
    ky = g.view(1, 1, -1, 1).expand(c, 1, window, 1)
    pad = window // 2

    def blur(t: Tensor) -> Tensor:
        t = F.pad(t, (pad, pad, pad, pad), mode="reflect")
        return F.conv2d(F.conv2d(t, kx, groups=c), ky, groups=c)

    mu_x, mu_y = blur(x), blur(y)
    sxx = blur(x * x) - mu_x**2
    syy = blur(y * y) - mu_y**2
    sxy = blur(x * y) - mu_x * mu_y
    c1, c2 = 0.01**2, 0.03**2
    s = ((2 * mu_x * mu_y + c1) * (2 * sxy + c2)) / ((mu_x**2 + mu_y**2 + c1) * (sxx + syy + c2))
    return s.permute(0, 2, 3, 1)


def ssim(pred: Tensor, target: Tensor) -> float:
    """Mean SSIM of images in [0, 1] as nerfstudio and gsplat report it: torchmetrics'
    ``StructuralSimilarityIndexMeasure(data_range=1.0)`` (11x11 Gaussian window, sigma 1.5, the border where
    the window does not fit left out), the mean over the images. :func:`ssim_map` (reflection-padded, border
    kept) is the differentiable one of the loss; the two differ by the border.

    pred, target: Tensor  # [B, H, W, 3] or [H, W, 3]
    """
    from torchmetrics.functional.image import structural_similarity_index_measure

    if pred.dim() == 3:
        pred, target = pred[None], target[None]
    x = pred.clamp(0, 1).permute(0, 3, 1, 2).float()
    y = target.to(x).permute(0, 3, 1, 2)
    per_image = structural_similarity_index_measure(x, y, data_range=1.0, reduction="none")
    return float(per_image.mean())


def confusion_matrix(pred: Tensor, gt: Tensor, num_classes: int) -> Tensor:
    """Confusion counts, rows = ground truth, columns = prediction; ignore-labelled pixels dropped.

    Args:
        pred: int Tensor  # [...]
        gt: int Tensor  # [...], IGNORE_LABEL = unlabeled
    Returns:
        Tensor  # [num_classes, num_classes] int64
    """
    valid = (gt != IGNORE_LABEL) & (gt >= 0) & (gt < num_classes)
    idx = gt[valid].long() * num_classes + pred[valid].long().clamp(0, num_classes - 1)
    return torch.bincount(idx, minlength=num_classes**2).reshape(num_classes, num_classes)


def segmentation_metrics(conf: Tensor, class_names: list[str] | None = None) -> dict:
    """mIoU over the classes present in the ground truth, pixel accuracy and per-class IoU.

    conf: Tensor  # [K, K] from :func:`confusion_matrix`
    """
    conf = conf.double()
    tp = conf.diag()
    gt_count = conf.sum(1)
    union = gt_count + conf.sum(0) - tp
    present = gt_count > 0
    iou = torch.where(union > 0, tp / union.clamp_min(1), torch.zeros_like(tp))
    names = class_names or [str(i) for i in range(conf.shape[0])]
    return {
        "miou": float(iou[present].mean()) if present.any() else float("nan"),
        "accuracy": float(tp.sum() / gt_count.sum().clamp_min(1)),
        "per_class_iou": {names[i]: float(iou[i]) for i in range(len(names)) if present[i]},
    }


def depth_metrics(pred: Tensor, gt: Tensor) -> dict:
    """delta < 1.25 and AbsRel over pixels with valid (positive) ground-truth depth.

    pred, gt: Tensor  # [...]; gt == 0 marks invalid
    """
    valid = has_depth(gt) & has_depth(pred)
    if not valid.any():
        return {"depth_delta1": float("nan"), "depth_absrel": float("nan")}
    p, g = pred[valid].double(), gt[valid].double()
    ratio = torch.maximum(p / g, g / p)
    return {
        "depth_delta1": float((ratio < 1.25).double().mean()),
        "depth_absrel": float(((p - g).abs() / g).mean()),
    }

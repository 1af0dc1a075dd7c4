"""Held-out evaluation: PSNR / SSIM, depth, and semantic segmentation from rendered features."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor
from tqdm import tqdm

from dff_gs.data import SceneData
from dff_gs.eval.metrics import confusion_matrix, depth_metrics, psnr, segmentation_metrics, ssim
from dff_gs.gaussians import GaussianModel
from dff_gs.io.images import colorize_labels, depth_to_rgb, save_png, side_by_side
from dff_gs.render import render


def predict_labels(decoded: Tensor, class_embeddings: Tensor) -> Tensor:
    """Per-pixel argmax of Eq. 5 over the label set (softmax is monotone: argmax of dot products).

    Args:
        decoded: Tensor  # [..., C] features in the teacher's space
        class_embeddings: Tensor  # [K, C]
    Returns:
        Tensor  # [...] int64 class ids
    """
    return (decoded @ class_embeddings.T.to(decoded)).argmax(-1)


def resize_labels(labels: Tensor, height: int, width: int) -> Tensor:
    """Nearest-neighbour resize of label maps.  labels: Tensor  # [V, h, w] -> [V, height, width]"""
    if labels.shape[-2:] == (height, width):
        return labels
    return F.interpolate(labels[:, None].float(), size=(height, width), mode="nearest")[:, 0].long()


@torch.no_grad()
def evaluate(
    model: GaussianModel,
    scene: SceneData,
    *,
    device: torch.device,
    backend: str = "auto",
    background: Optional[Tensor] = None,
    class_embeddings: Optional[Tensor] = None,
    teacher_labels: Optional[Tensor] = None,
    render_dir: Optional[Path] = None,
    num_render_views: int = 4,
    progress: bool = True,
) -> dict:
    """Render every view of ``scene`` (normally the test split) and measure it.

    Args:
        class_embeddings: Tensor  # [K, C] text embeddings of scene.class_names (teacher space), or None
        teacher_labels: Tensor  # [V, h, w] the 2D teacher's own predictions on these views, or None
    Returns:
        dict with psnr, ssim, and where they apply depth_delta1 / depth_absrel, miou / accuracy /
        per_class_iou, teacher_miou / teacher_accuracy, and num_views.
    """
    cams = scene.cameras.to(device)
    bg = background.to(device) if background is not None else None
    seg = class_embeddings is not None and scene.semantics is not None and model.feature_dim > 0
    k = len(scene.class_names) if scene.class_names else 0
    conf = torch.zeros(k, k, dtype=torch.long) if seg else None
    psnrs, ssims, depth_pred, depth_gt = [], [], [], []
    if render_dir is not None:
        render_dir = Path(render_dir)
        render_dir.mkdir(parents=True, exist_ok=True)
    for i in tqdm(range(scene.num_views), desc="eval", disable=not progress, leave=False):
        out = render(model, cams[[i]], backgrounds=None if bg is None else bg[None], with_features=seg, backend=backend)
        rgb = out.rgb[0].clamp(0, 1).cpu()
        gt = scene.images[i]
        psnrs.append(psnr(rgb, gt))
        ssims.append(ssim(rgb, gt))
        pred_lab = None
        if scene.depths is not None:
            depth_pred.append(out.depth[0, ..., 0].cpu())
            depth_gt.append(scene.depths[i])
        if seg:
            pred_lab = predict_labels(model.decode(out.features[0]), class_embeddings.to(device)).cpu()
            conf += confusion_matrix(pred_lab, scene.semantics[i], k)
        if render_dir is not None and i < num_render_views:
            name = Path(scene.image_names[i]).name
            save_png(render_dir / f"{name}.png", rgb)
            panels = [gt, rgb, depth_to_rgb(out.depth[0, ..., 0])]
            if pred_lab is not None:
                panels.append(colorize_labels(scene.semantics[i], k))
                panels.append(colorize_labels(pred_lab, k))
                if teacher_labels is not None:
                    t = resize_labels(teacher_labels[i : i + 1], scene.height, scene.width)[0]
                    panels.append(colorize_labels(t, k))
            save_png(render_dir / f"compare_{name}.png", side_by_side(*panels))
    metrics = {"psnr": sum(psnrs) / len(psnrs), "ssim": sum(ssims) / len(ssims), "num_views": scene.num_views}
    if depth_pred:
        metrics.update(depth_metrics(torch.stack(depth_pred), torch.stack(depth_gt)))
    if seg:
        metrics.update(segmentation_metrics(conf, scene.class_names))
        if teacher_labels is not None:
            t = resize_labels(teacher_labels, scene.height, scene.width)
            tm = segmentation_metrics(confusion_matrix(t, scene.semantics, k), scene.class_names)
            metrics["teacher_miou"], metrics["teacher_accuracy"] = tm["miou"], tm["accuracy"]
    return metrics

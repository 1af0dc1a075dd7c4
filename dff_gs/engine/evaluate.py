"""Held-out evaluation: PSNR / SSIM, depth, and semantic segmentation from rendered features.

Evaluation is written once, against :class:`~dff_gs.backbone.Backbone`: a
:class:`~dff_gs.core.gaussians.GaussianModel` is wrapped (rasterizer ``backend``, background), the NeRF backbone
(:class:`dff_gs.nerf.model.NerfModel`) is one itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor
from tqdm import tqdm

from dff_gs.backbone import Backbone, as_backbone
from dff_gs.core.cameras import Cameras
from dff_gs.data import SceneData
from dff_gs.core.utils import as_rgb
from dff_gs.eval.lpips import LPIPS_UNAVAILABLE, load_lpips, lpips_distance
from dff_gs.eval.metrics import confusion_matrix, depth_metrics, psnr, segmentation_metrics, ssim
from dff_gs.io.images import colorize_labels, depth_to_rgb, save_png, side_by_side


@dataclass
class ViewRender:
    """One rendered view.

    rgb: Tensor  # [H, W, 3]
    decoded: Optional[Tensor]  # [H, W, C] features in the teacher's space (None without features)
    depth: Optional[Tensor]  # [H, W] expected z-depth (None if the backbone renders none)
    """

    rgb: Tensor
    decoded: Optional[Tensor]
    depth: Optional[Tensor]


@torch.no_grad()
def render_view(backbone: Backbone, cameras: Cameras, with_features: bool = True) -> ViewRender:
    """The single camera in ``cameras`` rendered by ``backbone``: RGB, decoded features (when asked and carried),
    depth."""
    feats = with_features and backbone.has_features
    out = backbone.render(cameras, with_features=feats)
    return ViewRender(rgb=out.rgb[0], decoded=backbone.decode(out.features[0]) if feats else None,
                      depth=None if out.depth is None else out.depth[0, ..., 0])


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
    model,
    scene: SceneData,
    *,
    device: torch.device,
    backend: str = "auto",
    background: Optional[Tensor] = None,
    class_embeddings: Optional[Tensor] = None,
    teacher_labels: Optional[Tensor] = None,
    render_dir: Optional[Path] = None,
    num_render_views: int = 4,
    lpips_weights: str = "",
    progress: bool = True,
) -> dict:
    """Render every view of ``scene`` (normally the test split) and measure it.

    Args:
        model: a GaussianModel (rendered with ``backend`` over ``background``) or any
            :class:`~dff_gs.backbone.Backbone` (a NeRF)
        class_embeddings: Tensor  # [K, C] text embeddings of scene.class_names (teacher space), or None
        teacher_labels: Tensor  # [V, h, w] the 2D teacher's own predictions on these views, or None
        lpips_weights: the LPIPS backbone's weights file (``train.lpips_weights``); empty: no LPIPS
    Returns:
        dict with psnr, ssim (torchmetrics, as nerfstudio / gsplat), lpips (a float, or LPIPS_UNAVAILABLE), and
        where they apply depth_delta1 / depth_absrel, miou / accuracy /
        per_class_iou, teacher_miou / teacher_accuracy, and num_views.
    """
    cams = scene.cameras.to(device)
    backbone = as_backbone(model, backend=backend, background=background)
    seg = class_embeddings is not None and scene.semantics is not None and backbone.has_features
    k = len(scene.class_names) if scene.class_names else 0
    conf = torch.zeros(k, k, dtype=torch.long) if seg else None
    psnrs, ssims, lpipss, depth_pred, depth_gt = [], [], [], [], []
    lpips_net = load_lpips(lpips_weights).to(device) if lpips_weights else None
    if render_dir is not None:
        render_dir = Path(render_dir)
        render_dir.mkdir(parents=True, exist_ok=True)
    for i in tqdm(range(scene.num_views), desc="eval", disable=not progress, leave=False):
        out = render_view(backbone, cams[[i]], with_features=seg)
        rgb = out.rgb.clamp(0, 1).cpu()
        gt = as_rgb(scene.images[i])
        psnrs.append(psnr(rgb, gt))
        ssims.append(ssim(rgb, gt))
        if lpips_net is not None:
            lpipss.append(lpips_distance(lpips_net, rgb, gt))
        pred_lab = None
        if scene.depths is not None and out.depth is not None:
            depth_pred.append(out.depth.cpu())
            depth_gt.append(scene.depths[i])
        if seg:
            pred_lab = predict_labels(out.decoded, class_embeddings.to(out.decoded.device)).cpu()
            conf += confusion_matrix(pred_lab, scene.semantics[i], k)
        if render_dir is not None and i < num_render_views:
            name = Path(scene.image_names[i]).name
            save_png(render_dir / f"{name}.png", rgb)
            panels = [gt, rgb] + ([depth_to_rgb(out.depth)] if out.depth is not None else [])
            if pred_lab is not None:
                panels.append(colorize_labels(scene.semantics[i], k))
                panels.append(colorize_labels(pred_lab, k))
                if teacher_labels is not None:
                    t = resize_labels(teacher_labels[i : i + 1], scene.height, scene.width)[0]
                    panels.append(colorize_labels(t, k))
            save_png(render_dir / f"compare_{name}.png", side_by_side(*panels))
    metrics = {"psnr": sum(psnrs) / len(psnrs), "ssim": sum(ssims) / len(ssims),
               "lpips": sum(lpipss) / len(lpipss) if lpipss else LPIPS_UNAVAILABLE, "num_views": scene.num_views}
    if depth_pred:
        metrics.update(depth_metrics(torch.stack(depth_pred), torch.stack(depth_gt)))
    if seg:
        metrics.update(segmentation_metrics(conf, scene.class_names))
        if teacher_labels is not None:
            t = resize_labels(teacher_labels, scene.height, scene.width)
            tm = segmentation_metrics(confusion_matrix(t, scene.semantics, k), scene.class_names)
            metrics["teacher_miou"], metrics["teacher_accuracy"] = tm["miou"], tm["accuracy"]
    return metrics

"""Fill what a deletion reveals: surfaces no training view saw, behind the deleted object.

After ``delete``, the training views (:func:`dff_gs.query.query_cameras`: evenly spaced, small) are
rendered without the object. Where the object was drawn (its own alpha >= 0.3, dilated a pixel) and the
edited render is not opaque (alpha < ``opaque``), the view has a hole: its colour and depth are inpainted in 2D
from the surroundings (OpenCV ``cv2.inpaint``, Telea). New Gaussians are seeded at the hole pixels,
back-projected at the inpainted depth, coloured by the inpainted image and given the mean feature of their
nearest surviving Gaussians (so the filled floor is queried as floor). Then only the new Gaussians are fitted
to the inpainted views for ``steps`` steps (L1), everything else frozen.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from tqdm import tqdm

from dff_gs.core.config import option
from dff_gs.core.errors import ConfigError
from dff_gs.core.gaussians import GaussianModel, rgb_to_sh0, sh0_to_rgb
from dff_gs.core.neighbors import knn
from dff_gs.edit.ops import take, with_params
from dff_gs.query import query_cameras, render_values
from dff_gs.render import rasterize, render, view_colors


@dataclass
class FillConfig:
    """How ``delete --fill`` fills the revealed surfaces."""

    views: int = option(16, "training views rendered, inpainted and fitted (evenly spaced)")
    side: int = option(160, "those views at most this many pixels on the longer side")
    opaque: float = option(0.95, "a pixel of the object's silhouette is a hole when the edited render's alpha is "
                                 "below this")
    seeds_per_view: int = option(400, "new Gaussians seeded per view at most (hole pixels subsampled)")
    steps: int = option(150, "fitting steps of the new Gaussians (everything else frozen)")
    lr: float = option(0.01, "learning rate of the new Gaussians' colours, opacities and log-scales")
    radius: int = option(5, "cv2.inpaint radius in pixels")


def _inpaint(rgb: Tensor, depth: Tensor, hole: Tensor, unknown_depth: Tensor, radius: int) -> tuple[Tensor, Tensor]:
    """Telea inpainting of ``rgb  # [H, W, 3]`` inside ``hole  # [H, W]`` and of ``depth  # [H, W]`` inside
    ``unknown_depth``.  Returns (rgb [H, W, 3], depth [H, W])."""
    import cv2

    img = (rgb.clamp(0, 1).cpu().numpy() * 255 + 0.5).astype(np.uint8)
    mask = hole.cpu().numpy().astype(np.uint8)
    out_rgb = cv2.inpaint(img, mask, radius, cv2.INPAINT_TELEA).astype(np.float32) / 255.0
    d = depth.cpu().numpy().astype(np.float32)
    um = unknown_depth.cpu().numpy().astype(np.uint8)
    out_d = cv2.inpaint(d, um, radius, cv2.INPAINT_TELEA) if um.any() and not um.all() else d
    return torch.from_numpy(out_rgb).to(rgb.device), torch.from_numpy(out_d).to(depth.device)


@torch.no_grad()
def _targets(before: GaussianModel, removed: Tensor, after: GaussianModel, cams, background: Tensor,
             cfg: FillConfig, backend: str):
    """Per view: the inpainted target image, its hole mask and the inpainted z-depth."""
    obj = take(before, removed)
    targets, holes, depths = [], [], []
    for i in range(len(cams)):
        out = render(after, cams[[i]], backgrounds=background[None], with_features=False, backend=backend)
        _, a_obj = render_values(obj, cams[[i]], torch.ones(obj.num_gaussians, 1, device=obj.device), backend)
        sil = F.max_pool2d((a_obj[0, ..., 0] >= 0.3).float()[None, None], 3, 1, 1)[0, 0] > 0
        alpha = out.alpha[0, ..., 0]
        hole = sil & (alpha < cfg.opaque)
        rgb, depth = _inpaint(out.rgb[0], out.depth[0, ..., 0], hole, hole | (alpha < 0.5), cfg.radius)
        targets.append(torch.where(hole[..., None], rgb, out.rgb[0]))
        holes.append(hole)
        depths.append(depth)
    return torch.stack(targets), torch.stack(holes), torch.stack(depths)


def _seeds(after: GaussianModel, cams, targets: Tensor, holes: Tensor, depths: Tensor, cfg: FillConfig,
           seed: int = 0) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """New Gaussians' centres, colours, linear scales and features at (a subsample of) the hole pixels."""
    g = torch.Generator().manual_seed(seed)
    pts, cols, scales = [], [], []
    world = cams.backproject(depths)  # [V, H, W, 3]
    for i in range(len(cams)):
        idx = (holes[i] & (depths[i] > 0)).reshape(-1).nonzero()[:, 0]
        if len(idx) == 0:
            continue
        stride = max(1.0, len(idx) / cfg.seeds_per_view)
        pick = idx[torch.randperm(len(idx), generator=g)[:cfg.seeds_per_view].to(idx.device)]
        pts.append(world[i].reshape(-1, 3)[pick])
        cols.append(targets[i].reshape(-1, 3)[pick])
        footprint = depths[i].reshape(-1)[pick] / cams.Ks[i, 0, 0]
        scales.append(footprint * math.sqrt(stride))
    if not pts:
        empty = torch.zeros(0, 3)
        return empty, empty, torch.zeros(0), torch.zeros(0, after.feature_dim)
    pts, cols, scales = torch.cat(pts), torch.cat(cols), torch.cat(scales)
    feats = torch.zeros(len(pts), after.feature_dim)
    if after.feature_dim:
        _, nbr = knn(pts, after.get_means().detach(), 4)
        feats = after.params["features"].detach()[nbr].mean(1)
    return pts, cols, scales, feats


def fill_deleted(before: GaussianModel, removed: Tensor, after: GaussianModel, scene, cfg: FillConfig | None = None,
                 backend: str = "auto", progress: bool = False) -> tuple[GaussianModel, dict]:
    """``after`` (= ``before`` without ``removed  # [N] bool``) plus new Gaussians fitted to inpainted views of
    what the deletion revealed (see the module docstring). ``scene``: the :class:`~dff_gs.data.SceneData` the
    model was trained on (its cameras and background).  Returns (model, info)."""
    cfg = cfg or FillConfig()
    if scene is None:
        raise ConfigError("delete --fill needs the scene's cameras: pass --data SCENE (the model's sidecar names none)")
    device = after.device
    cams = query_cameras(scene, cfg.views, cfg.side).to(device)
    background = torch.tensor(scene.background, dtype=torch.float32, device=device)
    targets, holes, depths = _targets(before, removed, after, cams, background, cfg, backend)
    pts, cols, scales, feats = _seeds(after, cams.to("cpu"), targets.cpu(), holes.cpu(), depths.cpu(), cfg)
    info = {"views": len(cams), "hole_pixels": int(holes.sum()), "new_gaussians": len(pts), "steps": 0}
    if len(pts) == 0:
        return after, info
    P = len(pts)
    new = {"means": pts.to(device), "log_scales": torch.log(scales.clamp_min(1e-6))[:, None].repeat(1, 3).to(device),
           "quats": torch.tensor([[1.0, 0, 0, 0]]).repeat(P, 1).to(device),
           "logit_opacity": torch.full((P,), 0.0, device=device), "sh0": rgb_to_sh0(cols.clamp(0, 1)).to(device)}
    new = {k: v.clone().requires_grad_(True) for k, v in new.items()}
    lrs = {"means": 0.1 * float(scales.mean()), "log_scales": cfg.lr * 0.5, "quats": cfg.lr * 0.1,
           "logit_opacity": cfg.lr * 5, "sh0": cfg.lr}
    opt = torch.optim.Adam([{"params": [new[k]], "lr": lr} for k, lr in lrs.items()], eps=1e-15)
    with torch.no_grad():  # the frozen Gaussians: their colours seen from each view, their geometry
        frozen_rgb = view_colors(after, cams)
        frozen = (after.get_means(), after.get_quats(), after.get_scales(), after.get_opacities())
    g = torch.Generator().manual_seed(0)
    for _ in tqdm(range(cfg.steps), desc="fill", disable=not progress, leave=False):
        v = int(torch.randint(len(cams), (1,), generator=g))
        rgb_new = torch.clamp_min(sh0_to_rgb(new["sh0"]), 0.0)
        colors = torch.cat([frozen_rgb[v], rgb_new])[None]
        img, _, _, _ = rasterize(torch.cat([frozen[0], new["means"]]),
                                 torch.cat([frozen[1], F.normalize(new["quats"], dim=-1)]),
                                 torch.cat([frozen[2], new["log_scales"].exp()]),
                                 torch.cat([frozen[3], torch.sigmoid(new["logit_opacity"])]), colors,
                                 cams.viewmats[[v]], cams.Ks[[v]], cams.width, cams.height,
                                 backgrounds=background[None], render_depth=False, backend=backend,
                                 antialiased=after.antialiased)
        loss = (img[0] - targets[v]).abs().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    info["steps"] = cfg.steps
    K = after.get_sh().shape[1]
    params = {k: v.detach() for k, v in after.params.items()}
    added = {"means": new["means"].detach(), "quats": new["quats"].detach(), "scales": new["log_scales"].detach(),
             "opacities": new["logit_opacity"].detach(), "sh0": new["sh0"].detach()[:, None],
             "shN": torch.zeros(P, K - 1, 3, device=device), "features": feats.to(device)}
    merged = {k: torch.cat([params[k], added[k].to(params[k])]) for k in params}
    return with_params(after, merged), info

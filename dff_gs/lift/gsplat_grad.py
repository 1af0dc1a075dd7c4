"""Lifting through gsplat's rasterizer: the gradient of ``<F, render(colours)>`` with respect to per-Gaussian
colours is ``sum_p w_gp F(p)``, and with a channel of ones, ``sum_p w_gp`` (CUDA only)."""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from dff_gs.core.cameras import Cameras
from dff_gs.core.features import resample_maps
from dff_gs.render.rasterize import EPS2D, FAR_PLANE, NEAR_PLANE


def accumulate_gsplat(means: Tensor, quats: Tensor, scales: Tensor, opacities: Tensor, cameras: Cameras,
                      maps: Tensor, pix_weights: Optional[Tensor], feat_sum: Tensor, weight_sum: Tensor,
                      antialiased: bool = False) -> None:
    """Add the weighted feature sums of ``I`` cameras into ``feat_sum`` and ``weight_sum``.

    means: Tensor        # [N, 3]
    quats: Tensor        # [N, 4] w x y z
    scales: Tensor       # [N, 3] linear
    opacities: Tensor    # [N] in [0, 1]
    maps: Tensor         # [I, h, w, C] resampled bilinearly to the cameras' resolution
    pix_weights: Tensor  # [I, H, W] or None
    feat_sum: Tensor     # [N, C] accumulated in place
    weight_sum: Tensor   # [N] accumulated in place
    """
    from gsplat import rasterization

    N, C = feat_sum.shape
    H, W = cameras.height, cameras.width
    target = resample_maps(maps.float(), H, W)  # [I, H, W, C]
    pw = pix_weights if pix_weights is not None else target.new_ones(target.shape[:3])
    target = torch.cat([target * pw[..., None], pw[..., None]], -1)  # [I, H, W, C + 1]
    colors = torch.zeros(N, C + 1, device=means.device, requires_grad=True)
    with torch.enable_grad():
        img, _, _ = rasterization(means.detach(), quats.detach(), scales.detach(), opacities.detach(), colors,
                                  cameras.viewmats, cameras.Ks, W, H, near_plane=NEAR_PLANE, far_plane=FAR_PLANE,
                                  eps2d=EPS2D, packed=False, tile_size=16,
                                  rasterize_mode="antialiased" if antialiased else "classic",
                                  render_mode="RGB", sh_degree=None)
        (grad,) = torch.autograd.grad(img, colors, grad_outputs=target)
    feat_sum += grad[:, :C]
    weight_sum += grad[:, C]

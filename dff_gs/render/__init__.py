"""``render()``: RGB, features, depth and alpha of a :class:`GaussianModel` from :class:`Cameras`, in one
rasterization call (features ride along as extra channels, as Feature Splatting does)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
from torch import Tensor

import cuda_ext
from dff_gs.core.backends import BACKENDS
from dff_gs.core.sh import eval_sh
from dff_gs.render.rasterize import rasterize, resolve_backend
from dff_gs.render.sh import sh_colors

__all__ = ["render", "view_colors", "RenderOutput", "rasterize", "resolve_backend", "BACKENDS", "eval_sh"]


@dataclass
class RenderOutput:
    """rgb: Tensor  # [C, H, W, 3]
    features: Optional[Tensor]  # [C, H, W, D] stored (not decoded) features, composited over 0
    depth: Tensor  # [C, H, W, 1] expected z-depth
    alpha: Tensor  # [C, H, W, 1]
    """

    rgb: Tensor
    features: Optional[Tensor]
    depth: Optional[Tensor]
    alpha: Tensor
    info: dict


def view_colors(model, cameras, sh_degree: Optional[int] = None, compiled: bool = False) -> Tensor:
    """The colour of every Gaussian seen from each camera: SH (up to ``sh_degree``, default the model's) evaluated
    along the camera-to-Gaussian direction, + 0.5 and clamped at 0 (gsplat's convention). ``compiled``: by the
    compiled CPU kernel (``cuda_ext.sh_colors_cpu``, what the cpu backend uses) instead of its torch twin
    (:func:`~dff_gs.render.sh.sh_colors`), unless the camera centres need a gradient.
    Returns Tensor  # [C, N, 3]"""
    degree = model.sh_degree if sh_degree is None else min(sh_degree, model.sh_degree)
    args = (model.get_means(), model.params["sh0"], model.params["shN"], cameras.centers, degree)
    if compiled and not cameras.centers.requires_grad:
        return cuda_ext.sh_colors_cpu(*args)
    return sh_colors(*args)


def render(model, cameras, *, backgrounds: Optional[Tensor] = None, with_features: bool = True,
           backend: str = "auto", sh_degree: Optional[int] = None, render_depth: bool = True,
           tile_size: Optional[int] = None) -> RenderOutput:
    """Render ``model`` from ``cameras``.

    backgrounds: Tensor | None  # [C, 3] or [3] RGB background (features always composite over 0)
    sh_degree: active SH degree (default: the model's)
    """
    C = len(cameras)
    means = model.get_means()
    backend = resolve_backend(backend, means.device)
    rgb = view_colors(model, cameras, sh_degree, compiled=backend == "cpu")  # [C, N, 3]
    feats = with_features and model.feature_dim > 0
    colors = torch.cat([rgb, model.params["features"][None].expand(C, -1, -1)], -1) if feats else rgb
    bg = None
    if backgrounds is not None:
        bg = torch.as_tensor(backgrounds, dtype=rgb.dtype, device=rgb.device)
        bg = bg.expand(C, 3) if bg.dim() == 1 else bg
        if feats:
            bg = torch.cat([bg, bg.new_zeros(C, model.feature_dim)], -1)
    img, depth, alpha, info = rasterize(
        means, model.get_quats(), model.get_scales(), model.get_opacities(), colors, cameras.viewmats, cameras.Ks,
        cameras.width, cameras.height, backgrounds=bg, render_depth=render_depth, backend=backend,
        tile_size=tile_size, antialiased=model.antialiased)
    return RenderOutput(rgb=img[..., :3], features=img[..., 3:] if feats else None, depth=depth, alpha=alpha,
                        info=info)

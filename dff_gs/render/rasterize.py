"""``rasterize()``: one call for projected, evaluated colours of any width, behind a backend registry."""

from __future__ import annotations

from typing import Callable, Optional

import torch
from torch import Tensor

from dff_gs.errors import ConfigError
from dff_gs.render.backend_torch import rasterize_torch
from dff_gs.render.projection import project_gaussians

BACKENDS = ("auto", "torch", "gsplat")


NEAR_PLANE, FAR_PLANE, EPS2D = 0.01, 1e10, 0.3
"""Default near / far clipping planes and the low-pass added to 2D covariances (gsplat's defaults)."""

def _torch_backend(means, quats, scales, opacities, colors, viewmats, Ks, width, height, *, near_plane, far_plane,
                   eps2d, backgrounds, render_depth, tile_size):
    means2d, conics, depths, radii = project_gaussians(means, quats, scales, viewmats, Ks, width, height,
                                                       near_plane, far_plane, eps2d)
    D = colors.shape[-1]
    feats = torch.cat([colors, depths[..., None]], -1) if render_depth else colors
    if backgrounds is not None and render_depth:
        backgrounds = torch.cat([backgrounds, backgrounds.new_zeros(backgrounds.shape[0], 1)], -1)
    img, alpha = rasterize_torch(means2d, conics, opacities, feats, depths, radii, width, height,
                                 tile_size=tile_size, backgrounds=backgrounds)
    depth = None
    if render_depth:
        img, depth = img[..., :D], img[..., D:] / alpha.clamp_min(1e-10)  # expected depth ("ED")
    info = {"means2d": means2d, "radii": radii, "depths": depths, "conics": conics, "width": width,
            "height": height, "n_cameras": viewmats.shape[0], "gaussian_ids": None, "tile_size": tile_size}
    return img, depth, alpha, info


def _gsplat_backend(*args, **kwargs):
    from dff_gs.render.backend_gsplat import rasterize_gsplat

    kwargs["tile_size"] = 16
    return rasterize_gsplat(*args, **kwargs)


_REGISTRY: dict[str, Callable] = {"torch": _torch_backend, "gsplat": _gsplat_backend}


def register_backend(name: str, fn: Callable) -> None:
    _REGISTRY[name] = fn


def resolve_backend(backend: str, device: torch.device) -> str:
    """``auto`` -> ``gsplat`` on CUDA when it imports, else ``torch``; unknown names -> ``ConfigError``."""
    if backend == "auto":
        if device.type == "cuda":
            from dff_gs.render.backend_gsplat import gsplat_available

            if gsplat_available()[0]:
                return "gsplat"
        return "torch"
    if backend not in _REGISTRY:
        raise ConfigError(f"unknown render backend {backend!r} (known: auto, {', '.join(_REGISTRY)})")
    return backend


def rasterize(means: Tensor, quats: Tensor, scales: Tensor, opacities: Tensor, colors: Tensor, viewmats: Tensor,
              Ks: Tensor, width: int, height: int, *, near_plane: float = NEAR_PLANE, far_plane: float = FAR_PLANE,
              eps2d: float = EPS2D, backgrounds: Optional[Tensor] = None, render_depth: bool = True,
              backend: str = "auto", tile_size: int = 8):
    """Rasterize Gaussians with already-evaluated colours.

    means: Tensor      # [N, 3]
    quats: Tensor      # [N, 4] w x y z (normalised or not)
    scales: Tensor     # [N, 3] linear
    opacities: Tensor  # [N] in [0, 1]
    colors: Tensor     # [C, N, D] any D
    viewmats: Tensor   # [C, 4, 4] world-to-camera, OpenCV
    Ks: Tensor         # [C, 3, 3]
    backgrounds: Tensor | None  # [C, D]
    returns colors [C, H, W, D], depth [C, H, W, 1] (expected depth, or None), alpha [C, H, W, 1], info dict
    (``means2d [C, N, 2]`` with its gradient retained, ``radii [C, N, 2]``, width, height, n_cameras).
    ``tile_size`` applies to the torch backend (gsplat uses 16).
    """
    name = resolve_backend(backend, means.device)
    img, depth, alpha, info = _REGISTRY[name](
        means, quats, scales, opacities, colors, viewmats, Ks, width, height, near_plane=near_plane,
        far_plane=far_plane, eps2d=eps2d, backgrounds=backgrounds, render_depth=render_depth, tile_size=tile_size)
    if info["means2d"].requires_grad:
        info["means2d"].retain_grad()  # densification reads its gradient, whichever backend ran
    return img, depth, alpha, info

"""``rasterize()``: one call for projected, evaluated colours of any width, behind a backend registry."""

from __future__ import annotations

import sys
from typing import Callable, Optional

import torch
from torch import Tensor

from cuda_ext import cpu_available, project_cpu, rasterize_cpu
from dff_gs.core.errors import ConfigError
from dff_gs.render.backend_gsplat import gsplat_available, rasterize_gsplat
from dff_gs.render.backend_torch import rasterize_torch
from dff_gs.render.projection import opacity_compensation, project_gaussians

NEAR_PLANE, FAR_PLANE, EPS2D = 0.01, 1e10, 0.3
"""Default near / far clipping planes and the low-pass added to 2D covariances (gsplat's defaults)."""

def _projected(projector: Callable, compositor: Callable) -> Callable:
    """A backend that projects with ``projector`` (:func:`project_gaussians`' contract) and composites with
    ``compositor`` (:func:`rasterize_torch`'s contract); depth rides along as one more channel."""

    def backend(means, quats, scales, opacities, colors, viewmats, Ks, width, height, *, near_plane, far_plane, eps2d,
                backgrounds, render_depth, tile_size, antialiased=False):
        project = project_gaussians if viewmats.requires_grad or Ks.requires_grad else projector  # camera gradients
        means2d, conics, depths, radii = project(means, quats, scales, viewmats, Ks, width, height,
                                                 near_plane, far_plane, eps2d)
        if antialiased:
            opacities = opacities[None] * opacity_compensation(conics, eps2d)  # [C, N]
        D = colors.shape[-1]
        feats = torch.cat([colors, depths[..., None]], -1) if render_depth else colors
        if backgrounds is not None and render_depth:
            backgrounds = torch.cat([backgrounds, backgrounds.new_zeros(backgrounds.shape[0], 1)], -1)
        img, alpha = compositor(means2d, conics, opacities, feats, depths, radii, width, height,
                                tile_size=tile_size, backgrounds=backgrounds)
        depth = None
        if render_depth:
            img, depth = img[..., :D], img[..., D:] / alpha.clamp_min(1e-10)  # expected depth ("ED")
        info = {"means2d": means2d, "radii": radii, "depths": depths, "conics": conics, "width": width,
                "height": height, "n_cameras": viewmats.shape[0], "gaussian_ids": None, "tile_size": tile_size}
        return img, depth, alpha, info

    return backend


def _cpu_projector(*args):
    return project_cpu(*args)


def _cpu_compositor(*args, **kwargs):
    return rasterize_cpu(*args, **kwargs)


def _gsplat_backend(*args, **kwargs):
    kwargs["tile_size"] = 16
    return rasterize_gsplat(*args, **kwargs)


_REGISTRY: dict[str, Callable] = {"cpu": _projected(_cpu_projector, _cpu_compositor),
                                  "torch": _projected(project_gaussians, rasterize_torch),
                                  "gsplat": _gsplat_backend}
_said_why = False


def register_backend(name: str, fn: Callable) -> None:
    _REGISTRY[name] = fn


def cpu_backend_available() -> tuple[bool, str]:
    """(usable, reason) for the compiled CPU rasterizer (``cuda_ext._cpu``, JIT-built on first use if need be)."""
    return cpu_available()


def resolve_backend(backend: str, device: torch.device) -> str:
    """``auto`` -> ``gsplat`` on CUDA when it imports, ``cpu`` (compiled) on the CPU when it is built, else ``torch``
    (one line on stderr says why, once); unknown or unusable names -> ``ConfigError``."""
    global _said_why
    if backend == "auto":
        if device.type == "cuda":
            if gsplat_available()[0]:
                return "gsplat"
        elif device.type == "cpu":
            ok, why = cpu_backend_available()
            if ok:
                return "cpu"
            if not _said_why:
                print(f"dff_gs: rendering with the torch backend: {why}", file=sys.stderr)
                _said_why = True
        return "torch"
    if backend not in _REGISTRY:
        raise ConfigError(f"unknown render backend {backend!r} (known: auto, {', '.join(_REGISTRY)})")
    if backend == "gsplat":
        ok, why = gsplat_available()
        if not ok:
            raise ConfigError(f"render backend 'gsplat' is unavailable: {why}; use --backend auto, cpu or torch")
    if backend == "cpu":
        if device.type != "cpu":
            raise ConfigError(f"render backend 'cpu' runs on the CPU; the model is on {device}")
        ok, why = cpu_backend_available()
        if not ok:
            raise ConfigError(f"render backend 'cpu' is unavailable: {why}")
    return backend


def rasterize(means: Tensor, quats: Tensor, scales: Tensor, opacities: Tensor, colors: Tensor, viewmats: Tensor,
              Ks: Tensor, width: int, height: int, *, near_plane: float = NEAR_PLANE, far_plane: float = FAR_PLANE,
              eps2d: float = EPS2D, backgrounds: Optional[Tensor] = None, render_depth: bool = True,
              backend: str = "auto", tile_size: Optional[int] = None, antialiased: bool = False):
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
    ``tile_size`` applies to the cpu and torch backends (gsplat uses 16); by default 16 for cpu (fewer (tile,
    Gaussian) pairs to list and walk: about 10% faster here), 8 for torch (smaller per-tile tensors). A pixel's
    Gaussians and their order do not depend on it (each is tested only within its 1/255 ellipse).
    ``antialiased``: Mip-Splatting's 2D filter on every backend (gsplat's ``rasterize_mode="antialiased"``; the
    others scale each opacity by :func:`~dff_gs.render.projection.opacity_compensation`).
    """
    name = resolve_backend(backend, means.device)
    tile_size = int(tile_size or (8 if name == "torch" else 16))
    img, depth, alpha, info = _REGISTRY[name](
        means, quats, scales, opacities, colors, viewmats, Ks, width, height, near_plane=near_plane,
        far_plane=far_plane, eps2d=eps2d, backgrounds=backgrounds, render_depth=render_depth, tile_size=tile_size,
        antialiased=antialiased)
    if info["means2d"].requires_grad:
        info["means2d"].retain_grad()  # densification reads its gradient, whichever backend ran
    return img, depth, alpha, info

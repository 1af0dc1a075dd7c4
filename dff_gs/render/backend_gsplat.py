"""The CUDA backend: gsplat's ``rasterization()`` (imported lazily; a clear error where it cannot run)."""

from __future__ import annotations

from torch import Tensor


def gsplat_available() -> tuple[bool, str]:
    """(usable, reason) for the gsplat backend on this machine."""
    import torch

    if not torch.cuda.is_available():
        return False, "gsplat needs CUDA and no CUDA device is visible"
    try:
        import gsplat  # noqa: F401
    except Exception as err:  # noqa: BLE001  any import failure means "not usable", with its reason
        return False, f"gsplat failed to import: {err}"
    return True, ""


def rasterize_gsplat(means: Tensor, quats: Tensor, scales: Tensor, opacities: Tensor, colors: Tensor,
                     viewmats: Tensor, Ks: Tensor, width: int, height: int, *, near_plane: float, far_plane: float,
                     eps2d: float, backgrounds: Tensor | None, render_depth: bool, tile_size: int = 16,
                     antialiased: bool = False):
    """Same contract as :func:`dff_gs.render.rasterize.rasterize` (colours already evaluated, any D)."""
    ok, why = gsplat_available()
    if not ok:
        raise RuntimeError(f"render backend 'gsplat' is unavailable: {why}; use backend='torch'")
    if means.device.type != "cuda":
        raise RuntimeError("render backend 'gsplat' needs the model and cameras on a CUDA device")
    from gsplat import rasterization

    out, alpha, info = rasterization(
        means, quats, scales, opacities, colors, viewmats, Ks, width, height, near_plane=near_plane,
        far_plane=far_plane, eps2d=eps2d, backgrounds=backgrounds, render_mode="RGB+ED" if render_depth else "RGB",
        packed=False, tile_size=tile_size, rasterize_mode="antialiased" if antialiased else "classic", sh_degree=None,
    )
    if render_depth:
        return out[..., :-1], out[..., -1:], alpha, info
    return out, None, alpha, info

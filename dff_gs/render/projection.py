"""EWA projection of 3D Gaussians to pixel-space 2D Gaussians, with gsplat's conventions (classic mode):
the Jacobian is evaluated at the mean clamped to 1.3x the field of view, ``eps2d`` is added to the 2D
covariance's diagonal, the radius is ``ceil(3.33 sigma)`` per axis, and Gaussians nearer than
``near_plane``, farther than ``far_plane`` or wholly outside the image get radius 0. Antialiased mode (gsplat's
``rasterize_mode="antialiased"``, Mip-Splatting's 2D filter) also scales each opacity by
:func:`opacity_compensation`."""

from __future__ import annotations

import torch
from torch import Tensor

from dff_gs.core.geometry import quat_to_rotmat


def covariance_3d(quats: Tensor, scales: Tensor) -> Tensor:
    """World covariances ``[N, 3, 3]`` = R S S R^T from quaternions ``[N, 4]`` and linear scales ``[N, 3]``."""
    M = quat_to_rotmat(quats) * scales[..., None, :]
    return M @ M.transpose(-1, -2)


def project_gaussians(means: Tensor, quats: Tensor, scales: Tensor, viewmats: Tensor, Ks: Tensor, width: int,
                      height: int, near_plane: float = 0.01, far_plane: float = 1e10,
                      eps2d: float = 0.3) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Project Gaussians into each camera.

    means: Tensor     # [N, 3]
    quats: Tensor     # [N, 4] w x y z
    scales: Tensor    # [N, 3] linear
    viewmats: Tensor  # [C, 4, 4] world-to-camera, OpenCV
    Ks: Tensor        # [C, 3, 3]
    returns means2d [C, N, 2] (pixels), conics [C, N, 3] (a, b, c of the inverse 2D covariance),
            depths [C, N] (camera z), radii [C, N, 2] int32 (0 = culled)
    """
    R, t = viewmats[:, :3, :3], viewmats[:, :3, 3]
    pc = torch.einsum("cij,nj->cni", R, means) + t[:, None]  # [C, N, 3]
    x, y, z = pc.unbind(-1)
    fx, fy = Ks[:, 0, 0, None], Ks[:, 1, 1, None]
    cx, cy = Ks[:, 0, 2, None], Ks[:, 1, 2, None]
    zs = torch.where(z.abs() < 1e-6, torch.full_like(z, 1e-6), z)  # keep culled entries finite
    tan_x, tan_y = 0.5 * width / fx, 0.5 * height / fy
    lim_xp, lim_xn = (width - cx) / fx + 0.3 * tan_x, cx / fx + 0.3 * tan_x
    lim_yp, lim_yn = (height - cy) / fy + 0.3 * tan_y, cy / fy + 0.3 * tan_y
    tx = zs * torch.minimum(torch.maximum(x / zs, -lim_xn), lim_xp)
    ty = zs * torch.minimum(torch.maximum(y / zs, -lim_yn), lim_yp)
    zero = torch.zeros_like(zs)
    J = torch.stack([fx / zs, zero, -fx * tx / (zs * zs), zero, fy / zs, -fy * ty / (zs * zs)], -1)
    J = J.reshape(*zs.shape, 2, 3)  # [C, N, 2, 3]
    cov_w = covariance_3d(quats, scales)  # [N, 3, 3]
    cov_c = R[:, None] @ cov_w[None] @ R[:, None].transpose(-1, -2)  # [C, N, 3, 3]
    cov2d = J @ cov_c @ J.transpose(-1, -2)  # [C, N, 2, 2]
    a = cov2d[..., 0, 0] + eps2d
    b = cov2d[..., 0, 1]
    c = cov2d[..., 1, 1] + eps2d
    det = a * c - b * b
    ok = det > 0
    det_s = torch.where(ok, det, torch.ones_like(det))
    conics = torch.stack([c / det_s, -b / det_s, a / det_s], -1)
    means2d = torch.stack([fx * x / zs + cx, fy * y / zs + cy], -1)
    with torch.no_grad():
        rx = torch.ceil(3.33 * a.clamp_min(0).sqrt())
        ry = torch.ceil(3.33 * c.clamp_min(0).sqrt())
        mx, my = means2d[..., 0], means2d[..., 1]
        inside = (mx + rx > 0) & (mx - rx < width) & (my + ry > 0) & (my - ry < height)
        valid = ok & (z > near_plane) & (z < far_plane) & inside & torch.isfinite(mx) & torch.isfinite(my)
        radii = torch.stack([rx, ry], -1) * valid[..., None]
        radii = radii.clamp_max(2 ** 30).to(torch.int32)
    return means2d, conics, z, radii


def opacity_compensation(conics: Tensor, eps2d: float) -> Tensor:
    """Mip-Splatting's 2D filter, gsplat's ``rasterize_mode="antialiased"``: the factor ``sqrt(det(S) / det(S +
    eps2d I))`` by which a Gaussian's opacity is scaled, ``S`` its projected covariance before the low-pass, so that
    the low-pass spreads its footprint without adding to it (a Gaussian far smaller than a pixel, as when a scene
    is seen from farther than it was trained, fades instead of growing to a pixel-sized blob). From the conics
    alone: with ``(a, b, c)`` the inverse of ``S + eps2d I``, the ratio is ``1 - eps2d (a + c) + eps2d^2 (ac - b^2)``.

    conics: Tensor  # [..., 3] as :func:`project_gaussians` returns them (eps2d already added)
    Returns Tensor  # [...] in [0, 1]
    """
    a, b, c = conics.unbind(-1)
    ratio = 1 - eps2d * (a + c) + eps2d * eps2d * (a * c - b * b)
    return ratio.clamp(1e-12, 1).sqrt()

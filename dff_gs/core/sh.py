"""Real spherical harmonics up to degree 3 with the 3DGS / gsplat constants and sign convention."""

from __future__ import annotations

from torch import Tensor

C0 = 0.28209479177387814
C1 = 0.4886025119029199
C2 = (1.0925484305920792, -1.0925484305920792, 0.31539156525252005, -1.0925484305920792, 0.5462742152960396)
C3 = (-0.5900435899266435, 2.890611442640554, -0.4570457994644658, 0.3731763325901154,
      -0.4570457994644658, 1.445305721320277, -0.5900435899266435)


def eval_sh(degree: int, coeffs: Tensor, dirs: Tensor) -> Tensor:
    """Evaluate SH of ``degree`` (0..3).

    coeffs: Tensor  # [..., K, 3] with K >= (degree + 1) ** 2
    dirs: Tensor    # [..., 3] view directions (need not be normalised)
    returns: Tensor # [..., 3] SH value (colour = value + 0.5, clamped at 0, by the caller)
    """
    if not 0 <= degree <= 3:
        raise ValueError(f"SH degree must be 0..3, got {degree}")
    out = C0 * coeffs[..., 0, :]
    if degree == 0:
        return out
    d = dirs / dirs.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    x, y, z = d[..., 0:1], d[..., 1:2], d[..., 2:3]
    out = out - C1 * y * coeffs[..., 1, :] + C1 * z * coeffs[..., 2, :] - C1 * x * coeffs[..., 3, :]
    if degree == 1:
        return out
    xx, yy, zz, xy, yz, xz = x * x, y * y, z * z, x * y, y * z, x * z
    out = (out + C2[0] * xy * coeffs[..., 4, :] + C2[1] * yz * coeffs[..., 5, :]
           + C2[2] * (2.0 * zz - xx - yy) * coeffs[..., 6, :] + C2[3] * xz * coeffs[..., 7, :]
           + C2[4] * (xx - yy) * coeffs[..., 8, :])
    if degree == 2:
        return out
    return (out + C3[0] * y * (3.0 * xx - yy) * coeffs[..., 9, :] + C3[1] * xy * z * coeffs[..., 10, :]
            + C3[2] * y * (4.0 * zz - xx - yy) * coeffs[..., 11, :]
            + C3[3] * z * (2.0 * zz - 3.0 * xx - 3.0 * yy) * coeffs[..., 12, :]
            + C3[4] * x * (4.0 * zz - xx - yy) * coeffs[..., 13, :] + C3[5] * z * (xx - yy) * coeffs[..., 14, :]
            + C3[6] * x * (xx - 3.0 * yy) * coeffs[..., 15, :])

"""Similarity transforms of Gaussians: positions, orientations (quaternion composition), log scales, and the
view-dependent colour (each SH band rotated with the Gaussian, so a turned object still looks right); where rays
enter and leave an axis-aligned box (:func:`ray_aabb`, the NeRF's sampler and the region's beyond points).

Conventions: quaternions ``w x y z`` (Hamilton product), rotation matrices act on column vectors
(``x' = R x``), a Gaussian's rotation maps its local axes to world axes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Sequence

import torch
from torch import Tensor

from dff_gs.core.errors import ConfigError
from dff_gs.core.gaussians import num_sh_bases
from dff_gs.core.sh import eval_sh


def quat_to_rotmat(quats: Tensor) -> Tensor:
    """Rotation matrices ``[N, 3, 3]`` from quaternions ``[N, 4]`` (w x y z, normalised here)."""
    q = torch.nn.functional.normalize(quats, dim=-1)
    w, x, y, z = q.unbind(-1)
    return torch.stack([
        1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
        2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
        2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
    ], -1).reshape(*q.shape[:-1], 3, 3)


def quat_multiply(a: Tensor, b: Tensor) -> Tensor:
    """Hamilton product ``a * b`` (apply ``b`` first, then ``a``).  a, b: Tensor  # [..., 4] wxyz -> [..., 4]"""
    aw, ax, ay, az = a.unbind(-1)
    bw, bx, by, bz = b.unbind(-1)
    return torch.stack([aw * bw - ax * bx - ay * by - az * bz,
                        aw * bx + ax * bw + ay * bz - az * by,
                        aw * by - ax * bz + ay * bw + az * bx,
                        aw * bz + ax * by - ay * bx + az * bw], -1)


quat_to_matrix = quat_to_rotmat
"""Rotation matrices of (not necessarily unit) quaternions: the renderer's.
q: Tensor  # [..., 4] wxyz -> [..., 3, 3]"""


def matrix_to_quat(R: Tensor) -> Tensor:
    """Unit quaternion (w >= 0) of a rotation matrix.  R: Tensor  # [3, 3] -> [4] wxyz"""
    R = R.double()
    m = R
    tr = float(m[0, 0] + m[1, 1] + m[2, 2])
    if tr > 0:
        s = math.sqrt(tr + 1.0) * 2
        q = [0.25 * s, (m[2, 1] - m[1, 2]) / s, (m[0, 2] - m[2, 0]) / s, (m[1, 0] - m[0, 1]) / s]
    elif m[0, 0] > m[1, 1] and m[0, 0] > m[2, 2]:
        s = math.sqrt(1.0 + float(m[0, 0] - m[1, 1] - m[2, 2])) * 2
        q = [(m[2, 1] - m[1, 2]) / s, 0.25 * s, (m[0, 1] + m[1, 0]) / s, (m[0, 2] + m[2, 0]) / s]
    elif m[1, 1] > m[2, 2]:
        s = math.sqrt(1.0 + float(m[1, 1] - m[0, 0] - m[2, 2])) * 2
        q = [(m[0, 2] - m[2, 0]) / s, (m[0, 1] + m[1, 0]) / s, 0.25 * s, (m[1, 2] + m[2, 1]) / s]
    else:
        s = math.sqrt(1.0 + float(m[2, 2] - m[0, 0] - m[1, 1])) * 2
        q = [(m[1, 0] - m[0, 1]) / s, (m[0, 2] + m[2, 0]) / s, (m[1, 2] + m[2, 1]) / s, 0.25 * s]
    q = torch.tensor([float(v) for v in q], dtype=torch.float64)
    q = q / q.norm()
    return (q if q[0] >= 0 else -q).float()


def _finite(values: Sequence[float], what: str, n: Optional[int] = None) -> list[float]:
    try:
        vals = [float(v) for v in values]
    except (TypeError, ValueError):
        raise ConfigError(f"{what}: expected numbers, got {values!r}") from None
    if n is not None and len(vals) != n:
        raise ConfigError(f"{what}: expected {n} numbers, got {len(vals)} ({values!r})")
    if not all(math.isfinite(v) for v in vals):
        raise ConfigError(f"{what}: {values!r} is not finite")
    return vals


def axis_angle_matrix(axis: Sequence[float], degrees: float) -> Tensor:
    """Rotation by ``degrees`` about ``axis`` (right hand).  Returns Tensor  # [3, 3]"""
    a = torch.tensor(_finite(axis, "rotation axis", 3), dtype=torch.float64)
    (deg,) = _finite([degrees], "rotation angle")
    if a.norm() < 1e-12:
        raise ConfigError(f"rotation axis {list(axis)!r} has zero length")
    a = a / a.norm()
    t = math.radians(deg)
    K = torch.tensor([[0.0, -a[2], a[1]], [a[2], 0.0, -a[0]], [-a[1], a[0], 0.0]], dtype=torch.float64)
    return (torch.eye(3, dtype=torch.float64) + math.sin(t) * K + (1 - math.cos(t)) * K @ K).float()


def check_rotation(R: Tensor, what: str = "rotation") -> Tensor:
    """``R  # [3, 3]`` if it is a finite proper rotation, else ``ConfigError``."""
    R = torch.as_tensor(R, dtype=torch.float32)
    if R.shape != (3, 3) or not torch.isfinite(R).all():
        raise ConfigError(f"{what}: expected a finite 3x3 matrix, got {R.tolist()}")
    if (R.T @ R - torch.eye(3)).abs().max() > 1e-4 or abs(float(torch.linalg.det(R)) - 1) > 1e-4:
        raise ConfigError(f"{what}: {R.tolist()} is not a rotation (orthonormal, det +1)")
    return R


# -------------------------------------------------------------------------------------- SH rotation
def _fibonacci_sphere(n: int) -> Tensor:
    i = torch.arange(n, dtype=torch.float64) + 0.5
    phi = torch.acos(1 - 2 * i / n)
    theta = math.pi * (1 + 5 ** 0.5) * i
    return torch.stack([torch.cos(theta) * torch.sin(phi), torch.sin(theta) * torch.sin(phi), torch.cos(phi)], -1)


def _sh_basis(degree: int, dirs: Tensor) -> Tensor:
    """Values of the K = (degree + 1)^2 SH basis functions (the renderer's constants and signs) at
    ``dirs  # [M, 3]``.  Returns Tensor  # [M, K]"""
    K = num_sh_bases(degree)
    coeffs = torch.eye(K, dtype=dirs.dtype)[:, None, :, None].expand(K, 1, K, 1)
    return eval_sh(degree, coeffs, dirs[None])[..., 0].T


def sh_rotation(R: Tensor, degree: int) -> Tensor:
    """Block-diagonal matrix ``A  # [K-1, K-1]`` acting on the higher SH coefficients ``shN  # [K-1, 3]`` of a
    Gaussian rotated by ``R``: the new coefficients ``A @ shN`` give, in direction ``d``, the colour the old
    ones gave in ``R^T d``. Solved per band on a spherical design (each band is closed under rotation)."""
    K = num_sh_bases(degree)
    A = torch.zeros(K - 1, K - 1, dtype=torch.float64)
    if degree == 0:
        return A.float()
    d = _fibonacci_sphere(64)
    B = _sh_basis(degree, d)  # [M, K]
    Bt = _sh_basis(degree, d @ R.double())  # rows: Y(R^T d)
    for l in range(1, degree + 1):
        s, e = l * l, (l + 1) * (l + 1)
        # Y_l(R^T d) = Y_l(d) @ X  ->  new coefficients X @ c
        X = torch.linalg.lstsq(B[:, s:e], Bt[:, s:e]).solution
        A[s - 1:e - 1, s - 1:e - 1] = X
    return A.float()


# -------------------------------------------------------------------------------------- similarity
@dataclass
class Similarity:
    """``x -> scale * R (x - pivot) + pivot + offset``.

    rotation: Tensor  # [3, 3]
    offset: Tensor  # [3]
    pivot: Tensor  # [3]
    """

    rotation: Tensor
    scale: float
    offset: Tensor
    pivot: Tensor

    @classmethod
    def build(cls, offset: Sequence[float] = (0.0, 0.0, 0.0), axis: Sequence[float] = (0.0, 0.0, 1.0),
              degrees: float = 0.0, scale: float = 1.0, pivot: Sequence[float] = (0.0, 0.0, 0.0),
              what: str = "transform") -> "Similarity":
        """From user values, each checked (finite, 3 numbers, scale > 0) with an error naming ``what``."""
        off = _finite(offset, f"{what}: offset", 3)
        piv = _finite(pivot, f"{what}: pivot", 3)
        (s,) = _finite([scale], f"{what}: scale")
        if s <= 0:
            raise ConfigError(f"{what}: scale must be > 0, got {s}")
        R = axis_angle_matrix(axis, degrees) if float(degrees) != 0.0 else torch.eye(3)
        return cls(R, s, torch.tensor(off), torch.tensor(piv))

    @classmethod
    def from_matrix(cls, matrix: Sequence[Sequence[float]], what: str = "transform") -> "Similarity":
        """From a 4x4 (or 3x4) matrix ``[s R | t]`` with a uniform scale ``s > 0``."""
        rows = [_finite(r, f"{what}: matrix row", 4) for r in matrix]
        if len(rows) not in (3, 4):
            raise ConfigError(f"{what}: matrix must have 3 or 4 rows of 4 numbers, got {len(rows)}")
        M = torch.tensor(rows, dtype=torch.float64)
        if len(rows) == 4 and (M[3] - torch.tensor([0.0, 0.0, 0.0, 1.0], dtype=torch.float64)).abs().max() > 1e-6:
            raise ConfigError(f"{what}: the last row of a 4x4 matrix must be 0 0 0 1")
        A = M[:3, :3]
        s = float(torch.linalg.det(A)) ** (1.0 / 3.0) if torch.linalg.det(A) > 0 else -1.0
        if s <= 0:
            raise ConfigError(f"{what}: the matrix is not a rotation with a positive uniform scale")
        R = check_rotation((A / s).float(), f"{what}: matrix (after removing the uniform scale {s:.4g})")
        return cls(R, s, M[:3, 3].float(), torch.zeros(3))

    def apply_points(self, x: Tensor) -> Tensor:
        """x: Tensor  # [M, 3] -> [M, 3]"""
        R, t, c = (v.to(x) for v in (self.rotation, self.offset, self.pivot))
        return self.scale * (x - c) @ R.T + c + t

    def apply(self, params: dict[str, Tensor], rows: Tensor, sh_degree: int) -> dict[str, Tensor]:
        """New parameter tensors with the Gaussians ``rows`` (bool [N] or int64 [M]) transformed: means,
        quats (``q_R * q``), log scales (``+ log scale``) and the SH bands (rotated); opacities, DC colour and
        features unchanged. ``params`` is not modified."""
        out = {k: v.detach().clone() for k, v in params.items()}
        dev = out["means"].device
        out["means"][rows] = self.apply_points(out["means"][rows])
        qR = matrix_to_quat(self.rotation).to(dev)
        out["quats"][rows] = quat_multiply(qR.expand_as(out["quats"][rows]), out["quats"][rows])
        out["scales"][rows] = out["scales"][rows] + math.log(self.scale)
        if sh_degree > 0 and (self.rotation - torch.eye(3)).abs().max() > 1e-7:
            A = sh_rotation(self.rotation, sh_degree).to(dev)
            out["shN"][rows] = torch.einsum("ij,njc->nic", A, out["shN"][rows])
        return out

    def describe(self) -> dict:
        return {"offset": self.offset.tolist(), "rotation": self.rotation.tolist(), "scale": self.scale,
                "pivot": self.pivot.tolist()}


def ray_aabb(rays_o: Tensor, rays_d: Tensor, aabb: Tensor, near: float = 0.0) -> tuple[Tensor, Tensor, Tensor]:
    """Entry and exit distances of rays through an axis-aligned box (slab method).

    rays_o: Tensor  # [R, 3]
    rays_d: Tensor  # [R, 3] (unit)
    aabb: Tensor  # [2, 3]
    Returns (t_near  # [R] >= near, t_far  # [R], hit  # [R] bool: the ray crosses the box beyond near).
    """
    inv = 1.0 / torch.where(rays_d.abs() < 1e-9, torch.full_like(rays_d, 1e-9), rays_d)
    t0 = (aabb[0] - rays_o) * inv
    t1 = (aabb[1] - rays_o) * inv
    t_near = torch.minimum(t0, t1).amax(-1).clamp_min(near)
    t_far = torch.maximum(t0, t1).amin(-1)
    hit = t_far > t_near + 1e-6
    t_far = torch.where(hit, t_far, t_near + 1e-6)
    return t_near, t_far, hit

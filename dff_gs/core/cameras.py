"""Pinhole cameras in one convention: OpenCV (x right, y down, z forward), world-to-camera ``viewmats``.

This is what gsplat's ``rasterization()`` takes. Loaders convert from the OpenGL / Blender convention
(camera-to-world, y up, z backward) once, at load time, through :meth:`Cameras.from_camtoworlds`.
Pixel centres sit at ``(u + 0.5, v + 0.5)`` as in gsplat.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Sequence, Union

import torch
import torch.nn.functional as F
from torch import Tensor

from dff_gs.core.errors import DataError

# OpenCV <-> OpenGL camera axes: flip y and z (an involution).
_FLIP_YZ = torch.diag(torch.tensor([1.0, -1.0, -1.0, 1.0]))

Index = Union[int, slice, Sequence[int], Tensor]


def intrinsics_from_fov(fov_x: float, width: int, height: int, fov_y: float | None = None) -> Tensor:
    """Pixel intrinsics ``K  # [3, 3]`` from a horizontal field of view in radians (square pixels unless
    ``fov_y`` is given), principal point at the image centre."""
    fx = 0.5 * width / math.tan(0.5 * fov_x)
    fy = fx if fov_y is None else 0.5 * height / math.tan(0.5 * fov_y)
    return torch.tensor([[fx, 0.0, width / 2.0], [0.0, fy, height / 2.0], [0.0, 0.0, 1.0]])


def check_rigid(mats: Tensor, source: str = "camera poses", tol: float = 1e-3) -> None:
    """Raise ``DataError`` naming ``source`` and the offending index unless every ``mats  # [C, 4, 4]`` is a
    rigid transform (orthonormal rotation with det +1, last row ``0 0 0 1``, finite)."""
    if mats.ndim != 3 or mats.shape[-2:] != (4, 4):
        raise DataError(f"{source}: expected poses of shape [C, 4, 4], got {list(mats.shape)}")
    m = mats.detach().double().cpu()
    bad = ~torch.isfinite(m).flatten(1).all(1)
    if bad.any():
        raise DataError(f"{source}: pose {int(bad.nonzero()[0])} is not finite")
    R = m[:, :3, :3]
    ortho = (R.transpose(1, 2) @ R - torch.eye(3, dtype=m.dtype)).abs().amax(dim=(1, 2))
    det = torch.linalg.det(R)
    last = (m[:, 3] - torch.tensor([0.0, 0.0, 0.0, 1.0], dtype=m.dtype)).abs().amax(1)
    for name, err in (("rotation is not orthonormal (R^T R != I)", ortho > tol),
                      ("rotation has det != +1 (a reflection or scale)", (det - 1).abs() > tol),
                      ("last row is not 0 0 0 1", last > tol)):
        if err.any():
            i = int(err.nonzero()[0])
            raise DataError(f"{source}: pose {i} is not a rigid transform: {name}")


@dataclass
class Cameras:
    """A batch of pinhole cameras.

    viewmats: Tensor  # [C, 4, 4] world-to-camera, OpenCV
    Ks: Tensor        # [C, 3, 3] pixel intrinsics
    """

    viewmats: Tensor
    Ks: Tensor
    width: int
    height: int

    def __post_init__(self) -> None:
        if self.viewmats.ndim == 2:
            self.viewmats = self.viewmats[None]
        if self.Ks.ndim == 2:
            self.Ks = self.Ks[None].expand(len(self.viewmats), 3, 3).clone()
        if self.viewmats.shape[-2:] != (4, 4) or self.Ks.shape[-2:] != (3, 3) or len(self.Ks) != len(self.viewmats):
            raise DataError(f"cameras: viewmats {list(self.viewmats.shape)} and Ks {list(self.Ks.shape)} do not match")
        self.width, self.height = int(self.width), int(self.height)

    def __len__(self) -> int:
        return self.viewmats.shape[0]

    def __getitem__(self, idx: Index) -> "Cameras":
        """Sub-batch by int, slice, list, LongTensor or bool mask; always keeps the batch dimension."""
        if isinstance(idx, numbers.Integral):
            n = len(self)
            if not -n <= int(idx) < n:
                raise IndexError(f"camera index {int(idx)} is out of range for {n} cameras")
            idx = slice(int(idx) % n, int(idx) % n + 1)
        elif not isinstance(idx, (slice, Tensor)):
            idx = torch.as_tensor(list(idx))
            if idx.dtype != torch.bool:  # a list of bools is a mask, anything else a list of ids
                idx = idx.long()
        if isinstance(idx, Tensor):
            idx = idx.to(self.viewmats.device)
        return Cameras(self.viewmats[idx], self.Ks[idx], self.width, self.height)

    def to(self, device) -> "Cameras":
        return Cameras(self.viewmats.to(device), self.Ks.to(device), self.width, self.height)

    @property
    def device(self) -> torch.device:
        return self.viewmats.device

    @property
    def camtoworlds(self) -> Tensor:
        """OpenCV camera-to-world ``[C, 4, 4]``."""
        return torch.linalg.inv(self.viewmats)

    @property
    def centers(self) -> Tensor:
        """Camera centres in world space ``[C, 3]``."""
        R, t = self.viewmats[:, :3, :3], self.viewmats[:, :3, 3]
        return -(R.transpose(1, 2) @ t[..., None])[..., 0]

    @property
    def up(self) -> Tensor:
        """The scene's up as the cameras hold it: the mean of their up directions (minus their y axis) in world
        space, unit length (people hold cameras upright, whatever the world frame's axes).  Returns Tensor  # [3]"""
        return F.normalize(-self.viewmats[:, 1, :3].mean(0), dim=0)

    @classmethod
    def from_camtoworlds(cls, c2w: Tensor, Ks: Tensor, width: int, height: int, convention: str = "opencv",
                         source: str = "camera poses") -> "Cameras":
        """From camera-to-world poses ``c2w  # [C, 4, 4]`` (or ``[C, 3, 4]``) in ``"opencv"`` or ``"opengl"``
        (Blender / NeRF: y up, z backward) convention; checks they are rigid."""
        c2w = torch.as_tensor(c2w, dtype=torch.float32)
        if c2w.ndim == 2:
            c2w = c2w[None]
        if c2w.shape[-2:] == (3, 4):
            bottom = torch.tensor([0.0, 0.0, 0.0, 1.0]).expand(len(c2w), 1, 4)
            c2w = torch.cat([c2w, bottom.to(c2w)], dim=1)
        check_rigid(c2w, source)
        if convention == "opengl":
            c2w = c2w @ _FLIP_YZ.to(c2w)
        elif convention != "opencv":
            raise ValueError(f"unknown camera convention {convention!r} (opencv | opengl)")
        viewmats = _rigid_inverse(c2w)
        return cls(viewmats, torch.as_tensor(Ks, dtype=torch.float32), width, height)

    def to_opengl_camtoworlds(self) -> Tensor:
        """Camera-to-world in the OpenGL / Blender convention ``[C, 4, 4]``."""
        return _rigid_inverse(self.viewmats) @ _FLIP_YZ.to(self.viewmats)

    def scaled(self, factor: float) -> "Cameras":
        """Cameras for images resized by ``factor`` (width/height rounded); intrinsics scaled to match."""
        return self.resized(max(1, round(self.width * factor)), max(1, round(self.height * factor)))

    def resized(self, width: int, height: int) -> "Cameras":
        """The same cameras rendering ``width x height`` pixels (intrinsics scaled per axis)."""
        Ks = self.Ks.clone()
        Ks[:, 0, :] *= width / self.width
        Ks[:, 1, :] *= height / self.height
        return Cameras(self.viewmats.clone(), Ks, width, height)

    def project(self, points: Tensor) -> tuple[Tensor, Tensor]:
        """Project ``points  # [P, 3]`` to pixels ``uv  # [C, P, 2]`` and camera z-depth ``depth  # [C, P]``."""
        pc = points[None] @ self.viewmats[:, :3, :3].transpose(1, 2) + self.viewmats[:, None, :3, 3]
        z = pc[..., 2]
        xy = pc[..., :2] / z[..., None]  # points behind the camera project mirrored; check depth > 0
        uv = xy * torch.stack([self.Ks[:, 0, 0], self.Ks[:, 1, 1]], -1)[:, None] + self.Ks[:, None, :2, 2]
        return uv, z

    def backproject(self, depths: Tensor) -> Tensor:
        """World points of z-depth maps ``depths  # [C, H, W]`` at the pixel centres (z-depth -> distance along
        the unit ray: divided by the ray's z component in camera space).  Returns Tensor  # [C, H, W, 3]"""
        o, d = self.generate_rays()
        z_dir = torch.einsum("cij,chwj->chwi", self.viewmats[:, :3, :3], d)[..., 2]
        return o + d * (depths / z_dir.clamp_min(1e-6))[..., None]

    def generate_rays(self, idx: Index | None = None) -> tuple[Tensor, Tensor]:
        """Rays through pixel centres: ``origins  # [C, H, W, 3]``, unit ``directions  # [C, H, W, 3]``."""
        cams = self if idx is None else self[idx]
        dev = cams.device
        v, u = torch.meshgrid(torch.arange(cams.height, device=dev, dtype=torch.float32) + 0.5,
                              torch.arange(cams.width, device=dev, dtype=torch.float32) + 0.5, indexing="ij")
        return _rays_through(cams.Ks[:, None, None], _rigid_inverse(cams.viewmats)[:, None, None], u[None], v[None])

    def pixel_rays(self, view: Tensor, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        """The rays through the centres of single pixels ``(x, y)`` of views ``view`` (each ``[P]`` int64), without
        forming every pixel's: ``origins  # [P, 3]``, unit ``directions  # [P, 3]`` (those of
        :meth:`generate_rays`)."""
        return _rays_through(self.Ks[view], _rigid_inverse(self.viewmats[view]), x + 0.5, y + 0.5)


def _rays_through(Ks: Tensor, c2w: Tensor, u: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
    """Rays through image points ``(u, v)`` of cameras ``Ks  # [..., 3, 3]``, camera-to-world ``c2w  # [..., 4, 4]``
    (broadcast together): origins and unit directions ``[..., 3]``."""
    x = (u - Ks[..., 0, 2]) / Ks[..., 0, 0]
    y = (v - Ks[..., 1, 2]) / Ks[..., 1, 1]
    d = torch.einsum("...ij,...j->...i", c2w[..., :3, :3], torch.stack([x, y, torch.ones_like(x)], -1))
    d = d / d.norm(dim=-1, keepdim=True)
    return c2w[..., :3, 3].expand_as(d), d


def _rigid_inverse(m: Tensor) -> Tensor:
    """Inverse of rigid transforms ``[C, 4, 4]``."""
    R, t = m[:, :3, :3], m[:, :3, 3:]
    out = torch.zeros_like(m)
    out[:, :3, :3] = R.transpose(1, 2)
    out[:, :3, 3:] = -R.transpose(1, 2) @ t
    out[:, 3, 3] = 1.0
    return out

"""A click anywhere in 3D: a ray query ``(origin, direction)`` in world coordinates, as a viewer reports a click
from whatever viewpoint it shows, resolved like a click on a scene view but needing no scene camera.

The ray becomes a one-pixel pinhole camera at ``origin`` looking along ``direction`` (OpenCV axes: +z forward),
so everything a click does with its pixel camera (the rendered feature under it, the Gaussians composited into
it as grouping seeds) works on it unchanged.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import Tensor

from dff_gs.core.cameras import Cameras
from dff_gs.core.errors import ConfigError
from dff_gs.lift import compositing_weights

RAY_FOCAL = 1000.0  # pixels: the one pixel spans about 1 mrad around the ray


def check_ray(value: Sequence) -> tuple[float, ...]:
    """``(ox, oy, oz, dx, dy, dz)`` as six finite floats with a non-zero direction, else a ``ConfigError``."""
    try:
        ray = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        raise ConfigError(f"ray query: expected six numbers OX OY OZ DX DY DZ, got {value!r}") from None
    if len(ray) != 6 or not all(math.isfinite(v) for v in ray):
        raise ConfigError(f"ray query: expected six finite numbers OX OY OZ DX DY DZ, got {value!r}")
    if math.hypot(*ray[3:]) < 1e-12:
        raise ConfigError("ray query: the direction DX DY DZ is zero")
    return ray


def ray_camera(ray: Sequence[float], device="cpu") -> Cameras:
    """The one-pixel camera seeing along ``ray = (ox, oy, oz, dx, dy, dz)`` (its pixel centre on the ray)."""
    ox, oy, oz, dx, dy, dz = check_ray(ray)
    z = torch.tensor([dx, dy, dz], dtype=torch.float64)
    z = z / z.norm()
    helper = torch.tensor([0.0, 0.0, 1.0] if abs(float(z[2])) < 0.9 else [1.0, 0.0, 0.0], dtype=torch.float64)
    x = torch.linalg.cross(helper, z)
    x = x / x.norm()
    y = torch.linalg.cross(z, x)
    c2w = torch.eye(4, dtype=torch.float64)
    c2w[:3, 0], c2w[:3, 1], c2w[:3, 2] = x, y, z
    c2w[:3, 3] = torch.tensor([ox, oy, oz], dtype=torch.float64)
    K = torch.tensor([[RAY_FOCAL, 0.0, 0.5], [0.0, RAY_FOCAL, 0.5], [0.0, 0.0, 1.0]])
    return Cameras(torch.linalg.inv(c2w).float()[None], K[None], 1, 1).to(device)


def ray_through_pixel(cameras: Cameras, view: int, x: float, y: float) -> tuple[float, ...]:
    """The ray ``(ox, oy, oz, dx, dy, dz)`` through pixel ``(x, y)`` (its centre at ``x + 0.5``) of camera
    ``view``: a click on a view, restated as a ray."""
    K, c2w = cameras.Ks[view].double(), cameras.camtoworlds[view].double()
    d_cam = torch.tensor([(x + 0.5 - K[0, 2]) / K[0, 0], (y + 0.5 - K[1, 2]) / K[1, 1], 1.0], dtype=torch.float64)
    d = c2w[:3, :3] @ d_cam
    d = d / d.norm()
    return tuple(float(v) for v in (*c2w[:3, 3], *d))


def ray_seeds(model, ray: Sequence[float]) -> tuple[Tensor, Tensor]:
    """The Gaussians the ray's pixel is composited from and their weights ``alpha T``.

    Returns (ids: Tensor  # [S] int64, weights: Tensor  # [S])
    """
    w = compositing_weights(model, ray_camera(ray, model.device), min_weight=1e-4)
    return w.gaussian, w.weight

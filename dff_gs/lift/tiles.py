"""Projected Gaussians and depth-sorted per-tile lists in gsplat's layout, the input of the lifting kernels.

Two sources give the same lists (the culling of both is exact: a skipped (tile, Gaussian) pair could only have
had alpha < 1/255 at every pixel of the tile):

- ``torch``: :func:`dff_gs.render.projection.project_gaussians` and the reference rasterizer's
  :func:`~dff_gs.render.backend_torch.tile_intersections` (any device);
- ``gsplat``: gsplat's ``fully_fused_projection`` / ``isect_tiles`` / ``isect_offset_encode`` (CUDA), what its
  ``rasterization()`` runs before rasterizing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from dff_gs.core.errors import ConfigError
from dff_gs.render.backend_gsplat import gsplat_available
from dff_gs.render.backend_torch import tile_intersections
from dff_gs.render.projection import opacity_compensation, project_gaussians
from dff_gs.render.rasterize import EPS2D, FAR_PLANE, NEAR_PLANE


@dataclass
class TileLists:
    """Everything the lifting kernels read about the Gaussians of ``I`` cameras.

    means2d: Tensor       # [I, N, 2] projected centres (pixels)
    conics: Tensor        # [I, N, 3] inverse 2D covariances (a, b, c)
    opacities: Tensor     # [N] or [I, N]
    tile_offsets: Tensor  # [I, tiles_y, tiles_x] int32, start of each tile's list in flatten_ids
    flatten_ids: Tensor   # [M] int32, camera * N + gaussian, sorted by (camera, tile, depth)
    """

    means2d: Tensor
    conics: Tensor
    opacities: Tensor
    tile_offsets: Tensor
    flatten_ids: Tensor
    width: int
    height: int
    tile_size: int

    @property
    def num_intersections(self) -> int:
        return int(self.flatten_ids.numel())


def tile_lists(means: Tensor, quats: Tensor, scales: Tensor, opacities: Tensor, viewmats: Tensor, Ks: Tensor,
               width: int, height: int, tile_size: int = 16, source: str = "torch",
               antialiased: bool = False) -> TileLists:
    """Project Gaussians into ``I`` cameras and list them per tile, front to back.

    means: Tensor      # [N, 3]
    quats: Tensor      # [N, 4] w x y z
    scales: Tensor     # [N, 3] linear
    opacities: Tensor  # [N] in [0, 1]
    viewmats: Tensor   # [I, 4, 4] world-to-camera, OpenCV
    Ks: Tensor         # [I, 3, 3]
    source: "torch" | "gsplat"
    antialiased: the opacities scaled by Mip-Splatting's compensation (then ``[I, N]``), as the model renders
    """
    if source == "torch":
        return _torch_lists(means, quats, scales, opacities, viewmats, Ks, width, height, tile_size, antialiased)
    if source == "gsplat":
        return _gsplat_lists(means, quats, scales, opacities, viewmats, Ks, width, height, tile_size, antialiased)
    raise ConfigError(f"unknown tile-list source {source!r} (torch | gsplat)")


@torch.no_grad()
def _torch_lists(means, quats, scales, opacities, viewmats, Ks, width, height, tile_size, antialiased) -> TileLists:
    I, N = viewmats.shape[0], means.shape[0]
    means2d, conics, depths, radii = project_gaussians(means, quats, scales, viewmats, Ks, width, height,
                                                       NEAR_PLANE, FAR_PLANE, EPS2D)
    if antialiased:
        opacities = opacities[None] * opacity_compensation(conics, EPS2D)  # [I, N]
    tiles_x, tiles_y = math.ceil(width / tile_size), math.ceil(height / tile_size)
    n_tiles = tiles_x * tiles_y
    flat_tiles, flat_ids = [], []
    for c in range(I):
        tile, gid, _, _ = tile_intersections(means2d[c], radii[c], depths[c], width, height, tile_size,
                                             opacities[c] if antialiased else opacities)
        flat_tiles.append(tile + c * n_tiles)
        flat_ids.append(gid + c * N)
    tiles = torch.cat(flat_tiles)
    counts = torch.bincount(tiles, minlength=I * n_tiles)
    offsets = (torch.cumsum(counts, 0) - counts).to(torch.int32).reshape(I, tiles_y, tiles_x)
    return TileLists(means2d.contiguous(), conics.contiguous(), opacities.contiguous(), offsets,
                     torch.cat(flat_ids).to(torch.int32), width, height, tile_size)


@torch.no_grad()
def _gsplat_lists(means, quats, scales, opacities, viewmats, Ks, width, height, tile_size, antialiased) -> TileLists:
    ok, why = gsplat_available()
    if not ok:
        raise ConfigError(f"tile lists from gsplat are unavailable: {why}")
    from gsplat import fully_fused_projection, isect_offset_encode, isect_tiles

    I = viewmats.shape[0]
    radii, means2d, depths, conics, compensations = fully_fused_projection(
        means, None, quats, scales, viewmats, Ks, width, height, eps2d=EPS2D, near_plane=NEAR_PLANE,
        far_plane=FAR_PLANE, packed=False, opacities=opacities, calc_compensations=antialiased)
    if antialiased:
        opacities = opacities[None] * compensations  # [I, N]
    tiles_x, tiles_y = math.ceil(width / tile_size), math.ceil(height / tile_size)
    _, isect_ids, flatten_ids = isect_tiles(means2d, radii, depths, tile_size, tiles_x, tiles_y, packed=False)
    offsets = isect_offset_encode(isect_ids, I, tiles_x, tiles_y).reshape(I, tiles_y, tiles_x)
    return TileLists(means2d.contiguous(), conics.contiguous(), opacities.contiguous(), offsets.to(torch.int32),
                     flatten_ids.to(torch.int32), width, height, tile_size)

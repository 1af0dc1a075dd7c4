"""The occupancy grid that lets rays skip empty space (Instant-NGP's density grid).

A grid of cubic cells over the scene AABB keeps an exponential moving maximum of the field's density at a
random point of each cell; cells above ``min(mean density, threshold)`` are occupied. Cells no training
camera sees are marked ``-1`` once and never sampled. The coarse pass of the sampler evaluates the field
only at samples inside occupied cells.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
from torch import Tensor, nn

from dff_gs.core.cameras import Cameras


class OccupancyGrid(nn.Module):
    """Occupancy over ``aabb  # [2, 3]`` with ``resolution`` cells along its longest side.

    density: Tensor  # [X, Y, Z] moving max of sigma per cell (-1 = never seen by a camera)
    occupied: Tensor  # [X, Y, Z] bool
    """

    def __init__(self, aabb: Tensor, resolution: int = 96):
        super().__init__()
        aabb = torch.as_tensor(aabb, dtype=torch.float32).reshape(2, 3)
        extent = (aabb[1] - aabb[0]).clamp_min(1e-6)
        cell = float(extent.max()) / max(int(resolution), 1)
        shape = [max(1, math.ceil(float(e) / cell - 1e-6)) for e in extent]
        self.shape = tuple(shape)
        self.register_buffer("aabb", aabb.clone())
        self.register_buffer("cell", torch.tensor(cell))
        self.register_buffer("density", torch.zeros(shape))
        self.register_buffer("occupied", torch.ones(shape, dtype=torch.bool))
        self.register_buffer("allowed", torch.ones(shape, dtype=torch.bool))  # the prior: cells that may be occupied

    @property
    def num_cells(self) -> int:
        return self.density.numel()

    @property
    def occupied_fraction(self) -> float:
        return float(self.occupied.float().mean())

    def _cell_index(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """x: Tensor  # [N, 3] world  ->  (flat cell index  # [N] int64, inside AABB  # [N] bool)"""
        g = torch.floor((x - self.aabb[0]) / self.cell).long()
        size = torch.tensor(self.shape, device=x.device)
        inside = ((g >= 0) & (g < size)).all(-1)
        g = torch.minimum(g.clamp_min(0), size - 1)
        return (g[:, 0] * self.shape[1] + g[:, 1]) * self.shape[2] + g[:, 2], inside

    def query(self, x: Tensor) -> Tensor:
        """Whether each of ``x  # [..., 3]`` (world) lies in an occupied cell.  Returns Tensor  # [...] bool"""
        flat, inside = self._cell_index(x.reshape(-1, 3))
        return (self.occupied.reshape(-1)[flat] & inside).reshape(x.shape[:-1])

    def cell_centers(self, flat: Tensor) -> Tensor:
        """World centres ``[N, 3]`` of flat cell indices ``[N]``."""
        X, Y, Z = self.shape
        ijk = torch.stack([flat // (Y * Z), (flat // Z) % Y, flat % Z], -1).float()
        return self.aabb[0] + (ijk + 0.5) * self.cell

    def occupied_centers(self) -> Tensor:
        """World centres of the occupied cells ``[M, 3]``."""
        return self.cell_centers(self.occupied.reshape(-1).nonzero()[:, 0])

    @torch.no_grad()
    def mark_invisible(self, cameras: Cameras, near: float = 0.0, chunk: int = 65536) -> int:
        """Mark cells whose centre no camera sees (in front, inside the image) as ``-1``; returns their count."""
        flat_all = torch.arange(self.num_cells, device=self.density.device)
        seen = torch.zeros(self.num_cells, dtype=torch.bool, device=self.density.device)
        cams = cameras.to(self.density.device)
        pad = 0.5 * float(self.cell) * float(cams.Ks[:, 0, 0].max())  # half a cell in pixels at 1 unit away
        for s in range(0, self.num_cells, chunk):
            pts = self.cell_centers(flat_all[s:s + chunk])
            uv, z = cams.project(pts)  # [C, P, 2], [C, P]
            m = pad / z.clamp_min(1e-3)
            ok = (z > near) & (uv[..., 0] >= -m) & (uv[..., 0] <= cams.width + m) & (uv[..., 1] >= -m) & (
                uv[..., 1] <= cams.height + m)
            seen[s:s + chunk] = ok.any(0)
        d = self.density.reshape(-1)
        d[~seen] = -1.0
        self.occupied.reshape(-1)[~seen] = False
        self.allowed.reshape(-1)[~seen] = False
        return int((~seen).sum())

    @torch.no_grad()
    def init_from_points(self, points: Tensor, density: float, dilation: int = 1) -> int:
        """Start from a geometry prior: cells holding any of ``points  # [P, 3]`` (e.g. back-projected depth, as
        the Gaussians are initialised), grown by ``dilation`` cells, are occupied with ``density``; every other
        cell is empty for good (the field is never trained there, so its density there means nothing; updates
        only carve the prior). Returns the number of occupied cells."""
        flat, inside = self._cell_index(points.to(self.density.device).float())
        hit = torch.zeros(self.num_cells, device=self.density.device)
        hit[flat[inside]] = 1.0
        grid = hit.reshape(1, 1, *self.shape)
        if dilation > 0:
            grid = torch.nn.functional.max_pool3d(grid, 2 * dilation + 1, stride=1, padding=dilation)
        occ = grid.reshape(self.shape) > 0
        valid = self.density >= 0
        self.density.copy_(torch.where(valid, occ.float() * density, self.density))
        self.allowed.copy_(occ & valid)
        self.occupied.copy_(self.allowed)
        return int(self.occupied.sum())

    @torch.no_grad()
    def update(self, density_fn: Callable[[Tensor], Tensor], threshold: float, decay: float = 0.95,
               warmup: bool = False, mean_rule: bool = False, chunk: int = 65536,
               generator: torch.Generator | None = None) -> None:
        """Refresh the grid from ``density_fn(x  # [N, 3] world) -> sigma  # [N]``.

        warmup: evaluate every cell; else a quarter of the cells at random plus as many occupied ones.
        A cell is occupied when its moving maximum exceeds ``threshold`` — or, with ``mean_rule`` (Instant-NGP's
        rule, for a grid started full), ``min(threshold, mean density)``.
        """
        dev = self.density.device
        d = self.density.reshape(-1)
        valid = (d >= 0) & self.allowed.reshape(-1)
        if warmup:
            cells = valid.nonzero()[:, 0]
        else:
            m = max(self.num_cells // 4, 1)
            uniform = torch.randint(self.num_cells, (m,), device=dev, generator=generator)
            occ = self.occupied.reshape(-1).nonzero()[:, 0]
            if len(occ):
                occ = occ[torch.randint(len(occ), (min(m, len(occ)),), device=dev, generator=generator)]
            cells = torch.cat([uniform, occ]).unique()
            cells = cells[valid[cells]]
        fresh = torch.zeros_like(d)
        for s in range(0, len(cells), chunk):
            c = cells[s:s + chunk]
            jitter = torch.rand(len(c), 3, device=dev, generator=generator) - 0.5
            x = self.cell_centers(c) + jitter * self.cell
            fresh[c] = density_fn(x).float()
        d.copy_(torch.where(valid, torch.maximum(d * decay, fresh), d))
        if mean_rule and valid.any():
            threshold = min(threshold, float(d[valid].mean()))
        self.occupied.copy_((d > threshold).reshape(self.shape) & self.allowed)

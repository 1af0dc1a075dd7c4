"""Where the scene's content is, from the cameras alone (and the silhouettes of RGBA images).

A scene without depth maps or sparse points (a Blender / NeRF-synthetic object, a nerfstudio capture without
``ply_file_path``) still says where it is: the cameras look at it. A voxel grid over the cameras' surroundings
keeps the cells that most cameras see (in front, inside the image); a finer grid inside their box keeps them
again and, with alpha masks, only those inside the silhouette in (almost) every view that sees them: the visual
hull. The kept cells are where Gaussians start, and their box is the scene's bounds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Sequence

import torch
from torch import Tensor

from dff_gs.core.cameras import Cameras
from dff_gs.core.geometry import ray_aabb
from dff_gs.core.utils import as_rgb, has_depth

SEEN_FRACTION = 0.5
"""A cell may be content when at least this fraction of the cameras see it (in front of the camera, in the image)."""
HULL_FRACTION = 0.9
"""With silhouettes, it is when it projects inside the silhouette (alpha > 0.5) in this fraction of those views."""
CORE_FRACTION = 0.8
"""Without silhouettes, it is when as many cameras see it as this fraction of the best-seen cell's count (the
core the rig converges on, not the far side of every frustum)."""


@dataclass
class Region:
    """Cells of content. ``centers: Tensor  # [M, 3]`` cell centres, ``cell: Tensor  # [3]`` cell size,
    ``hull``: whether silhouettes carved it."""

    centers: Tensor
    cell: Tensor
    hull: bool

    @property
    def bounds(self) -> Tensor:
        """Box ``[2, 3]`` of the cells (min, max corners)."""
        return torch.stack([self.centers.amin(0) - self.cell / 2, self.centers.amax(0) + self.cell / 2])

    def sample(self, n: int, seed: int = 0) -> Tensor:
        """``n`` points uniformly over the cells.  Returns Tensor  # [n, 3]"""
        g = torch.Generator().manual_seed(seed)
        idx = torch.randint(len(self.centers), (n,), generator=g)
        return self.centers[idx] + (torch.rand(n, 3, generator=g) - 0.5) * self.cell


def _search_box(cameras: Cameras) -> Tensor:
    """A box sure to hold what the cameras look at: their centres' box, grown by its size (at least the distance
    from the cameras to the point nearest all their optical axes, where inward-looking rigs converge)."""
    centers = cameras.centers
    axes = cameras.viewmats[:, 2, :3]  # camera z axis (viewing direction) in world coordinates
    # least-squares point nearest every optical axis: sum (I - a a^T) (x - c) = 0
    P = torch.eye(3)[None] - axes[:, :, None] * axes[:, None, :]
    A, b = P.sum(0), (P @ centers[..., None]).sum(0)[:, 0]
    focus = torch.linalg.lstsq(A + 1e-6 * torch.eye(3), b).solution
    lo, hi = centers.amin(0), centers.amax(0)
    reach = torch.maximum((hi - lo).max(), (centers - focus).norm(dim=-1).median()).clamp_min(1e-3)
    lo = torch.minimum(lo, focus) - 0.5 * reach
    hi = torch.maximum(hi, focus) + 0.5 * reach
    return torch.stack([lo, hi])


def _pixels(cameras: Cameras, points: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Where ``points  # [P, 3]`` fall in each view: ``inside  # [V, P]`` (in front of the camera and in the
    image) and the pixel they fall in, ``x, y  # [V, P]`` (clamped to the image for points outside it)."""
    uv, z = cameras.project(points)  # [V, P, 2], [V, P]
    inside = (z > 1e-3) & (uv[..., 0] >= 0) & (uv[..., 0] < cameras.width) & (uv[..., 1] >= 0) & \
             (uv[..., 1] < cameras.height)
    return inside, uv[..., 0].long().clamp(0, cameras.width - 1), uv[..., 1].long().clamp(0, cameras.height - 1)


def _keep_cells(cameras: Cameras, box: Tensor, res: int, alphas: Optional[Tensor], core: bool = False,
                chunk: int = 262144) -> tuple[Tensor, Tensor]:
    """Centres ``[M, 3]`` of the cells of a ``res``-per-longest-side grid over ``box`` that count as content
    (seen by enough cameras; inside the silhouettes ``alphas``; with ``core``, seen nearly as often as the
    best-seen cell), and the cell size ``[3]``. Views are counted one at a time over blocks of cells: a few MB
    at a time, where every view at once was [V, cells] tensors (the peak of start-up memory on a 64-view scene)."""
    size = box[1] - box[0]
    n = (size / size.max() * res).ceil().clamp_min(1).long()
    cell = size / n
    axes = [box[0, i] + (torch.arange(int(n[i])) + 0.5) * cell[i] for i in range(3)]
    centers = torch.stack(torch.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 3)
    V = len(cameras)
    keep, seen_all = [], []
    for s in range(0, len(centers), chunk):
        block = centers[s:s + chunk]
        seen = torch.zeros(len(block), dtype=torch.long)
        in_sil = torch.zeros(len(block), dtype=torch.long)
        for v in range(V):
            inside, x, y = _pixels(cameras[v], block)
            seen += inside[0]
            if alphas is not None:
                in_sil += (alphas[v, y[0], x[0]] > 0.5) & inside[0]
        ok = seen >= SEEN_FRACTION * V
        if alphas is not None:
            ok &= in_sil >= HULL_FRACTION * seen
        seen_all.append(seen)
        keep.append(ok)
    keep = torch.cat(keep)
    if core:
        seen = torch.cat(seen_all)
        keep &= seen >= CORE_FRACTION * seen.max()
    return centers[keep], cell


def content_region(cameras: Cameras, alphas: Optional[Tensor] = None, res: int = 128) -> Optional[Region]:
    """The cells the cameras look at (the visual hull when ``alphas  # [V, H, W]`` are given), in two passes:
    a coarse grid over a box around the rig keeps what enough cameras see, then a ``res`` grid inside that box
    keeps the cells inside the silhouettes (thin parts need the fine cells) or, without them, the core that
    nearly every camera sees. None when no cell qualifies (cameras that share no view)."""
    cameras = cameras.to("cpu")
    use = alphas.cpu().float() if alphas is not None and (alphas < 0.5).any() else None
    centers, cell = _keep_cells(cameras, _search_box(cameras), 48, None)
    if len(centers) == 0:
        return None
    box = torch.stack([centers.amin(0) - cell, centers.amax(0) + cell])
    fine, fine_cell = _keep_cells(cameras, box, res, use, core=use is None)
    if len(fine) == 0 and use is not None:  # silhouettes that agree on nothing: the cameras alone
        use = None
        fine, fine_cell = _keep_cells(cameras, box, res, None, core=True)
    if len(fine):
        centers, cell = fine, fine_cell
    return Region(centers, cell, hull=use is not None)


FAR_REACH = 20.0
"""Beyond-region points lie out to this many times the region's half-diagonal from its centre."""


def _box_exit(origins: Tensor, dirs: Tensor, box: Tensor) -> Tensor:
    """Distance along each ray ``origins, dirs  # [R, 3]`` (unit) at which it leaves ``box  # [2, 3]`` (0 for a
    ray that leaves it behind its origin or misses it; :func:`~dff_gs.core.geometry.ray_aabb`'s exit).
    Returns Tensor  # [R]"""
    _, t_out, hit = ray_aabb(origins, dirs, box, near=-math.inf)
    return torch.where(hit, t_out, torch.zeros_like(t_out)).clamp_min(0.0)


def background_pixel(depths: Tensor) -> Tensor:
    """Where depth maps ``[...]`` say the view shows nothing within range (the sky, a far wall past the sensor):
    no depth (:func:`dff_gs.core.utils.has_depth`).  Returns Tensor  # [...] bool"""
    return ~has_depth(depths)


def background_share(depths: Tensor, views: Sequence[int]) -> float:
    """The share of the pixels of ``views`` of ``depths  # [V, H, W]`` that are :func:`background_pixel` (view by
    view: no copy or mask of every pixel at once)."""
    return sum(int(background_pixel(depths[v]).sum()) for v in views) / max(len(views) * depths[0].numel(), 1)


BACKGROUND_TOLERANCE = 12 / 255
"""A pixel within this of the render background in every channel shows the plain backdrop (:func:`left_out`): a
JPEG's or a video's compression leaves a few levels of noise on it (at 4 / 255 an MP4's white backdrop counted as
content: 33% of the views left out instead of 3%)."""
COVER_CELLS = 20
"""Sparse points cover a view's cells on a grid of this many cells along its longest side (:func:`points_cover`)."""


def points_cover(cameras: Cameras, points: Tensor, cells: int = COVER_CELLS) -> tuple[Tensor, int]:
    """Which cells of each view some of ``points  # [P, 3]`` fall in (occlusion ignored): the part of the views the
    points explain; the rest (walls, a railing, the sky with no sparse point on them) is what :func:`beyond_points`
    starts Gaussians for.  Returns (covered: Tensor  # [V, Hc, Wc] bool, the cell's side in pixels)"""
    cameras = cameras.to("cpu")
    cell = max(1, math.ceil(max(cameras.height, cameras.width) / cells))
    hc, wc = -(-cameras.height // cell), -(-cameras.width // cell)
    covered = torch.zeros(len(cameras), hc * wc, dtype=torch.bool)
    for s in range(0, len(points), 65536):  # [V, chunk] at a time
        inside, x, y = _pixels(cameras, points[s:s + 65536].float().cpu())
        view = torch.arange(len(cameras))[:, None].expand_as(inside)
        covered[view[inside], ((y // cell) * wc + x // cell)[inside]] = True
    return covered.reshape(len(cameras), hc, wc), cell


def _sample_pixels(g: torch.Generator, n: int, V: int, H: int, W: int, keep=None) -> tuple:
    """``n`` random pixels ``(view, y, x)`` (each ``[n]`` int64), among those ``keep(view, y, x) -> Tensor  # bool``
    accepts when given (drawn uniformly and kept until ``n`` are: nothing of ``[V, H, W]`` is formed)."""
    def draw(k: int) -> tuple[Tensor, Tensor, Tensor]:
        return tuple(torch.randint(size, (k,), generator=g) for size in (V, H, W))

    if keep is None:
        return draw(n)
    picked, found = [], 0
    for _ in range(10_000):
        view, y, x = draw(4 * n)
        ok = keep(view, y, x)
        picked.append((view[ok], y[ok], x[ok]))
        found += int(ok.sum())
        if found >= n:
            return tuple(torch.cat(t)[:n] for t in zip(*picked))
    raise ValueError("beyond_points: the views have (almost) no pixel the content leaves out to start Gaussians on")


def left_out(images: Tensor, cover: tuple[Tensor, int], background: Sequence[float]):
    """``keep(view, y, x) -> Tensor  # bool`` for :func:`beyond_points` on a scene with sparse points: the pixels of
    cells no point falls in (:func:`points_cover`) whose colour is not the render ``background`` (within
    ``BACKGROUND_TOLERANCE``: a plain backdrop is drawn by the background, Gaussians past the object there are
    floaters from the views across the object).  images: Tensor  # [V, H, W, 3]"""
    covered, cell = cover
    bg = torch.tensor(list(background), dtype=torch.float32)

    def keep(view: Tensor, y: Tensor, x: Tensor) -> Tensor:
        plain = (as_rgb(images[view, y, x].cpu()).float() - bg).abs().amax(-1) <= BACKGROUND_TOLERANCE
        return ~covered[view, y // cell, x // cell] & ~plain

    return keep


def left_out_share(keep, views: Sequence[int], H: int, W: int, samples: int = 100_000, seed: int = 0) -> float:
    """The share of ``samples`` random pixels of ``views`` (``H x W``) that ``keep`` accepts (:func:`left_out`)."""
    g = torch.Generator().manual_seed(seed)
    pick, y, x = (torch.randint(size, (samples,), generator=g) for size in (len(views), H, W))
    return float(keep(torch.as_tensor(list(views), dtype=torch.long)[pick], y, x).float().mean())


def depth_background(depths: Tensor):
    """``keep(view, y, x) -> Tensor  # bool`` for :func:`beyond_points` on a scene with depth maps
    ``depths  # [V, H, W]``: the pixels they show as background (:func:`background_pixel`)."""
    return lambda view, y, x: background_pixel(depths[view, y, x])


def beyond_points(cameras: Cameras, images: Tensor, box: Tensor, n: int, seed: int = 0,
                  keep=None) -> tuple[Tensor, Tensor]:
    """``n`` points for what the views show past the content (a floor to the horizon, walls, the sky): each on the
    ray of a random pixel of a random view (with ``keep(view, y, x) -> bool``, of a pixel it accepts: the background
    of depth maps, :func:`depth_background`, or what sparse points leave out, :func:`left_out`), from where the ray
    leaves the content's ``box  # [2, 3]`` out to ``FAR_REACH`` x its half-diagonal, uniform in inverse distance (more
    near than far, as a view's detail is), coloured by its pixel. Points at the wrong distance lose their opacity in
    training; those right stay.

    images: Tensor  # [V, H, W, 3]
    Returns (points: Tensor  # [n, 3], colors: Tensor  # [n, 3])"""
    cameras = cameras.to("cpu")
    g = torch.Generator().manual_seed(seed + 1)
    view, y, x = _sample_pixels(g, n, len(cameras), cameras.height, cameras.width, keep)
    o, d = cameras.pixel_rays(view, x, y)  # the sampled pixels' rays only (not [V, H, W] of them)
    box = box.float().cpu()
    centre, half = box.mean(0), 0.5 * (box[1] - box[0]).norm()
    near = torch.maximum(_box_exit(o, d, box), 0.5 * (o - centre).norm(dim=-1)).clamp_min(1e-3)
    far = torch.maximum((o - centre).norm(dim=-1) + FAR_REACH * half, 2.0 * near)
    u = torch.rand(n, generator=g)
    t = 1.0 / (u / far + (1.0 - u) / near)  # uniform in 1 / t between 1 / near and 1 / far
    return o + d * t[:, None], as_rgb(images[view, y, x].cpu()).clamp(0, 1)


def mean_colors(cameras: Cameras, images: Tensor, points: Tensor, chunk: int = 16384) -> Tensor:
    """Each point's mean colour over the views whose image it falls in (occlusion ignored: a first guess for
    initial colours). ``images: Tensor  # [V, H, W, 3]``, ``points: Tensor  # [P, 3]``.  Returns Tensor  # [P, 3]"""
    cameras = cameras.to("cpu")
    V = len(cameras)
    out = []
    for s in range(0, len(points), chunk):
        inside, x, y = _pixels(cameras, points[s:s + chunk])
        rgb = as_rgb(images[torch.arange(V)[:, None], y, x])  # [V, P, 3]
        w = inside.float()[..., None]
        out.append((rgb * w).sum(0) / w.sum(0).clamp_min(1.0) + 0.5 * (w.sum(0) == 0))
    return torch.cat(out).clamp(0, 1)

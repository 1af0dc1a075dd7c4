"""How two touching pieces of the click grouping meet (:mod:`dff_gs.query.pieces`): what tells a part of an object
from a neighbour that touches it or the table it stands on.

- *Convexity* of the neighbour links between them (the locally convex connected patches of Stein et al., CVPR
  2014): with each Gaussian's normal (its shortest axis, turned toward the camera that sees it most), a link
  ``i - j`` is convex where ``(n_i - n_j) . (x_i - x_j) / |x_i - x_j| > 0`` (the surfaces bend away from each
  other, as over the edge of one body) and concave where it is negative (a crease inward: an object's base on the
  table, two objects pressed together).
- *Depth steps in the views*: in the grouping's rendered views each pixel belongs to the piece that draws most of
  it; where two side-by-side pixels belong to the two pieces, the relative step between their depths says whether
  the pieces meet on one surface (no step) or one passes in front of the other (a step: a neighbour against the
  object, a part seen across a gap).

Both are summed per pair of pieces (:func:`pair_contacts`) once per model; the rule's features are their means over
the pairs between a candidate piece and the selection (:meth:`dff_gs.query.pieces.Pieces.candidates`).
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from dff_gs.core.cameras import Cameras
from dff_gs.core.geometry import quat_to_rotmat

CONCAVE = -0.1
"""A link is concave where its convexity is below this (a crease inward; noise of flat surfaces stays above)."""
STEP = 0.05
"""Side-by-side pixels of two pieces step in depth where their depths differ by more than this share of the
nearer."""
MIN_COVER = 0.5
"""A pixel belongs to a piece when the piece draws at least this much of it (compositing weight)."""


def oriented_normals(quats: Tensor, scales: Tensor, means: Tensor, weights, cameras: Cameras) -> Tensor:
    """Each Gaussian's shortest axis (its normal), turned toward the centre of the camera of ``weights``
    (:class:`dff_gs.lift.CompositingWeights` over ``cameras``' views) where it weighs most (toward the mean camera
    centre where no view draws it).

    quats: Tensor  # [N, 4];  scales: Tensor  # [N, 3];  means: Tensor  # [N, 3]
    Returns Tensor  # [N, 3] unit
    """
    rot = quat_to_rotmat(quats)  # columns: the axes
    normal = rot.gather(2, scales.argmin(1)[:, None, None].expand(-1, 3, 1))[..., 0]
    n = len(means)
    hw = cameras.height * cameras.width
    best = torch.full((n,), -1.0, device=means.device).scatter_reduce(0, weights.gaussian, weights.weight, "amax")
    view = torch.full((n,), -1, dtype=torch.long, device=means.device)
    top = weights.weight >= best[weights.gaussian]
    view[weights.gaussian[top]] = torch.div(weights.pixel[top], hw, rounding_mode="floor")
    centres = cameras.centers.to(means.device)
    eye = torch.where((view >= 0)[:, None], centres[view.clamp_min(0)], centres.mean(0).expand(n, -1))
    flip = ((eye - means) * normal).sum(1) < 0
    return torch.where(flip[:, None], -normal, normal)


def link_convexity(means: Tensor, normals: Tensor, src: Tensor, dst: Tensor) -> Tensor:
    """``(n_s - n_d) . (x_s - x_d) / |x_s - x_d|`` of every link (module docstring): > 0 convex, < 0 concave.

    means, normals: Tensor  # [N, 3];  src, dst: Tensor  # [E] int64.  Returns Tensor  # [E] in [-2, 2]
    """
    d = F.normalize(means[src] - means[dst], dim=1)
    return ((normals[src] - normals[dst]) * d).sum(1)


def view_borders(piece: Tensor, means: Tensor, weights, cameras: Cameras) -> tuple[Tensor, Tensor, Tensor]:
    """Every two side-by-side pixels (right and down neighbours) of ``cameras``' views that belong to two pieces
    (:data:`MIN_COVER`), as the two pieces and the relative depth step between them (each pixel's depth: the
    weighted camera depth of its piece's Gaussians there).

    piece: Tensor  # [N] int64 each Gaussian's piece;  means: Tensor  # [N, 3]
    Returns (a: Tensor  # [B] int64, b: Tensor  # [B] int64, step: Tensor  # [B] |d_a - d_b| / min(d_a, d_b))
    """
    V, H, W = len(cameras), cameras.height, cameras.width
    num = int(piece.max()) + 1 if len(piece) else 0
    view = torch.div(weights.pixel, H * W, rounding_mode="floor")
    vm = cameras.viewmats.to(means.device)
    z = (vm[view, 2, :3] * means[weights.gaussian]).sum(1) + vm[view, 2, 3]
    key = weights.pixel * num + piece[weights.gaussian]
    key, inverse = torch.unique(key, return_inverse=True)
    cover = torch.zeros(len(key), device=means.device).index_add_(0, inverse, weights.weight)
    depth = torch.zeros(len(key), device=means.device).index_add_(0, inverse, weights.weight * z) / cover.clamp_min(
        1e-12)
    pixel = torch.div(key, num, rounding_mode="floor")
    best = torch.zeros(V * H * W, device=means.device).scatter_reduce(0, pixel, cover, "amax")
    top = (cover >= best[pixel]) & (cover >= MIN_COVER)
    owner = torch.full((V * H * W,), -1, dtype=torch.long, device=means.device)
    owner[pixel[top]] = key[top] % num
    at = torch.zeros(V * H * W, device=means.device)
    at[pixel[top]] = depth[top]
    owner, at = owner.reshape(V, H, W), at.reshape(V, H, W)
    a = torch.cat([owner[:, :, :-1].reshape(-1), owner[:, :-1, :].reshape(-1)])
    b = torch.cat([owner[:, :, 1:].reshape(-1), owner[:, 1:, :].reshape(-1)])
    da = torch.cat([at[:, :, :-1].reshape(-1), at[:, :-1, :].reshape(-1)])
    db = torch.cat([at[:, :, 1:].reshape(-1), at[:, 1:, :].reshape(-1)])
    keep = (a >= 0) & (b >= 0) & (a != b)
    a, b, da, db = a[keep], b[keep], da[keep], db[keep]
    return a, b, (da - db).abs() / torch.minimum(da, db).clamp_min(1e-6)


def pair_contacts(pair_key: Tensor, num: int, piece: Tensor, src: Tensor, dst: Tensor, convexity: Tensor,
                  borders: Optional[tuple[Tensor, Tensor, Tensor]]) -> Tensor:
    """Per pair of touching pieces (``pair_key  # [Q]`` = ``min * num + max``, sorted, as
    :class:`~dff_gs.query.pieces.Pieces` keeps them): the sum of its links' convexity, its concave links, its
    side-by-side pixels in the views and those of them that step in depth (zeros without ``borders``).

    piece: Tensor  # [N];  src, dst, convexity: Tensor  # [E];  borders: :func:`view_borders`'s output
    Returns Tensor  # [Q, 4] (convexity sum, concave links, border pixels, stepping border pixels)
    """
    out = torch.zeros(len(pair_key), 4)

    def add(a: Tensor, b: Tensor, cols: Tensor) -> None:
        k = torch.minimum(a, b) * max(num, 1) + torch.maximum(a, b)
        at = torch.searchsorted(pair_key, k).clamp_max(max(len(pair_key) - 1, 0))
        found = (pair_key[at] == k) if len(pair_key) else torch.zeros_like(k, dtype=torch.bool)
        out.index_add_(0, at[found], cols[found])

    a, b = piece[src].cpu(), piece[dst].cpu()
    apart = a != b
    conv = convexity.cpu()[apart].float()
    add(a[apart], b[apart], torch.stack([conv, (conv < CONCAVE).float(), torch.zeros_like(conv),
                                          torch.zeros_like(conv)], 1))
    if borders is not None:
        pa, pb, step = (t.cpu() for t in borders)
        one = torch.ones(len(pa))
        add(pa, pb, torch.stack([torch.zeros_like(one), torch.zeros_like(one), one, (step > STEP).float()], 1))
    return out

"""Where along each ray the field is evaluated.

Two passes, as NeRF's coarse/fine hierarchy on top of Instant-NGP's occupancy grid:

1. coarse: ``n_coarse`` stratified samples between the ray's entry and exit of the scene AABB; only those
   inside occupied cells are evaluated (density only, no gradient) — the rest count as empty;
2. fine: ``n_fine`` intervals drawn by inverse-CDF sampling of the coarse weights (mip-NeRF 360's interval
   resampling): edges concentrate where the coarse pass found surfaces, and only these intervals are
   rendered, with gradients.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def stratified_edges(t_near: Tensor, t_far: Tensor, n: int, jitter: bool = False) -> Tensor:
    """Bin edges ``[R, n + 1]`` from ``t_near  # [R]`` to ``t_far  # [R]``: uniform, or with every interior edge
    moved by up to half a bin at random (``jitter``; the order is kept)."""
    u = torch.linspace(0.0, 1.0, n + 1, device=t_near.device).expand(len(t_near), n + 1)
    if jitter and n > 1:
        shift = (torch.rand(len(t_near), n - 1, device=t_near.device) - 0.5) / n
        u = torch.cat([u[:, :1], u[:, 1:-1] + shift, u[:, -1:]], -1)
    return t_near[:, None] + (t_far - t_near)[:, None] * u


def sample_pdf(edges: Tensor, weights: Tensor, n: int, jitter: bool, blur: bool = True,
               floor: float = 1e-3) -> Tensor:
    """Resample ``n + 1`` sorted edges (``n`` intervals) by inverse-CDF sampling of piecewise-constant weights.

    edges: Tensor  # [R, B + 1] bin edges
    weights: Tensor  # [R, B] non-negative weights per bin
    blur: dilate the weights by their neighbours (max over 3 bins), so a surface found in one bin also
        draws samples from the bins beside it
    floor: fraction of the ray's peak weight (and an absolute epsilon) added everywhere, so empty-looking
        rays still get samples
    Returns Tensor  # [R, n + 1]
    """
    w = weights.detach()
    if blur and w.shape[1] >= 3:
        w = F.max_pool1d(w[:, None], 3, stride=1, padding=1)[:, 0]
    w = w + floor * w.amax(-1, keepdim=True) + 1e-5
    pdf = w / w.sum(-1, keepdim=True)
    cdf = torch.cat([torch.zeros_like(pdf[:, :1]), pdf.cumsum(-1)], -1).clamp_max(1.0)  # [R, B + 1]
    cdf[:, -1] = 1.0
    R = edges.shape[0]
    if jitter:
        u = (torch.arange(n + 1, device=edges.device) + torch.rand(R, n + 1, device=edges.device)) / (n + 1)
    else:
        u = (torch.arange(n + 1, device=edges.device, dtype=edges.dtype) + 0.5).expand(R, n + 1) / (n + 1)
    u = u.contiguous()
    idx = torch.searchsorted(cdf, u, right=True).clamp(1, cdf.shape[1] - 1)  # bin = idx - 1
    c0, c1 = cdf.gather(1, idx - 1), cdf.gather(1, idx)
    e0, e1 = edges.gather(1, idx - 1), edges.gather(1, idx)
    t = (u - c0) / (c1 - c0).clamp_min(1e-10)
    out = e0 + t.clamp(0, 1) * (e1 - e0)
    # the first and last edge span the whole ray: nothing before / after the samples is skipped silently
    out = torch.cat([edges[:, :1], out[:, 1:-1], edges[:, -1:]], -1)
    return torch.sort(out, dim=-1).values

"""Volume rendering (Max 1995, as NeRF): weights along rays and the composites of colour, features, depth.

``alpha_i = 1 - exp(-sigma_i delta_i)``, ``T_i = prod_{j<i} (1 - alpha_j)``, ``w_i = T_i alpha_i``;
``rgb = sum_i w_i c_i + (1 - sum_i w_i) background``, ``features = sum_i w_i f_i`` (over 0, as the Gaussians'),
``depth = sum_i w_i t_i / sum_i w_i`` (expected depth, as the Gaussians' "ED").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
from torch import Tensor


def render_weights(sigmas: Tensor, deltas: Tensor) -> tuple[Tensor, Tensor]:
    """Compositing weights of samples along rays.

    sigmas: Tensor  # [R, N] densities (>= 0)
    deltas: Tensor  # [R, N] interval lengths
    Returns (weights  # [R, N], sum over N <= 1; transmittance  # [R, N] before each sample)
    """
    tau = sigmas * deltas
    alpha = 1.0 - torch.exp(-tau)
    # exclusive cumulative optical depth: T_i = exp(-sum_{j<i} tau_j), exact and differentiable
    acc = torch.cumsum(tau, dim=-1)
    trans = torch.exp(-torch.cat([torch.zeros_like(acc[:, :1]), acc[:, :-1]], dim=-1))
    return trans * alpha, trans


@dataclass
class RayOutput:
    """rgb: Tensor  # [R, 3]
    features: Optional[Tensor]  # [R, D] composited over 0 (stored, not decoded)
    depth: Tensor  # [R] expected z-depth (0 where nothing was hit)
    alpha: Tensor  # [R] accumulated opacity
    weights: Tensor  # [R, N] of the rendered (fine) intervals
    edges: Tensor  # [R, N + 1] their edges along the ray (set by the caller)
    t_near, t_far: Tensor  # [R] where the ray enters / leaves the scene box (set by the caller)
    """

    rgb: Tensor
    features: Optional[Tensor]
    depth: Tensor
    alpha: Tensor
    weights: Tensor
    edges: Optional[Tensor] = None
    t_near: Optional[Tensor] = None
    t_far: Optional[Tensor] = None
    stats: Optional[dict] = None  # field evaluations per ray (coarse, rendered), for logs


def composite(weights: Tensor, rgbs: Tensor, t_mid: Tensor, z_scale: Tensor, background: Optional[Tensor],
              features: Optional[Tensor] = None) -> RayOutput:
    """Composite per-sample values along rays.

    weights: Tensor  # [R, N]
    rgbs: Tensor  # [R, N, 3]
    t_mid: Tensor  # [R, N] sample distances along the (unit) ray
    z_scale: Tensor  # [R] camera-axis component of each unit ray (distance -> z-depth)
    background: Tensor  # [3] or [R, 3], or None (black)
    features: Tensor  # [R, N, D] or None
    """
    acc = weights.sum(-1)
    rgb = (weights[..., None] * rgbs).sum(-2)
    if background is not None:
        rgb = rgb + (1.0 - acc)[:, None] * background
    feats = (weights[..., None] * features).sum(-2) if features is not None else None
    depth = (weights * t_mid).sum(-1) / acc.clamp_min(1e-10) * z_scale
    return RayOutput(rgb=rgb, features=feats, depth=depth, alpha=acc, weights=weights)


def distortion_loss(weights: Tensor, edges: Tensor, t_near: Tensor, t_far: Tensor) -> Tensor:
    """mip-NeRF 360's distortion loss: pulls each ray's weights into one compact interval, emptying free space
    (which is what lets the occupancy grid skip it). Distances are normalised to [0, 1] per ray.

    weights: Tensor  # [R, N] of the intervals [edges_i, edges_i+1]
    edges: Tensor  # [R, N + 1]
    t_near, t_far: Tensor  # [R]
    Returns the mean over rays of ``sum_ij w_i w_j |m_i - m_j| + 1/3 sum_i w_i^2 (s_i+1 - s_i)``.
    """
    s = (edges - t_near[:, None]) / (t_far - t_near).clamp_min(1e-6)[:, None]
    mid = 0.5 * (s[:, 1:] + s[:, :-1])  # sorted along the ray
    # sum_ij w_i w_j |m_i - m_j| = 2 sum_i w_i (m_i W_<i - S_<i) with exclusive sums W of w and S of w m: O(N)
    w_before = torch.cumsum(weights, -1) - weights
    wm_before = torch.cumsum(weights * mid, -1) - weights * mid
    inter = 2.0 * (weights * (mid * w_before - wm_before)).sum(-1)
    intra = (weights**2 * (s[:, 1:] - s[:, :-1])).sum(-1) / 3.0
    return (inter + intra).mean()

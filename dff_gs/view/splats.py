"""What the browser draws: a :class:`GaussianModel` as viser's Gaussian-splat arrays, and the colours of the
viewer's views (RGB, PCA of the features, per-label segmentation) with a selection highlighted."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch
from torch import Tensor

from dff_gs.core.features import pca_directions
from dff_gs.core.gaussians import GaussianModel, sh0_to_rgb
from dff_gs.io.images import palette
from dff_gs.render.projection import covariance_3d

COLOR_MODES = ("rgb", "pca", "segmentation")
HIGHLIGHT = np.array([1.0, 0.35, 0.0], dtype=np.float32)  # the selection's tint


@dataclass
class SplatArrays:
    """viser's ``add_gaussian_splats`` arguments.

    centers: np.ndarray  # [N, 3] float32
    covariances: np.ndarray  # [N, 3, 3] float32
    rgbs: np.ndarray  # [N, 3] float32 in [0, 1]
    opacities: np.ndarray  # [N, 1] float32 in [0, 1]
    """

    centers: np.ndarray
    covariances: np.ndarray
    rgbs: np.ndarray
    opacities: np.ndarray

    def as_kwargs(self) -> dict:
        return {"centers": self.centers, "covariances": self.covariances, "rgbs": self.rgbs,
                "opacities": self.opacities}


@torch.no_grad()
def splat_arrays(model: GaussianModel, rgbs: Optional[np.ndarray] = None) -> SplatArrays:
    """The model's centres, world covariances ``R S S^T R^T``, colours (the view-independent SH DC colour unless
    ``rgbs  # [N, 3]`` is given) and opacities."""
    cov = covariance_3d(model.get_quats().detach().float(), model.get_scales().detach().float())
    if rgbs is None:
        rgbs = base_colors(model)
    opacities = model.get_opacities().detach().float().cpu().numpy()[:, None]
    return SplatArrays(model.get_means().detach().float().cpu().numpy(), cov.cpu().numpy(),
                       np.asarray(rgbs, dtype=np.float32), opacities)


@torch.no_grad()
def base_colors(model: GaussianModel) -> np.ndarray:
    """The DC (view-independent) colour of every Gaussian ``[N, 3]`` in [0, 1]."""
    return sh0_to_rgb(model.params["sh0"].detach()[:, 0]).clamp(0, 1).float().cpu().numpy()


@torch.no_grad()
def pca_colors(features: Tensor, seed: int = 0) -> np.ndarray:
    """The first three principal components of ``features  # [N, C]`` as colours ``[N, 3]`` in [0, 1] (each
    component stretched between its 1st and 99th percentile)."""
    f = features.detach().float().cpu()
    basis = pca_directions(f, 3, seed=seed)
    if basis is None or basis[1].shape[1] == 0:
        return np.full((len(f), 3), 0.5, dtype=np.float32)
    mu, dirs = basis
    proj = (f - mu) @ dirs
    if proj.shape[1] < 3:
        proj = torch.cat([proj, proj.new_zeros(len(proj), 3 - proj.shape[1])], 1)
    lo, hi = torch.quantile(proj, 0.01, dim=0), torch.quantile(proj, 0.99, dim=0)
    return ((proj - lo) / (hi - lo).clamp_min(1e-8)).clamp(0, 1).numpy().astype(np.float32)


def label_colors(labels: Tensor, num_labels: int) -> np.ndarray:
    """The palette colour of each Gaussian's label ``labels  # [N]`` -> ``[N, 3]`` in [0, 1]."""
    return palette(num_labels)[labels.cpu().numpy()].astype(np.float32) / 255.0


def highlight(rgbs: np.ndarray, mask: Optional[np.ndarray], style: str = "tint") -> np.ndarray:
    """Colours with the selection ``mask  # [N] bool`` shown: ``tint`` mixes the selected with orange, ``dim``
    darkens and greys everything else. ``rgbs  # [N, 3]``; returns a new array."""
    out = np.array(rgbs, dtype=np.float32, copy=True)
    if mask is None or not mask.any():
        return out
    if style == "tint":
        out[mask] = 0.35 * out[mask] + 0.65 * HIGHLIGHT
    elif style == "dim":
        grey = out[~mask].mean(1, keepdims=True)
        out[~mask] = 0.25 * (0.5 * out[~mask] + 0.5 * grey)
    else:
        raise ValueError(f"unknown highlight style {style!r} (tint | dim)")
    return out

"""Lift a teacher onto a trained :class:`GaussianModel`: PCA-compressed features with a linear decoder, and an
optional short distillation fine-tune of the features alone (geometry and colour frozen).

Why a ``feature_dim`` basis with a decoder rather than the teacher's full space: lifting is linear in the maps,
so lifting the coordinates ``F B`` of the maps in an orthonormal basis ``B`` gives exactly the projection onto
``span(B)`` of lifting ``F`` itself. The basis is the teacher's mean feature plus its top ``feature_dim - 1``
principal directions: a linear (not affine) subspace, so it also holds the zero "unlabeled" feature that
bilinear resampling blends in at label borders, and the equality is exact (see the PCA test). It costs
``feature_dim / C`` of the work (16 vs 384 channels for the labels teacher), yields the same model format as a
distilled run (stored features + ``decoder``, so rendering, queries, evaluation and the fine-tune run unchanged
and at distillation's speed) and loses only what the basis misses (nothing for a teacher of fewer than
``feature_dim`` classes). ``model.decoder=false`` keeps the teacher's space instead.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Optional

import torch
from torch import Tensor, nn

from dff_gs.core.cameras import Cameras
from dff_gs.core.errors import ConfigError
from dff_gs.core.features import pca_directions
from dff_gs.core.gaussians import GaussianModel
from dff_gs.lift.core import lift_features


@dataclass
class LiftResult:
    """model: the Gaussians with lifted features; weight_sum: Tensor  # [N] total compositing weight seen."""

    model: GaussianModel
    weight_sum: Tensor
    seconds: float
    info: dict = field(default_factory=dict)


def with_features(model: GaussianModel, features: Tensor, decoder: Optional[nn.Linear] = None) -> GaussianModel:
    """A new model with ``model``'s geometry and colour, ``features  # [N, D]`` and ``decoder`` (D -> C) or none."""
    params = {k: v.detach() for k, v in model.params.items()}
    params["features"] = features.detach().to(params["means"])
    return GaussianModel.from_parts(params, model.sh_degree, decoder, model.antialiased).to(model.device)


@torch.no_grad()
def linear_pca_basis(maps: Tensor, dim: int, max_samples: int = 200_000, seed: int = 0) -> Tensor:
    """An orthonormal basis ``[C, dim]`` of the span of the teacher's mean feature and its top ``dim - 1``
    principal directions: a linear subspace (it holds 0, the "unlabeled" feature, too), so projecting onto it
    commutes with the weighted means and the bilinear resampling lifting does.

    maps: Tensor  # [V, h, w, C] teacher maps (all-zero texels are unlabeled and left out of the statistics)
    """
    C = maps.shape[-1]
    pca = pca_directions(maps, dim - 1, max_samples, seed)
    if pca is None:
        raise ConfigError("lift: the teacher maps are all zero (no labeled pixel to lift)")
    mu, V = pca
    Q, R = torch.linalg.qr(torch.cat([mu[:, None], V], 1))
    Q = Q[:, R.diagonal().abs() > 1e-6 * R.diagonal().abs().max()]  # drop dependent directions
    return torch.cat([Q, Q.new_zeros(C, dim - Q.shape[1])], 1)  # zero columns if the teacher has fewer dims


@torch.no_grad()
def project_maps(maps: Tensor, basis: Tensor, chunk: int = 8) -> Tensor:
    """Coefficients of teacher maps in an orthonormal basis.

    maps: Tensor   # [V, h, w, C]
    basis: Tensor  # [C, D]
    returns Tensor # [V, h, w, D] float32 on the basis' device
    """
    return torch.cat([maps[s:s + chunk].to(basis.device).float() @ basis for s in range(0, len(maps), chunk)])


def lift_model(model: GaussianModel, cameras: Cameras, maps: Tensor, *, feature_dim: int, use_decoder: bool = True,
               backend: str = "auto", top_k: Optional[int] = None, resolution: str = "image", seed: int = 0,
               progress: bool = False) -> LiftResult:
    """Lift teacher ``maps  # [V, h, w, C]`` seen from ``cameras`` onto ``model``'s Gaussians.

    With ``use_decoder`` the features are coordinates in :func:`linear_pca_basis` (mean feature + top
    ``feature_dim - 1`` principal directions) and the decoder maps them back (weight = the basis, bias = 0).
    Without it, ``feature_dim`` must equal ``C`` and the features are the teacher's own. Either way, Gaussians
    that no weighted pixel saw get the zero feature.
    """
    C = maps.shape[-1]
    t0 = time.perf_counter()
    valid = maps.abs().sum(-1) > 0  # [V, h, w] pixels with a teacher feature
    decoder = None
    target = maps
    if use_decoder:
        if feature_dim < 1:
            raise ConfigError(f"lift: model.feature_dim must be >= 1 to carry lifted features, got {feature_dim}")
        basis = linear_pca_basis(maps, feature_dim, seed=seed).to(model.device)  # [C, D]
        decoder = nn.Linear(feature_dim, C).to(model.device)
        with torch.no_grad():
            decoder.weight.copy_(basis)
            decoder.bias.zero_()
        target = project_maps(maps, basis)
    elif feature_dim != C:
        raise ConfigError(f"model.decoder=false needs model.feature_dim == the teacher's dimension ({C}), "
                          f"got {feature_dim}")
    feats, weight_sum = lift_features(model, cameras, target, backend, top_k, valid=valid, resolution=resolution,
                                      progress=progress)
    lifted = with_features(model, feats, decoder)
    if model.device.type == "cuda":
        torch.cuda.synchronize(model.device)
    seconds = time.perf_counter() - t0
    info = {"lifted_fraction": float((weight_sum > 0).float().mean()) if len(weight_sum) else 0.0,
            "feature_dim": lifted.feature_dim, "decoder": decoder is not None}
    return LiftResult(lifted, weight_sum, seconds, info)

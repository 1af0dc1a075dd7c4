"""Queries on a NeRF, through the same Eq. 5 as the Gaussians (:mod:`dff_gs.query`):

- in 3D: ``p(l | x)`` at any points, from the field's decoded feature ``f(x)``;
- in 2D: rendered (decoded) features of a camera, then Eq. 5 per pixel — text, label sets, patch and
  click references.

Where the Gaussians compare a query against their own features (k-means competitors of a patch / click
reference), the NeRF uses features sampled at the centres of its occupied cells: the field's own content.
"""

from __future__ import annotations

from typing import Optional, Sequence

import torch
from torch import Tensor

from dff_gs.cameras import Cameras
from dff_gs.errors import ConfigError
from dff_gs.nerf.model import NerfModel, camera_rays
from dff_gs.query import (DEFAULT_TEMPERATURE, label_probabilities, reference_query_embeddings,
                          text_query_embeddings)


def _require_features(model: NerfModel) -> None:
    if not model.has_features:
        raise ConfigError("this NeRF carries no feature branch: train it with a teacher (--teacher NAME)")


@torch.no_grad()
def point_features(model: NerfModel, points: Tensor, chunk: int = 65536) -> Tensor:
    """Decoded features ``f(x)`` at world points ``[P, 3]`` (teacher space).  Returns Tensor  # [P, C]"""
    _require_features(model)
    pts = points.to(model.device).float()
    return torch.cat([model.point_features(pts[s:s + chunk]) for s in range(0, len(pts), chunk)]) if len(pts) else \
        torch.zeros(0, model.output_dim, device=model.device)


def point_probabilities(model: NerfModel, points: Tensor, queries: Tensor,
                        temperature: float = DEFAULT_TEMPERATURE) -> Tensor:
    """Eq. 5 at 3D points: ``points  # [P, 3]``, ``queries  # [K, C]``  ->  Tensor  # [P, K]"""
    return label_probabilities(point_features(model, points), queries, temperature)


text_queries = text_query_embeddings
"""The query text's embedding followed by its negatives' ``[1 + M, C]`` (the Gaussians' own function)."""


def text_point_probabilities(model: NerfModel, encode_text, query: str, negatives: Sequence[str], points: Tensor,
                             temperature: float = DEFAULT_TEMPERATURE) -> Tensor:
    """``p(query | x)`` at ``points  # [P, 3]`` from a text and its negatives.  Returns Tensor  # [P]"""
    return point_probabilities(model, points, text_queries(encode_text, query, negatives), temperature)[:, 0]


@torch.no_grad()
def field_points(model: NerfModel, max_points: int = 50000, seed: int = 0) -> Tensor:
    """Points that hold the field's content: centres of occupied cells (at most ``max_points``, a seeded
    subset).  Returns Tensor  # [M, 3] world"""
    pts = model.occupancy.occupied_centers()
    if len(pts) == 0:
        raise ConfigError("the NeRF's occupancy grid is empty (an untrained model?)")
    if len(pts) > max_points:
        g = torch.Generator().manual_seed(seed)
        pts = pts[torch.randperm(len(pts), generator=g)[:max_points].to(pts.device)]
    return pts


def reference_queries(model: NerfModel, reference: Tensor, k: int = 8, seed: int = 0,
                      same_cosine: float = 0.9) -> Tensor:
    """A patch / click reference ``[C]`` and its competitors: k-means centroids of the field's features at
    its occupied cells that are not near-duplicates of the reference.  Returns Tensor  # [1 + M, C]"""
    return reference_query_embeddings(point_features(model, field_points(model, seed=seed)), reference, k, seed,
                                      same_cosine)


@torch.no_grad()
def render_probabilities(model: NerfModel, cameras: Cameras, queries: Tensor,
                         temperature: float = DEFAULT_TEMPERATURE) -> Tensor:
    """Eq. 5 on rendered, decoded features: a 2D segmentation from any camera.

    queries: Tensor  # [K, C]
    Returns Tensor  # [C_cams, H, W, K]
    """
    _require_features(model)
    out = model.render(cameras, with_features=True)
    return label_probabilities(model.decode(out.features), queries, temperature)


def render_text_probabilities(model: NerfModel, cameras: Cameras, encode_text, query: str, negatives: Sequence[str],
                              temperature: float = DEFAULT_TEMPERATURE) -> Tensor:
    """``p(query | pixel)`` of a text query.  Returns Tensor  # [C_cams, H, W]"""
    return render_probabilities(model, cameras, text_queries(encode_text, query, negatives), temperature)[..., 0]


def render_segmentation(model: NerfModel, cameras: Cameras, label_embeddings: Tensor) -> Tensor:
    """Argmax of Eq. 5 over a label set per pixel.  label_embeddings [K, C] -> Tensor  # [C_cams, H, W] int64"""
    return render_probabilities(model, cameras, label_embeddings).argmax(-1)


@torch.no_grad()
def click_feature(model: NerfModel, cameras: Cameras, view: int, x: int, y: int) -> Tensor:
    """The decoded rendered feature at pixel (x, y) of camera ``view`` (one ray): a click query.  Returns [C]"""
    _require_features(model)
    if not (0 <= view < len(cameras)):
        raise ConfigError(f"click view {view} is out of range (0..{len(cameras) - 1})")
    if not (0 <= x < cameras.width and 0 <= y < cameras.height):
        raise ConfigError(f"click ({x}, {y}) is outside the {cameras.width}x{cameras.height} image")
    o, d, z = camera_rays(cameras[[view]].to(model.device))
    out = model.render_rays(o[0, y, x][None], d[0, y, x][None], z[0, y, x][None], with_features=True)
    return model.decode(out.features[0])


def render_reference_probabilities(model: NerfModel, cameras: Cameras, reference: Tensor, k: int = 8, seed: int = 0,
                                   temperature: float = DEFAULT_TEMPERATURE) -> Tensor:
    """``p(reference | pixel)`` of a patch / click reference ``[C]``.  Returns Tensor  # [C_cams, H, W]"""
    return render_probabilities(model, cameras, reference_queries(model, reference, k, seed), temperature)[..., 0]


def reference_point_probabilities(model: NerfModel, reference: Tensor, points: Optional[Tensor] = None, k: int = 8,
                                  seed: int = 0, temperature: float = DEFAULT_TEMPERATURE) -> Tensor:
    """``p(reference | x)`` at ``points  # [P, 3]`` (default: the occupied cells' centres).  Returns [P]"""
    pts = field_points(model, seed=seed) if points is None else points
    return point_probabilities(model, pts, reference_queries(model, reference, k, seed), temperature)[:, 0]


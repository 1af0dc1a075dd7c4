"""Queries on a NeRF in 3D, through the same Eq. 5 as the Gaussians: ``p(l | x)`` at any points, from the field's
decoded feature ``f(x)``.

In 2D (rendered features of a camera, then Eq. 5 per pixel: text, label sets, patch and click references) a
NeRF is a :class:`~dff_gs.backbone.Backbone` like the Gaussians, and :mod:`dff_gs.query.views` serves both.
Where the Gaussians compare a patch / click reference against their own features, the NeRF uses its features
at the centres of its occupied cells (``content_features``): the field's own content.
"""

from __future__ import annotations

from typing import Optional, Sequence

from torch import Tensor

from dff_gs.nerf.model import NerfModel
from dff_gs.query.eq5 import DEFAULT_TEMPERATURE, label_probabilities, reference_query_embeddings, text_query_embeddings


def point_features(model: NerfModel, points: Tensor, chunk: int = 65536) -> Tensor:
    """Decoded features ``f(x)`` at world points ``[P, 3]`` (teacher space).  Returns Tensor  # [P, C]"""
    return model.decoded_at(points, chunk)


def field_points(model: NerfModel, max_points: int = 50000, seed: int = 0) -> Tensor:
    """Centres of the occupied cells (at most ``max_points``, a seeded subset).  Returns Tensor  # [M, 3]"""
    return model.occupied_points(max_points, seed)


def point_probabilities(model: NerfModel, points: Tensor, queries: Tensor,
                        temperature: float = DEFAULT_TEMPERATURE) -> Tensor:
    """Eq. 5 at 3D points: ``points  # [P, 3]``, ``queries  # [K, C]``  ->  Tensor  # [P, K]"""
    return label_probabilities(point_features(model, points), queries, temperature)


def text_point_probabilities(model: NerfModel, encode_text, query: str, negatives: Sequence[str], points: Tensor,
                             temperature: float = DEFAULT_TEMPERATURE) -> Tensor:
    """``p(query | x)`` at ``points  # [P, 3]`` from a text and its negatives.  Returns Tensor  # [P]"""
    return point_probabilities(model, points, text_query_embeddings(encode_text, query, negatives), temperature)[:, 0]


def reference_point_probabilities(model: NerfModel, reference: Tensor, points: Optional[Tensor] = None, k: int = 8,
                                  seed: int = 0, temperature: float = DEFAULT_TEMPERATURE) -> Tensor:
    """``p(reference | x)`` at ``points  # [P, 3]`` (default: the occupied cells' centres) against the k-means
    competitors of the field's content.  Returns [P]"""
    pts = field_points(model, seed=seed) if points is None else points
    queries = reference_query_embeddings(model.content_features(seed=seed), reference, k, seed)
    return point_probabilities(model, pts, queries, temperature)[:, 0]


if __name__ == "__main__":  # the command moved: say so rather than exit 0 having done nothing
    raise SystemExit("error: python -m dff_gs.query.nerf is now python -m dff_gs.query NERF_RUN (it queries either "
                     "backbone; also dff-query)")

"""Eq. 5 of the paper on per-Gaussian features: label probabilities, the label sets of text / image-patch /
reference / cluster queries, and full 3D segmentation.

``p(l | x) = exp(f(x) . q(l) / T) / sum_l' exp(f(x) . q(l') / T)`` where ``f(x)`` is the Gaussian's
feature decoded to the teacher's space and ``q`` are the query and its competing (negative) labels.
The model's tensors are never modified: features are decoded and normalised into new tensors.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from dff_gs.core.errors import ConfigError
from dff_gs.core.gaussians import GaussianModel

DEFAULT_TEMPERATURE = 0.1
"""Softmax temperature of Eq. 5 on cosine similarities (the paper's CLIP setting uses a logit scale)."""


def label_probabilities(features: Tensor, queries: Tensor, temperature: float = DEFAULT_TEMPERATURE) -> Tensor:
    """Eq. 5: softmax over dot products of normalised features with each label's embedding.

    Args:
        features: Tensor  # [..., C] decoded features
        queries: Tensor  # [K, C] label embeddings (the query first, then negatives, or a label set)
    Returns:
        Tensor  # [..., K] probabilities summing to one over K
    """
    if queries.dim() != 2 or queries.shape[-1] != features.shape[-1]:
        raise ConfigError(f"query embeddings {tuple(queries.shape)} do not match features of dim {features.shape[-1]}")
    f = F.normalize(features.float(), dim=-1)
    q = F.normalize(queries.float().to(f.device), dim=-1)
    return torch.softmax(f @ q.T / temperature, dim=-1)


def gaussian_features(model: GaussianModel) -> Tensor:
    """Per-Gaussian features in the teacher's space (decoded; a new tensor).  Returns Tensor  # [N, C]"""
    if model.feature_dim == 0:
        raise ConfigError("this model carries no features: train it with a teacher (--teacher NAME)")
    with torch.no_grad():
        return model.decode(model.params["features"].detach())


@dataclass
class Selection:
    """The outcome of a query on a model.

    probs: Tensor  # [N] p(query | Gaussian)
    mask: Tensor  # [N] bool, selected Gaussians
    """

    probs: Tensor
    mask: Tensor

    @property
    def count(self) -> int:
        return int(self.mask.sum())


def select(probs: Tensor, threshold: float = 0.5) -> Selection:
    """Threshold ``p(query | x)``.  probs: Tensor  # [N]"""
    return Selection(probs=probs, mask=probs > threshold)


def query_embeddings(positive: Tensor, negatives: Optional[Tensor]) -> Tensor:
    """Stack the query with its negatives: positive [C] (or [1, C]), negatives [M, C] -> [1 + M, C]."""
    positive = positive.reshape(1, -1)
    if negatives is None or len(negatives) == 0:
        raise ConfigError("Eq. 5 needs at least one negative / competing label for a query")
    return torch.cat([positive, negatives.to(positive)], dim=0)


def text_probabilities(
    model: GaussianModel,
    encode_text,
    query: str,
    negatives: Sequence[str],
    temperature: float = DEFAULT_TEMPERATURE,
) -> Tensor:
    """``p(query | x)`` for every Gaussian from a text query and negative texts.  Returns Tensor  # [N]"""
    return label_probabilities(gaussian_features(model), text_query_embeddings(encode_text, query, negatives),
                               temperature)[:, 0]


def text_query_embeddings(encode_text, query: str, negatives: Sequence[str]) -> Tensor:
    """The query text's embedding followed by its negatives' (the query itself left out of them), for Eq. 5.
    Returns Tensor  # [1 + M, C]"""
    if not query or not query.strip():
        raise ConfigError("the query text is empty")
    texts = [query.strip()] + [n for n in negatives if n.strip() and n.strip() != query.strip()]
    emb = encode_text(texts)
    return query_embeddings(emb[0], emb[1:])


CANONICAL_NEGATIVES = ("object", "things", "stuff", "texture")
"""Generic competing phrases for a lone text query (as LERF's canonical phrases)."""

SYNONYM_COSINE = 0.7
"""Scene labels whose text embedding is at least this close to the query count as paraphrases of it and
are not used as its competitors (so "couch" is not beaten by "sofa")."""


def label_list(value) -> tuple[str, ...]:
    """Labels given as ``"a, b"`` or a sequence -> ``("a", "b")``, stripped, empty ones dropped."""
    items = value.split(",") if isinstance(value, str) else (value or ())
    return tuple(str(s).strip() for s in items if str(s).strip())


def text_negatives(encode_text, query: str, class_names: Sequence[str] | None = None,
                   extra: Sequence[str] = ()) -> list[str]:
    """Competing labels for ``query``: the canonical phrases, the scene's class names that are not
    paraphrases of the query, and any ``extra`` ones given by the user."""
    cands = list(dict.fromkeys([*CANONICAL_NEGATIVES, *(class_names or ()), *extra]))
    cands = [c for c in cands if c.strip() and c.strip().lower() != query.strip().lower()]
    if not cands:
        return list(CANONICAL_NEGATIVES)
    emb = encode_text([query] + cands)
    cos = F.normalize(emb[1:].float(), dim=-1) @ F.normalize(emb[0].float(), dim=0)
    keep = [c for c, s in zip(cands, cos.tolist()) if s < SYNONYM_COSINE or c in extra]
    return keep or list(CANONICAL_NEGATIVES)


def reference_probabilities(model: GaussianModel, reference: Tensor, k: int = 8, seed: int = 0,
                            same_cosine: float = 0.9, temperature: float = DEFAULT_TEMPERATURE) -> Tensor:
    """Eq. 5 for a patch or click query (a feature, no text): the competitors are the k-means centroids of
    the Gaussians' own features that are not near-duplicates of the query (cosine < ``same_cosine``).

    reference: Tensor  # [C] query feature in the teacher's space
    Returns Tensor  # [N]
    """
    feats = gaussian_features(model)
    return label_probabilities(feats, reference_query_embeddings(feats, reference, k, seed, same_cosine),
                               temperature)[:, 0]


def reference_query_embeddings(feats: Tensor, reference: Tensor, k: int = 8, seed: int = 0,
                               same_cosine: float = 0.9) -> Tensor:
    """A patch / click reference and its competitors: the k-means centroids of the scene's own features
    ``feats  # [N, C]`` that are not near-duplicates of the reference (cosine < ``same_cosine``; ``-reference``
    when none is left).  reference: Tensor  # [C].  Returns Tensor  # [1 + M, C]"""
    return reference_labels(kmeans(feats, min(k, len(feats)), seed=seed)[1], reference, same_cosine)


def reference_labels(centroids: Tensor, reference: Tensor, same_cosine: float = 0.9) -> Tensor:
    """:func:`reference_query_embeddings` given the scene's k-means ``centroids  # [k, C]`` (kept by a caller that
    asks many times).  reference: Tensor  # [C].  Returns Tensor  # [1 + M, C]"""
    q = F.normalize(reference.float().reshape(-1), dim=0).to(centroids.device)
    others = centroids[centroids @ q < same_cosine]
    if len(others) == 0:
        others = -q[None]
    return query_embeddings(q, others)


def patch_feature(teacher, image: Tensor) -> Tensor:
    """Teacher feature of an image crop ``[h, w, 3]`` in [0, 1]: a patch query.  Returns Tensor  # [C]"""
    if image.dim() != 3 or image.shape[-1] != 3 or min(image.shape[:2]) < 1:
        raise ConfigError(f"patch query: expected an RGB crop [h, w, 3], got {tuple(image.shape)}")
    if not getattr(teacher, "supports_patch", False):
        raise ConfigError(f"teacher {getattr(teacher, 'name', teacher)!r} cannot encode image patches (use "
                          "efficientnet, clip or dino)")
    return teacher.encode_image_patch(image)


def segment_gaussians(model: GaussianModel, label_embeddings: Tensor,
                      temperature: float = DEFAULT_TEMPERATURE) -> Tensor:
    """Full 3D segmentation: argmax of Eq. 5 over a label set.  label_embeddings [K, C] -> Tensor  # [N] int64"""
    return segment_features(gaussian_features(model), label_embeddings, temperature)


def segment_features(features: Tensor, label_embeddings: Tensor, temperature: float = DEFAULT_TEMPERATURE) -> Tensor:
    """The label of each feature: argmax of Eq. 5 over a label set ``[K, C]`` (moved to the features' device).

    features: Tensor  # [..., C]
    Returns Tensor  # [...] int64
    """
    return label_probabilities(features, label_embeddings.to(features.device), temperature).argmax(-1)


def kmeans(x: Tensor, k: int, iters: int = 30, seed: int = 0) -> tuple[Tensor, Tensor]:
    """k-means with k-means++ seeding on cosine-normalised rows.

    Args:
        x: Tensor  # [N, C]
    Returns:
        labels: Tensor  # [N] int64
        centroids: Tensor  # [k, C]
    """
    if k < 1 or k > len(x):
        raise ConfigError(f"k-means: k={k} must be between 1 and the number of Gaussians ({len(x)})")
    x = F.normalize(x.float(), dim=-1)
    g = torch.Generator(device="cpu").manual_seed(seed)
    centroids = x[torch.randint(len(x), (1,), generator=g)]
    for _ in range(1, k):
        d = torch.cdist(x, centroids).min(dim=1).values ** 2
        if not float(d.sum()) > 0:  # fewer distinct features than k: any point (an empty cluster stays empty)
            d = torch.ones_like(d)
        idx = torch.multinomial((d / d.sum()).cpu(), 1, generator=g)
        centroids = torch.cat([centroids, x[idx.to(x.device)]])
    for _ in range(iters):
        labels = torch.cdist(x, centroids).argmin(dim=1)
        new = torch.zeros_like(centroids).index_add_(0, labels, x)
        counts = torch.bincount(labels, minlength=k).clamp_min(1).unsqueeze(1)
        new = F.normalize(new / counts, dim=-1)
        empty = torch.bincount(labels, minlength=k) == 0
        new[empty] = centroids[empty]
        if torch.allclose(new, centroids, atol=1e-6):
            break
        centroids = new
    return torch.cdist(x, centroids).argmin(dim=1), centroids


def cluster_probabilities(model: GaussianModel, k: int, cluster_id: int, seed: int = 0,
                          temperature: float = DEFAULT_TEMPERATURE) -> Tensor:
    """Eq. 5 with the k-means centroids of the Gaussians' features as the label set: ``p(cluster | x)``.
    Cluster ids are those of :func:`kmeans` with the same ``k`` and ``seed`` (``python -m dff_gs.query
    --cluster K`` prints their sizes).  Returns Tensor  # [N]"""
    return feature_cluster_probabilities(gaussian_features(model), k, cluster_id, seed, temperature)


def feature_cluster_probabilities(feats: Tensor, k: int, cluster_id: int, seed: int = 0,
                                  temperature: float = DEFAULT_TEMPERATURE) -> Tensor:
    """:func:`cluster_probabilities` on any features ``feats: Tensor  # [N, C]`` (a NeRF's at its occupied cells).
    Returns Tensor  # [N]"""
    if not 0 <= cluster_id < k:
        raise ConfigError(f"cluster id {cluster_id} is out of range for k={k} (0..{k - 1})")
    _, centroids = kmeans(feats, k, seed=seed)
    return label_probabilities(feats, centroids, temperature)[:, cluster_id]

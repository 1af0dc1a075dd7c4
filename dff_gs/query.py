"""Queries -> per-Gaussian label probabilities (paper, Eq. 5) and 2D segmentation renders.

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

from dff_gs.cameras import Cameras
from dff_gs.errors import ConfigError
from dff_gs.gaussians import GaussianModel
from dff_gs.utils import fit_side

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
    _, centroids = kmeans(feats, min(k, len(feats)), seed=seed)
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
    return label_probabilities(gaussian_features(model), label_embeddings, temperature).argmax(-1)


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


def check_click(cameras: Cameras, view: int, x: int, y: int) -> None:
    """A ``ConfigError`` unless pixel ``(x, y)`` of camera ``view`` exists."""
    if not (0 <= view < len(cameras)):
        raise ConfigError(f"click view {view} is out of range (0..{len(cameras) - 1})")
    if not (0 <= x < cameras.width and 0 <= y < cameras.height):
        raise ConfigError(f"click ({x}, {y}) is outside the {cameras.width}x{cameras.height} image")


def click_feature(model: GaussianModel, cameras: Cameras, view: int, x: int, y: int, backend: str = "auto") -> Tensor:
    """The decoded rendered feature at pixel (x, y) of camera ``view``: a click query.  Returns Tensor  # [C]"""
    from dff_gs.render import render

    if model.feature_dim == 0:
        raise ConfigError("a click query needs per-Gaussian features and this model carries none (a plain 3DGS "
                          "PLY?): lift or distil features onto it first (train.py --init-ply PLY --lift)")
    check_click(cameras, view, x, y)
    with torch.no_grad():
        out = render(model, cameras[[view]], with_features=True, backend=backend)
        return model.decode(out.features[0, y, x])


@torch.no_grad()
def render_probabilities(
    model: GaussianModel, cameras: Cameras, queries: Tensor, temperature: float = DEFAULT_TEMPERATURE,
    backend: str = "auto"
) -> Tensor:
    """Eq. 5 on rendered (decoded) features: a 2D segmentation from any camera.

    Args:
        queries: Tensor  # [K, C]
    Returns:
        Tensor  # [C_cams, H, W, K]
    """
    from dff_gs.render import render

    out = render(model, cameras, with_features=True, backend=backend)
    return label_probabilities(model.decode(out.features), queries, temperature)


@torch.no_grad()
def render_values(model: GaussianModel, cameras: Cameras, values: Tensor,
                  backend: str = "auto") -> tuple[Tensor, Tensor]:
    """Composite arbitrary per-Gaussian values (probabilities, one-hot labels, masks) from ``cameras`` with the
    model's geometry, over 0; the model itself is not touched.

    values: Tensor  # [N, K]
    Returns (image [C, H, W, K], alpha [C, H, W, 1])
    """
    from dff_gs.render import rasterize

    colors = values.float()[None].expand(len(cameras), -1, -1).contiguous()
    img, _, alpha, _ = rasterize(model.get_means(), model.get_quats(), model.get_scales(), model.get_opacities(),
                                 colors, cameras.viewmats, cameras.Ks, cameras.width, cameras.height,
                                 render_depth=False, backend=backend)
    return img, alpha


def selection_bbox(model: GaussianModel, mask: Tensor) -> Optional[list]:
    """AABB ``[[min xyz], [max xyz]]`` of the selected centres (None if the selection is empty)."""
    if not mask.any():
        return None
    pts = model.get_means().detach()[mask]
    return [pts.amin(0).tolist(), pts.amax(0).tolist()]


def render_selection(model: GaussianModel, cameras: Cameras, mask: Tensor, backend: str = "auto") -> Tensor:
    """How much of each pixel the selected Gaussians cover (their share of the composited weight).

    mask: Tensor  # [N] bool
    Returns Tensor  # [C, H, W] in [0, 1]
    """
    return render_values(model, cameras, mask[:, None], backend)[0][..., 0]


def cluster_probabilities(model: GaussianModel, k: int, cluster_id: int, seed: int = 0,
                          temperature: float = DEFAULT_TEMPERATURE) -> Tensor:
    """Eq. 5 with the k-means centroids of the Gaussians' features as the label set: ``p(cluster | x)``.
    Cluster ids are those of :func:`kmeans` with the same ``k`` and ``seed`` (``python -m dff_gs.query
    --cluster K`` prints their sizes).  Returns Tensor  # [N]"""
    if not 0 <= cluster_id < k:
        raise ConfigError(f"cluster id {cluster_id} is out of range for k={k} (0..{k - 1})")
    feats = gaussian_features(model)
    _, centroids = kmeans(feats, k, seed=seed)
    return label_probabilities(feats, centroids, temperature)[:, cluster_id]


QUERY_KINDS = ("text", "patch", "click", "cluster")


@dataclass(frozen=True)
class QuerySpec:
    """One query as a user states it (command line or edit script), before it is resolved on a model.

    kind: text | patch | click | cluster
    value: the text; the patch image path; ``(view, x, y)``; ``(k, cluster_id)`` (``cluster_id`` None: the
        whole clustering, for ``python -m dff_gs.query --cluster K``)
    negatives: extra competing labels for a text query
    """

    kind: str
    value: object
    negatives: tuple = ()

    def __post_init__(self) -> None:
        if self.kind not in QUERY_KINDS:
            raise ConfigError(f"unknown query kind {self.kind!r} (known: {', '.join(QUERY_KINDS)})")
        v = self.value
        if self.kind == "text" and (not isinstance(v, str) or not v.strip()):
            raise ConfigError("the query text is empty")
        if self.kind == "patch" and (not isinstance(v, str) or not v):
            raise ConfigError("patch query: give the path of an image crop")
        if self.kind == "click" and (not isinstance(v, (tuple, list)) or len(v) != 3
                                     or not all(isinstance(i, int) for i in v)):
            raise ConfigError(f"click query: expected three integers VIEW X Y, got {v!r}")
        if self.kind == "cluster" and (not isinstance(v, (tuple, list)) or len(v) != 2 or not isinstance(v[0], int)
                                       or not (v[1] is None or isinstance(v[1], int))):
            raise ConfigError(f"cluster query: expected K:ID (two integers), got {v!r}")

    def describe(self) -> str:
        if self.kind == "click":
            return "click view {} at ({}, {})".format(*self.value)
        if self.kind == "cluster":
            return f"cluster {self.value[1]} of {self.value[0]}"
        return f"{self.kind} {self.value!r}"


class QueryContext:
    """What queries are resolved against: a model and its sidecar metadata; the teacher (text and patch
    queries) and the scene (click queries, renders) are loaded on first use and shared with
    :meth:`with_model` copies (an edit re-queries the edited model with the same teacher and scene).

    data: scene path (default: the scene named in the sidecar, ``meta["scene"]``)
    scene_options: keyword arguments for ``load_scene`` (downscale, test_every, format)
    """

    def __init__(self, model: GaussianModel, meta: dict, *, source: str = "model", data: Optional[str] = None,
                 backend: str = "auto", scene_options: Optional[dict] = None, _cache: Optional[dict] = None):
        self.model, self.meta, self.source, self.data, self.backend = model, meta or {}, str(source), data, backend
        self.scene_options = dict(scene_options or {})
        self._cache = {} if _cache is None else _cache

    @classmethod
    def open(cls, path, *, data: Optional[str] = None, backend: str = "auto") -> "QueryContext":
        """The context of a run folder or PLY: its model and sidecar, and the scene options it was trained with.
        A renderer this machine cannot run is refused here, before any work."""
        from dff_gs.render.rasterize import resolve_backend
        from dff_gs.runs import load_model, resolve_ply, run_scene_options

        ply = resolve_ply(path)
        model, meta = load_model(ply)
        resolve_backend(backend, model.device)
        return cls(model, meta, source=str(ply), data=data, backend=backend, scene_options=run_scene_options(path))

    def with_model(self, model: GaussianModel) -> "QueryContext":
        return QueryContext(model, self.meta, source=self.source, data=self.data, backend=self.backend,
                            scene_options=self.scene_options, _cache=self._cache)

    @property
    def class_names(self) -> Optional[list]:
        return (self.meta.get("teacher") or {}).get("class_names")

    @property
    def teacher(self):
        """The teacher the model was distilled from (``ConfigError`` naming the model if none is recorded)."""
        if "teacher" not in self._cache:
            from dff_gs.runs import teacher_from_meta

            self._cache["teacher"] = teacher_from_meta(self.meta)
        if self._cache["teacher"] is None:
            raise ConfigError(f"{self.source}: no teacher recorded with this model; only --click and --cluster work")
        return self._cache["teacher"]

    @property
    def scene_path(self) -> Optional[str]:
        return self.data or self.meta.get("scene") or None

    def scene(self):
        """The scene (all views), loaded once."""
        if "scene" not in self._cache:
            from dff_gs.data import load_scene

            if not self.scene_path:
                raise ConfigError(f"{self.source}: no scene: pass --data SCENE (the model's sidecar does not name one)")
            self._cache["scene"] = load_scene(self.scene_path, **self.scene_options)
        return self._cache["scene"]


def query_cameras(scene, count: int, side: int):
    """The training cameras the 2D query is rendered from: ``count`` evenly spaced (0 = all), resized so the
    longer side is at most ``side`` pixels (0 = as they are)."""
    ids = list(scene.train_ids) or list(range(scene.num_views))
    if count and len(ids) > count:
        ids = [ids[round(i * (len(ids) - 1) / (count - 1))] for i in range(count)] if count > 1 else ids[:1]
    cams = scene.cameras[ids]
    h, w = fit_side(cams.height, cams.width, side)
    return cams if (h, w) == (cams.height, cams.width) else cams.resized(w, h)


@torch.no_grad()
def render_views(model: GaussianModel, cameras: Cameras, backend: str = "auto"):
    """The model's stored (undecoded) features rendered from ``cameras`` and the sparse compositing weights of
    those views (:func:`dff_gs.lift.compositing_weights`): what lifting a 2D result back onto the Gaussians needs.

    Returns (features: Tensor  # [V, h, w, D], weights: CompositingWeights)
    """
    from dff_gs.lift import compositing_weights
    from dff_gs.render import render

    if model.feature_dim == 0:
        raise ConfigError("rendering features needs per-Gaussian features and this model carries none")
    cams = cameras.to(model.device)
    feats = torch.cat([render(model, cams[[i]], with_features=True, backend=backend).features
                       for i in range(len(cams))])
    return feats, compositing_weights(model, cams, min_weight=0.01)


def rendered_query_views(ctx: "QueryContext", count: int, side: int):
    """:func:`render_views` of ``ctx.model`` from the views of :func:`query_cameras` (``count``, ``side``),
    computed once per model and kept in ``ctx``'s cache (one model's: an edit makes a new model).

    Returns (features: Tensor  # [V, h, w, D], weights: CompositingWeights)
    """
    key = ("query_views", count, side)
    if key not in ctx._cache or ctx._cache[key][0] is not ctx.model:
        cams = query_cameras(ctx.scene(), count, side)
        ctx._cache[key] = (ctx.model, *render_views(ctx.model, cams, ctx.backend))
    return ctx._cache[key][1:]


def query_label_embeddings(ctx: QueryContext, spec: QuerySpec) -> tuple[Optional[Tensor], dict]:
    """Eq. 5's labels for one query on ``ctx.model``: the query's embedding followed by its competitors (text
    negatives, or the scene's feature clusters for a patch or click), and what was asked, for a summary. A
    cluster query has no embedding (None): it selects by k-means membership.

    Returns (labels: Tensor  # [1 + M, C] or None, info: dict)
    """
    model = ctx.model
    if spec.kind == "text":
        text = spec.value.strip()
        enc = ctx.teacher.encode_text
        negs = text_negatives(enc, text, ctx.class_names, list(label_list(spec.negatives)))
        return text_query_embeddings(enc, text, negs), {"query": text, "negatives": negs}
    if spec.kind == "patch":
        from pathlib import Path

        from dff_gs.data.image_io import load_rgb

        reference, info = patch_feature(ctx.teacher, load_rgb(Path(spec.value))), {"patch": spec.value}
    elif spec.kind == "click":
        v, x, y = spec.value
        reference = click_feature(model, ctx.scene().cameras.to(model.device), v, x, y, ctx.backend)
        info = {"click": [v, x, y]}
    else:
        k, cid = spec.value
        if cid is None:
            raise ConfigError("a cluster query selects one cluster: give K:ID")
        return None, {"cluster": [k, cid]}
    return reference_query_embeddings(gaussian_features(model), reference), info


def query_probabilities(ctx: QueryContext, spec: QuerySpec, grouping=None) -> tuple[Tensor, dict]:
    """Resolve one query on ``ctx.model``: ``p(query | x)`` for every Gaussian and what was asked, for a summary.
    With ``grouping`` (a :class:`dff_gs.grouping.GroupingSettings`) a click on a model whose scene is known is
    resolved by 3D grouping instead (:func:`dff_gs.grouping.group_click`): ``p`` is 1 on the object's group, 0
    elsewhere.

    Returns (probs: Tensor  # [N], info: dict)
    """
    if grouping is not None and spec.kind == "click" and ctx.scene_path:
        from dff_gs.grouping import group_click

        mask, info = group_click(ctx, spec.value, grouping)
        return mask.float(), {"click": list(spec.value), **info}
    labels, info = query_label_embeddings(ctx, spec)
    if labels is None:
        k, cid = spec.value
        return cluster_probabilities(ctx.model, k, cid), info
    return label_probabilities(gaussian_features(ctx.model), labels)[:, 0], info


@torch.no_grad()
def segmentation_overlay(model: GaussianModel, cameras: Cameras, values: Tensor, threshold: Optional[float] = None,
                         backend: str = "auto", rgb: Optional[Tensor] = None) -> Tensor:
    """The model's RGB blended half-and-half with a 2D segmentation rendered from per-Gaussian ``values``:
    one-hot labels ``[N, K]`` (argmax per pixel), or ``[N, 2]`` = ``[p, 1 - p]`` of a query with ``threshold``
    (a pixel is selected where the composited ``p`` exceeds ``threshold`` x alpha).
    ``rgb: Tensor  # [C, H, W, 3]`` the model's renders of ``cameras`` when the caller has them (else rendered).

    Returns Tensor  # [C, H, W, 3] in [0, 1]
    """
    from dff_gs.io.images import colorize_labels
    from dff_gs.render import render

    out = []
    for i in range(len(cameras)):
        cams = cameras[[i]]
        view_rgb = render(model, cams, with_features=False, backend=backend).rgb[0] if rgb is None else rgb[i]
        img, alpha = render_values(model, cams, values, backend)
        seg = img[0].argmax(-1) if threshold is None else (img[0, ..., 0] > threshold * alpha[0, ..., 0]).long()
        colours = torch.from_numpy(colorize_labels(seg.cpu(), values.shape[1])).float() / 255.0
        out.append(0.5 * colours + 0.5 * view_rgb.cpu().clamp(0, 1))
    return torch.stack(out)


if __name__ == "__main__":  # python -m dff_gs.query ...
    import sys

    from dff_gs.query_cli import main

    sys.exit(main())

"""A query as a user states it (:class:`QuerySpec`) and the model it is resolved on (:class:`QueryContext`, either
backbone): its label set and its per-primitive probabilities."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from torch import Tensor

from dff_gs.backbone import Backbone, GaussianBackbone, as_backbone
from dff_gs.core.errors import ConfigError
from dff_gs.data import load_scene
from dff_gs.data.image_io import load_rgb
from dff_gs.engine.runs import NERF_HINT, load_backbone, resolve_model, run_scene_options, teacher_from_meta
from dff_gs.io.ply import sidecar_path
from dff_gs.io.run_dir import CHECKPOINT_NAME, CONFIG_NAME, is_run
from dff_gs.query.eq5 import (
    feature_cluster_probabilities,
    label_list,
    label_probabilities,
    patch_feature,
    reference_query_embeddings,
    text_negatives,
    text_query_embeddings,
)
from dff_gs.query.grouping import group_click, group_seeds
from dff_gs.query.ray import check_ray, ray_camera, ray_seeds
from dff_gs.query.views import click_feature, query_cameras, render_views
from dff_gs.render.rasterize import resolve_backend

QUERY_KINDS = ("text", "patch", "click", "cluster", "ray")


@dataclass(frozen=True)
class QuerySpec:
    """One query as a user states it (command line or edit script), before it is resolved on a model.

    kind: text | patch | click | cluster | ray
    value: the text; the patch image path; ``(view, x, y)``; ``(k, cluster_id)`` (``cluster_id`` None: the
        whole clustering, for ``python -m dff_gs.query --cluster K``); ``(ox, oy, oz, dx, dy, dz)``, a click from
        any viewpoint (:mod:`dff_gs.query.ray`)
    negatives: extra competing labels for a text query
    """

    kind: str
    value: object
    negatives: tuple = ()

    def __post_init__(self) -> None:
        """Every query is checked here, once, wherever it comes from (command line, edit script, Python): a
        ``ConfigError`` with a one-line reason."""
        if self.kind not in QUERY_KINDS:
            raise ConfigError(f"unknown query kind {self.kind!r} (known: {', '.join(QUERY_KINDS)})")
        v = self.value
        if self.kind == "text" and (not isinstance(v, str) or not v.strip()):
            raise ConfigError("the query text is empty")
        if self.kind == "patch" and (not isinstance(v, str) or not v):
            raise ConfigError("patch query: give the path of an image crop")
        if self.kind == "click" and (not isinstance(v, (tuple, list)) or len(v) != 3
                                     or not all(_is_int(i) for i in v)):
            raise ConfigError(f"click query: expected three integers VIEW X Y, got {v!r:.60}")
        if self.kind == "cluster" and not _valid_cluster(v):
            raise ConfigError(f"cluster query: expected K or K:ID with K >= 1 and 0 <= ID < K, got {v!r:.60}")
        if self.kind == "ray":
            object.__setattr__(self, "value", check_ray(v))

    def describe(self) -> str:
        if self.kind == "click":
            return "click view {} at ({}, {})".format(*self.value)
        if self.kind == "cluster":
            return f"cluster {self.value[1]} of {self.value[0]}"
        if self.kind == "ray":
            return "ray from ({:.3g}, {:.3g}, {:.3g}) along ({:.3g}, {:.3g}, {:.3g})".format(*self.value)
        return f"{self.kind} {self.value!r}"


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _valid_cluster(v) -> bool:
    """``(K, ID)`` or ``(K, None)`` (the whole clustering) with ``K >= 1`` and ``0 <= ID < K``."""
    if not isinstance(v, (tuple, list)) or len(v) != 2 or not _is_int(v[0]) or v[0] < 1:
        return False
    return v[1] is None or (_is_int(v[1]) and 0 <= v[1] < v[0])


class QueryContext:
    """What queries are resolved against: a trained model of either backbone and its sidecar metadata; the
    teacher (text and patch queries) and the scene (click queries, renders) are loaded on first use and shared with
    :meth:`with_model` copies (an edit re-queries the edited model with the same teacher and scene).

    Queries are answered per primitive (:meth:`primitive_features`): each Gaussian's own feature, or the field's
    feature at each occupied cell of a NeRF (the 3D query of :mod:`dff_gs.query.nerf`); 2D queries render features
    through :attr:`backbone`. What only Gaussians have (3D click grouping, edits, lifted selections) asks
    :meth:`require_gaussians` first.

    model: the :class:`~dff_gs.core.gaussians.GaussianModel`, or the NeRF's :class:`~dff_gs.nerf.model.NerfModel`
        (given a :class:`~dff_gs.backbone.GaussianBackbone`, its model; the backbone is kept as it is)
    backbone: the model as a :class:`~dff_gs.backbone.Backbone` (Gaussians rendered with ``backend``)
    data: scene path (default: the scene named in the sidecar, ``meta["scene"]``)
    scene_options: keyword arguments for ``load_scene`` (downscale, test_every, format)
    """

    def __init__(self, model, meta: dict, *, source: str = "model", data: Optional[str] = None,
                 backend: str = "auto", scene_options: Optional[dict] = None, _cache: Optional[dict] = None):
        if isinstance(model, GaussianBackbone):  # kept as given (its backend and background)
            self.backbone: Backbone = model
            model, backend = model.model, model.backend
        else:
            self.backbone = as_backbone(model, backend)
        self.model, self.meta, self.source, self.data, self.backend = model, meta or {}, str(source), data, backend
        self.scene_options = dict(scene_options or {})
        self._cache = {} if _cache is None else _cache

    @classmethod
    def open(cls, path, *, data: Optional[str] = None, backend: str = "auto", device: str = "cpu") -> "QueryContext":
        """The context of a run folder or model file of either backbone (:func:`dff_gs.engine.runs.load_backbone`, on
        ``device``): its model and metadata, and the scene options it was trained with. A renderer this machine
        cannot run is refused here, before any work."""
        _, file = resolve_model(path)
        backbone, meta = load_backbone(path, backend=backend, device=device)
        if backbone.kind == "gs":
            resolve_backend(backend, backbone.device)
        return cls(backbone, meta, source=str(file), data=data, backend=backend,
                   scene_options=run_scene_options(path, meta))

    def with_model(self, model) -> "QueryContext":
        return QueryContext(model, self.meta, source=self.source, data=self.data, backend=self.backend,
                            scene_options=self.scene_options, _cache=self._cache)

    def per_model(self, name: str, compute):
        """``compute()`` for this context's model, kept in the shared cache until another model asks for
        ``name`` (an edit makes a new model; the values of the one before are dropped)."""
        held = self._cache.get(("per_model", name))
        if held is None or held[0] is not self.model:
            held = (self.model, compute())
            self._cache[("per_model", name)] = held
        return held[1]

    def rendered_views(self, count: int, side: int):
        """:func:`~dff_gs.query.views.render_views` of this context's model from the views of
        :func:`~dff_gs.query.views.query_cameras` (``count``, ``side``), computed once per model (:meth:`per_model`).

        Returns (features: Tensor  # [V, h, w, D], weights: CompositingWeights)
        """
        return self.per_model(("query_views", count, side),
                              lambda: render_views(self.model, query_cameras(self.scene(), count, side), self.backend))

    @property
    def kind(self) -> str:
        """``"gs"`` or ``"nerf"``."""
        return self.backbone.kind

    def require_gaussians(self, what: str) -> None:
        """A one-line ``ConfigError`` naming the model when ``what`` (an edit, a 3D grouping, ...) needs Gaussians."""
        if self.kind != "gs":
            raise ConfigError(f"{self.source}: {what} needs Gaussians and this is a NeRF run; {NERF_HINT}")

    def primitive_features(self) -> Tensor:
        """Decoded features of every primitive (:meth:`dff_gs.backbone.Backbone.primitive_features`): each
        Gaussian's (computed anew: the model may be edited in place), or the NeRF's at its occupied cells (computed
        once per model).  Returns Tensor  # [N, C]"""
        if self.kind == "gs":
            return self.backbone.primitive_features()
        key = "primitive_features"
        if key not in self._cache or self._cache[key][0] is not self.model:
            self._cache[key] = (self.model, self.backbone.primitive_features())
        return self._cache[key][1]

    @property
    def class_names(self) -> Optional[list]:
        return (self.meta.get("teacher") or {}).get("class_names")

    @property
    def teacher(self):
        """The teacher the model was distilled from (``ConfigError`` naming the model if none is recorded)."""
        if "teacher" not in self._cache:
            self._cache["teacher"] = teacher_from_meta(self.meta)
        if self._cache["teacher"] is None:
            raise ConfigError(f"{self.source}: no teacher recorded with this model; only --click and --cluster work")
        return self._cache["teacher"]

    @property
    def scene_path(self) -> Optional[str]:
        return self.data or self.meta.get("scene") or None

    def input_files(self) -> list[Path]:
        """The files this context reads its model from, which no command writes over (``--force`` or not): the
        model file, its sidecar and, when it lies in a run folder, that run's config and checkpoint."""
        src = Path(self.source)
        return [src, sidecar_path(src)] + ([src.parent / CONFIG_NAME, src.parent / CHECKPOINT_NAME]
                                           if is_run(src.parent) else [])

    def scene(self):
        """The scene (all views), loaded once."""
        if "scene" not in self._cache:
            if not self.scene_path:
                raise ConfigError(f"{self.source}: no scene: pass --data SCENE (the model's sidecar does not name one)")
            self._cache["scene"] = load_scene(self.scene_path, **self.scene_options)
        return self._cache["scene"]


def query_label_embeddings(ctx: QueryContext, spec: QuerySpec) -> tuple[Optional[Tensor], dict]:
    """Eq. 5's labels for one query on ``ctx.model``: the query's embedding followed by its competitors (text
    negatives, or the scene's feature clusters for a patch, click or ray), and what was asked, for a summary. A
    cluster query has no embedding (None): it selects by k-means membership.

    Returns (labels: Tensor  # [1 + M, C] or None, info: dict)
    """
    if spec.kind == "text":
        text = spec.value.strip()
        enc = ctx.teacher.encode_text
        negs = text_negatives(enc, text, ctx.class_names, list(label_list(spec.negatives)))
        return text_query_embeddings(enc, text, negs), {"query": text, "negatives": negs}
    if spec.kind == "patch":
        from pathlib import Path

        reference, info = patch_feature(ctx.teacher, load_rgb(Path(spec.value))), {"patch": spec.value}
    elif spec.kind == "click":
        v, x, y = spec.value
        reference = click_feature(ctx.backbone, ctx.scene().cameras.to(ctx.backbone.device), v, x, y)
        info = {"click": [v, x, y]}
    elif spec.kind == "ray":
        reference = click_feature(ctx.backbone, ray_camera(spec.value, ctx.backbone.device), 0, 0, 0)
        info = {"ray": list(spec.value)}
    else:
        k, cid = spec.value
        if cid is None:
            raise ConfigError("a cluster query selects one cluster: give K:ID")
        return None, {"cluster": [k, cid]}
    return reference_query_embeddings(ctx.backbone.content_features(), reference), info


def query_probabilities(ctx: QueryContext, spec: QuerySpec, grouping=None) -> tuple[Tensor, dict]:
    """Resolve one query on ``ctx``'s model: ``p(query | x)`` for every primitive (:meth:`QueryContext.
    primitive_features`: each Gaussian, or each occupied cell of a NeRF) and what was asked, for a summary. With
    ``grouping`` (a :class:`dff_gs.query.grouping.GroupingSettings`) a click on Gaussians whose scene is known is
    resolved by 3D grouping instead (:func:`dff_gs.query.grouping.group_click`): ``p`` is 1 on the object's group, 0
    elsewhere (a NeRF's click is Eq. 5 on the clicked feature).

    Returns (probs: Tensor  # [N], info: dict)
    """
    if grouping is not None and spec.kind == "click" and ctx.scene_path and ctx.kind == "gs":
        mask, info = group_click(ctx, spec.value, grouping)
        return mask.float(), {"click": list(spec.value), **info}
    if grouping is not None and spec.kind == "ray" and ctx.scene_path and ctx.kind == "gs":
        reference = click_feature(ctx.backbone, ray_camera(spec.value, ctx.backbone.device), 0, 0, 0)
        mask, info = group_seeds(ctx, *ray_seeds(ctx.model, spec.value), reference, grouping,
                                 spec.describe())
        return mask.float(), {"ray": list(spec.value), **info}
    labels, info = query_label_embeddings(ctx, spec)
    if labels is None:
        k, cid = spec.value
        return feature_cluster_probabilities(ctx.primitive_features(), k, cid), info
    return label_probabilities(ctx.primitive_features(), labels.to(ctx.backbone.device))[:, 0], info

"""Queries -> a cleaned-up 3D selection of Gaussians.

1. Each query gives ``p(query | x)`` (paper Eq. 5, :func:`dff_gs.query.query_probabilities`); several
   queries are unioned (per Gaussian, the largest probability counts).
2. Threshold, by ``mode``:
   - ``gaussian``: ``p > threshold`` on each Gaussian's own feature;
   - ``lifted``: the 2D evidence: Eq. 5 on the *rendered* features of (up to ``lift_views``) training views,
     lifted back onto the Gaussians that draw those pixels (their compositing weights ``alpha T``,
     :func:`dff_gs.lift.lift_features`): a Gaussian is selected when the weighted mean of the pixel
     probabilities where it is drawn exceeds ``threshold``. A Gaussian no view draws has no 2D evidence;
   - ``combined`` (default, chosen by the edit benchmark on 8 generated layouts: a text delete changes 0.93 of
     the object's pixels against 0.86 with ``gaussian``, 0.92 with ``lifted``): the lifted decision where a
     Gaussian is drawn (its summed weight at least ``lift_min_weight``), its own ``p > threshold`` where it is
     not (hidden inside or behind the object).
   Cluster queries, which have no embedding to render, always use their own membership, and a model without a
   scene (a bare PLY, no ``--data``) the ``gaussian`` mode. The probability the mode picks is the ``p`` the
   cleanup below uses too.
   A click (``click_grouping``, on a model whose scene is known) is not thresholded: it selects the object
   under it, grouped in 3D from the Gaussians the clicked pixel shows (:mod:`dff_gs.query.grouping`); its ``p`` is 1
   on that group and 0 elsewhere.
3. Cleanup in 3D, so that an edit leaves no floaters behind and takes no stray Gaussians along:
   - *vote*: a selected Gaussian whose ``knn`` nearest Gaussians (all of the model's) are less than
     ``min_vote`` selected is isolated among unselected ones: dropped, unless it is confident
     (``p >= vote_exempt``: the model renders part of the object with it, even where the geometry put it
     among background Gaussians, e.g. just under the floor where the object touches it);
   - *components*: selected Gaussians are connected when closer than ``link`` x the model's typical
     neighbour spacing plus ``link_sigma`` x the sum of their largest standard deviations (large Gaussians
     reach further); a connected piece holding less than ``min_component`` of the selection (and fewer
     than ``keep_component`` Gaussians) is dropped: a clump of floaters away from the object;
   - *grow*: an unselected Gaussian with ``p >= grow_min_prob`` whose centre lies within ``grow_sigma``
     standard deviations of a selected Gaussian (or holds a selected centre within its own ``grow_sigma``)
     is added, ``grow_iters`` times (the object's surface Gaussians that the threshold left out).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Optional, Sequence

import torch
from torch import Tensor

from dff_gs.core.config import option
from dff_gs.core.errors import ConfigError, DffError
from dff_gs.core.gaussians import GaussianModel
from dff_gs.core.geometry import quat_to_matrix
from dff_gs.core.neighbors import connected_components, knn, linked_neighbors, typical_spacing
from dff_gs.core.rules import BELOW_ONE, POSITIVE, at_least, count, within
from dff_gs.query import (
    QueryContext,
    QuerySpec,
    cluster_probabilities,
    gaussian_features,
    label_probabilities,
    query_label_embeddings,
    query_probabilities,
)
from dff_gs.query.grouping import GroupingSettings


class EmptySelectionError(DffError):
    """A query (after cleanup) selects no Gaussian."""


SelectionMode = Literal["gaussian", "lifted", "combined"]


@dataclass
class SelectionConfig(GroupingSettings):
    """How queries become a selection (a click: its 3D group; other queries: threshold, then the 3D cleanup)."""

    threshold: float = option(0.5, "select Gaussians with p(query|x) above this", rule=BELOW_ONE)
    mode: SelectionMode = option("combined", "gaussian (own feature) | lifted (rendered 2D query lifted onto the "
                                             "Gaussians) | combined (lifted where a Gaussian is drawn, own feature "
                                             "where not); combined removed the most on generated layouts "
                                             "(benchmarks/RESULTS.md, 2026-12-07)")
    lift_views: int = option(12, "training views the 2D query is rendered from (evenly spaced; 0 = all)", rule=count(0))
    lift_side: int = option(160, "render the 2D query at most this many pixels on the longer side (0 = full size)",
                            rule=count(0))
    lift_min_weight: float = option(0.05, "combined: a Gaussian's summed compositing weight over those views from "
                                          "which its 2D evidence counts")
    cleanup: bool = option(True, "clean the thresholded selection up in 3D (vote, components, grow)")
    knn: int = option(16, "neighbours looked at by the vote", rule=count(1))
    min_vote: float = option(0.35, "keep a selected Gaussian only if at least this fraction of its knn nearest "
                                   "Gaussians are selected", rule=within(0, 1))
    vote_exempt: float = option(0.9, "confident Gaussians, p(query|x) at least this, are exempt from the vote")
    link: float = option(4.0, "selected Gaussians closer than link x the median neighbour spacing are connected",
                         rule=POSITIVE)
    link_sigma: float = option(2.0, "... plus link_sigma x the sum of their largest standard deviations")
    min_component: float = option(0.02, "drop connected pieces holding less than this fraction of the selection",
                                  rule=within(0, 1))
    keep_component: int = option(50, "... unless they hold at least this many Gaussians", rule=count(0))
    grow_sigma: float = option(2.0, "grow into Gaussians whose centre is within this many standard deviations "
                                    "of a selected one (or that hold a selected centre)", rule=at_least(0))
    grow_min_prob: float = option(0.2, "only grow into Gaussians with p(query|x) at least this", rule=within(0, 1))
    grow_iters: int = option(3, "growing rounds", rule=count(0))

    def validate(self, prefix: str = "selection.") -> "SelectionConfig":
        """:meth:`Section.validate` (each field's rule and choices, the grouping's included); returns itself."""
        super().validate(prefix)
        return self


@dataclass
class EditSelection:
    """A cleaned selection.

    probs: Tensor  # [N] max over the queries of p(query | x) (lifted where the mode says so)
    mask: Tensor  # [N] bool, the selection after cleanup
    stats: counts of each step (thresholded, dropped_vote, dropped_components, grown, selected)
    """

    probs: Tensor
    mask: Tensor
    stats: dict = field(default_factory=dict)
    queries: list = field(default_factory=list)

    @property
    def count(self) -> int:
        return int(self.mask.sum())


def _covariance_inverse_factors(model: GaussianModel, idx: Tensor) -> tuple[Tensor, Tensor]:
    """Rotation ``[M, 3, 3]`` (local -> world) and inverse scales ``[M, 3]`` of Gaussians ``idx``."""
    return quat_to_matrix(model.get_quats()[idx].detach()), 1.0 / model.get_scales()[idx].detach().clamp_min(1e-8)


def _mahalanobis(points: Tensor, centres: Tensor, rot: Tensor, inv_scale: Tensor) -> Tensor:
    """Distance in standard deviations of ``points  # [M, 3]`` from Gaussians (``centres [M, 3]``, ``rot``,
    ``inv_scale``) paired row by row.  Returns Tensor  # [M]"""
    local = torch.einsum("mji,mj->mi", rot, points - centres)  # R^T (p - c)
    return (local * inv_scale).norm(dim=-1)


def cleanup_mask(model: GaussianModel, probs: Tensor, mask: Tensor, cfg: SelectionConfig,
                 spacing: Optional[Tensor] = None) -> tuple[Tensor, dict]:
    """The vote / components / grow steps of the module docstring.

    probs: Tensor  # [N]
    mask: Tensor  # [N] bool (thresholded)
    spacing: the model's :func:`~dff_gs.core.neighbors.typical_spacing` when the caller keeps it (computed if None)
    Returns (mask: Tensor  # [N] bool, stats: dict)
    """
    means = model.get_means().detach().float()
    mask = mask.clone()
    stats = {"thresholded": int(mask.sum()), "dropped_vote": 0, "dropped_components": 0, "grown": 0}
    N = len(means)
    if not cfg.cleanup or N < 2 or not mask.any():
        stats["selected"] = int(mask.sum())
        return mask, stats
    # vote: the fraction of each selected Gaussian's nearest Gaussians that are selected
    sel = mask.nonzero()[:, 0]
    _, nbr = knn(means[sel], means, cfg.knn, exclude_self=True, tree=True)
    vote = mask[nbr].float().mean(1) if nbr.shape[1] else torch.ones(len(sel), device=means.device)
    drop = sel[(vote < cfg.min_vote) & (probs[sel] < cfg.vote_exempt)]
    mask[drop] = False
    stats["dropped_vote"] = len(drop)
    # components of the remaining selection, linked within link x the typical spacing
    sel = mask.nonzero()[:, 0]
    if len(sel) > 1:
        size = model.get_scales().detach().amax(1)[sel]  # largest standard deviation of each selected Gaussian
        src, dst = linked_neighbors(means[sel], size, cfg.knn, cfg.link, cfg.link_sigma,
                                      typical_spacing(means) if spacing is None else spacing)
        comp = connected_components(len(sel), src, dst)
        sizes = torch.bincount(comp)
        small = (sizes < cfg.min_component * len(sel)) & (sizes < cfg.keep_component)
        drop = sel[small[comp]]
        mask[drop] = False
        stats["dropped_components"] = len(drop)
        stats["components"] = int((~small).sum())
    # grow into tightly overlapping Gaussians
    for _ in range(cfg.grow_iters):
        sel = mask.nonzero()[:, 0]
        cand = (~mask & (probs >= cfg.grow_min_prob)).nonzero()[:, 0]
        if len(sel) == 0 or len(cand) == 0:
            break
        _, j = knn(means[cand], means[sel], 4, tree=True)  # the selected Gaussians nearest to each candidate
        pair_c = cand[:, None].expand_as(j).reshape(-1)
        pair_s = sel[j.reshape(-1)]
        rot_s, inv_s = _covariance_inverse_factors(model, pair_s)
        rot_c, inv_c = _covariance_inverse_factors(model, pair_c)
        inside = ((_mahalanobis(means[pair_c], means[pair_s], rot_s, inv_s) < cfg.grow_sigma)
                  | (_mahalanobis(means[pair_s], means[pair_c], rot_c, inv_c) < cfg.grow_sigma))
        new = pair_c[inside].unique()
        if len(new) == 0:
            break
        mask[new] = True
        stats["grown"] += len(new)
    stats["selected"] = int(mask.sum())
    return mask, stats


@torch.no_grad()
def lifted_probabilities(ctx: QueryContext, labels: Tensor, cfg: SelectionConfig) -> tuple[Tensor, Tensor]:
    """The 2D evidence of a query on the Gaussians: Eq. 5 on the decoded rendered features of the views of
    :func:`dff_gs.query.query_cameras`, lifted onto the Gaussians by their compositing weights. The rendered
    features and the weights are computed once per model (:meth:`dff_gs.query.QueryContext.rendered_views`), so further
    queries cost a scatter-add.

    labels: Tensor  # [1 + M, C] the query and its competitors (:func:`dff_gs.query.query_label_embeddings`)
    Returns (lifted: Tensor  # [N] weighted mean pixel probability, weight: Tensor  # [N] summed weights)
    """
    model = ctx.model
    feats, weights = ctx.rendered_views(cfg.lift_views, cfg.lift_side)  # stored features, decoded per query
    probs = torch.cat([label_probabilities(model.decode(f[None]), labels.to(f))[..., :1] for f in feats])
    return weights.lift(probs)[:, 0], weights.weight_sum


def model_spacing(ctx: QueryContext) -> Tensor:
    """The typical neighbour spacing of ``ctx.model``'s centres (:func:`~dff_gs.core.neighbors.typical_spacing`), kept
    per model in ``ctx``'s cache: every query on one model shares it."""
    return ctx.per_model("typical_spacing", lambda: typical_spacing(ctx.model.get_means().detach().float()))


def decoded_features(ctx: QueryContext) -> Tensor:
    """``ctx.model``'s features in the teacher's space ``[N, C]``, kept per model like its spacing (every query on
    one model decodes the same features; not to be modified)."""
    return ctx.per_model("decoded_features", lambda: gaussian_features(ctx.model))


def select_gaussians(ctx: QueryContext, specs: Sequence[QuerySpec],
                     cfg: Optional[SelectionConfig] = None) -> EditSelection:
    """Resolve ``specs`` on ``ctx.model``, union them, threshold (``cfg.mode``) and clean up (see the module
    docstring).

    Raises :class:`EmptySelectionError` (naming the queries and the best probability) if nothing is selected.
    """
    ctx.require_gaussians("selecting Gaussians")
    cfg = (cfg or SelectionConfig()).validate()
    if not specs:
        raise ConfigError("no query given: pass --text, --click, --patch or --cluster (or select: in the script)")
    feats = decoded_features(ctx) if ctx.model.feature_dim else None
    mode = cfg.mode if ctx.scene_path else "gaussian"  # no cameras to render the 2D query from
    probs, infos = None, []
    for spec in specs:
        if spec.kind in ("click", "ray") and cfg.click_grouping and ctx.scene_path:  # the object under the click
            p, info = query_probabilities(ctx, spec, grouping=cfg)
            infos.append({"kind": spec.kind, **info})
            probs = p if probs is None else torch.maximum(probs, p)
            continue
        labels, info = query_label_embeddings(ctx, spec)
        if labels is None:
            p = cluster_probabilities(ctx.model, *spec.value)
        else:
            p = label_probabilities(feats, labels)[:, 0]
            if mode != "gaussian":  # the probability that counts: the lifted 2D one where the Gaussian is drawn
                lifted, weight = lifted_probabilities(ctx, labels, cfg)
                drawn = weight >= cfg.lift_min_weight if mode == "combined" else torch.ones_like(p, dtype=torch.bool)
                info["lifted"] = int((drawn & (lifted > cfg.threshold)).sum())
                p = torch.where(drawn, lifted, p)
        info = {"kind": spec.kind, **info, "thresholded": int((p > cfg.threshold).sum())}
        infos.append(info)
        probs = p if probs is None else torch.maximum(probs, p)
    mask, stats = cleanup_mask(ctx.model, probs, probs > cfg.threshold, cfg, model_spacing(ctx))
    stats["mode"] = mode if mode == cfg.mode else f"{mode} (no scene to render the 2D query from)"
    if not mask.any():
        what = " + ".join(s.describe() for s in specs)
        raise EmptySelectionError(f"{ctx.source}: the query {what} selects no Gaussians (highest p(query|x) = "
                                  f"{float(probs.max()):.3f}, threshold {cfg.threshold}, mode {mode}); "
                                  f"nothing written")
    return EditSelection(probs=probs, mask=mask, stats=stats, queries=infos)

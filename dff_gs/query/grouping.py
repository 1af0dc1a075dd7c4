"""A click -> the object under it: the pieces of look-alike Gaussians that a learned rule joins to the clicked one
(the default), or Eq. 5 of the click's feature on the Gaussians as the model shows them, kept to the piece joined
to the Gaussians the clicked pixel shows (``group_rule=false``).

Eq. 5 on each Gaussian's own feature (``--no-grouping``) takes everything that looks like the clicked point (with
an offline ImageNet teacher every object on the floor shares much of its feature) and misses the Gaussians of
the object whose stored feature is noisy (distillation constrains features only in sum along each ray). Eq. 5 on
smoothed features joined to the click (steps 1-4 below) stops where an object changes material (a robot's head,
a lamp's shade: recall) and runs into a table or a neighbour of a similar look (precision). With the rule (step 5)
the selection grows piece by piece from the clicked one; what joins is decided by how a piece lies against the
selection (its share of border with it, its size, extent, flatness, height and place against the selection's
box) as much as by its look (:mod:`dff_gs.query.pieces`, :mod:`dff_gs.query.merge_rule`). This module:

1. *Features*: each Gaussian's decoded feature averaged over the pixels it draws in ``views`` training views
   (its compositing weights ``alpha T`` over the rendered feature maps): what the model shows of it. A Gaussian's
   own feature counts as half a pixel's full weight, so one drawn little (hidden behind others) keeps mostly its
   own instead of taking what hides it.
2. *Eq. 5*: ``p(click | x)`` of every Gaussian, the click's rendered feature against 12 k-means centroids of
   those features (as a click query), on those features.
3. *Seeds*: the Gaussians the clicked pixel is composited from, the most weighted (``alpha T`` there) first, as
   many as make up 80% of its weight: the surface clicked, not what shows faintly through it.
4. *Piece*: every Gaussian with ``p > threshold`` that a path of such Gaussians joins to a seed, along the links
   of each Gaussian to its ``knn`` nearest (within ``link`` x the typical spacing plus ``link_sigma`` x the two
   Gaussians' largest standard deviations, the rule of the edit cleanup). A lookalike elsewhere (another object of
   the same kind) is not joined; a part of the object that looks less like the clicked point than the scene's
   other content does not pass.
5. *Pieces and the rule* (``group_rule``, the default): the smoothed features' 96 k-means clusters split into
   connected pieces along the same links, not across a concave crease, the smallest joined to their neighbours
   (:mod:`dff_gs.query.pieces`, :mod:`dff_gs.query.contacts`); the selection starts at the piece that draws most of
   the clicked pixel (its Gaussians' summed weight there) and, round by round, takes every touching piece whose
   probability under the rule (boosted trees fitted on generated layouts no evaluation uses,
   ``benchmarks/fit_merge_rule.py``) is above ``group_rule_threshold``.

What was measured (``benchmarks/bench_click.py``, generated layouts, 4 random clicks per object, labels withheld;
``benchmarks/RESULTS.md``) chose this over the widest path through feature-similarity links cut at its sharpest
drop (what this module did before): on the 8 regression layouts mean IoU 0.550 against 0.237 on the same models
(Eq. 5 alone 0.342; the best any selection could do on them 0.820); 0.613 on the layouts retrained antialiased
(their ceiling 0.912). The competitors: once a scene's floor to the horizon and its sky have Gaussians of their own
(``model.init_beyond``), 8 centroids of the Gaussians' stored features went mostly to them and left a cone, the
table under it and the ring beside it one cluster; 12 centroids of the smoothed features (what the Gaussians
show) on the first three layouts: 0.617 against 0.537 (8 of the stored 0.537, 16 of them 0.597, 16 / 24 of the
smoothed 0.613 / 0.609). The threshold: on the first three layouts
0.4 / 0.3 / 0.2 / 0.1 gave 0.515 / 0.529 / 0.526 / 0.498 (lower trades precision for recall), and a threshold
chosen per click (the lowest before the piece grows more than 2-5x) did worse than a fixed one (0.37-0.47).

The rule (step 5), measured the same way on the 8 regression layouts (none of them fitted on): mean IoU 0.745
against 0.639 for step 4 on the same models, multi-part objects 0.664 against 0.508, recall 0.89 against 0.78; on a
fresh draw of 8 layouts 0.713 against 0.651, multi-part 0.645 against 0.511, but a lower 10th percentile (0.09
against 0.16: a click it gets wrong can take the floor) (``benchmarks/RESULTS.md``). With pieces that do not cross a
concave crease, 96 clusters, small pieces absorbed and the rule reading how pieces meet (:mod:`dff_gs.query.contacts`):
0.823 on the regression set (p10 0.46, multi-part 0.778) and 0.773 on the same fresh draw (p10 0.31, multi-part
0.678); a perfect rule on these pieces would score 0.914 / 0.867. Started at the piece that draws most of the
clicked pixel (not the piece of its single most weighted Gaussian, which was a faint floor or sky Gaussian in front
of the object on 5-7% of the clicks) and with the rule fitted on 16 layouts, each sample weighted by what a mistake
on it costs: 0.855 / 0.853 (p10 0.64 / 0.69, multi-part 0.804 / 0.762).

The smoothed features, the graph, the scene's k-means centroids and the pieces are computed once per model and
kept in the query context's cache.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Optional

import torch
from torch import Tensor

from dff_gs.core.cameras import Cameras
from dff_gs.core.config import Section, option
from dff_gs.core.errors import ConfigError
from dff_gs.core.gaussians import GaussianModel
from dff_gs.core.neighbors import connected_components, linked_neighbors
from dff_gs.core.rules import BELOW_ONE, count
from dff_gs.lift import compositing_weights
from dff_gs.query.eq5 import kmeans, label_probabilities, reference_labels
from dff_gs.query.contacts import oriented_normals
from dff_gs.query.merge_rule import TreeEnsemble, shipped_rule
from dff_gs.query.pieces import Pieces
from dff_gs.query.views import check_click, click_feature, query_cameras


RULE_MIN_GAUSSIANS = 5000
"""Models with fewer Gaussians group a click by threshold (step 4) even with ``group_rule``: the rule was fitted on
layouts of 20,000-60,000 Gaussians, whose pieces (96 clusters' connected parts) it knows; a toy model's 96 clusters
cut each object into pieces of a few Gaussians."""


def pixel_camera(cameras: Cameras, view: int, x: int, y: int) -> Cameras:
    """A one-pixel camera seeing exactly pixel ``(x, y)`` of camera ``view`` (principal point shifted)."""
    cam = cameras[[view]]
    Ks = cam.Ks.clone()
    Ks[:, 0, 2] -= x
    Ks[:, 1, 2] -= y
    return Cameras(cam.viewmats.clone(), Ks, 1, 1)


@torch.no_grad()
def click_seeds(model: GaussianModel, cameras: Cameras, view: int, x: int, y: int) -> tuple[Tensor, Tensor]:
    """The Gaussians pixel ``(x, y)`` of camera ``view`` is composited from and their weights ``alpha T``.

    Returns (ids: Tensor  # [S] int64, weights: Tensor  # [S])
    """
    w = compositing_weights(model, pixel_camera(cameras, view, x, y).to(model.device), min_weight=1e-4)
    return w.gaussian, w.weight


def front_seeds(ids: Tensor, weights: Tensor, share: float = 0.8) -> Tensor:
    """The Gaussians of a pixel that make up ``share`` of its compositing weight, largest weights first.

    ids: Tensor  # [S] int64;  weights: Tensor  # [S]
    Returns Tensor  # [S'] int64 (at least one when S > 0)
    """
    if len(ids) == 0:
        return ids
    order = weights.argsort(descending=True)
    cumulative = weights[order].cumsum(0) / weights.sum().clamp_min(1e-12)
    return ids[order[:int((cumulative < share).sum()) + 1]]


@torch.no_grad()
def smoothed_features(model: GaussianModel, features: Tensor, weights, own_weight: float = 0.5) -> Tensor:
    """Each Gaussian's decoded feature as the model shows it: the rendered stored ``features  # [V, h, w, D]``
    averaged over the pixels it draws, by its compositing ``weights`` there (both from
    :func:`dff_gs.query.render_views`), with its own feature counted as ``own_weight`` of such weight (a Gaussian
    hidden behind others, drawing little, keeps mostly its own instead of taking the feature of what hides it).
    Returns Tensor  # [N, C]"""
    total = weights.weight_sum[:, None]
    lifted = weights.lift(features) * total  # the weighted sum
    own = model.params["features"].detach()
    return model.decode((lifted + own_weight * own) / (total + own_weight)).detach()


def joined_piece(num_nodes: int, src: Tensor, dst: Tensor, keep: Tensor, seeds: Tensor) -> Tensor:
    """The nodes of ``keep`` joined to one of ``seeds`` by a path of ``keep`` nodes (the seeds count as kept).

    src, dst: Tensor  # [E] int64 undirected edges;  keep: Tensor  # [num_nodes] bool;  seeds: Tensor  # [S] int64
    Returns Tensor  # [num_nodes] bool
    """
    keep = keep.clone()
    keep[seeds] = True
    idx = keep.nonzero()[:, 0]
    local = torch.full((num_nodes,), -1, dtype=torch.long, device=keep.device)
    local[idx] = torch.arange(len(idx), device=keep.device)
    inside = keep[src] & keep[dst]
    comp = connected_components(len(idx), local[src[inside]], local[dst[inside]])
    out = torch.zeros(num_nodes, dtype=torch.bool, device=keep.device)
    out[idx] = torch.isin(comp, comp[local[seeds]])
    return out


class ClickGrouper:
    """The per-model part of grouping (smoothed features, neighbour graph, the scene's competitors, and given the
    scene's up the pieces a learned rule joins), built once."""

    def __init__(self, model: GaussianModel, features: Tensor, knn: int = 12, link: float = 4.0,
                 link_sigma: float = 2.0, k: int = 12, up: Optional[Tensor] = None, pieces: int = 96, views=None):
        """features: Tensor  # [N, C] the Gaussians' :func:`smoothed_features`, whose ``k`` k-means centroids
        compete with a click;  up: Tensor  # [3] the scene's up (:attr:`Cameras.up`): with it, the
        :class:`~dff_gs.query.pieces.Pieces` of ``pieces`` clusters that :meth:`group` joins by a rule;
        views: ``(weights, cameras)`` the compositing weights of the views ``features`` were smoothed over, which
        tell the pieces how they meet (:mod:`dff_gs.query.contacts`)"""
        self.model, self.features = model, features
        means, scales = model.get_means().detach(), model.get_scales().detach()
        self.src, self.dst = linked_neighbors(means, scales.amax(1), knn, link, link_sigma)
        self.centroids = kmeans(features, min(k, len(features)))[1]
        normals = None if views is None else oriented_normals(model.get_quats().detach(), scales, means, *views)
        self.pieces = None if up is None else Pieces(means, features, self.src, self.dst, up, k=pieces,
                                                     normals=normals, views=views)

    def labels(self, reference: Tensor) -> Tensor:
        """Eq. 5's label set of a click: its ``reference  # [C]`` against the scene's centroids.
        Returns Tensor  # [1 + M, C]"""
        return reference_labels(self.centroids, reference).to(self.features.device)

    def probabilities(self, reference: Tensor) -> Tensor:
        """``p(reference | x)`` (Eq. 5) of every Gaussian's smoothed feature.  Returns Tensor  # [N]"""
        return label_probabilities(self.features, self.labels(reference))[:, 0]

    def group(self, seeds: Tensor, reference: Tensor, threshold: float = 0.25, rule: Optional[TreeEnsemble] = None,
              rule_threshold: float = 0.4, weights: Optional[Tensor] = None) -> tuple[Tensor, dict]:
        """The object of the click whose pixel is composited from Gaussians ``seeds  # [S]`` with compositing
        ``weights  # [S]`` (:func:`click_seeds`; without weights, ``seeds`` are the front ones, the most weighted
        first) and whose rendered feature is ``reference  # [C]``: with a ``rule``, the pieces it joins (above
        ``rule_threshold``) to the piece that draws most of the pixel (the first seed's without weights); without,
        the piece of ``p > threshold`` joined to the :func:`front_seeds` (the module docstring).
        Returns (mask: Tensor  # [N] bool, info: dict)"""
        front = front_seeds(seeds, weights) if weights is not None else seeds
        if rule is not None:
            if self.pieces is None:
                raise ValueError("a grouper built without the scene's up has no pieces for the rule")
            start = self.pieces.start(seeds, weights) if weights is not None else int(self.pieces.piece[int(front[0])])
            mask = self.pieces.select(start, self.labels(reference), reference, rule, rule_threshold)
            return mask.to(seeds.device), {"seeds": len(front), "grouped": int(mask.sum()), "pieces": self.pieces.num}
        above = self.probabilities(reference) > threshold
        mask = joined_piece(self.model.num_gaussians, self.src, self.dst, above, front)
        return mask.to(seeds.device), {"seeds": len(front), "grouped": int(mask.sum()),
                                       "above_threshold": int(above.sum())}


@dataclass
class GroupingSettings(Section):
    """How a click becomes the object under it (the module docstring); part of the edit's selection config."""

    click_grouping: bool = option(True, "a click selects the object under it: Eq. 5 of its feature on the "
                                        "Gaussians as the model shows them, the piece joined to the clicked surface "
                                        "(dff_gs.query.grouping); false: Eq. 5 on each Gaussian's own feature alone")
    group_knn: int = option(12, "grouping: neighbours each Gaussian is linked to", rule=count(1))
    group_views: int = option(16, "grouping: training views whose rendered features smooth each Gaussian's "
                                  "(evenly spaced; 0 = all)", rule=count(0))
    group_side: int = option(128, "grouping: those views rendered at most this many pixels on the longer side",
                             rule=count(0))
    group_threshold: float = option(0.25, "grouping without the rule: the piece holds the Gaussians with "
                                          "p(click | x) above this", rule=BELOW_ONE)
    group_rule: bool = option(True, "grouping: join the pieces next to the clicked one that the learned rule "
                                    "accepts (dff_gs.query.pieces; models of 5,000 Gaussians or more); false: "
                                    "the piece of p(click | x) above group_threshold joined to the clicked surface")
    group_rule_threshold: float = option(0.4, "grouping: the rule joins a piece whose probability is above this",
                                         rule=BELOW_ONE)


def group_click(ctx, click, settings: GroupingSettings) -> tuple[Tensor, dict]:
    """The object under a click ``(view, x, y)`` of ``ctx``'s scene cameras, on ``ctx.model``: the group of
    :class:`ClickGrouper` (built on first use and kept in ``ctx``'s cache for this model).

    Returns (mask: Tensor  # [N] bool, info: dict with the seeds, the group size and the build seconds)
    """
    v, x, y = click
    cameras = ctx.scene().cameras
    check_click(cameras, v, x, y)
    reference = click_feature(ctx.backbone, cameras.to(ctx.backbone.device), v, x, y)
    return group_seeds(ctx, *click_seeds(ctx.model, cameras, v, x, y), reference, settings,
                       f"click view {v} at ({x}, {y})")


def uses_rule(model: GaussianModel, settings: GroupingSettings) -> bool:
    """Whether a click on ``model`` is grouped by the learned rule: ``group_rule`` and a model of at least
    :data:`RULE_MIN_GAUSSIANS` (the rule knows pieces of scenes of that size; a smaller one groups by threshold)."""
    return settings.group_rule and model.num_gaussians >= RULE_MIN_GAUSSIANS


def build_grouper(ctx, settings: GroupingSettings) -> ClickGrouper:
    """The :class:`ClickGrouper` of ``ctx.model`` for ``settings`` (its training views rendered, features smoothed,
    the pieces where :func:`uses_rule`); uncached."""
    feats, weights = ctx.rendered_views(settings.group_views, settings.group_side)
    rule = uses_rule(ctx.model, settings)
    cameras = query_cameras(ctx.scene(), settings.group_views, settings.group_side).to(ctx.model.device)
    return ClickGrouper(ctx.model, smoothed_features(ctx.model, feats, weights), settings.group_knn,
                        up=ctx.scene().cameras.up if rule else None, views=(weights, cameras) if rule else None)


def group_seeds(ctx, seeds: Tensor, weights: Tensor, reference: Tensor, settings: GroupingSettings,
                where: str) -> tuple[Tensor, dict]:
    """The object grown from the Gaussians ``seeds  # [S]`` a click's or a ray's pixel is composited from, with
    ``weights  # [S]`` (:func:`click_seeds`), whose rendered feature is ``reference  # [C]``, on ``ctx.model``
    (``where`` names the click in the error when there are none).

    Returns (mask: Tensor  # [N] bool, info: dict)
    """
    if len(seeds) == 0:  # before the per-model build: nothing to group
        raise ConfigError(f"{where} shows no Gaussian (background): click on an object")
    built = []

    def build() -> ClickGrouper:
        t0 = time.perf_counter()
        grouper = build_grouper(ctx, settings)
        built.append(time.perf_counter() - t0)
        return grouper

    rule = shipped_rule() if uses_rule(ctx.model, settings) else None
    key = ("grouper", settings.group_knn, settings.group_views, settings.group_side, rule is not None)
    mask, info = ctx.per_model(key, build).group(seeds, reference, settings.group_threshold, rule,
                                                 settings.group_rule_threshold, weights)  # one model's kept
    return mask, {**info, **({"grouping_build_seconds": round(built[0], 2)} if built else {})}

"""A click -> the object under it: the Gaussians grouped in 3D from the ones the clicked pixel shows.

Eq. 5 compares every Gaussian with the click's feature alone; with an offline teacher (ImageNet features) the
objects of a scene share much of their feature ("an object on the floor"), so a click's probability spreads
over all of them and never covers its own object (bench_click: mean IoU 0.43). What separates one object from
the next is that it is one connected piece of the scene whose features agree, which is what this module uses:

1. *Features*: each Gaussian's decoded feature averaged over the pixels it draws in ``views`` training views
   (its compositing weights ``alpha T`` over the rendered feature maps): what the model shows of it, not the
   raw per-Gaussian value, which distillation constrains only in sum along each ray (noisy where many overlap).
   A Gaussian's own feature counts as half a pixel's full weight, so one drawn little (hidden behind others)
   keeps mostly its own instead of taking what hides it. Centred on the scene's mean feature, L2-normalised.
2. *Graph*: each Gaussian linked to its ``knn`` nearest, within ``link`` x the typical spacing plus
   ``link_sigma`` x the two Gaussians' largest standard deviations (the rule of the edit cleanup); an edge's
   similarity is the cosine of the two features.
3. *Seeds*: the Gaussians the clicked pixel is composited from, the most weighted (``alpha T`` there) first,
   as many as make up 80% of its weight: the surface clicked, not what shows faintly through it.
4. *Growth*: the seeds' group at similarity ``tau`` is everything joined to them by edges of similarity
   ``>= tau``. Lowering ``tau`` grows it through the object, then past its boundary into whatever it touches;
   the widest-path similarity from the seeds (along the maximum spanning tree) orders every Gaussian by the
   ``tau`` at which it joins. The group kept is the one before the largest drop in ``tau`` (the sharpest
   boundary) among groups holding ``min_share`` to ``max_share`` of the Gaussians; a piece no edge joins to
   the rest of the scene ends at the sharpest boundary of all.

The smoothed features and the graph are computed once per model and kept in the query context's cache.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from dff_gs.cameras import Cameras
from dff_gs.config import option
from dff_gs.errors import ConfigError
from dff_gs.gaussians import GaussianModel
from dff_gs.neighbors import linked_neighbors


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
    from dff_gs.lift import compositing_weights

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


def widest_path(num_nodes: int, src: Tensor, dst: Tensor, sim: Tensor, seeds: Tensor) -> Tensor:
    """For every node, the largest ``tau`` such that an edge path with every similarity ``>= tau`` joins it to
    one of ``seeds`` (``inf`` for the seeds, ``-inf`` where no path exists), along the maximum spanning tree.

    src, dst: Tensor  # [E] int64 undirected edges;  sim: Tensor  # [E] in [-1, 1];  seeds: Tensor  # [S] int64
    Returns Tensor  # [num_nodes] float32
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import breadth_first_order, minimum_spanning_tree

    root = num_nodes  # a virtual node tied to every seed by the strongest possible edge
    a = np.concatenate([src.cpu().numpy(), seeds.cpu().numpy()])
    b = np.concatenate([dst.cpu().numpy(), np.full(len(seeds), root)])
    cost = np.concatenate([2.0 - sim.detach().cpu().double().numpy(), np.full(len(seeds), 1e-9)])  # > 0: kept
    tree = minimum_spanning_tree(coo_matrix((cost, (a, b)), shape=(root + 1, root + 1)).tocsr())
    tree = (tree + tree.T).tocsr()
    order, pred = breadth_first_order(tree, root, directed=False, return_predecessors=True)
    nodes, parents = order[1:], pred[order[1:]]
    edge_sim = (2.0 - np.asarray(tree[parents, nodes]).reshape(-1)).tolist()
    best = [-np.inf] * (root + 1)
    best[root] = np.inf
    for u, p, s in zip(nodes.tolist(), parents.tolist(), edge_sim):  # parents come first in BFS order
        best[u] = min(best[p], s)
    out = torch.tensor(best[:num_nodes], dtype=torch.float32)
    out[seeds.cpu()] = float("inf")
    return out


def sharpest_group(reach: Tensor, min_size: int, max_size: int) -> Tensor:
    """The group before the largest drop of the joining similarity ``reach  # [N]`` (from :func:`widest_path`),
    among groups of ``min_size`` to ``max_size`` nodes. The end of what the seeds reach at all, when some nodes
    are not reached, is the largest drop there is (to below any similarity, -1): a piece of the scene that no
    edge joins to the rest is its own object. When no group is in range: the seeds' smallest group holding
    ``min_size`` (or all they reach).  Returns Tensor  # [N] bool"""
    finite = reach[torch.isfinite(reach)]
    if len(finite) == 0:
        return torch.isinf(reach) & (reach > 0)
    values, counts = torch.unique(finite, sorted=True, return_counts=True)
    values, counts = values.flip(0), counts.flip(0)  # joining order: most similar first
    sizes = counts.cumsum(0) + int((reach == float("inf")).sum())  # group size after each join
    after = torch.cat([values[1:], values.new_full((1,), -1.0 if bool((reach == -float("inf")).any()) else
                                                   float("nan"))])
    gaps = values - after  # nan for the last join when everything is reached: not a boundary
    ok = (sizes >= min_size) & (sizes <= max_size) & ~torch.isnan(gaps)
    if ok.any():
        k = int(torch.where(ok, gaps, torch.full_like(gaps, -3.0)).argmax())
    else:
        k = int((sizes >= min_size).nonzero()[0]) if bool((sizes >= min_size).any()) else len(values) - 1
    return reach >= values[k]


class ClickGrouper:
    """The per-model part of grouping (smoothed features, neighbour graph, edge similarities), built once."""

    def __init__(self, model: GaussianModel, features: Tensor, knn: int = 12, link: float = 4.0,
                 link_sigma: float = 2.0):
        """features: Tensor  # [N, C] the Gaussians' :func:`smoothed_features`"""
        self.model = model
        feats = F.normalize(features - features.mean(0), dim=-1)
        sizes = model.get_scales().detach().amax(1)
        self.src, self.dst = linked_neighbors(model.get_means().detach(), sizes, knn, link, link_sigma)
        self.sim = (feats[self.src] * feats[self.dst]).sum(-1)

    def group(self, seeds: Tensor, min_share: float = 0.001, max_share: float = 0.5) -> tuple[Tensor, dict]:
        """The group grown from ``seeds  # [S]`` (see the module docstring).
        Returns (mask: Tensor  # [N] bool, info: dict)"""
        N = self.model.num_gaussians
        reach = widest_path(N, self.src, self.dst, self.sim, seeds)
        mask = sharpest_group(reach, max(20, int(min_share * N)), max(20, int(max_share * N)))
        boundary = float(reach[mask].min()) if mask.any() else float("nan")
        return mask.to(seeds.device), {"grouped": int(mask.sum()), "boundary_similarity": round(boundary, 4)}


@dataclass
class GroupingSettings:
    """How a click becomes the object under it (the module docstring); part of the edit's selection config."""

    click_grouping: bool = option(True, "a click selects the object under it, grouped in 3D from the Gaussians the "
                                        "pixel shows (dff_gs.grouping); false: Eq. 5 on the click's feature alone")
    group_knn: int = option(12, "grouping: neighbours each Gaussian is linked to")
    group_views: int = option(16, "grouping: training views whose rendered features smooth each Gaussian's "
                                  "(evenly spaced; 0 = all)")
    group_side: int = option(128, "grouping: those views rendered at most this many pixels on the longer side")
    group_min_share: float = option(0.001, "grouping: the group holds at least this fraction of the Gaussians")
    group_max_share: float = option(0.5, "grouping: ... and at most this fraction")

    def validate_grouping(self) -> None:
        if self.group_knn < 1 or self.group_views < 0 or self.group_side < 0:
            raise ConfigError("selection: group_knn must be >= 1, group_views and group_side >= 0")
        if not 0.0 <= self.group_min_share <= self.group_max_share <= 1.0:
            raise ConfigError("selection: need 0 <= group_min_share <= group_max_share <= 1")


def group_click(ctx, click, settings: GroupingSettings) -> tuple[Tensor, dict]:
    """The object under a click ``(view, x, y)`` of ``ctx``'s scene cameras, on ``ctx.model``: the group of
    :class:`ClickGrouper` (built on first use and kept in ``ctx``'s cache for this model).

    Returns (mask: Tensor  # [N] bool, info: dict with the seeds, the group size and the build seconds)
    """
    from dff_gs.query.views import check_click

    v, x, y = click
    cameras = ctx.scene().cameras
    check_click(cameras, v, x, y)
    seeds = front_seeds(*click_seeds(ctx.model, cameras, v, x, y))
    return group_seeds(ctx, seeds, settings, f"click view {v} at ({x}, {y})")


def group_seeds(ctx, seeds: Tensor, settings: GroupingSettings, where: str) -> tuple[Tensor, dict]:
    """The object grown from ``seeds  # [S]`` (the front Gaussians of a click or a ray, :func:`front_seeds`) on
    ``ctx.model`` (``where`` names the click in the error when there are none).

    Returns (mask: Tensor  # [N] bool, info: dict)
    """
    import time

    from dff_gs.query.views import rendered_query_views

    model = ctx.model
    key = ("grouper", settings.group_knn, settings.group_views, settings.group_side)
    built = 0.0
    if key not in ctx._cache or ctx._cache[key].model is not model:  # one model's grouper kept (edits make new ones)
        t0 = time.perf_counter()
        feats, weights = rendered_query_views(ctx, settings.group_views, settings.group_side)
        ctx._cache[key] = ClickGrouper(model, smoothed_features(model, feats, weights), settings.group_knn)
        built = time.perf_counter() - t0
    if len(seeds) == 0:
        raise ConfigError(f"{where} shows no Gaussian (background): click on an object")
    mask, info = ctx._cache[key].group(seeds, settings.group_min_share, settings.group_max_share)
    return mask, {"seeds": len(seeds), **info, **({"grouping_build_seconds": round(built, 2)} if built else {})}

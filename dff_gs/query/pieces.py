"""The click grouping's pieces: small patches of Gaussians that look alike and touch, joined into the clicked object
by a learned rule.

Built once per model (:class:`Pieces`): the Gaussians' smoothed features (what the model shows of each,
:func:`dff_gs.query.grouping.smoothed_features`) fall into ``k`` k-means clusters; a piece is a connected set of
one cluster's Gaussians along the neighbour links of the grouping that are no concave crease (:data:`CUT`: two
objects of one look pressed together, or an object and the table of its colour, are two pieces), and a piece of
fewer than :data:`MIN_SIZE` Gaussians joins the neighbour it shares most links with (a cluster that appears in
several places is several pieces; a part of an object in a colour or material of its own is a piece of its own).
Each piece keeps its size, mean feature, its box in a frame whose third axis is the cameras' up, how many links it
shares with each other piece and how it meets each (:mod:`dff_gs.query.contacts`: convex or concave links, depth
steps between them in the views).

A click starts the selection at the piece that draws most of its pixel (:meth:`Pieces.start`), then grows it a round
at a time: every piece that touches the selection is described by :data:`FEATURES` (how much it looks like the click
and like the selection, how much of its border it shares with the selection, its size, extent, flatness and height
against the selection's, how far it lies inside the selection's box, how it meets the selection) and joins when the
learned rule (:mod:`dff_gs.query.merge_rule`, fitted by ``benchmarks/fit_merge_rule.py`` on generated layouts that
no evaluation uses) gives it a probability above ``threshold``; the growth stops when a round adds nothing. Parts of
one object differ in look but share much of their border, lie within its box and meet it at convex links; a table or
the floor under an object is wide, flat, shares a small share of its border and meets it at a concave crease; a
neighbour standing beside it lies outside its box.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from dff_gs.core.neighbors import connected_components
from dff_gs.query.contacts import link_convexity, pair_contacts, view_borders
from dff_gs.query.eq5 import kmeans, label_probabilities
from dff_gs.query.merge_rule import TreeEnsemble

FEATURES = ("p_click", "cos_click", "cos_selection", "border_to_selection", "selection_border_to_it", "log_size",
            "log_extent", "flatness", "log_width", "bottom", "top", "inside_box", "box_distance", "p_selection",
            "convexity", "concave_share", "view_border_share", "depth_step_share")
"""The description of a piece next to the selection, in the rule's column order (see :meth:`Pieces.candidates`)."""
MIN_SIZE = 4
"""Pieces of fewer Gaussians join the neighbouring piece they share most links with (:func:`absorb_small`)."""
CUT = -0.3
"""A piece does not cross a link more concave than this (:func:`dff_gs.query.contacts.link_convexity`)."""
MAX_ROUNDS = 400
"""Growth rounds at most (a round adds every piece the rule accepts)."""


def up_frame(up: Tensor) -> Tensor:
    """An orthonormal frame whose third row is ``up  # [3]`` (the first two span the level plane).
    Returns Tensor  # [3, 3]"""
    up = F.normalize(up.float(), dim=0)
    a = torch.tensor([1.0, 0.0, 0.0]) if abs(float(up[0])) < 0.9 else torch.tensor([0.0, 1.0, 0.0])
    e1 = F.normalize(a - (a @ up) * up, dim=0)
    return torch.stack([e1, torch.linalg.cross(up, e1), up])


def absorb_small(piece: Tensor, src: Tensor, dst: Tensor, min_size: int, passes: int = 2) -> Tensor:
    """``piece  # [N]`` with every piece of fewer than ``min_size`` Gaussians joined to the piece it shares most
    links with (``src, dst: Tensor  # [E]``; a tie goes to the larger), ``passes`` times (small pieces that chose
    each other join and may choose again).  Returns Tensor  # [N] int64 numbered 0..P'-1"""
    for _ in range(passes if min_size > 1 and len(piece) else 0):
        num = int(piece.max()) + 1
        size = torch.bincount(piece, minlength=num)
        a, b = piece[src], piece[dst]
        apart = a != b
        a, b = torch.cat([a[apart], b[apart]]), torch.cat([b[apart], a[apart]])
        key, count = torch.unique(a * num + b, return_counts=True)
        a, b = key // num, key % num
        small = size[a] < min_size
        a, b, count = a[small], b[small], count[small]
        if len(a) == 0:
            break
        score = count.double() * (len(piece) + 1) + size[b].double()
        best = torch.full((num,), -1.0, dtype=torch.float64).scatter_reduce(0, a, score, "amax")
        pick = score == best[a]
        target = torch.full((num,), -1, dtype=torch.long).scatter_(0, a[pick], b[pick])
        has = (target >= 0).nonzero()[:, 0]
        comp = connected_components(num, has, target[has])  # each part holds at most one piece of min_size or more
        piece = torch.unique(comp, return_inverse=True)[1][piece]
    return piece


class Pieces:
    """The per-model pieces (module docstring)."""

    def __init__(self, means: Tensor, features: Tensor, src: Tensor, dst: Tensor, up: Tensor, k: int = 96,
                 seed: int = 0, normals: Optional[Tensor] = None, views=None, min_size: int = MIN_SIZE,
                 cut: float = CUT):
        """means: Tensor  # [N, 3];  features: Tensor  # [N, C] smoothed features;  src, dst: Tensor  # [E] the
        neighbour links;  up: Tensor  # [3] the scene's up (:attr:`dff_gs.core.cameras.Cameras.up`);
        normals: Tensor  # [N, 3] the Gaussians' oriented normals (:func:`dff_gs.query.contacts.oriented_normals`)
        and ``views``: ``(weights, cameras)`` the compositing weights of some views: how touching pieces meet
        (:mod:`dff_gs.query.contacts`; without them those features are 0)"""
        means, features, src, dst = means.cpu(), features.cpu(), src.cpu(), dst.cpu()
        n = len(means)
        labels = kmeans(features, min(k, n), seed=seed)[0]
        convexity = link_convexity(means, normals.cpu(), src, dst) if normals is not None else torch.zeros(len(src))
        same = (labels[src] == labels[dst]) & (convexity >= cut)
        self.piece = torch.unique(connected_components(n, src[same], dst[same]), return_inverse=True)[1]  # [N]
        self.piece = absorb_small(self.piece, src, dst, min_size)
        self.num = int(self.piece.max()) + 1 if n else 0
        self.size = torch.bincount(self.piece, minlength=self.num).float()  # [P]
        self.feature_sum = torch.zeros(self.num, features.shape[1]).index_add_(0, self.piece,
                                                                                F.normalize(features.float(), dim=1))
        self.feature = F.normalize(self.feature_sum, dim=1)  # [P, C]
        local = means.float() @ up_frame(up.cpu()).T  # [N, 3]: level, level, height
        idx = self.piece[:, None].expand(-1, 3)
        self.lo = torch.full((self.num, 3), float("inf")).scatter_reduce(0, idx, local, "amin")  # [P, 3]
        self.hi = torch.full((self.num, 3), -float("inf")).scatter_reduce(0, idx, local, "amax")
        self.centre = torch.zeros(self.num, 3).index_add_(0, self.piece, local) / self.size[:, None]
        a, b = self.piece[src], self.piece[dst]
        apart = a != b
        lo, hi = torch.minimum(a[apart], b[apart]), torch.maximum(a[apart], b[apart])
        key, count = torch.unique(lo * max(self.num, 1) + hi, return_counts=True)
        self.pair_a, self.pair_b, self.pair_links = key // max(self.num, 1), key % max(self.num, 1), count.float()
        borders = view_borders(self.piece, means, views[0], views[1]) if views is not None else None
        self.contacts = pair_contacts(key, self.num, self.piece, src, dst, convexity, borders)  # [Q, 4]
        pair = torch.stack([self.pair_links, self.contacts[:, 2]], 1)
        per_piece = torch.zeros(self.num, 2).index_add_(0, self.pair_a, pair).index_add_(0, self.pair_b, pair)
        self.border, self.view_border = per_piece.unbind(1)  # [P] links to other pieces, side-by-side pixels

    def candidates(self, selected: Tensor, p_piece: Tensor, click: Tensor) -> tuple[Tensor, Optional[Tensor]]:
        """The pieces that touch the ``selected  # [P] bool`` ones and their :data:`FEATURES`: Eq. 5 of their mean
        feature for the click (``p_piece  # [P]``) and for the selection (its size-weighted mean), their cosine to
        the ``click  # [C]`` feature and to the selection's mean, the share of their border links that reach the
        selection and of the selection's border that reaches them, log size and log box diagonal against the
        selection's, log of level width over height, the bottom and top heights against the selection's (in its
        heights), the share of their box inside the selection's box, the distance from their centre to that box (in
        its diagonals); how they meet the selection (:mod:`dff_gs.query.contacts`): the mean convexity of their links
        to it and the share of those links that are concave, the share of their side-by-side pixels in the views
        that are the selection's, and the share of those that step in depth (-1 where no view shows them side by
        side).

        Returns (ids: Tensor  # [Q] int64, rows: Tensor  # [Q, 18] float, or None when nothing touches)
        """
        in_a, in_b = selected[self.pair_a], selected[self.pair_b]
        out_b, out_a = in_a & ~in_b, in_b & ~in_a
        sums = torch.zeros(self.num, 5)  # per piece, over its pairs with the selection: links, then the contacts
        both = torch.cat([self.pair_links[:, None], self.contacts], 1)
        sums.index_add_(0, self.pair_b[out_b], both[out_b]).index_add_(0, self.pair_a[out_a], both[out_a])
        touch = sums[:, 0]
        ids = (touch > 0).nonzero()[:, 0]
        if len(ids) == 0:
            return ids, None
        size = self.size[selected].sum()
        mean = F.normalize(self.feature_sum[selected].sum(0), dim=0)
        s_lo, s_hi = self.lo[selected].amin(0), self.hi[selected].amax(0)
        s_ext = (s_hi - s_lo).clamp_min(1e-6)
        lo, hi = self.lo[ids], self.hi[ids]
        ext = (hi - lo).clamp_min(1e-6)
        width = ext[:, :2].norm(dim=1)
        overlap = (torch.minimum(hi, s_hi) - torch.maximum(lo, s_lo)).clamp_min(0)
        inside = ((overlap + 1e-6).prod(1) / (ext + 1e-6).prod(1)).clamp(0, 1)
        centre = self.centre[ids]
        outside = (centre - torch.maximum(torch.minimum(centre, s_hi), s_lo)).norm(dim=1) / s_ext.norm()
        p_selection = (p_piece[selected] * self.size[selected]).sum() / size
        c = sums[ids]
        rows = torch.stack([
            p_piece[ids], self.feature[ids] @ click, self.feature[ids] @ mean,
            touch[ids] / self.border[ids].clamp_min(1), touch[ids] / touch.sum().clamp_min(1),
            torch.log(self.size[ids] / size), torch.log(ext.norm(dim=1) / s_ext.norm()),
            torch.log((width + 1e-4) / (ext[:, 2] + 1e-4)), torch.log(width / s_ext[:2].norm().clamp_min(1e-6)),
            (lo[:, 2] - s_lo[2]) / s_ext[2], (hi[:, 2] - s_hi[2]) / s_ext[2], inside, outside,
            p_selection.expand(len(ids)), c[:, 1] / touch[ids], c[:, 2] / touch[ids],
            c[:, 3] / self.view_border[ids].clamp_min(1),
            torch.where(c[:, 3] > 0, c[:, 4] / c[:, 3].clamp_min(1), torch.full_like(c[:, 4], -1.0))], 1)
        return ids, torch.nan_to_num(rows, nan=0.0, posinf=10.0, neginf=-10.0)

    def grow(self, start: int, queries: Tensor, click: Tensor, decide, max_rounds: int = MAX_ROUNDS,
             record: Optional[list] = None) -> Tensor:
        """The pieces joined to piece ``start``: rounds of :meth:`candidates`, each adding those
        ``decide(ids, rows) -> Tensor  # [Q] bool`` accepts, until a round adds none.

        queries: Tensor  # [1 + M, C] Eq. 5's label set of the click (the click first);  click: Tensor  # [C]
        record: a list that receives each round's ``(ids, rows)`` (the fit's samples)
        Returns Tensor  # [P] bool
        """
        p_piece = label_probabilities(self.feature, queries.cpu())[:, 0]
        click = F.normalize(click.float().reshape(-1).cpu(), dim=0)
        selected = torch.zeros(self.num, dtype=torch.bool)
        selected[start] = True
        for _ in range(max_rounds):
            ids, rows = self.candidates(selected, p_piece, click)
            if rows is None:
                break
            if record is not None:
                record.append((ids, rows))
            join = decide(ids, rows)
            if not bool(join.any()):
                break
            selected[ids[join]] = True
        return selected

    def start(self, ids: Tensor, weights: Tensor) -> int:
        """The piece that draws most of a pixel composited from Gaussians ``ids  # [S]`` with ``weights  # [S]``
        (their summed weight: a large Gaussian of the floor or the sky drawn faintly in front of an object can be
        the single most weighted one of a pixel the object's many Gaussians fill)."""
        per_piece = torch.zeros(self.num, dtype=torch.float64).index_add_(0, self.piece[ids.cpu()],
                                                                          weights.cpu().double())
        return int(per_piece.argmax())

    def select(self, start: int, queries: Tensor, click: Tensor, rule: TreeEnsemble, threshold: float = 0.5) -> Tensor:
        """The Gaussians of the pieces the ``rule`` joins to piece ``start`` (the clicked one, :meth:`start`).
        Returns Tensor  # [N] bool"""
        chosen = self.grow(start, queries, click, lambda ids, rows: rule.probability(rows) > threshold)
        return chosen[self.piece]

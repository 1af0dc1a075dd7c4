"""Nearest neighbours and connected components over Gaussian centres (pure torch, chunked, any device)."""

from __future__ import annotations

import torch
from torch import Tensor

TREE_MIN_PAIRS = 1 << 22
"""With ``tree``, on the CPU, a k-d tree answers when queries x points reach this (below it one ``cdist`` block is
as fast)."""


def knn(queries: Tensor, points: Tensor, k: int, chunk: int = 0, exclude_self: bool = False,
        tree: bool = False) -> tuple[Tensor, Tensor]:
    """Exact k nearest ``points`` of each query point: ``cdist`` over chunks of queries (``chunk`` 0: as many rows
    as keep one distance block near 2^26 entries), or with ``tree`` on the CPU for large problems
    (``TREE_MIN_PAIRS``) scipy's ``cKDTree`` in float64 (the queries of selections and grouping: 5-10x faster at
    40k Gaussians; the initial scales keep cdist, so that training reproduces bit for bit).

    queries: Tensor  # [Q, 3]
    points: Tensor  # [P, 3]
    exclude_self: drop the first neighbour (each query is one of ``points``, at distance 0)
    Returns (dist: Tensor  # [Q, k'], idx: Tensor  # [Q, k'] int64), k' = min(k, P - exclude_self), nearest first
    """
    kk = min(k + int(exclude_self), len(points))
    if len(queries) == 0 or kk <= int(exclude_self):
        empty = torch.zeros(len(queries), 0, device=queries.device)
        return empty, empty.long()
    if tree and not points.is_cuda and len(queries) * len(points) >= TREE_MIN_PAIRS:
        return _knn_tree(queries, points, kk, int(exclude_self))
    chunk = chunk or max(1, min(8192, (1 << 26) // max(len(points), 1)))
    dists, idxs = [], []
    for s in range(0, len(queries), chunk):
        d = torch.cdist(queries[s:s + chunk].float(), points.float())
        v, i = d.topk(kk, dim=1, largest=False)
        if exclude_self:
            v, i = v[:, 1:], i[:, 1:]
        dists.append(v)
        idxs.append(i)
    return torch.cat(dists), torch.cat(idxs)


def tree_query(queries: Tensor, points: Tensor, kk: int):
    """The ``kk`` nearest ``points`` of each query by scipy's ``cKDTree`` in float64 on the CPU, nearest first
    (a query that is one of ``points`` first finds itself): numpy (dist ``[Q, kk]`` float64, idx ``[Q, kk]``)."""
    from scipy.spatial import cKDTree

    tree = cKDTree(points.detach().double().cpu().numpy())
    d, i = tree.query(queries.detach().double().cpu().numpy(), k=kk, workers=-1)
    return d.reshape(len(queries), kk), i.reshape(len(queries), kk)


def _knn_tree(queries: Tensor, points: Tensor, kk: int, skip: int) -> tuple[Tensor, Tensor]:
    """:func:`knn` by :func:`tree_query`, ``kk`` neighbours of which the first ``skip`` dropped."""
    d, i = tree_query(queries, points, kk)
    return torch.from_numpy(d[:, skip:]).to(queries.dtype if queries.is_floating_point() else torch.float32), \
        torch.from_numpy(i[:, skip:].astype("int64"))


def connected_components(num_nodes: int, src: Tensor, dst: Tensor, max_iters: int = 1000) -> Tensor:
    """Component label of every node of an undirected graph (min-label propagation with pointer jumping).

    src, dst: Tensor  # [E] int64 edges
    Returns Tensor  # [num_nodes] int64, labels 0..n_components-1 ordered by each component's smallest node
    """
    device = src.device
    labels = torch.arange(num_nodes, device=device)
    if num_nodes == 0:
        return labels
    a = torch.cat([src, dst])
    b = torch.cat([dst, src])
    for _ in range(max_iters):
        new = labels.clone()
        new.scatter_reduce_(0, a, labels[b], reduce="amin")
        new = new[new]  # pointer jumping: follow the label's own label
        if torch.equal(new, labels):
            break
        labels = new
    return torch.unique(labels, return_inverse=True)[1]


def typical_spacing(points: Tensor, probes: int = 4096, seed: int = 0) -> Tensor:
    """Median nearest-neighbour distance of ``points  # [P, 3]`` (over a seeded sample of ``probes`` of them)."""
    g = torch.Generator().manual_seed(seed)
    probe = points[torch.randperm(len(points), generator=g)[:probes].to(points.device)]
    return knn(probe, points, 1, exclude_self=True, tree=True)[0].median().clamp_min(1e-8)


def linked_neighbors(points: Tensor, sizes: Tensor, k: int, link: float, link_sigma: float,
                     spacing: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Edges from each point to those of its ``k`` nearest closer than ``link`` x ``spacing`` (default: the
    typical spacing of ``points``) plus ``link_sigma`` x the sum of the two points' ``sizes``.

    points: Tensor  # [P, 3];  sizes: Tensor  # [P] (a Gaussian's largest standard deviation)
    Returns (src: Tensor  # [E] int64, dst: Tensor  # [E] int64)
    """
    if len(points) < 2:
        empty = torch.zeros(0, dtype=torch.long, device=points.device)
        return empty, empty
    spacing = typical_spacing(points) if spacing is None else spacing
    d, nbr = knn(points, points, k, exclude_self=True, tree=True)
    close = d < link * spacing + link_sigma * (sizes[:, None] + sizes[nbr])
    src = torch.arange(len(points), device=points.device)[:, None].expand_as(nbr)
    return src[close], nbr[close]

"""``knn_mean_distance`` (the initial scales) against a brute-force float64 reference, on both of its paths."""

import numpy as np
import torch

import dff_gs.core.gaussians as G


def brute_force_mean_knn(points: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    """Mean distance of each of ``queries  # [Q]`` (indices into ``points  # [P, 3]``) to its k nearest other
    points: every pairwise distance in float64, sorted, the point itself (distance 0) dropped."""
    xyz = points.astype(np.float64)
    out = np.empty(len(queries))
    for s in range(0, len(queries), 256):
        q = queries[s:s + 256]
        d = np.sqrt(((xyz[q, None, :] - xyz[None, :, :]) ** 2).sum(-1))  # [q, P]
        out[s:s + 256] = np.sort(d, axis=1)[:, 1:k + 1].mean(1)
    return out


def clustered_cloud(n: int, seed: int) -> torch.Tensor:
    """Tight clusters in a big box plus exact duplicates: where a subsampled reference set goes wrong."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.rand(n // 50 + 1, 3, generator=g) * 20.0
    pts = centres[torch.randint(len(centres), (n,), generator=g)] + 0.01 * torch.randn(n, 3, generator=g)
    pts[:20] = pts[20:40]  # duplicates: their nearest other point is at distance 0
    return pts


def test_tree_path_matches_brute_force_exactly(monkeypatch):
    monkeypatch.setattr(G, "EXACT_TORCH_MAX", 100)  # the cKDTree path on a cloud small enough to check whole
    pts = clustered_cloud(3000, seed=1)
    got = G.knn_mean_distance(pts, k=3)
    ref = torch.from_numpy(brute_force_mean_knn(pts.numpy(), np.arange(len(pts)), 3)).float()
    assert got.dtype == torch.float32 and got.shape == (3000,)
    assert torch.equal(got, ref)
    assert (got[:40] < got[40:].min() * 10).all() and got[:20].min() >= 0


def test_big_cloud_is_exact_not_subsampled():
    """Above EXACT_TORCH_MAX points every point gets its true neighbours (the old code used a 20k subset and
    dropped the first neighbour even of points outside it)."""
    n = G.EXACT_TORCH_MAX + 5000
    pts = clustered_cloud(n, seed=2)
    got = G.knn_mean_distance(pts, k=3)
    queries = torch.randperm(n, generator=torch.Generator().manual_seed(0))[:600].numpy()
    ref = torch.from_numpy(brute_force_mean_knn(pts.numpy(), queries, 3)).float()
    assert torch.equal(got[queries], ref)


def test_torch_path_unchanged():
    """Up to EXACT_TORCH_MAX points: the chunked float32 cdist of before, kept bit for bit (scenes with small
    initial clouds train as they did); within float32 rounding of the reference on a well-conditioned cloud."""
    pts = clustered_cloud(2000, seed=3)
    assert torch.equal(G.knn_mean_distance(pts, k=3), G.knn(pts, pts, 3, chunk=2048, exclude_self=True)[0].mean(1))
    unit = torch.rand(2000, 3, generator=torch.Generator().manual_seed(4))
    ref = torch.from_numpy(brute_force_mean_knn(unit.numpy(), np.arange(len(unit)), 3)).float()
    torch.testing.assert_close(G.knn_mean_distance(unit, k=3), ref, atol=2e-4, rtol=0)


def test_float64_torch_path_matches_brute_force_exactly():
    """The CUDA path of big clouds (run here on the CPU): exact where float32 cdist is not."""
    pts = clustered_cloud(3000, seed=5)
    ref = torch.from_numpy(brute_force_mean_knn(pts.numpy(), np.arange(len(pts)), 3)).float()
    assert torch.equal(G.knn_mean_distance_torch64(pts, k=3, chunk=700), ref)
    if torch.cuda.is_available():
        assert torch.equal(G.knn_mean_distance_torch64(pts.cuda(), k=3).cpu(), ref)


def test_tiny_clouds():
    assert G.knn_mean_distance(torch.zeros(0, 3)).shape == (0,)
    assert torch.equal(G.knn_mean_distance(torch.ones(1, 3)), torch.zeros(1))
    two = torch.tensor([[0.0, 0.0, 0.0], [3.0, 4.0, 0.0]])
    assert torch.equal(G.knn_mean_distance(two, k=3), torch.tensor([5.0, 5.0]))


def test_knn_tree_is_exact_and_the_default_stays_cdist(monkeypatch):
    """``knn(tree=True)`` (selections, grouping) answers with a k-d tree above ``TREE_MIN_PAIRS``: the same
    neighbours as a float64 brute force, nearest first, the query itself dropped with ``exclude_self``; without
    ``tree`` it is the chunked cdist of before."""
    import dff_gs.core.neighbors as nb

    monkeypatch.setattr(nb, "TREE_MIN_PAIRS", 1000)
    g = torch.Generator().manual_seed(6)
    pts = torch.rand(1500, 3, generator=g) * torch.tensor([4.0, 1.0, 0.2])  # no ties
    q = torch.arange(0, 1500, 7)
    d, i = nb.knn(pts[q], pts, 5, exclude_self=True, tree=True)
    full = np.sqrt(((pts[q].double().numpy()[:, None] - pts.double().numpy()[None]) ** 2).sum(-1))
    order = np.argsort(full, axis=1)[:, 1:6]
    assert np.array_equal(i.numpy(), order)
    np.testing.assert_allclose(d.numpy(), np.take_along_axis(full, order, 1), rtol=1e-6)
    assert d.dtype == torch.float32 and i.dtype == torch.int64
    cd, ci = nb.knn(pts[q], pts, 5, exclude_self=True)
    ref = torch.cdist(pts[q], pts).topk(6, dim=1, largest=False)
    assert torch.equal(cd, ref.values[:, 1:]) and torch.equal(ci, ref.indices[:, 1:])

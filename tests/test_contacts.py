"""How touching pieces meet (dff_gs.query.contacts) and the rule's features made of it (dff_gs.query.pieces)."""

import math

import torch

from dff_gs.core.cameras import Cameras
from dff_gs.core.neighbors import linked_neighbors
from dff_gs.lift.core import CompositingWeights
from dff_gs.query.contacts import (CONCAVE, STEP, link_convexity, oriented_normals, pair_contacts,
                                    view_borders)
from dff_gs.query.pieces import FEATURES, Pieces


def fold(sign: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Two planes meeting along the y axis: a ridge ``z = -|x|`` (sign -1) or a valley ``z = |x|`` (sign 1), with
    their upward normals.  Returns (means [N, 3], normals [N, 3])"""
    x = torch.tensor([-0.1, -0.05, 0.05, 0.1])
    means = torch.stack([x, torch.zeros(4), sign * x.abs()], 1)
    normals = torch.stack([-sign * torch.sign(x), torch.zeros(4), torch.ones(4)], 1) / math.sqrt(2)
    return means, normals


def test_a_ridge_is_convex_a_valley_concave_and_a_plane_neither():
    src, dst = torch.tensor([1, 0, 2]), torch.tensor([2, 1, 3])  # across the fold, then along each side
    ridge, valley = link_convexity(*fold(-1.0), src, dst), link_convexity(*fold(1.0), src, dst)
    assert ridge[0] > 1.0 and valley[0] < -1.0 and valley[0] < CONCAVE
    torch.testing.assert_close(ridge[1:], torch.zeros(2))
    torch.testing.assert_close(valley[1:], torch.zeros(2))
    flat = link_convexity(torch.tensor([[0.0, 0, 0], [0.1, 0, 0]]), torch.tensor([[0.0, 0, 1], [0, 0, 1]]),
                          torch.tensor([0]), torch.tensor([1]))
    torch.testing.assert_close(flat, torch.zeros(1))


def looking_down(height: float) -> Cameras:
    """A 3x1-pixel camera at (0, 0, height) looking down -z (OpenCV: z forward, y down)."""
    vm = torch.eye(4)
    vm[:3, :3] = torch.diag(torch.tensor([1.0, -1.0, -1.0]))
    vm[2, 3] = height
    K = torch.tensor([[1.0, 0, 1.5], [0, 1.0, 0.5], [0, 0, 1]])
    return Cameras(vm, K, 3, 1)


def test_normals_turn_toward_the_camera_that_sees_them_most():
    """Flat Gaussians (their shortest axis z) seen from above by one camera and from below by another, each one
    most by one of them: the normal points to that camera; one no view draws points to the cameras' mean."""
    cams = Cameras(torch.cat([looking_down(5.0).viewmats, looking_down(-5.0).viewmats]),
                   looking_down(5.0).Ks.expand(2, 3, 3), 3, 1)
    quats = torch.tensor([[1.0, 0, 0, 0]]).expand(3, 4)
    scales = torch.tensor([[1.0, 1.0, 0.01]]).expand(3, 3)
    means = torch.tensor([[0.0, 0, 0], [0.0, 0, 0.1], [0.0, 0, -4.0]])
    # Gaussian 0: most in view 0 (pixel 1), Gaussian 1: most in view 1 (pixel 3 + 1); Gaussian 2 drawn nowhere
    weights = CompositingWeights(torch.tensor([1, 4, 1, 4]), torch.tensor([0, 0, 1, 1]),
                                 torch.tensor([0.9, 0.2, 0.1, 0.8]), 3)
    n = oriented_normals(quats, scales, means, weights, cams)
    torch.testing.assert_close(n[:, :2], torch.zeros(3, 2))
    assert n[0, 2] > 0.99 and n[1, 2] < -0.99 and n[2, 2] > 0.99  # the mean camera (0, 0, 0) is above Gaussian 2


def test_side_by_side_pixels_of_two_pieces_give_their_depth_step():
    """Three pixels of one view: pieces 0 and 1 at nearly one depth, piece 2 far behind; a faint fourth Gaussian
    of piece 0 behind pixel 2 does not own it."""
    vm = torch.eye(4)  # the camera at the origin looking down +z: depth = z
    cams = Cameras(vm, torch.tensor([[1.0, 0, 1.5], [0, 1.0, 0.5], [0, 0, 1]]), 3, 1)
    means = torch.tensor([[0.0, 0, 1.0], [0.0, 0, 1.01], [0.0, 0, 2.0], [0.0, 0, 3.0]])
    piece = torch.tensor([0, 1, 2, 0])
    weights = CompositingWeights(torch.tensor([0, 1, 2, 2]), torch.tensor([0, 1, 2, 3]),
                                 torch.tensor([0.9, 0.8, 0.7, 0.2]), 4)
    a, b, step = view_borders(piece, means, weights, cams)
    assert list(zip(a.tolist(), b.tolist())) == [(0, 1), (1, 2)]
    torch.testing.assert_close(step, torch.tensor([0.01, 0.99 / 1.01]))
    # per pair of pieces: the two pixel borders go to their pairs (2 is not linked to 0 in 3D: (0, 2) has none)
    key = torch.tensor([0 * 3 + 1, 0 * 3 + 2, 1 * 3 + 2])
    src, dst = torch.tensor([0, 1]), torch.tensor([1, 2])
    conv = torch.tensor([0.5, -0.5])
    out = pair_contacts(key, 3, piece, src, dst, conv, (a, b, step))
    torch.testing.assert_close(out, torch.tensor([[0.5, 0, 1, 0], [0, 0, 0, 0], [-0.5, 1, 1, 1]]))
    assert 0.01 < STEP < 0.99 / 1.01


def test_the_rule_sees_how_a_candidate_meets_the_selection():
    """A body standing on a floor with a head on top (as tests/test_pieces.py): with normals that make the links
    from the body to the floor concave and those to the head convex, the candidates' contact columns are the means
    over their links to the selection; without normals or views they are 0 (and -1: no border seen)."""
    g = torch.Generator().manual_seed(0)
    xs = torch.arange(-0.5, 0.5001, 0.05)
    floor = torch.stack(torch.meshgrid(xs, xs, indexing="ij"), -1).reshape(-1, 2)
    floor = torch.cat([floor, torch.zeros(len(floor), 1)], 1)
    ax = torch.arange(-0.1, 0.1001, 0.05)
    body = torch.stack(torch.meshgrid(ax, ax, torch.arange(0.05, 0.4001, 0.05), indexing="ij"), -1).reshape(-1, 3)
    head = torch.stack(torch.meshgrid(ax, ax, torch.arange(0.45, 0.6001, 0.05), indexing="ij"), -1).reshape(-1, 3)
    means = torch.cat([floor, body, head])
    part = torch.cat([torch.full((len(p),), i) for i, p in enumerate([floor, body, head])])
    feats = torch.eye(3)[part] + 0.05 * torch.randn(len(means), 3, generator=g)
    # normals: the floor's and the head's up, the body's down: toward each other across the floor's links
    # (concave), apart across the head's (convex)
    normals = torch.zeros(len(means), 3)
    normals[part == 0] = torch.tensor([0.0, 0, 1])
    normals[part == 1] = torch.tensor([0.0, 0, -1])
    normals[part == 2] = torch.tensor([0.0, 0, 1])
    src, dst = linked_neighbors(means, torch.full((len(means),), 0.03), 8, 1.5, 0.0)
    pieces = Pieces(means, feats, src, dst, torch.tensor([0.0, 0.0, 1.0]), k=3, normals=normals)
    of = lambda i: int(torch.unique(pieces.piece[part == i]))  # noqa: E731
    selected = torch.zeros(pieces.num, dtype=torch.bool)
    selected[of(1)] = True
    ids, rows = pieces.candidates(selected, torch.zeros(pieces.num), feats[part == 1].mean(0))
    col = {name: rows[:, i] for i, name in enumerate(FEATURES)}
    h, f = ids.tolist().index(of(2)), ids.tolist().index(of(0))
    conv = link_convexity(means, normals, src, dst)
    between = lambda i: ((part[src] == 1) & (part[dst] == i)) | ((part[src] == i) & (part[dst] == 1))  # noqa: E731
    torch.testing.assert_close(col["convexity"][h], conv[between(2)].mean())
    torch.testing.assert_close(col["convexity"][f], conv[between(0)].mean())
    assert col["convexity"][h] > 0 > col["convexity"][f]  # normals apart across the head, toward across the floor
    torch.testing.assert_close(col["concave_share"][f], (conv[between(0)] < CONCAVE).float().mean())
    assert col["concave_share"][h] == 0 and col["concave_share"][f] > 0.5
    assert (col["view_border_share"] == 0).all() and (col["depth_step_share"] == -1).all()  # no views given
    plain = Pieces(means, feats, src, dst, torch.tensor([0.0, 0.0, 1.0]), k=3)
    rows = plain.candidates(selected, torch.zeros(plain.num), feats[part == 1].mean(0))[1]
    assert (rows[:, FEATURES.index("convexity")] == 0).all()


def test_small_pieces_join_the_neighbour_they_share_most_links_with():
    from dff_gs.query.pieces import absorb_small

    # pieces 0 (4 nodes), 1 (node 4: one link to 0, two to 2), 2 (4 nodes), 3 (node 9: one link to 2)
    piece = torch.tensor([0, 0, 0, 0, 1, 2, 2, 2, 2, 3])
    src, dst = torch.tensor([0, 1, 3, 4, 4, 5, 6, 7, 8]), torch.tensor([1, 2, 4, 5, 6, 6, 7, 8, 9])
    out = absorb_small(piece, src, dst, 4)
    assert out.tolist() == [0, 0, 0, 0, 1, 1, 1, 1, 1, 1]
    assert torch.equal(absorb_small(piece, src, dst, 1), piece)  # min 1: as it was
    # two small pieces that choose each other join, and the pair (2 nodes) then joins its large neighbour
    piece = torch.tensor([0, 0, 0, 1, 2])
    src, dst = torch.tensor([0, 1, 2, 3, 3]), torch.tensor([1, 2, 3, 4, 4])
    assert absorb_small(piece, src, dst, 3).tolist() == [0, 0, 0, 0, 0]


def test_a_piece_does_not_cross_a_concave_crease():
    """Two boxes of one look pressed side by side: one piece without normals, two when the links where they meet
    are concave (the boxes' faces toward each other: their normals point at each other)."""
    ax = torch.arange(0.0, 0.2001, 0.05)
    box = torch.stack(torch.meshgrid(ax, ax, ax, indexing="ij"), -1).reshape(-1, 3)
    means = torch.cat([box, box + torch.tensor([0.25, 0.0, 0.0])])
    side = torch.cat([torch.zeros(len(box)), torch.ones(len(box))]).long()
    feats = torch.ones(len(means), 2) + 0.01 * torch.randn(len(means), 2, generator=torch.Generator().manual_seed(0))
    normals = torch.zeros(len(means), 3)
    normals[:, 2] = 1.0
    near = (means[:, 0] > 0.175) & (means[:, 0] < 0.275)  # the two faces that meet
    normals[near & (side == 0)] = torch.tensor([1.0, 0, 0])
    normals[near & (side == 1)] = torch.tensor([-1.0, 0, 0])
    src, dst = linked_neighbors(means, torch.full((len(means),), 0.03), 8, 1.5, 0.0)
    up = torch.tensor([0.0, 0.0, 1.0])
    assert Pieces(means, feats, src, dst, up, k=1).num == 1
    cut = Pieces(means, feats, src, dst, up, k=1, normals=normals)
    assert cut.num == 2 and all(len(torch.unique(cut.piece[side == s])) == 1 for s in (0, 1))

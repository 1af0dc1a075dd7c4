"""The click grouping's pieces and its learned merge rule (dff_gs.query.pieces, dff_gs.query.merge_rule)."""

import json

import pytest
import torch

from dff_gs.core.errors import CheckpointError
from dff_gs.core.neighbors import linked_neighbors
from dff_gs.query.merge_rule import RULE_PATH, TreeEnsemble, shipped_rule
from dff_gs.query.pieces import FEATURES, Pieces, up_frame


def two_trees() -> dict:
    # tree 0: x0 <= 1 ? (leaf -1) : (x1 <= 0 ? leaf 0.5 : leaf 2), NaN in x0 goes right;  tree 1: one leaf 0.25
    t0 = {"feature": [0, 0, 1, 0, 0], "threshold": [1.0, 0, 0.0, 0, 0], "left": [1, 0, 3, 0, 0],
          "right": [2, 0, 4, 0, 0], "leaf": [False, True, False, True, True], "value": [0, -1.0, 0, 0.5, 2.0],
          "nan_left": [False, True, True, True, True]}
    t1 = {"feature": [0], "threshold": [0.0], "left": [0], "right": [0], "leaf": [True], "value": [0.25],
          "nan_left": [True]}
    return {"features": ["a", "b"], "baseline": 0.1, "trees": [t0, t1], "meta": {"note": "by hand"}}


def test_tree_ensemble_walks_each_tree_to_its_leaf():
    ens = TreeEnsemble.from_dict(two_trees())
    x = torch.tensor([[0.5, 9.0], [3.0, -1.0], [3.0, 1.0], [float("nan"), 1.0], [1.0, float("nan")]])
    raw = torch.tensor([-1.0, 0.5, 2.0, 2.0, -1.0], dtype=torch.float64) + 0.25 + 0.1
    torch.testing.assert_close(ens.probability(x), torch.sigmoid(raw))
    again = TreeEnsemble.from_dict(json.loads(json.dumps(ens.to_dict())))
    torch.testing.assert_close(again.probability(x), ens.probability(x))
    assert again.meta == {"note": "by hand"}
    with pytest.raises(ValueError, match="2 features"):
        ens.probability(torch.zeros(3, 5))


def test_a_malformed_rule_names_its_file(tmp_path):
    bad = two_trees()
    bad["trees"][0]["left"][0] = 9  # outside its tree
    with pytest.raises(CheckpointError, match="outside its tree"):
        TreeEnsemble.from_dict(bad, "rule.json")
    del bad["baseline"]
    with pytest.raises(CheckpointError, match="rule.json: not a tree ensemble"):
        TreeEnsemble.from_dict(bad, "rule.json")
    path = tmp_path / "rule.json"
    path.write_text("{not json")
    with pytest.raises(CheckpointError, match="rule.json"):
        TreeEnsemble.load(path)


def test_the_shipped_rule_reads_the_pieces_features():
    rule = shipped_rule()
    assert RULE_PATH.is_file() and tuple(rule.features) == FEATURES and len(rule.feature) >= 10
    assert rule.meta["fitted_on"] and all(name.startswith("gen-") for name in rule.meta["fitted_on"])
    p = rule.probability(torch.zeros(4, len(FEATURES)))
    assert p.shape == (4,) and bool(((p >= 0) & (p <= 1)).all())


def scene():
    """A floor (z = 0, 2 m wide), an object standing on it (a body box 0.4 m high and a head box on top, of two
    looks), and a neighbour beside it that looks like the body; features one-hot by part, with noise."""
    g = torch.Generator().manual_seed(0)
    xs = torch.arange(-1.0, 1.0001, 0.05)
    floor = torch.stack(torch.meshgrid(xs, xs, indexing="ij"), -1).reshape(-1, 2)
    floor = torch.cat([floor, torch.zeros(len(floor), 1)], 1)

    def box(lo, hi, step=0.05):
        axes = [torch.arange(a, b + 1e-4, step) for a, b in zip(lo, hi)]
        return torch.stack(torch.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 3)

    body = box((-0.1, -0.1, 0.05), (0.1, 0.1, 0.4))
    head = box((-0.1, -0.1, 0.45), (0.1, 0.1, 0.6))
    other = box((0.5, 0.5, 0.05), (0.7, 0.7, 0.3))
    parts = [floor, body, head, other]
    means = torch.cat(parts)
    part = torch.cat([torch.full((len(p),), i) for i, p in enumerate(parts)])
    looks = torch.eye(4)[[0, 1, 2, 1]]  # the neighbour looks like the body
    feats = looks[part] + 0.05 * torch.randn(len(means), 4, generator=g)
    return means, feats, part


def test_pieces_describe_their_neighbours_and_grow_by_a_rule():
    means, feats, part = scene()
    src, dst = linked_neighbors(means, torch.full((len(means),), 0.03), 8, 1.5, 0.0)
    pieces = Pieces(means, feats, src, dst, torch.tensor([0.0, 0.0, 2.0]), k=3)
    assert pieces.num >= 4  # three looks, and the body's look in two places: two pieces
    of = lambda i: torch.unique(pieces.piece[part == i])  # noqa: E731
    assert all(len(of(i)) == 1 for i in range(4)) and of(1) != of(3)
    body, head, floor = int(of(1)), int(of(2)), int(of(0))
    selected = torch.zeros(pieces.num, dtype=torch.bool)
    selected[body] = True
    click = torch.nn.functional.normalize(feats[part == 1].mean(0), dim=0)
    ids, rows = pieces.candidates(selected, torch.zeros(pieces.num), click)
    assert rows.shape == (len(ids), len(FEATURES)) and set(ids.tolist()) == {head, floor}  # the neighbour: apart
    col = {name: rows[:, i] for i, name in enumerate(FEATURES)}
    h, f = ids.tolist().index(head), ids.tolist().index(floor)
    assert col["border_to_selection"][h] > col["border_to_selection"][f]  # the floor touches it in a small part
    assert col["flatness"][f] > 2 and col["log_width"][f] > 1  # wide and flat
    assert col["bottom"][h] > 0.5 and col["bottom"][f] < 0 and col["cos_click"][h] < 0.5
    # a rule that joins what does not reach below the selection: the head, not the floor (nor, apart, the neighbour)
    record = []
    grown = pieces.grow(body, torch.eye(4)[:2], click, lambda i, r: r[:, FEATURES.index("bottom")] > 0, record=record)
    assert grown[body] and grown[head] and not grown[floor] and not grown[int(of(3))]
    assert [set(ids.tolist()) for ids, _ in record] == [{head, floor}, {floor}]  # two rounds: the second adds none
    # the frame's third axis is up
    frame = up_frame(torch.tensor([0.0, 0.0, 2.0]))
    torch.testing.assert_close(frame @ frame.T, torch.eye(3))
    torch.testing.assert_close(frame[2], torch.tensor([0.0, 0.0, 1.0]))


def test_a_click_starts_at_the_piece_that_draws_most_of_its_pixel():
    """A large floor Gaussian drawn faintly in front of the object can be the pixel's single most weighted one; the
    object's many Gaussians behind it draw more of the pixel together, so the selection starts at their piece."""
    means, feats, part = scene()
    src, dst = linked_neighbors(means, torch.full((len(means),), 0.03), 8, 1.5, 0.0)
    pieces = Pieces(means, feats, src, dst, torch.tensor([0.0, 0.0, 1.0]), k=3)
    floor_g = int((part == 0).nonzero()[0])
    body_g = (part == 1).nonzero()[:4, 0]
    ids = torch.cat([torch.tensor([floor_g]), body_g])
    weights = torch.tensor([0.3, 0.15, 0.15, 0.12, 0.1])
    assert pieces.start(ids, weights) == int(pieces.piece[body_g[0]]) != int(pieces.piece[floor_g])
    assert pieces.start(ids[:2], weights[:2]) == int(pieces.piece[floor_g])  # the floor draws more of this one

"""A boosted-trees classifier stored as plain arrays (JSON), evaluated with torch: the learned rule of the click
grouping (:mod:`dff_gs.query.pieces`) that says whether a piece next to the selection belongs to the clicked object.

The trees are fitted by ``benchmarks/fit_merge_rule.py`` (scikit-learn's ``HistGradientBoostingClassifier`` on
generated layouts kept apart from the evaluation's) and exported node by node; nothing of scikit-learn is needed to
apply them. A tree's node sends a row left when its feature is ``<= threshold`` (a NaN goes the side the fit chose),
a leaf adds its value, and the probability is the logistic of the baseline plus every tree's leaf.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from dff_gs.core.errors import CheckpointError

RULE_PATH = Path(__file__).with_name("merge_rule.json")
"""The fitted rule the click grouping applies (``benchmarks/fit_merge_rule.py`` writes it)."""
NODE_KEYS = ("feature", "threshold", "left", "right", "leaf", "value", "nan_left")


@dataclass
class TreeEnsemble:
    """Binary boosted trees padded to one node table.

    feature, left, right: Tensor  # [T, M] int64;  threshold, value: Tensor  # [T, M] float64
    leaf, nan_left: Tensor  # [T, M] bool
    """

    features: list[str]
    baseline: float
    feature: Tensor
    threshold: Tensor
    left: Tensor
    right: Tensor
    leaf: Tensor
    value: Tensor
    nan_left: Tensor
    meta: dict

    @classmethod
    def from_dict(cls, data: dict, source: str = "merge rule") -> "TreeEnsemble":
        """The ensemble of ``data`` (:meth:`to_dict`'s layout); a malformed one is a :class:`CheckpointError`
        naming ``source``."""
        try:
            trees = data["trees"]
            width = max(len(t["feature"]) for t in trees)
            pad = {"feature": 0, "threshold": 0.0, "left": 0, "right": 0, "leaf": True, "value": 0.0,
                   "nan_left": True}
            cols = {k: [list(t[k]) + [pad[k]] * (width - len(t[k])) for t in trees] for k in NODE_KEYS}
            ints = {k: torch.tensor(cols[k], dtype=torch.long) for k in ("feature", "left", "right")}
            bools = {k: torch.tensor(cols[k], dtype=torch.bool) for k in ("leaf", "nan_left")}
            floats = {k: torch.tensor(cols[k], dtype=torch.float64) for k in ("threshold", "value")}
            out = cls(list(data["features"]), float(data["baseline"]), meta=dict(data.get("meta", {})),
                      **ints, **bools, **floats)
        except (KeyError, TypeError, ValueError) as e:
            raise CheckpointError(f"{source}: not a tree ensemble ({type(e).__name__}: {e})") from e
        n = len(out.features)
        inner = ~out.leaf
        if (out.feature[inner] >= n).any() or (out.feature[inner] < 0).any() or \
                (out.left[inner] >= width).any() or (out.right[inner] >= width).any():
            raise CheckpointError(f"{source}: a node points outside its tree or its {n} features")
        return out

    @classmethod
    def load(cls, path: str | Path = RULE_PATH) -> "TreeEnsemble":
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise CheckpointError(f"{path}: cannot read the merge rule ({e})") from e
        return cls.from_dict(data, str(path))

    def to_dict(self) -> dict:
        trees = [{k: getattr(self, k)[t].tolist() for k in NODE_KEYS} for t in range(len(self.feature))]
        return {"features": self.features, "baseline": self.baseline, "trees": trees, "meta": self.meta}

    def probability(self, x: Tensor) -> Tensor:
        """p(positive) of each row of ``x  # [R, F]`` (columns in :attr:`features`' order).
        Returns Tensor  # [R] float64"""
        x = x.double().cpu()
        if x.dim() != 2 or x.shape[1] != len(self.features):
            raise ValueError(f"rows of {len(self.features)} features expected, got {tuple(x.shape)}")
        T = len(self.feature)
        node = torch.zeros(len(x), T, dtype=torch.long)
        trees = torch.arange(T)[None].expand(len(x), -1)
        for _ in range(self.feature.shape[1]):  # at most one level a pass; stops once every row is at a leaf
            at_leaf = self.leaf[trees, node]
            if bool(at_leaf.all()):
                break
            v = x.gather(1, self.feature[trees, node])
            go_left = torch.where(torch.isnan(v), self.nan_left[trees, node], v <= self.threshold[trees, node])
            nxt = torch.where(go_left, self.left[trees, node], self.right[trees, node])
            node = torch.where(at_leaf, node, nxt)
        raw = self.baseline + self.value[trees, node].sum(1)
        return torch.sigmoid(raw)


@functools.cache
def shipped_rule() -> TreeEnsemble:
    """The rule at :data:`RULE_PATH`, read once a process."""
    return TreeEnsemble.load(RULE_PATH)

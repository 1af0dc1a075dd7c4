"""Fit the click grouping's merge rule (``dff_gs/query/merge_rule.json``, applied by :mod:`dff_gs.query.pieces`)
on generated layouts that no evaluation uses.

The fit layouts are ``gen-<seed>`` for :data:`FIT_SEEDS` (not the regression set; ``bench_click.py --fresh`` and
``bench_edit.py --fresh`` draw around them), rendered and trained as ``bench_click.py`` does (60 views of 128x96,
labels withheld: the default label-free teacher; the runs are shared in ``--runs``). On each, ``--clicks`` random
clicks per object (``layout_eval.draw_clicks``, as the bench draws them) grow a selection of pieces from the
clicked one, and every piece that touches the selection in a round is a sample: its :data:`FEATURES` and whether
most of its Gaussians are the clicked object's (the training views' labels lifted on the Gaussians,
``layout_eval.lifted_truth``: the fit reads labels, the rule never does).

1. The truth grows the selection (a piece joins when it is the object's); every round's pieces are samples.
2. Boosted trees are fitted to them (scikit-learn's ``HistGradientBoostingClassifier``), each sample weighted by
   what a mistake on it would cost the click's IoU (:func:`mistake_cost`: a large piece of the floor wrongly taken
   costs more than a piece of 5 Gaussians).
3. That rule grows the selection (joining above the grouping's ``group_rule_threshold``): the states the rule
   itself reaches, its own mistakes included, give more samples, labelled by the truth; the trees are fitted again
   on both (the rule learns to stop where it would otherwise go on).

The trees are written node by node as JSON with what they were fitted on; applying them needs no scikit-learn.

    python benchmarks/fit_merge_rule.py [--seeds S,S,...] [--runs runs/layouts] [--clicks 4]
        [--out dff_gs/query/merge_rule.json]

Time (2 cores): ~3 min a layout to train when its run is not there yet, then ~5 min for both rounds on the 16
layouts.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

sys.path.insert(0, str(Path(__file__).resolve().parent))
import layout_eval as L  # noqa: E402

from dff_gs import query as Q  # noqa: E402
from dff_gs.query.grouping import GroupingSettings  # noqa: E402
from dff_gs.query.merge_rule import RULE_PATH, TreeEnsemble  # noqa: E402
from dff_gs.query.pieces import FEATURES  # noqa: E402

FIT_SEEDS = (53070749, 1982678375, 244539865, 1827331942, 288835260, 2125449885, 1795958355, 2039998800,
             1655342473, 110965505, 1377414116, 704806272, 355758362, 1754513240, 1108573361, 1301107742)
"""Generated layouts the shipped rule is fitted on (the first 8 drawn once by ``--fresh 8``, the next 8 by the
generator's ``fresh_seeds`` away from every evaluation's; since then fitting data only)."""
TREES = {"max_iter": 300, "max_depth": 6, "random_state": 0}
"""The boosted trees' settings (``HistGradientBoostingClassifier``)."""
MIN_WEIGHT = 0.02
"""The least weight of a sample (:func:`mistake_cost`)."""


def mistake_cost(size: Tensor, share: Tensor, object_size: float) -> Tensor:
    """What a wrong decision on pieces of ``size  # [Q]`` Gaussians with ``share  # [Q]`` of them the clicked
    object's costs the click's IoU (of an object of ``object_size`` Gaussians), roughly: leaving out an object's
    piece loses its object Gaussians from the intersection, taking another's adds its other Gaussians to the union
    (at most 1); at least :data:`MIN_WEIGHT` (a small piece may be the bridge to the rest of the object).
    Returns Tensor  # [Q] (the samples' weights)"""
    mine, other = size * share, size * (1 - share)
    cost = torch.where(share > 0.5, mine / max(object_size, 1.0), other / (object_size + other))
    return cost.clamp(MIN_WEIGHT, 1.0)


def layout_samples(ctx, scene, layout: str, clicks: int, decide_for) -> tuple[list, list, list]:
    """Every round's candidate pieces of every click of ``layout`` with ``decide_for(share)`` growing the selection
    (``share  # [P]``: each piece's share of the clicked object's Gaussians).  Returns (rows, labels, weights)
    lists of arrays (weights: :func:`mistake_cost`)"""
    grouper = L.click_pieces(ctx)
    truth = L.lifted_truth(ctx).cpu()
    rows, labels, weights = [], [], []
    for obj in L.layout_objects(scene, L.scene_path(layout, L.default_cache())):
        share = L.object_share(grouper.pieces, truth, obj["class_id"])
        object_size = float((truth == obj["class_id"]).sum())
        for c in L.draw_clicks(scene, obj["class_id"], clicks, 0, layout):
            record: list = []
            if L.grow_from_click(ctx, grouper, (c["view"], c["x"], c["y"]), decide_for(share), record) is None:
                continue
            rows += [r.numpy() for _, r in record]
            labels += [(share[ids] > 0.5).numpy() for ids, _ in record]
            weights += [mistake_cost(grouper.pieces.size[ids], share[ids], object_size).numpy() for ids, _ in record]
    return rows, labels, weights


def fit(rows: np.ndarray, labels: np.ndarray, weights: np.ndarray):
    from sklearn.ensemble import HistGradientBoostingClassifier

    return HistGradientBoostingClassifier(**TREES).fit(rows, labels, sample_weight=weights)


def exported(model, meta: dict) -> TreeEnsemble:
    """The fitted ``HistGradientBoostingClassifier`` as a :class:`TreeEnsemble` (node arrays, no scikit-learn)."""
    trees = []
    for predictors in model._predictors:  # one tree per boosting round (binary: one per round)
        nodes = predictors[0].nodes
        trees.append({"feature": nodes["feature_idx"].tolist(), "threshold": nodes["num_threshold"].tolist(),
                      "left": nodes["left"].tolist(), "right": nodes["right"].tolist(),
                      "leaf": nodes["is_leaf"].astype(bool).tolist(), "value": nodes["value"].tolist(),
                      "nan_left": nodes["missing_go_to_left"].astype(bool).tolist()})
    baseline = float(np.ravel(model._baseline_prediction)[0])
    return TreeEnsemble.from_dict({"features": list(FEATURES), "baseline": baseline, "trees": trees, "meta": meta})


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", default=",".join(map(str, FIT_SEEDS)))
    ap.add_argument("--runs", default="runs/layouts")
    ap.add_argument("--clicks", type=int, default=4, help="random clicks per object")
    ap.add_argument("--out", default=str(RULE_PATH))
    args = ap.parse_args(argv)
    import bench_click

    seeds = [int(s) for s in args.seeds.split(",") if s]
    regression = set(L.generator().REGRESSION_SEEDS)
    if regression & set(seeds):
        raise SystemExit(f"seeds {sorted(regression & set(seeds))} are the regression set's: fit on others")
    threshold, t0 = GroupingSettings().group_rule_threshold, time.perf_counter()
    contexts = []
    for layout in L.generator().generated_layouts(seeds):
        path = L.scene_path(layout, L.default_cache())
        run = L.run_dir(Path(args.runs), layout, path, "default")
        if not L.train(run, path, bench_click.TEACHERS["default"]):
            raise SystemExit(f"{run}: train.py failed")
        ctx = Q.QueryContext.open(run)
        contexts.append((layout, ctx, ctx.scene()))

    def samples(decide_for):
        rows, labels, weights = [], [], []
        for layout, ctx, scene in contexts:
            r, y, w = layout_samples(ctx, scene, layout, args.clicks, decide_for)
            rows, labels, weights = rows + r, labels + y, weights + w
            print(f"{layout}: {sum(len(a) for a in y)} samples", flush=True)
        return np.concatenate(rows), np.concatenate(labels), np.concatenate(weights)

    rows, labels, weights = samples(lambda share: lambda ids, _: share[ids] > 0.5)  # 1. the truth grows
    first = fit(rows, labels, weights)  # 2.
    rule = exported(first, {})

    def by_rule(share):
        return lambda ids, r: rule.probability(r) > threshold

    more = samples(by_rule)  # 3. the states the rule reaches
    rows, labels, weights = (np.concatenate([a, b]) for a, b in zip((rows, labels, weights), more))
    final = fit(rows, labels, weights)
    meta = {"fitted_on": [f"gen-{s}" for s in seeds], "clicks_per_object": args.clicks,
            "samples": int(len(labels)), "positives": int(labels.sum()), "trees": TREES, "weighted": True,
            "join_threshold_while_fitting": threshold, "accuracy_on_samples": float(final.score(rows, labels)),
            "seconds": round(time.perf_counter() - t0, 1)}
    out = Path(args.out)
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(exported(final, meta).to_dict()))
    tmp.replace(out)
    print(json.dumps(meta, indent=1))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

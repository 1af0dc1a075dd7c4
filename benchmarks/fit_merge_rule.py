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
2. Boosted trees are fitted to them (scikit-learn's ``HistGradientBoostingClassifier``).
3. That rule grows the selection (joining above the grouping's ``group_rule_threshold``): the states the rule
   itself reaches, its own mistakes included, give more samples, labelled by the truth; the trees are fitted again
   on both (the rule learns to stop where it would otherwise go on).

The trees are written node by node as JSON with what they were fitted on; applying them needs no scikit-learn.

    python benchmarks/fit_merge_rule.py [--seeds S,S,...] [--runs runs/layouts] [--clicks 4]
        [--out dff_gs/query/merge_rule.json]

Time (2 cores): ~2 min a layout to train when its run is not there yet, then ~3 min for both rounds on the 8 layouts.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import layout_eval as L  # noqa: E402

from dff_gs import query as Q  # noqa: E402
from dff_gs.query.grouping import GroupingSettings  # noqa: E402
from dff_gs.query.merge_rule import RULE_PATH, TreeEnsemble  # noqa: E402
from dff_gs.query.pieces import FEATURES  # noqa: E402

FIT_SEEDS = (53070749, 1982678375, 244539865, 1827331942, 288835260, 2125449885, 1795958355, 2039998800)
"""Generated layouts the shipped rule is fitted on (drawn once by ``--fresh 8``; since then fitting data only)."""
TREES = {"max_iter": 300, "max_depth": 6, "random_state": 0}
"""The boosted trees' settings (``HistGradientBoostingClassifier``)."""


def layout_samples(ctx, scene, layout: str, clicks: int, decide_for) -> tuple[list, list]:
    """Every round's candidate pieces of every click of ``layout`` with ``decide_for(share)`` growing the selection
    (``share  # [P]``: each piece's share of the clicked object's Gaussians).  Returns (rows, labels) lists of
    arrays"""
    grouper = L.click_pieces(ctx)
    truth = L.lifted_truth(ctx).cpu()
    rows, labels = [], []
    for obj in L.layout_objects(scene, L.scene_path(layout, L.default_cache())):
        share = L.object_share(grouper.pieces, truth, obj["class_id"])
        for c in L.draw_clicks(scene, obj["class_id"], clicks, 0, layout):
            record: list = []
            if L.grow_from_click(ctx, grouper, (c["view"], c["x"], c["y"]), decide_for(share), record) is None:
                continue
            rows += [r.numpy() for _, r in record]
            labels += [(share[ids] > 0.5).numpy() for ids, _ in record]
    return rows, labels


def fit(rows: np.ndarray, labels: np.ndarray):
    from sklearn.ensemble import HistGradientBoostingClassifier

    return HistGradientBoostingClassifier(**TREES).fit(rows, labels)


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
        rows, labels = [], []
        for layout, ctx, scene in contexts:
            r, y = layout_samples(ctx, scene, layout, args.clicks, decide_for)
            rows += r
            labels += y
            print(f"{layout}: {sum(len(a) for a in y)} samples", flush=True)
        return np.concatenate(rows), np.concatenate(labels)

    rows, labels = samples(lambda share: lambda ids, _: share[ids] > 0.5)  # 1. the truth grows
    first = fit(rows, labels)  # 2.
    rule = exported(first, {})

    def by_rule(share):
        return lambda ids, r: rule.probability(r) > threshold

    more_rows, more_labels = samples(by_rule)  # 3. the states the rule reaches
    rows, labels = np.concatenate([rows, more_rows]), np.concatenate([labels, more_labels])
    final = fit(rows, labels)
    meta = {"fitted_on": [f"gen-{s}" for s in seeds], "clicks_per_object": args.clicks,
            "samples": int(len(labels)), "positives": int(labels.sum()), "trees": TREES,
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

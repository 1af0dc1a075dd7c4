"""Click on an object, get that object: random clicks on generated layouts, scored on held-out views.

Layouts (``benchmarks/layout_eval.py``): the generator's regression set ``gen-<seed>`` (default), ``--fresh N``
new seeds (printed and kept in the JSON; ``--seeds`` repeats them), or ``--scenes`` by name (``embedded``,
``toys``, ``garden``, ``gen-K``); 60 views of 128x96. Each is trained with the default command,
``python train.py --data SCENE data.labels=false`` (teacher ``default``: labels withheld, the label-free default
teacher; ``--teachers default,labels`` adds the label-map teacher, ``teacher.name=labels``, for comparison).

Every object (the layout's ``objects``) is clicked ``--clicks`` times (default 4) at random: views drawn among the
training views where it covers >= 30 px, the first click in the border band of its mask (within 2 px of the
edge), the others uniformly inside it (seeded by ``--click-seed``, the layout and the object). Variants:

- ``eq5``: Eq. 5 alone, ``p > 0.5`` on the click's feature (``click_feature`` + ``reference_probabilities``);
- ``eq5+cleanup``: the edit selection without grouping (``SelectionConfig(click_grouping=False)``);
- ``grouped`` (the default ``--variants``): the edit selection's default (what ``edit.py --click`` does), 3D
  grouping from the click: the pieces the learned rule joins to the clicked one (``dff_gs.query.pieces``);
- ``piece``: the grouping without the rule (``group_rule=false``): the piece of ``p(click | x) > 0.25`` joined to
  the clicked surface (the default before the rule);
- ``ceiling``: no selection but the best one this model allows, the Gaussians whose true class (the training
  views' label maps lifted onto them, ``layout_eval.lifted_truth``) is the object's: what a perfect selection
  would score, so that a low figure can be told apart as the model's (its geometry draws the object badly) or
  the selection's. It reads labels no selection may: a diagnostic, never a result.
- ``pieces_ceiling``: the grouping's pieces (``dff_gs.query.pieces``) grown from the clicked one as the rule
  grows them, each round joining the touching pieces that are mostly the object's (by those lifted labels): what a
  perfect merge rule would score on these pieces, telling the rule's losses from the pieces'. A diagnostic too.

Each click's selection is rendered on every test view (coverage > 0.5) against the object's true masks, pooled
over the views: IoU, precision, recall, and its seconds (the per-model build of the grouping apart). Table per
set, teacher and variant: mean IoU over all clicks, 10th percentile, multi-part objects' mean, large flat
objects' mean (floor, table, rug... when they are objects), mean per object type, click seconds (mean / max),
and the floors of issue 29 (mean >= 0.85, p10 >= 0.6, multi-part >= 0.75, <= 2 s a click); a second table per
layout. With a set beside ``regression`` in the same run (``--fresh 8 --regression``), or ``--compare
OTHER.json``, the difference of each set's mean to the regression mean. ``OUT/bench_click.md`` / ``.json``;
PNGs for ``--png-layouts`` layouts of each set, per variant a row per object (its worst click): click view with
the click marked | selection over the test view that sees most of the object | true mask.

    python benchmarks/bench_click.py [--out runs/bench_click] [--runs runs/layouts] [--fresh 8 [--regression]]
        [--seeds 11,12] [--scenes toys,garden] [--clicks 4] [--teachers default,labels]
        [--variants grouped,eq5,eq5+cleanup] [--compare OTHER/bench_click.json]

Time (2 cores, measured 2026-12-07): training ~2 min a layout and teacher on a quiet machine (2,441 steps: the
schedule of a scene without points; cached in ``--runs``, shared with bench_edit); a click 0.1 s for ``grouped``
(mean, 0.4 s at most; the grouping's build per model 4-14 s apart, with the rule's pieces), ~1 s for ``eq5``, plus
scoring on the 8 test views. ``--fresh 8 --variants grouped,eq5,ceiling``, its 8 layouts to train: 24 min; the
regression set on cached runs: 6 min.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import layout_eval as L  # noqa: E402

from dff_gs import query as Q  # noqa: E402
from dff_gs.edit import SelectionConfig, select_gaussians  # noqa: E402
from dff_gs.core.errors import DffError  # noqa: E402
from dff_gs.core.utils import as_rgb  # noqa: E402

TEACHERS = {"default": ["data.labels=false"], "labels": ["teacher.name=labels"]}
VARIANTS = ("eq5", "eq5+cleanup", "grouped", "piece", "ceiling", "pieces_ceiling")
FLOORS = {"mean": 0.85, "p10": 0.6, "multi_part": 0.75, "click_s": 2.0}


def pieces_ceiling(ctx, click, class_id: int) -> torch.Tensor:
    """The ``pieces_ceiling`` variant's selection ``[N]`` (module docstring): the truth decides each join."""
    grouper = L.click_pieces(ctx)
    share = L.object_share(grouper.pieces, L.lifted_truth(ctx).cpu(), class_id)
    chosen = L.grow_from_click(ctx, grouper, click, lambda ids, _: share[ids] > 0.5)
    if chosen is None:
        return torch.zeros(ctx.model.num_gaussians, dtype=torch.bool)
    return chosen[grouper.pieces.piece].to(ctx.model.device)


def select(variant: str, ctx, click) -> tuple[torch.Tensor, float]:
    """The selection mask ``[N]`` of one click by ``variant``, and the seconds of a one-time precompute in it."""
    if variant == "eq5":
        v, x, y = click
        ref = Q.click_feature(ctx.model, ctx.scene().cameras, v, x, y, ctx.backend)
        return Q.reference_probabilities(ctx.model, ref) > 0.5, 0.0
    cfg = SelectionConfig(click_grouping=variant in ("grouped", "piece"), group_rule=variant != "piece")
    sel = select_gaussians(ctx, [Q.QuerySpec("click", tuple(click))], cfg)
    return sel.mask, float(sel.queries[0].get("grouping_build_seconds", 0.0))


@torch.no_grad()
def score(model, test, mask: torch.Tensor, class_id: int) -> dict:
    """IoU / precision / recall of the rendered selection (coverage > 0.5) against the class's true masks."""
    pred = Q.render_selection(model, test.cameras, mask) > 0.5
    truth = test.semantics == class_id
    inter, union = int((pred & truth).sum()), int((pred | truth).sum())
    return {"iou": inter / max(union, 1), "precision": inter / max(int(pred.sum()), 1),
            "recall": inter / max(int(truth.sum()), 1)}


def highlight(model, cams, mask: torch.Tensor) -> torch.Tensor:
    """The model's render of ``cams`` (one camera) with the selection tinted red and the rest dimmed: ``[H, W, 3]``."""
    from dff_gs.render import render

    rgb = render(model, cams, with_features=False).rgb[0].clamp(0, 1)
    cover = Q.render_selection(model, cams, mask)[0][..., None]
    red = torch.tensor([1.0, 0.15, 0.1])
    return (1 - cover) * 0.45 * rgb + cover * (0.5 * rgb + 0.5 * red)


def shot(model, scene, test, mask, class_id: int, click) -> np.ndarray:
    """Click view (click marked) | selection over the test view that sees most of the object | true mask."""
    from dff_gs.io.images import side_by_side

    v, x, y = click
    view = as_rgb(scene.images[v]).clone()
    view[max(0, y - 1):y + 2, max(0, x - 1):x + 2] = torch.tensor([1.0, 0.0, 0.0])
    t = int(torch.stack([(s == class_id).sum() for s in test.semantics]).argmax())
    truth = (test.semantics[t] == class_id).float()[..., None].expand(-1, -1, 3)
    return side_by_side(view, highlight(model, test.cameras[[t]], mask), truth)


def click_rows(ctx, scene, test, variant: str, obj: dict, clicks: list[dict], png: bool) -> tuple[list, object, float]:
    """The scored clicks of one object by one variant, the PNG row of its worst click, and the build seconds."""
    rows, worst, build_s = [], None, 0.0
    for c in clicks:
        click = (c["view"], c["x"], c["y"])
        t0 = time.perf_counter()
        try:
            if variant == "ceiling":
                mask, build = L.lifted_truth(ctx) == obj["class_id"], 0.0
            elif variant == "pieces_ceiling":
                mask, build = pieces_ceiling(ctx, click, obj["class_id"]), 0.0
            else:
                mask, build = select(variant, ctx, click)
        except DffError as err:  # an empty selection: scored as such
            print(f"  {variant} {obj['class']} {click}: {err}")
            mask, build = torch.zeros(ctx.model.num_gaussians, dtype=torch.bool), 0.0
        seconds = time.perf_counter() - t0 - build
        build_s = max(build_s, build)
        row = {"variant": variant, "object": obj["class"], "type": obj["type"], "multi_part": obj["multi_part"],
               "flat": obj["flat"], **c, "selected": int(mask.sum()), "click_s": seconds,
               **score(ctx.model, test, mask, obj["class_id"])}
        if png and (worst is None or row["iou"] < worst[0]):
            worst = (row["iou"], shot(ctx.model, scene, test, mask, obj["class_id"], click))
        rows.append(row)
    return rows, None if worst is None else worst[1], build_s


def evaluate_run(run: Path, path: Path | None, layout: str, variants: list[str], k: int, seed: int,
                 png_dir: Path | None) -> dict:
    """Every object of ``layout`` clicked ``k`` times on the trained ``run``, by each variant."""
    from dff_gs.io.images import save_png

    ctx = Q.QueryContext.open(run)
    scene = ctx.scene()
    if scene.semantics is None:
        raise SystemExit(f"{run}: its scene has no ground-truth semantics to score against")
    test = scene.split("test")
    objects = L.layout_objects(scene, path)
    clicks = {o["class"]: L.draw_clicks(scene, o["class_id"], k, seed, layout) for o in objects}
    out = {"run": str(run), "gaussians": ctx.model.num_gaussians, "objects": objects, "clicks": clicks,
           "rows": [], "build_s": None}
    for name in [o["class"] for o in objects if not clicks[o["class"]]]:
        print(f"  {layout}: no training view sees {name}, not clicked")
    for variant in variants:
        panels = []
        for obj in objects:
            rows, panel, build = click_rows(ctx, scene, test, variant, obj, clicks[obj["class"]], png_dir is not None)
            out["rows"] += rows
            out["build_s"] = build or out["build_s"]
            if panel is not None:
                panels.append(panel)
        if panels:
            save_png(png_dir / f"{layout}_{variant}.png", np.concatenate(panels, axis=0))
    return out


def summarize(rows: list[dict]) -> dict:
    """Mean, 10th percentile, multi-part / flat means, per-type means and seconds of a list of scored clicks."""
    iou = lambda rs: [r["iou"] for r in rs]  # noqa: E731
    mean = lambda rs: float(np.mean(iou(rs))) if rs else float("nan")  # noqa: E731
    types = sorted({r["type"] for r in rows})
    s = {"clicks": len(rows), "objects": len({(r["layout"], r["object"]) for r in rows}), "mean": mean(rows),
         "p10": L.percentile(iou(rows), 10), "min": min(iou(rows), default=float("nan")),
         "multi_part": mean([r for r in rows if r["multi_part"]]), "flat": mean([r for r in rows if r["flat"]]),
         "border": mean([r for r in rows if r["where"] == "border"]),
         "precision": float(np.mean([r["precision"] for r in rows])),
         "recall": float(np.mean([r["recall"] for r in rows])),
         "click_s": float(np.mean([r["click_s"] for r in rows])), "click_s_max": max(r["click_s"] for r in rows),
         "per_type": {t: (mean([r for r in rows if r["type"] == t]), sum(r["type"] == t for r in rows))
                      for t in types}}
    s["floors"] = {"mean": s["mean"] >= FLOORS["mean"], "p10": s["p10"] >= FLOORS["p10"],
                   "multi_part": not s["multi_part"] < FLOORS["multi_part"],  # nan (none): not failed
                   "click_s": s["click_s_max"] <= FLOORS["click_s"]}
    return s


def summary_table(summaries: dict) -> str:
    head = ["set", "teacher", "variant", "layouts", "objects / clicks", "mean IoU", "p10", "min", "multi-part",
            "large flat", "border clicks", "precision", "recall", "click s mean (max)", "floors", "mean IoU per type"]
    mark = {True: "met", False: "NOT met"}
    rows = []
    for (set_, teacher, variant), s in summaries.items():
        floors = ", ".join(f"{k} {mark[v]}" for k, v in s["floors"].items())
        types = " ".join(f"{t} {m:.2f} ({n})" for t, (m, n) in s["per_type"].items())
        rows.append([set_, teacher, variant, str(s["layouts"]), f"{s['objects']} / {s['clicks']}", L.fmt(s["mean"]),
                     L.fmt(s["p10"], ".2f"), L.fmt(s["min"], ".2f"), L.fmt(s["multi_part"]), L.fmt(s["flat"]),
                     L.fmt(s["border"]), L.fmt(s["precision"], ".2f"), L.fmt(s["recall"], ".2f"),
                     f"{s['click_s']:.2f} ({s['click_s_max']:.2f})", floors, types])
    return L.markdown(head, rows, "lll" + "r" * 11 + "ll")


def layout_table(results: dict) -> str:
    head = ["layout", "teacher", "variant", "#Gaussians", "mean IoU", "p10", "grouping build s",
            "mean IoU per object (min)"]
    rows = []
    for (layout, teacher), res in results.items():
        for variant in dict.fromkeys(r["variant"] for r in res["rows"]):
            rs = [r for r in res["rows"] if r["variant"] == variant]
            per = {}
            for r in rs:
                per.setdefault(r["object"], []).append(r["iou"])
            objs = " ".join(f"{o} {np.mean(v):.2f} ({min(v):.2f})" for o, v in per.items())
            build = L.fmt(res["build_s"], ".1f") if variant == "grouped" else "-"
            ious = [r["iou"] for r in rs]
            rows.append([layout, teacher, variant, f"{res['gaussians']:,}", L.fmt(float(np.mean(ious))),
                         L.fmt(L.percentile(ious, 10), ".2f"), build, objs])
    return L.markdown(head, rows, "lll" + "r" * 4 + "l")


def differences(summaries: dict, other: dict | None = None) -> list[str]:
    """Per set besides ``regression``: its mean / p10 / multi-part minus the regression set's (same teacher and
    variant), the regression figures from this run or else from ``other`` (a bench_click.json)."""
    ref = {tuple(k.split("|")): v for k, v in (other or {}).get("summary", {}).items() if k.startswith("regression|")}
    ref.update({k: v for k, v in summaries.items() if k[0] == "regression"})
    lines = []
    for (set_, teacher, variant), s in summaries.items():
        r = ref.get(("regression", teacher, variant))
        if set_ == "regression" or r is None:
            continue
        d = {m: s[m] - r[m] for m in ("mean", "p10", "multi_part")}
        ok = all(abs(v) <= 0.05 for v in d.values() if not np.isnan(v))
        lines.append(f"{set_} - regression, {teacher} {variant}: mean {d['mean']:+.3f}, p10 {d['p10']:+.3f}, "
                     f"multi-part {d['multi_part']:+.3f} ({'within' if ok else 'NOT within'} 0.05)")
    return lines


def click_shot(after_run: str, click: tuple[int, int, int], out: Path, before_run: str | None = None,
               views: int = 3) -> None:
    """Before | after of one click on any scene (no ground truth needed), as PNG: per row a view (the click
    view, then others evenly spread), columns image (click marked in the first) | before | after. *Before* is
    Eq. 5 alone on ``before_run`` (default: the same run), *after* the default click selection on ``after_run``."""
    from dff_gs.io.images import save_png, side_by_side

    after = Q.QueryContext.open(after_run)
    before = Q.QueryContext.open(before_run) if before_run else after
    masks = {"before": select("eq5", before, click)[0], "after": select("grouped", after, click)[0]}
    scene = after.scene()
    v, x, y = click
    n = scene.num_views
    ids = [v] + [(v + round(k * n / views)) % n for k in range(1, views)]
    rows = []
    for i in ids:
        image = as_rgb(scene.images[i]).clone()
        if i == v:
            image[max(0, y - 2):y + 3, max(0, x - 2):x + 3] = torch.tensor([1.0, 0.0, 0.0])
        cams = scene.cameras[[i]]
        rows.append(side_by_side(image, highlight(before.model, cams, masks["before"]),
                                 highlight(after.model, cams, masks["after"])))
    save_png(out, np.concatenate(rows, axis=0))
    print(f"{out}: image | before (Eq. 5, {int(masks['before'].sum())} Gaussians) | after (grouped, "
          f"{int(masks['after'].sum())} Gaussians), views {ids}")


def parse(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    L.common_args(ap, "runs/bench_click")
    ap.add_argument("--clicks", type=int, default=4, help="random clicks per object")
    ap.add_argument("--teachers", default="default", help=f"comma-separated subset of {', '.join(TEACHERS)}")
    ap.add_argument("--variants", default="grouped", help=f"comma-separated subset of {', '.join(VARIANTS)}")
    ap.add_argument("--compare", default="", help="a bench_click.json whose regression figures the sets here are "
                                                  "compared with")
    ap.add_argument("--shot", nargs=4, metavar=("RUN", "VIEW", "X", "Y"),
                    help="instead: before | after PNG of one click on RUN (any scene), written to OUT/click_shot.png")
    ap.add_argument("--shot-before", default=None, help="with --shot: the run 'before' is measured on (default RUN)")
    args = ap.parse_args(argv)
    for given, known, what in ((args.variants, VARIANTS, "variant"), (args.teachers, TEACHERS, "teacher")):
        for name in [v for v in given.split(",") if v]:
            if name not in known:
                ap.error(f"unknown {what} {name!r} (known: {', '.join(known)})")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    out = Path(args.out)
    if args.shot:
        click_shot(args.shot[0], tuple(int(v) for v in args.shot[1:]), out / "click_shot.png", args.shot_before)
        return 0
    sets = L.layout_sets(args.scenes, args.fresh, args.seeds, args.regression)
    cache, variants = Path(args.cache) if args.cache else L.default_cache(), [v for v in args.variants.split(",") if v]
    teachers = [t for t in args.teachers.split(",") if t]
    results, per_set, t_start = {}, {}, time.perf_counter()
    for set_, layouts in sets.items():
        for i, layout in enumerate(layouts):
            path = L.scene_path(layout, cache)
            for teacher in teachers:
                run = L.run_dir(Path(args.runs), layout, path, teacher)
                if not L.train(run, path, TEACHERS[teacher]):
                    print(f"{run}: train.py failed, skipped")
                    continue
                png = out / "png" if i < args.png_layouts else None
                res = evaluate_run(run, path, layout, variants, args.clicks, args.click_seed, png)
                for r in res["rows"]:
                    r.update(layout=layout, teacher=teacher, set=set_)
                results[(layout, teacher)] = res
                per_set.setdefault(set_, []).append((layout, teacher))
                print(layout_table({(layout, teacher): res}), flush=True)
    summaries = {}
    for set_, keys in per_set.items():
        for teacher in teachers:
            for variant in variants:
                rows = [r for k in keys if k[1] == teacher for r in results[k]["rows"] if r["variant"] == variant]
                if rows:
                    n = len({r["layout"] for r in rows})
                    summaries[(set_, teacher, variant)] = {**summarize(rows), "layouts": n}
    other = json.loads(Path(args.compare).read_text()) if args.compare else None
    text = "\n\n".join([summary_table(summaries), layout_table(results), "\n".join(differences(summaries, other))])
    print("\n" + text + f"\n\n{time.perf_counter() - t_start:.0f} s")
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench_click.md").write_text(text + "\n")
    meta = {"sets": sets, "seeds": {s: [int(n[4:]) for n in ls if n.startswith("gen-")] for s, ls in sets.items()},
            "click_seed": args.click_seed, "clicks_per_object": args.clicks, "teachers": teachers,
            "variants": variants, "floors": FLOORS, "seconds": time.perf_counter() - t_start}
    (out / "bench_click.json").write_text(json.dumps(
        {"meta": meta, "summary": {"|".join(k): v for k, v in summaries.items()},
         "layouts": {f"{la}|{t}": r for (la, t), r in results.items()}}, indent=1, default=str))
    print(f"table: {out / 'bench_click.md'}; PNGs (worst click per object: click | selection | truth) in {out}/png/")
    return 0


if __name__ == "__main__":
    sys.exit(main())

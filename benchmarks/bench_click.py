"""Click on an object, get that object: click segmentation scored against ground truth on held-out views.

For every scene of the suite with ground-truth semantics (the embedded room, and the pybullet scenes that
``benchmarks/scenes/pybullet_scene.py`` renders here: ``toys``, ``garden``), each teacher is trained with the
default command (``python train.py --data SCENE``):

- ``default``: labels withheld from the trainer (``data.labels=false``), so the scene is one without labels and
  gets the default label-free teacher;
- ``labels``: the label-map teacher, with the labels (what a perfect 2D teacher would give; for comparison).

On each run, every object (the scene's ``objects`` in its transforms.json, else every class covering less than
a quarter of the test pixels) is clicked once: in the training view where its ground-truth mask is largest, at
the mask's most interior pixel (largest distance to the mask's border). Selection variants:

- ``eq5``: the DFF query alone, ``p > 0.5`` of Eq. 5 on the click's feature against the scene's feature clusters
  (``dff_gs.query.click_feature`` + ``reference_probabilities``);
- ``eq5+cleanup``: the edit selection without grouping (``SelectionConfig(click_grouping=False)``);
- ``grouped``: the edit selection's default, 3D grouping from the clicked Gaussians (``dff_gs.grouping``).

The selection is rendered on every test view (coverage > 0.5) and compared with the object's true masks,
pooled over the views: IoU, precision, recall; the time of each click (the grouping's one-time precompute
per model is reported apart). Table in ``OUT/bench_click.md`` / ``.json``; per run a PNG per variant: for each
object, the click view with the click marked | the selection over the test view that sees most of the object |
the true mask there.

    python benchmarks/bench_click.py [--out runs/bench_click] [--scenes embedded,toys,garden]
        [--teachers default,labels] [--variants eq5,eq5+cleanup,grouped]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_edit import object_clicks, scene_objects  # noqa: E402
from bench_scenes import PYBULLET_LAYOUTS, ROOT, scene_path  # noqa: E402

from dff_gs import query as Q  # noqa: E402
from dff_gs.edit import SelectionConfig, select_gaussians  # noqa: E402
from dff_gs.errors import DffError  # noqa: E402

SCENES = ("embedded",) + PYBULLET_LAYOUTS
TEACHERS = {"default": ["data.labels=false"], "labels": ["teacher.name=labels"]}
VARIANTS = ("eq5", "eq5+cleanup", "grouped")
FLOORS = {"mean_iou": 0.75, "min_iou": 0.5, "click_s": 2.0}


def suite_objects(scene, path: Path | None) -> list[str]:
    """The objects of ``scene``: those its transforms.json lists, else the classes under a quarter of the pixels."""
    meta = path / "transforms.json" if path is not None else None
    if meta is not None and meta.is_file():
        listed = [o["class"] for o in json.loads(meta.read_text()).get("objects", [])]
        if listed:
            return [o for o in listed if o in scene.class_names]
    return scene_objects(scene.split("test"))


def select(variant: str, ctx, click) -> tuple[torch.Tensor, float]:
    """The selection mask ``[N]`` of one click by ``variant``, and the seconds of a one-time precompute in it."""
    if variant == "eq5":
        v, x, y = click
        ref = Q.click_feature(ctx.model, ctx.scene().cameras, v, x, y, ctx.backend)
        return Q.reference_probabilities(ctx.model, ref) > 0.5, 0.0
    cfg = SelectionConfig(click_grouping=variant == "grouped")
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
    view = scene.images[v].clone()
    view[max(0, y - 1):y + 2, max(0, x - 1):x + 2] = torch.tensor([1.0, 0.0, 0.0])
    t = int(torch.stack([(s == class_id).sum() for s in test.semantics]).argmax())
    truth = (test.semantics[t] == class_id).float()[..., None].expand(-1, -1, 3)
    return side_by_side(view, highlight(model, test.cameras[[t]], mask), truth)


def evaluate_run(run: Path, path: Path | None, variants: list[str], png_dir: Path) -> dict:
    from dff_gs.io.images import save_png

    ctx = Q.QueryContext.open(run)
    scene = ctx.scene()
    if scene.semantics is None:
        raise SystemExit(f"{run}: its scene has no ground-truth semantics to score against")
    test = scene.split("test")
    objects = suite_objects(scene, path)
    clicks = object_clicks(scene, objects)
    out = {"gaussians": ctx.model.num_gaussians, "objects": objects, "clicks": clicks, "variants": {}}
    for variant in variants:
        rows, panels = [], []
        for name in objects:
            c = scene.class_names.index(name)
            t0 = time.perf_counter()
            try:
                mask, build = select(variant, ctx, clicks[name])
            except DffError as err:  # an empty selection: scored as such
                print(f"  {variant} {name}: {err}")
                mask, build = torch.zeros(ctx.model.num_gaussians, dtype=torch.bool), 0.0
            seconds = time.perf_counter() - t0
            if build:  # the first grouped click on this model built the grouping's features and graph
                out["build_s"] = build
            rows.append({"object": name, "selected": int(mask.sum()), "click_s": seconds - build,
                         **score(ctx.model, test, mask, c)})
            panels.append(shot(ctx.model, scene, test, mask, c, clicks[name]))
        save_png(png_dir / f"{variant}.png", np.concatenate(panels, axis=0))
        out["variants"][variant] = rows
    return out


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
        image = scene.images[i].clone()
        if i == v:
            image[max(0, y - 2):y + 3, max(0, x - 2):x + 3] = torch.tensor([1.0, 0.0, 0.0])
        cams = scene.cameras[[i]]
        rows.append(side_by_side(image, highlight(before.model, cams, masks["before"]),
                                 highlight(after.model, cams, masks["after"])))
    save_png(out, np.concatenate(rows, axis=0))
    print(f"{out}: image | before (Eq. 5, {int(masks['before'].sum())} Gaussians) | after (grouped, "
          f"{int(masks['after'].sum())} Gaussians), views {ids}")


def summary_rows(results: dict) -> list[dict]:
    rows = []
    for (scene, teacher), res in results.items():
        for variant, objs in res["variants"].items():
            ious = [o["iou"] for o in objs]
            rows.append({"scene": scene, "teacher": teacher, "variant": variant, "gaussians": res["gaussians"],
                         "mean_iou": float(np.mean(ious)), "min_iou": float(np.min(ious)),
                         "precision": float(np.mean([o["precision"] for o in objs])),
                         "recall": float(np.mean([o["recall"] for o in objs])),
                         "click_s": float(max(o["click_s"] for o in objs)), "build_s": res.get("build_s"),
                         "objects": " ".join(f"{o['object']} {o['iou']:.2f}" for o in objs)})
    return rows


def table(rows: list[dict]) -> str:
    lines = ["| scene | teacher | variant | #Gaussians | mean IoU | min IoU | precision | recall | click s (max) | "
             "grouping build s | IoU per object |", "|" + " --- |" * 3 + " ---: |" * 7 + " --- |"]
    for r in rows:
        build = "-" if r["build_s"] is None or r["variant"] != "grouped" else f"{r['build_s']:.1f}"
        lines.append(f"| {r['scene']} | {r['teacher']} | {r['variant']} | {r['gaussians']:,} | {r['mean_iou']:.3f} | "
                     f"{r['min_iou']:.2f} | {r['precision']:.2f} | {r['recall']:.2f} | {r['click_s']:.2f} | {build} | "
                     f"{r['objects']} |")
    return "\n".join(lines)


def train(run: Path, path: Path | None, overrides: list[str]) -> bool:
    """``python train.py [--data SCENE] --out RUN overrides`` in its own process (skipped when RUN is finished)."""
    if (run / "point_cloud.ply").is_file() and (run / "metrics.json").is_file():
        print(f"{run}: finished run found, not trained again")
        return True
    cmd = [sys.executable, str(ROOT / "train.py"), "--out", str(run), "--quiet"]
    cmd += (["--data", str(path)] if path is not None else []) + overrides
    print(" ".join(cmd[1:]), flush=True)
    return subprocess.run(cmd, cwd=ROOT).returncode == 0


def main(argv: list[str] | None = None) -> int:
    import os

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="runs/bench_click", help="folder for the runs, PNGs and the table")
    ap.add_argument("--scenes", default=",".join(SCENES), help=f"comma-separated subset of {', '.join(SCENES)}")
    ap.add_argument("--teachers", default=",".join(TEACHERS), help=f"comma-separated subset of {', '.join(TEACHERS)}")
    ap.add_argument("--variants", default=",".join(VARIANTS), help=f"comma-separated subset of {', '.join(VARIANTS)}")
    ap.add_argument("--cache", default="", help="where the pybullet scenes are rendered (default $DFF_GS_CACHE/scenes)")
    ap.add_argument("--shot", nargs=4, metavar=("RUN", "VIEW", "X", "Y"),
                    help="instead: before | after PNG of one click on RUN (any scene), written to OUT/click_shot.png")
    ap.add_argument("--shot-before", default=None, help="with --shot: the run 'before' is measured on (default RUN)")
    args = ap.parse_args(argv)
    if args.shot:
        run, click = args.shot[0], tuple(int(v) for v in args.shot[1:])
        click_shot(run, click, Path(args.out) / "click_shot.png", args.shot_before)
        return 0
    out = Path(args.out)
    cache = Path(args.cache or Path(os.environ.get("DFF_GS_CACHE", Path.home() / ".cache" / "dff_gs")) / "scenes")
    variants = [v for v in args.variants.split(",") if v]
    for name in variants:
        if name not in VARIANTS:
            ap.error(f"unknown variant {name!r} (known: {', '.join(VARIANTS)})")
    results = {}
    for scene in [s for s in args.scenes.split(",") if s]:
        if scene not in SCENES:
            ap.error(f"unknown scene {scene!r} (known: {', '.join(SCENES)})")
        path = scene_path(scene, cache)
        for teacher in [t for t in args.teachers.split(",") if t]:
            if teacher not in TEACHERS:
                ap.error(f"unknown teacher {teacher!r} (known: {', '.join(TEACHERS)})")
            run = out / f"{scene}-{teacher}"
            if not train(run, path, TEACHERS[teacher]):
                print(f"{run}: train.py failed, skipped")
                continue
            results[(scene, teacher)] = evaluate_run(run, path, variants, run / "bench_click")
            rows = summary_rows({(scene, teacher): results[(scene, teacher)]})
            print(table(rows), flush=True)
    rows = summary_rows(results)
    text = table(rows)
    print("\n" + text)
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench_click.md").write_text(text + "\n")
    (out / "bench_click.json").write_text(json.dumps(
        {f"{s}-{t}": r for (s, t), r in results.items()}, indent=2, default=list))
    print(f"table: {out / 'bench_click.md'}; PNGs (click | selection | truth) in {out}/*/bench_click/")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Delete (and extract) what the user means, by text and by click, on generated layouts, against ground truth.

Layouts as ``bench_click.py`` (``benchmarks/layout_eval.py``: the generator's regression set by default,
``--fresh N``, ``--seeds``, ``--scenes``; 60 views of 128x96; runs shared with bench_click in ``--runs``). Every
object of a layout is deleted twice through the real edit path (the :class:`EditScript` that ``edit.py RUN
--text NAME --op delete`` / ``--click V X Y --op delete`` builds, with edit.py's defaults, applied by
``apply_script``, nothing written):

- ``text``: by its class name, on the run trained with the labels teacher (``teacher.name=labels``);
- ``click``: by one random click inside its mask (bench_click's second click of the object: a training view
  where it covers >= 30 px, a pixel drawn uniformly in the mask), on the run trained with the labels withheld
  (``data.labels=false``, the default label-free teacher).

Measured on the test views, against the unedited render of the same run:

- *changed*: a true pixel of the object is changed when the edited render is no longer opaque there
  (alpha < 0.5), or shows another surface (depth off by > 1%) or another colour (any channel off by > 0.1):
  pooled over the test views, and the worst test view where the object covers >= 30 px;
- *dPSNR out*: PSNR against the true image over the pixels outside the object's true mask, edited minus
  unedited, pooled over the test views (and the worst view); 0 = untouched;
- *holes*: true object pixels the edited render leaves with alpha < 0.5 (what ``--fill`` closes);
- *edit s*: selection and delete (the click grouping's one-time build per model apart);
- *extract* (the same selection kept alone): *kept* = true object pixels it covers (alpha >= 0.5), pooled;
  *leak* = pixels it covers more than a pixel away from the true mask and not behind the unedited render's
  surface there (depth <= 1.03 x + 2 cm), as a fraction of what it covers.

Floors (issue 29): changed >= 0.95 pooled, >= 0.90 in the worst view, dPSNR out >= -0.5 dB (pooled). Tables
(summary per mode, then per object) printed and in ``OUT/bench_edit.md`` / ``.json``; before | after PNGs for
``--png-layouts`` layouts: per mode a row per object, test view that sees it most: unedited | deleted | true mask.

    python benchmarks/bench_edit.py [--out runs/bench_edit] [--runs runs/layouts] [--modes text,click]
        [--fresh 8] [--seeds 11,12] [--scenes toys,garden] [--fill]

Time (2 cores, 2026-12-07): training ~2 min a layout and teacher (shared with bench_click), then ~1-2 s an object
and mode (selection, delete, 2 x 8 test renders): the regression set 2 min on cached runs, 22 min with its 8
labels runs to train.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
import layout_eval as L  # noqa: E402

from dff_gs import query as Q  # noqa: E402
from dff_gs.core.cameras import Cameras  # noqa: E402
from dff_gs.edit import ops  # noqa: E402
from dff_gs.core.errors import DffError  # noqa: E402
from dff_gs.core.utils import as_rgb  # noqa: E402
from dff_gs.render import render  # noqa: E402

MODES = {"text": ("labels", ["teacher.name=labels"]), "click": ("default", ["data.labels=false"])}
FLOORS = {"changed": 0.95, "changed_worst": 0.90, "dpsnr_out": -0.5}


@dataclass
class Truth:
    """The test views and what the unedited model renders there."""

    cams: Cameras
    images: torch.Tensor  # [C, H, W, 3]
    semantics: torch.Tensor  # [C, H, W]
    rgb: torch.Tensor  # [C, H, W, 3] unedited render
    alpha: torch.Tensor  # [C, H, W]
    depth: torch.Tensor  # [C, H, W]


@torch.no_grad()
def render_all(model, cams, backend="auto") -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """RGB [C, H, W, 3], alpha [C, H, W] and depth [C, H, W] of ``model`` on every camera."""
    rgb, alpha, depth = [], [], []
    for i in range(len(cams)):
        out = render(model, cams[[i]], with_features=False, backend=backend)
        rgb.append(out.rgb[0].clamp(0, 1))
        alpha.append(out.alpha[0, ..., 0])
        depth.append(out.depth[0, ..., 0])
    return torch.stack(rgb), torch.stack(alpha), torch.stack(depth)


def load_truth(ctx) -> Truth:
    test = ctx.scene().split("test")
    return Truth(test.cameras, as_rgb(test.images), test.semantics, *render_all(ctx.model, test.cameras, ctx.backend))


def edit_script(run: Path, query: list[str], fill: bool):
    """The :class:`EditScript` that ``edit.py RUN QUERY --op delete [--fill]`` builds (its defaults included)."""
    from dff_gs.cli.edit import build_parser, script_from_args

    args = build_parser().parse_args([str(run), *query, "--op", "delete", "--out", "unused.ply", "--quiet"]
                                     + (["--fill"] if fill else []))
    return script_from_args(args)


def pooled_psnr(a: torch.Tensor, b: torch.Tensor, where: torch.Tensor) -> float:
    """PSNR of ``a`` against ``b`` (``[..., H, W, 3]``, 0..1) over the pixels ``where  # [..., H, W]``."""
    mse = ((a - b) ** 2).mean(-1)[where].mean().clamp_min(1e-10)
    return float(-10 * torch.log10(mse))


def dilate(mask: torch.Tensor, r: int = 1) -> torch.Tensor:
    """Binary dilation of ``mask  # [C, H, W]`` by a (2r+1)^2 square."""
    return F.max_pool2d(mask[:, None].float(), 2 * r + 1, stride=1, padding=r)[:, 0] > 0


def measure_delete(t: Truth, edited, k: int, backend: str) -> tuple[dict, torch.Tensor]:
    """The delete figures of the module docstring for class ``k``; and the edited renders ``[C, H, W, 3]``."""
    gt = t.semantics == k
    rgb, alpha, depth = render_all(edited, t.cams, backend)
    changed = gt & ((alpha < 0.5) | ((depth - t.depth).abs() > 0.01 * t.depth)
                    | ((rgb - t.rgb).abs().amax(-1) > 0.1))
    area = gt.flatten(1).sum(1)
    views = [i for i in range(len(t.cams)) if area[i] >= L.MIN_PX] or [int(area.argmax())]
    out = ~gt
    dps = [pooled_psnr(rgb[i], t.images[i], out[i]) - pooled_psnr(t.rgb[i], t.images[i], out[i])
           for i in range(len(t.cams))]
    row = {"gt_px": int(gt.sum()), "views": len(views),
           "changed": int(changed.sum()) / max(int(gt.sum()), 1),
           "changed_worst": min(int(changed[i].sum()) / int(area[i]) for i in views),
           "dpsnr_out": pooled_psnr(rgb, t.images, out) - pooled_psnr(t.rgb, t.images, out),
           "dpsnr_out_worst": min(dps), "holes": int((gt & (alpha < 0.5)).sum()) / max(int(gt.sum()), 1)}
    return row, rgb


def measure_extract(t: Truth, sub, k: int, backend: str) -> dict:
    """*kept* and *leak* of the selection ``sub`` (a model) for class ``k``."""
    gt = t.semantics == k
    _, alpha, depth = render_all(sub, t.cams, backend)
    cover = alpha >= 0.5
    visible = (t.alpha < 0.5) | (depth <= 1.03 * t.depth + 0.02)
    stray = cover & ~dilate(gt, 1) & visible
    return {"kept": int((cover & gt).sum()) / max(int(gt.sum()), 1),
            "leak": int(stray.sum()) / max(int(cover.sum()), 1)}


def delete_object(ctx, run: Path, t: Truth, obj: dict, query: list[str], fill: bool) -> tuple[dict, object]:
    """Delete ``obj`` selected by ``query`` as edit.py does: its row and the deleted render of its best view."""
    from dff_gs.edit import apply_script

    t0 = time.perf_counter()
    try:
        outcome = apply_script(ctx, edit_script(run, query, fill))
    except DffError as err:  # nothing selected: nothing changed
        print(f"  {obj['class']} ({' '.join(query)}): {err}")
        return {"error": str(err), "selected": 0, "changed": 0.0, "changed_worst": 0.0, "dpsnr_out": 0.0,
                "dpsnr_out_worst": 0.0, "holes": 0.0, "kept": 0.0, "leak": 0.0, "edit_s": 0.0}, t.rgb
    seconds = time.perf_counter() - t0
    row, rgb = measure_delete(t, outcome.model, obj["class_id"], ctx.backend)
    sel = outcome.selection
    row.update(measure_extract(t, ops.extract(ctx.model, sel.mask).model, obj["class_id"], ctx.backend))
    build = max((float(q.get("grouping_build_seconds", 0.0)) for q in sel.queries), default=0.0)
    row.update(selected=sel.count, edit_s=seconds - build, build_s=build,  # the grouping's one-time build apart
               **{f"sel_{k}": v for k, v in sel.stats.items()})
    return row, rgb


def passes(r: dict) -> dict:
    return {k: r.get(k, 0.0) >= v for k, v in FLOORS.items()}


def evaluate_layout(layout: str, path: Path | None, mode: str, run: Path, args, png_dir: Path | None) -> list[dict]:
    """Every object of ``layout`` deleted by ``mode`` on ``run``: one row each."""
    from dff_gs.io.images import save_png, side_by_side

    ctx = Q.QueryContext.open(run)
    scene = ctx.scene()
    t = load_truth(ctx)
    rows, panels = [], []
    for obj in L.layout_objects(scene, path):
        if mode == "text":
            query = ["--text", obj["class"]]
        else:
            clicks = L.draw_clicks(scene, obj["class_id"], 2, args.click_seed, layout)
            if not clicks:
                print(f"  {layout}: no training view sees {obj['class']}, not clicked")
                continue
            c = clicks[-1]
            query = ["--click", str(c["view"]), str(c["x"]), str(c["y"])]
        row, rgb = delete_object(ctx, run, t, obj, query, args.fill)
        rows.append({"layout": layout, "mode": mode, "object": obj["class"], "type": obj["type"],
                     "multi_part": obj["multi_part"], "query": " ".join(query[1:]), **row})
        v = int((t.semantics == obj["class_id"]).flatten(1).sum(1).argmax())
        truth = (t.semantics[v] == obj["class_id"]).float()[..., None].expand(-1, -1, 3)
        panels.append(side_by_side(t.rgb[v], rgb[v], truth))
    if png_dir is not None and panels:
        save_png(png_dir / f"{layout}_{mode}_delete.png", np.concatenate(panels, axis=0))
    return rows


def summary_table(rows: list[dict], sets: dict) -> str:
    head = ["set", "mode", "objects", "changed pooled: mean (min)", "worst view: mean (min)", "dPSNR out: mean (worst)",
            "holes", "kept", "leak", "edit s mean", "objects meeting floors (changed / worst view / dPSNR)"]
    out = []
    for set_, layouts in sets.items():
        for mode in MODES:
            rs = [r for r in rows if r["mode"] == mode and r["layout"] in layouts]
            if not rs:
                continue
            col = lambda k: [r[k] for r in rs]  # noqa: E731
            meet = [sum(passes(r)[k] for r in rs) for k in FLOORS]
            out.append([set_, mode, str(len(rs)), f"{np.mean(col('changed')):.3f} ({min(col('changed')):.3f})",
                        f"{np.mean(col('changed_worst')):.3f} ({min(col('changed_worst')):.3f})",
                        f"{np.mean(col('dpsnr_out')):+.2f} ({min(col('dpsnr_out')):+.2f})",
                        f"{np.mean(col('holes')):.3f}", f"{np.mean(col('kept')):.3f}", f"{np.mean(col('leak')):.3f}",
                        f"{np.mean(col('edit_s')):.1f}", " / ".join(f"{m}/{len(rs)}" for m in meet)])
    return L.markdown(head, out, "ll" + "r" * 8 + "l")


def object_table(rows: list[dict]) -> str:
    head = ["layout", "mode", "object (type)", "query", "#sel", "changed pooled", "worst view",
            "dPSNR out (worst view)", "holes", "kept", "leak", "edit s", "floors"]
    out = []
    for r in rows:
        p = passes(r)
        out.append([r["layout"], r["mode"], f"{r['object']} ({r['type']})", r["query"], str(r["selected"]),
                    f"{r['changed']:.3f}", f"{r['changed_worst']:.3f}",
                    f"{r['dpsnr_out']:+.2f} ({r['dpsnr_out_worst']:+.2f})", f"{r['holes']:.3f}", f"{r['kept']:.3f}",
                    f"{r['leak']:.3f}", f"{r['edit_s']:.1f}",
                    "pass" if all(p.values()) else "FAIL " + ",".join(k for k, v in p.items() if not v)])
    return L.markdown(head, out, "llll" + "r" * 8 + "l")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    L.common_args(ap, "runs/bench_edit")
    ap.add_argument("--modes", default=",".join(MODES), help="text (labels teacher), click (labels withheld)")
    ap.add_argument("--fill", action="store_true", help="delete with --fill (as edit.py --fill)")
    args = ap.parse_args(argv)
    modes = [m for m in args.modes.split(",") if m]
    for m in modes:
        if m not in MODES:
            ap.error(f"unknown mode {m!r} (known: {', '.join(MODES)})")
    sets = L.layout_sets(args.scenes, args.fresh, args.seeds, args.regression)
    cache, out, rows, t_start = Path(args.cache) if args.cache else L.default_cache(), Path(args.out), [], \
        time.perf_counter()
    for layouts in sets.values():
        for i, layout in enumerate(layouts):
            path = L.scene_path(layout, cache)
            for mode in modes:
                teacher, overrides = MODES[mode]
                run = L.run_dir(Path(args.runs), layout, path, teacher)
                if not L.train(run, path, overrides):
                    print(f"{run}: train.py failed, skipped")
                    continue
                new = evaluate_layout(layout, path, mode, run, args, out / "png" if i < args.png_layouts else None)
                rows += new
                print(object_table(new), flush=True)
    text = "\n\n".join([summary_table(rows, sets), object_table(rows)])
    print(f"\n{text}\n\nFloors: changed >= {FLOORS['changed']} pooled, >= {FLOORS['changed_worst']} in the worst view, "
          f"dPSNR out >= {FLOORS['dpsnr_out']} dB; {time.perf_counter() - t_start:.0f} s")
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench_edit.md").write_text(text + "\n")
    meta = {"sets": sets, "click_seed": args.click_seed, "fill": args.fill, "floors": FLOORS,
            "seconds": time.perf_counter() - t_start}
    (out / "bench_edit.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1, default=str))
    print(f"PNGs (unedited | deleted | true mask, per object) in {out}/png/")
    return 0


if __name__ == "__main__":
    sys.exit(main())

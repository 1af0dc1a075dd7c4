"""Edits of queried objects on a trained run, measured against ground truth on the held-out (test) views.

For each object class: select it with a text query through the edit API (``select_gaussians``: Eq. 5 with
p > 0.5, then the 3D cleanup, exactly what ``edit.py --text NAME`` does), then

- **delete**: render the edited scene from every test view. A ground-truth pixel of the object counts as
  *still there* when the edited render covers it (alpha >= 0.5) and the render's argmax segmentation (decoded
  rendered features against the scene's class names, as the training evaluation segments) labels it as
  the object. *removed* = 1 - still there / GT pixels, per view; the table shows the worst view (every
  test view that sees the object) and all views pooled. *dPSNR out* = PSNR against the GT image over the
  pixels outside the object's GT mask, edited minus unedited render (worst view; 0 = untouched).
- **extract**: render only the selection. *kept* = GT object pixels it covers (alpha >= 0.5) / GT pixels
  (worst view, and pooled). Because the 3D segmentation itself misses parts of some objects (the chairs'
  thin metal legs fall between the degraded teacher's 4-pixel cells and are distilled as floor), *kept of
  segmented* also divides by the GT object pixels that the unedited model's segmentation labels as the
  object (what a selection by feature can reach at best); the floor is on this one, and *seg. recall
  before* shows the gap. *leak* = pixels it covers more than one pixel away from the GT mask that are not
  explained by occlusion (the extracted surface is not behind the GT surface: depth <= 1.03 x GT depth +
  2 cm), as a fraction of the pixels it covers (pooled).
- **move**: translate the selection by ``--offset`` and render the selection alone before and after. Where
  both masks (alpha >= 0.5) lie inside the image, the shift of the mask's centroid is compared with the
  expected one: the per-Gaussian projected displacement, composited like colour and averaged over the mask.
  *move err* = mean |measured - expected| in pixels (max in brackets), *expected* = mean |expected| shift.

Also saves, per object, GT | unedited | deleted | extracted | moved for the test view that sees most of it.
Selection modes (``--modes gaussian,lifted,combined``, :class:`dff_gs.edit.SelectionConfig`): each Gaussian's own
p, the 2D query rendered over training views and lifted onto the Gaussians, or both; one table per mode.
Objects (``--objects auto``): every class of the scene covering less than a quarter of the test pixels.
``--query click``: each object is selected by a click instead of its name (the training view where its true
mask is largest, at the mask's most interior pixel, as ``bench_click.py``), as ``edit.py --click V X Y``
does. On a run whose teacher has no text encoder (a scene trained without labels) the segmentation above is
not available: a GT object pixel then counts as *still there* when the edited render shows there what the
unedited one did (depth within 1% and colour within 0.1: the object's surface, not what it hid), and *kept
of segmented* divides by the GT pixels the unedited render covers.
Usage: ``python benchmarks/bench_edit.py RUN [--data SCENE] [--objects sofa,table,...] [--modes ...]
[--query text|click] [--out DIR]``.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from dff_gs import query as Q
from dff_gs.cameras import Cameras
from dff_gs.edit import SelectionConfig, ops, select_gaussians
from dff_gs.eval.metrics import psnr
from dff_gs.render import render
from dff_gs.train.evaluate import predict_labels

FLOORS = {"removed": 0.95, "dpsnr": -1.0, "kept": 0.95, "leak": 0.05, "move_px": 1.0}


@torch.no_grad()
def render_all(model, cams, class_emb=None, backend="auto"):
    """RGB [C,H,W,3], alpha [C,H,W], depth [C,H,W] and (with class_emb) argmax labels [C,H,W]."""
    rgb, alpha, depth, labels = [], [], [], []
    for i in range(len(cams)):
        out = render(model, cams[[i]], with_features=class_emb is not None and model.feature_dim > 0, backend=backend)
        rgb.append(out.rgb[0].clamp(0, 1))
        alpha.append(out.alpha[0, ..., 0])
        depth.append(out.depth[0, ..., 0])
        if class_emb is not None:
            labels.append(predict_labels(model.decode(out.features[0]), class_emb))
    stack = lambda xs: torch.stack(xs) if xs else None  # noqa: E731
    return stack(rgb), stack(alpha), stack(depth), stack(labels)


def centroid(mask):
    ys, xs = torch.nonzero(mask, as_tuple=True)
    return torch.stack([xs.float().mean() + 0.5, ys.float().mean() + 0.5])


def padded(cams, pad: int):
    """The same cameras with ``pad`` more pixels on every side (so a moved object is not cut off)."""
    Ks = cams.Ks.clone()
    Ks[:, 0, 2] += pad
    Ks[:, 1, 2] += pad
    return Cameras(cams.viewmats, Ks, cams.width + 2 * pad, cams.height + 2 * pad)


def dilate(mask, r: int = 1):
    """Binary dilation of ``mask  # [C, H, W]`` by a (2r+1)^2 square."""
    return F.max_pool2d(mask[:, None].float(), 2 * r + 1, stride=1, padding=r)[:, 0] > 0


@torch.no_grad()
def move_error(sub, moved, offset, cams):
    """(errors [px], expected shifts [px]) of the mask centroid over the views where it is fully inside
    the (padded) image."""
    cams = padded(cams, 48)
    means = sub.get_means()
    uv0, z0 = cams.project(means)
    uv1, z1 = cams.project(means + torch.tensor(offset))
    flow = uv1 - uv0  # [C, N, 2]
    errs, exp = [], []
    for i in range(len(cams)):
        if (z0[i] <= 0.05).any() or (z1[i] <= 0.05).any():
            continue
        a0 = render(sub, cams[[i]], with_features=False).alpha[0, ..., 0] >= 0.5
        a1 = render(moved, cams[[i]], with_features=False).alpha[0, ..., 0] >= 0.5
        touches = lambda m: bool(m[0].any() or m[-1].any() or m[:, 0].any() or m[:, -1].any())  # noqa: E731
        if a0.sum() < 20 or a1.sum() < 20 or touches(a0) or touches(a1):
            continue
        img, alpha = Q.render_values(sub, cams[[i]], flow[i])
        expected = (img[0][a0] / alpha[0][a0].clamp_min(1e-6)).mean(0)
        measured = centroid(a1) - centroid(a0)
        errs.append(float((measured - expected).norm()))
        exp.append(float(expected.norm()))
    return errs, exp


@dataclass
class Truth:
    """The test views and what the unedited model renders there."""

    cams: Cameras
    images: torch.Tensor  # [C, H, W, 3]
    semantics: torch.Tensor  # [C, H, W]
    depths: torch.Tensor  # [C, H, W] (None: the scene has no depth maps; leak then counts occluded pixels too)
    class_emb: torch.Tensor  # [K, D] (None: the teacher has no text encoder)
    base_rgb: torch.Tensor  # [C, H, W, 3]
    base_lab: torch.Tensor  # [C, H, W] (None without class_emb)
    base_alpha: torch.Tensor  # [C, H, W]
    base_depth: torch.Tensor  # [C, H, W]


def evaluate_object(model, mask, k: int, truth: Truth, offset, scene=None) -> tuple[dict, dict]:
    """Delete / extract / move the selection ``mask`` of class ``k``: the row of the table and renders. With
    ``scene`` (the training scene), also delete with fill: *holes* = GT object pixels the edited render leaves
    with alpha < 0.5 (pooled over the test views; every pixel of these scenes has a surface behind the object:
    floor, wall, table or the sky the Gaussians model), without and with fill."""
    t = truth
    gt = t.semantics == k  # [C, H, W]
    seen = [i for i in range(len(t.cams)) if gt[i].any()]
    # GT object pixels the unedited model renders as the object (without labels: that it covers)
    segmented = gt & (t.base_lab == k) if t.base_lab is not None else gt & (t.base_alpha >= 0.5)
    # delete
    deleted = ops.delete(model, mask).model
    d_rgb, d_alpha, d_depth, d_lab = render_all(deleted, t.cams, t.class_emb)
    if d_lab is not None:  # the edited render still segments it as the object
        same = d_lab == k
    else:  # without labels: the edited render still shows the unedited surface there (same depth, same colour)
        same = (((d_depth - t.base_depth).abs() <= 0.01 * t.base_depth)
                & ((d_rgb - t.base_rgb).abs().amax(-1) <= 0.1))
    still = gt & (d_alpha >= 0.5) & same
    holes = (gt & (d_alpha < 0.5)).sum().item() / gt.sum().item()
    removed = [1 - still[i].sum().item() / gt[i].sum().item() for i in seen]
    dps = [psnr(d_rgb[i], t.images[i], ~gt[i]) - psnr(t.base_rgb[i], t.images[i], ~gt[i]) for i in range(len(t.cams))]
    # extract
    sub = ops.extract(model, mask).model
    e_rgb, e_alpha, e_depth, _ = render_all(sub, t.cams)
    cover = e_alpha >= 0.5
    kept = [(cover[i] & gt[i]).sum().item() / gt[i].sum().item() for i in seen]
    kept_seg = [(cover[i] & segmented[i]).sum().item() / max(segmented[i].sum().item(), 1) for i in seen]
    occluded = e_depth > 1.03 * t.depths + 0.02 if t.depths is not None else torch.zeros_like(cover)
    stray = cover & ~dilate(gt, 1) & ~occluded
    # move
    moved = ops.translate(sub, torch.ones(sub.num_gaussians, dtype=torch.bool), offset).model
    errs, exp = move_error(sub, moved, offset, t.cams)
    row = {"views": len(seen), "gt_px": int(gt.sum()), "seg_recall_before": segmented.sum().item() / gt.sum().item(),
           "removed_min": min(removed), "removed_all": 1 - still.sum().item() / gt.sum().item(), "holes": holes,
           "dpsnr_out_min": min(dps), "dpsnr_out_mean": sum(dps) / len(dps),
           "kept_min": min(kept), "kept_all": (cover & gt).sum().item() / gt.sum().item(),
           "kept_seg_min": min(kept_seg), "kept_seg_all": (cover & segmented).sum().item() / segmented.sum().item(),
           "leak": stray.sum().item() / max(cover.sum().item(), 1),
           "move_views": len(errs), "move_err_mean": sum(errs) / max(len(errs), 1),
           "move_err_max": max(errs, default=float("nan")), "move_expected": sum(exp) / max(len(exp), 1)}
    v = max(seen, key=lambda i: gt[i].sum().item())
    m_rgb = render_all(ops.translate(model, mask, offset).model, t.cams[[v]])[0][0]  # the shown view only
    shots = {"view": v, "deleted": d_rgb[v], "deleted_labels": None if d_lab is None else d_lab[v],
             "extracted": e_rgb[v], "moved": m_rgb}
    if scene is not None:
        from dff_gs.edit.fill import fill_deleted

        t0 = time.perf_counter()
        filled, info = fill_deleted(model, mask, deleted, scene)
        f_rgb, f_alpha, _, _ = render_all(filled, t.cams)
        row.update(holes_fill=(gt & (f_alpha < 0.5)).sum().item() / gt.sum().item(), fill_s=time.perf_counter() - t0,
                   fill_new=info["new_gaussians"])
        shots["filled"] = f_rgb[v]
    return row, shots


def passes(r: dict) -> bool:
    return (r["removed_min"] >= FLOORS["removed"] and r["dpsnr_out_min"] >= FLOORS["dpsnr"]
            and r["kept_seg_min"] >= FLOORS["kept"] and r["leak"] <= FLOORS["leak"]
            and r["move_err_mean"] <= FLOORS["move_px"])


def load_truth(ctx) -> Truth:
    scene = ctx.scene().split("test")
    teacher = ctx.teacher if (ctx.meta.get("teacher") or {}).get("name") not in (None, "none") else None
    class_emb = (F.normalize(teacher.encode_text(scene.class_names).float(), dim=-1)
                 if getattr(teacher, "supports_text", False) else None)
    base_rgb, base_alpha, base_depth, base_lab = render_all(ctx.model, scene.cameras, class_emb)
    return Truth(scene.cameras, scene.images, scene.semantics, scene.depths, class_emb, base_rgb, base_lab,
                 base_alpha, base_depth)


def interior_pixel(mask: np.ndarray) -> tuple[int, int]:
    """``(x, y)`` of the pixel of ``mask  # [H, W] bool`` farthest from its border (the image edge counts)."""
    dist = cv2.distanceTransform(np.pad(mask.astype(np.uint8), 1), cv2.DIST_L2, 5)[1:-1, 1:-1]
    y, x = np.unravel_index(int(np.argmax(dist)), dist.shape)
    return int(x), int(y)


def object_clicks(scene, objects: list[str]) -> dict[str, tuple[int, int, int]]:
    """Per object: ``(view, x, y)``, the training view where its true mask is largest, at its interior pixel."""
    out = {}
    for name in objects:
        c = scene.class_names.index(name)
        areas = [int((scene.semantics[i] == c).sum()) for i in scene.train_ids]
        v = scene.train_ids[int(np.argmax(areas))]
        out[name] = (v, *interior_pixel((scene.semantics[v] == c).numpy()))
    return out


def scene_objects(scene, max_share: float = 0.25) -> list[str]:
    """The classes that are objects: every class present in the test views that covers on average less than
    ``max_share`` of the pixels (not floor, walls, sky or grass)."""
    sem = scene.semantics
    share = torch.bincount(sem[sem >= 0].reshape(-1), minlength=len(scene.class_names)).float() / sem.numel()
    return [n for n, f in zip(scene.class_names, share.tolist()) if 0 < f < max_share]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run")
    ap.add_argument("--data", default=None)
    ap.add_argument("--objects", default="auto", help="comma-separated class names, or auto: every class that covers "
                                                      "less than a quarter of the test pixels")
    ap.add_argument("--modes", default="combined", help="selection modes to compare (gaussian, lifted, combined)")
    ap.add_argument("--offset", default="0.25,0,0", help="translation of the move test (x,y,z)")
    ap.add_argument("--out", default=None, help="folder for the PNGs and bench_edit.json (default RUN/bench_edit)")
    ap.add_argument("--no-cleanup", action="store_true", help="thresholded selection only (for comparison)")
    ap.add_argument("--fill", action="store_true", help="also delete with fill and measure the holes left")
    ap.add_argument("--query", default="text", choices=["text", "click"],
                    help="select each object by its name (text) or by a click on it (see the docstring)")
    args = ap.parse_args()
    from dff_gs.io.images import colorize_labels, save_png, side_by_side

    offset = [float(v) for v in args.offset.split(",")]
    ctx = Q.QueryContext.open(args.run, data=args.data)
    model = ctx.model
    scene = ctx.scene().split("test")
    names = scene.class_names
    truth = load_truth(ctx)
    out_dir = Path(args.out) if args.out else Path(args.run) / "bench_edit"
    objects = (scene_objects(scene) if args.objects == "auto"
               else [o.strip() for o in args.objects.split(",") if o.strip()])
    clicks = object_clicks(ctx.scene(), objects) if args.query == "click" else {}
    results = {}
    for mode in [m.strip() for m in args.modes.split(",") if m.strip()]:
        cfg = SelectionConfig(cleanup=not args.no_cleanup, mode=mode)
        rows = results[mode] = []
        for obj in objects:
            t0 = time.perf_counter()
            spec = Q.QuerySpec("click", clicks[obj]) if args.query == "click" else Q.QuerySpec("text", obj)
            sel = select_gaussians(ctx, [spec], cfg)
            sel_s = time.perf_counter() - t0
            row, shots = evaluate_object(model, sel.mask, names.index(obj), truth, offset,
                                         ctx.scene() if args.fill else None)
            rows.append({"object": obj, "selected": sel.count, "select_s": sel_s,
                         **{f"sel_{k}": v for k, v in sel.stats.items()}, **row})
            v = shots["view"]
            seg = (torch.from_numpy(colorize_labels(shots["deleted_labels"], len(names))).float() / 255
                   if shots["deleted_labels"] is not None else shots["deleted"])
            save_png(out_dir / f"{mode}_{obj.replace(' ', '_')}_{scene.image_names[v].replace('/', '_')}.png",
                     side_by_side(truth.images[v], truth.base_rgb[v], shots["deleted"],
                                  *([shots["filled"]] if "filled" in shots else []), seg, shots["extracted"],
                                  shots["moved"]))
        print_table(args.run, model, truth, cfg, offset, rows, args.query)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "bench_edit.json").write_text(json.dumps(results, indent=2))
    print(f"PNGs (GT | unedited | deleted | [filled |] deleted segmentation | extracted | moved) and JSON in {out_dir}")


def print_table(run, model, truth, cfg, offset, rows, query="text") -> None:
    how = ("click grouped in 3D" if cfg.click_grouping else f"click, p > {cfg.threshold}") if query == "click" else \
        f"text query, mode {cfg.mode}, p > {cfg.threshold}"
    print(f"\nRun {run}: {model.num_gaussians} Gaussians, {len(truth.cams)} test views; selection = {how}"
          + (", 3D cleanup" if cfg.cleanup else ", no cleanup")
          + f"; move offset {offset} m\n")
    print("| object | #sel (thresholded / -vote / -pieces / +grown) | views | seg. recall before | "
          "removed worst (all) | dPSNR out worst (mean) | kept worst (all) | kept of segmented worst (all) | leak | "
          "move err px mean (max) [views] | expected px |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        print(f"| {r['object']} | {r['selected']} ({r['sel_thresholded']} / -{r['sel_dropped_vote']} / "
              f"-{r['sel_dropped_components']} / +{r['sel_grown']}) | {r['views']} | {r['seg_recall_before']:.3f} | "
              f"{r['removed_min']:.3f} ({r['removed_all']:.3f}) | "
              f"{r['dpsnr_out_min']:+.2f} ({r['dpsnr_out_mean']:+.2f}) | "
              f"{r['kept_min']:.3f} ({r['kept_all']:.3f}) | {r['kept_seg_min']:.3f} ({r['kept_seg_all']:.3f}) | "
              f"{r['leak']:.3f} | {r['move_err_mean']:.2f} ({r['move_err_max']:.2f}) [{r['move_views']}] | "
              f"{r['move_expected']:.1f} |")
    print(f"\nFloors: removed >= {FLOORS['removed']} in every view, dPSNR out >= {FLOORS['dpsnr']} dB in every view, "
          f"kept (of the segmented object) >= {FLOORS['kept']} in every view, leak <= {FLOORS['leak']}, move err <= "
          f"{FLOORS['move_px']} px: " + ", ".join(f"{r['object']} {'pass' if passes(r) else 'FAIL'}" for r in rows))
    print("Selection time per query (s): " + ", ".join(f"{r['object']} {r['select_s']:.2f}" for r in rows))
    print("Holes (GT object pixels with alpha < 0.5 after delete" + (" / with fill" if "holes_fill" in rows[0] else "")
          + "): " + ", ".join(f"{r['object']} {r['holes']:.3f}" + (f" / {r['holes_fill']:.3f} ({r['fill_s']:.0f} s, "
                                                                     f"+{r['fill_new']})" if "holes_fill" in r else "")
                              for r in rows))


if __name__ == "__main__":
    main()

"""``python -m dff_gs.query NERF_RUN (--text T | --labels A,B,.. | --patch IMG | --click V X Y) [--op OP] [--out DIR]``

Queries a NeRF run (``train.backbone=nerf``) through Eq. 5, as ``python -m dff_gs.query`` does Gaussians:
prints how much of the field's occupied space the query selects; with ``--out`` writes, for each view of
the scene's split, the 2D segmentation over the render — or, with ``--op delete | extract | recolor``, the
render with that edit applied at render time — and ``selection.json``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from dff_gs.errors import ConfigError, run_cli


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m dff_gs.query (a NeRF run)", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", help="NeRF run folder or nerf_model.pt")
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--text", help="text query (needs a teacher with a text encoder)")
    g.add_argument("--labels", help="comma-separated label set: full 2D segmentation by argmax of Eq. 5")
    g.add_argument("--patch", help="image crop (PNG/JPG) encoded by the teacher")
    g.add_argument("--click", nargs=3, type=int, metavar=("VIEW", "X", "Y"), help="pixel of a view of the scene")
    p.add_argument("--negatives", default="", help="comma-separated extra competing labels for --text")
    p.add_argument("--threshold", type=float, default=0.5, help="selected where p(query|x) is above this")
    p.add_argument("--op", default="none", choices=("none", "delete", "extract", "recolor"), help="render-time edit")
    p.add_argument("--color", default="1,0,0", help="recolor: r,g,b in [0, 1]")
    p.add_argument("--data", help="scene for --click and renders (default: the scene the run was trained on)")
    p.add_argument("--split", default="test", help="views to render with --out: train | test | all")
    p.add_argument("--out", help="folder for PNGs and selection.json")
    p.add_argument("--device", default="cpu", help="cpu | cuda")
    return p


def run_query(args) -> dict:
    from dff_gs.data import load_scene
    from dff_gs.nerf import load_nerf
    from dff_gs.nerf import query as NQ
    from dff_gs.nerf.edit import SegmentationEdit
    from dff_gs.query import (click_feature, label_list, patch_feature, reference_query_embeddings, text_negatives,
                              text_query_embeddings)
    from dff_gs.runs import run_scene_options
    from dff_gs.runs import teacher_from_meta

    model, meta = load_nerf(args.model, map_location=args.device)
    model.eval()
    names = (meta.get("teacher") or {}).get("class_names")
    teacher = None if args.click else teacher_from_meta(meta)
    if teacher is None and not args.click:
        raise ConfigError(f"{args.model}: no teacher recorded with this model; only --click works")
    scene_path = args.data or meta.get("scene")
    scene = None
    if args.click or args.out:
        if not scene_path:
            raise ConfigError("no scene: pass --data SCENE (the model does not name one)")
        scene = load_scene(scene_path, **run_scene_options(args.model))  # as the run loaded it
    summary: dict = {"model": str(args.model)}
    labels = None
    if args.text is not None:
        negs = text_negatives(teacher.encode_text, args.text, names, list(label_list(args.negatives)))
        queries = text_query_embeddings(teacher.encode_text, args.text, negs)
        summary.update(query=args.text, negatives=negs)
    elif args.labels is not None:
        labels = list(label_list(args.labels))
        if len(labels) < 2:
            raise ConfigError("--labels needs at least two labels")
        queries = teacher.encode_text(labels).float()
        summary["labels"] = labels
    elif args.patch is not None:
        from dff_gs.data.image_io import load_rgb

        patch = patch_feature(teacher, load_rgb(Path(args.patch)))
        queries = reference_query_embeddings(model.content_features(), patch)
        summary["patch"] = args.patch
    else:
        v, x, y = args.click
        queries = reference_query_embeddings(model.content_features(), click_feature(model, scene.cameras, v, x, y))
        summary["click"] = [v, x, y]
    queries = queries.to(model.device)
    pts = NQ.field_points(model, max_points=10**9)
    probs = NQ.point_probabilities(model, pts, queries)
    if labels is None:
        summary["selected_cells"] = int((probs[:, 0] > args.threshold).sum())
        summary["occupied_cells"] = len(pts)
    else:
        summary["cells_per_label"] = {n: int((probs.argmax(-1) == i).sum()) for i, n in enumerate(labels)}
    if args.out:
        if labels is not None and args.op != "none":
            raise ConfigError("--op edits one query's selection: use --text, --patch or --click")
        edit = None
        if args.op != "none":
            color = torch.tensor([float(c) for c in args.color.split(",")]) if args.op == "recolor" else None
            edit = SegmentationEdit(queries, args.op, args.threshold, color)
        _write_renders(args, model, scene.split(args.split), queries, labels is not None, edit)
    return summary


@torch.no_grad()
def _write_renders(args, model, scene, queries, is_label_set: bool, edit) -> None:
    from dff_gs.io.images import colorize_labels, save_png
    from dff_gs.query import label_probabilities

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(scene.image_names):
        cams = scene.cameras[[i]]
        if edit is not None:
            img = model.render(cams, with_features=False, edit=edit).rgb[0].clamp(0, 1).cpu()
        else:
            r = model.render(cams, with_features=True)
            p = label_probabilities(model.decode(r.features[0]), queries)
            seg = p.argmax(-1) if is_label_set else (p[..., 0] > args.threshold).long()
            k = len(queries) if is_label_set else 2
            colours = torch.from_numpy(colorize_labels(seg.cpu(), k)).float() / 255.0
            img = 0.5 * colours + 0.5 * r.rgb[0].clamp(0, 1).cpu()
        save_png(out / f"{name.replace('/', '_')}.png", img)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    def job() -> dict:
        summary = run_query(args)
        if args.out:
            from dff_gs.utils import atomic_write_path

            with atomic_write_path(Path(args.out) / "selection.json") as tmp:
                tmp.write_text(json.dumps(summary, indent=2))
        return summary

    return run_cli(job, lambda summary: json.dumps(summary, indent=2))

"""``python -m dff_gs.query RUN_OR_PLY (--text T | --labels A,B,.. | --patch IMG | --click V X Y | --cluster K)``

Prints how many Gaussians a query selects; with ``--out DIR`` also writes, for each view of the scene's
split, the query rendered as a 2D segmentation (PNG) and ``selection.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from dff_gs.errors import ConfigError, DffError
from dff_gs import query as Q


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m dff_gs.query", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", help="run folder or PLY")
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--text", help="text query (needs a teacher with a text encoder)")
    g.add_argument("--labels", help="comma-separated label set: full segmentation by argmax of Eq. 5")
    g.add_argument("--patch", help="image crop (PNG/JPG) encoded by the teacher")
    g.add_argument("--click", nargs=3, type=int, metavar=("VIEW", "X", "Y"), help="pixel of a view of --data")
    g.add_argument("--cluster", type=int, metavar="K", help="k-means over Gaussian features")
    p.add_argument("--negatives", default="", help="comma-separated extra competing labels for --text")
    p.add_argument("--threshold", type=float, default=0.5, help="select Gaussians with p(query|x) above this")
    p.add_argument("--data", help="scene for --click and renders (default: the scene the run was trained on)")
    p.add_argument("--split", default="test", help="views to render with --out: train | test | all")
    p.add_argument("--out", help="folder for segmentation PNGs and selection.json")
    p.add_argument("--backend", default="auto", help="renderer: auto | torch | gsplat")
    return p


def _scene(args, meta, cache: dict):
    """The scene of ``--data`` (or the one the run was trained on), loaded at most once per call."""
    if "scene" not in cache:
        from dff_gs.data import load_scene

        path = args.data or meta.get("scene")
        if not path:
            raise ConfigError("no scene: pass --data SCENE (the model's sidecar does not name one)")
        cache["scene"] = load_scene(path)
    return cache["scene"]


def run_query(args) -> dict:
    from dff_gs.runs import load_model, teacher_from_meta

    model, meta = load_model(args.model)
    teacher = None if args.cluster else teacher_from_meta(meta)
    if teacher is None and not args.cluster and not args.click:
        raise ConfigError(f"{args.model}: no teacher recorded with this model; only --click and --cluster work")
    summary: dict = {"model": str(args.model), "num_gaussians": model.num_gaussians}
    scenes: dict = {}
    labels = None
    if args.text is not None:
        if not args.text.strip():
            raise ConfigError("the query text is empty")
        extra = [s.strip() for s in args.negatives.split(",") if s.strip()]
        negs = Q.text_negatives(teacher.encode_text, args.text, meta.get("teacher", {}).get("class_names"), extra)
        probs = Q.text_probabilities(model, teacher.encode_text, args.text, negs)
        summary.update(query=args.text, negatives=negs)
    elif args.labels is not None:
        names = [s.strip() for s in args.labels.split(",") if s.strip()]
        if len(names) < 2:
            raise ConfigError("--labels needs at least two labels")
        labels = Q.segment_gaussians(model, teacher.encode_text(names))
        summary["labels"] = {n: int((labels == i).sum()) for i, n in enumerate(names)}
        probs = None
    elif args.patch is not None:
        from dff_gs.data.image_io import load_rgb

        probs = Q.reference_probabilities(model, Q.patch_feature(teacher, load_rgb(Path(args.patch))))
        summary["patch"] = args.patch
    elif args.click is not None:
        scene = _scene(args, meta, scenes)
        v, x, y = args.click
        probs = Q.reference_probabilities(model, Q.click_feature(model, scene.cameras, v, x, y, args.backend))
        summary["click"] = [v, x, y]
    else:
        labels, _ = Q.kmeans(Q.gaussian_features(model), args.cluster)
        summary["clusters"] = torch.bincount(labels, minlength=args.cluster).tolist()
        probs = None
    if probs is not None:
        sel = Q.select(probs, args.threshold)
        summary["selected"] = sel.count
        if sel.count:
            pts = model.params["means"].detach()[sel.mask]
            summary["bbox"] = [pts.amin(0).tolist(), pts.amax(0).tolist()]
    if args.out:
        _write_renders(args, model, _scene(args, meta, scenes).split(args.split), probs, labels, summary)
    return summary


def _write_renders(args, model, scene, probs, labels, summary) -> None:
    """Render the selection (or the segmentation) from the scene's cameras, over the model's RGB."""
    from dff_gs.io.images import colorize_labels, save_png
    from dff_gs.render import render
    from dff_gs.utils import atomic_write_path

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    # per-Gaussian channels: one-hot of the label, or [p, 1-p] for a query
    values = (torch.nn.functional.one_hot(labels).float() if labels is not None
              else torch.stack([probs, 1 - probs], -1))
    for i, name in enumerate(scene.image_names):
        cams = scene.cameras[[i]]
        with torch.no_grad():
            rgb = render(model, cams, with_features=False, backend=args.backend).rgb[0]
        img, alpha = Q.render_values(model, cams, values, args.backend)
        if labels is not None:
            seg = img[0].argmax(-1)
        else:
            seg = (img[0, ..., 0] > args.threshold * alpha[0, ..., 0]).long()
        colours = torch.from_numpy(colorize_labels(seg.cpu(), values.shape[1])).float() / 255.0
        save_png(out / f"{name.replace('/', '_')}.png", 0.5 * colours + 0.5 * rgb.cpu().clamp(0, 1))
    with atomic_write_path(out / "selection.json") as tmp:
        tmp.write_text(json.dumps(summary, indent=2))


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        summary = run_query(args)
    except DffError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(summary, indent=2))
    return 0

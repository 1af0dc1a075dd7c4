"""``python -m dff_gs.query RUN (--text T | --labels A,B,.. | --patch IMG | --click V X Y | --cluster K[:ID])``
(also ``dff-query``): a Gaussian run or PLY, or a NeRF run.

Prints how much of the model a query selects (p(query|x) of Eq. 5 above ``--threshold``): how many Gaussians, or
how many of a NeRF's occupied cells. With ``--out DIR`` also writes, for each view of the scene's split, the query
rendered as a 2D segmentation over the model's render (PNG) and ``selection.json``; on a NeRF, ``--op delete |
extract | recolor`` renders the views with that edit applied at render time instead (Gaussians are edited with
``edit.py``).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Optional

import torch

from dff_gs import query as Q
from dff_gs.core.backends import BACKENDS
from dff_gs.core.errors import ConfigError, quote, run_cli
from dff_gs.core.utils import atomic_write_path
from dff_gs.edit.nerf import SegmentationEdit, render_edit
from dff_gs.io.images import save_png
from dff_gs.io.run_dir import check_not_inputs, hold_enclosing_runs
from dff_gs.query.grouping import GroupingSettings


def parse_cluster(text: str) -> tuple[int, Optional[int]]:
    """``"K"`` -> ``(K, None)`` (the whole clustering); ``"K:ID"`` -> ``(K, ID)`` (one cluster). Only the form is
    read here: the values are checked by :class:`~dff_gs.query.QuerySpec`, as every query's are."""
    try:
        parts = [int(t) for t in text.split(":")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected K or K:ID (integers), got {quote(text)}") from None
    if len(parts) not in (1, 2):
        raise argparse.ArgumentTypeError(f"expected K or K:ID (one or two integers), got {quote(text)}")
    return parts[0], (parts[1] if len(parts) == 2 else None)


def add_query_arguments(p: argparse.ArgumentParser, multiple: bool = False) -> None:
    """The query flags shared by ``python -m dff_gs.query`` (exactly one query) and ``edit.py`` / ``python -m
    dff_gs.render`` (``multiple``: each flag may repeat and every query given is unioned, none is required)."""
    if multiple:
        g = p.add_argument_group("queries (repeatable; the selections are unioned)")
        kw = {"action": "append", "default": []}
    else:
        g = p.add_mutually_exclusive_group(required=True)
        kw = {}
    g.add_argument("--text", help="text query (needs a teacher with a text encoder)", **kw)
    if not multiple:
        g.add_argument("--labels", help="comma-separated label set: full segmentation by argmax of Eq. 5")
    g.add_argument("--patch", help="image crop (PNG/JPG) encoded by the teacher", **kw)
    g.add_argument("--click", nargs=3, type=int, metavar=("VIEW", "X", "Y"), help="pixel of a view of --data", **kw)
    g.add_argument("--ray", nargs=6, type=float, metavar=("OX", "OY", "OZ", "DX", "DY", "DZ"),
                   help="a click from any viewpoint: the object the world-space ray meets first", **kw)
    g.add_argument("--cluster", type=parse_cluster, metavar="K[:ID]" if not multiple else "K:ID",
                   help="k-means over Gaussian features (K:ID selects cluster ID)", **kw)
    p.add_argument("--negatives", default="", help="comma-separated extra competing labels for --text")
    p.add_argument("--threshold", type=float, default=0.5, help="select Gaussians with p(query|x) above this")
    p.add_argument("--no-grouping", action="store_true",
                   help="--click / --ray: Eq. 5 on the click's feature instead of the object grouped in 3D under it")
    p.add_argument("--data", help="scene for --click and renders (default: the scene the run was trained on)")
    p.add_argument("--backend", default="auto", help=f"renderer: {' | '.join(BACKENDS)}")


def query_specs(args) -> list[Q.QuerySpec]:
    """The queries of parsed :func:`add_query_arguments` flags (one list whether they repeat or not)."""
    negs = Q.label_list(args.negatives)
    specs = [Q.QuerySpec("text", t, negs) for t in _as_list(args.text)]
    specs += [Q.QuerySpec("patch", t) for t in _as_list(args.patch)]
    specs += [Q.QuerySpec("click", tuple(c)) for c in _as_list(args.click, nested=True)]
    specs += [Q.QuerySpec("cluster", tuple(c)) for c in _as_list(args.cluster, nested=True)]
    specs += [Q.QuerySpec("ray", tuple(r)) for r in _as_list(getattr(args, "ray", None), nested=True)]
    return specs


def _as_list(value, nested: bool = False) -> list:
    """A single flag value or a repeated flag's list -> a list of values."""
    if value is None:
        return []
    if nested:  # click [v, x, y] / cluster (k, id) vs a list of them
        return list(value) if value and isinstance(value[0], (list, tuple)) else ([value] if value else [])
    return list(value) if isinstance(value, list) else [value]


def click_grouping(args):
    """The grouping a click is resolved with (``None``: Eq. 5 alone, ``--no-grouping``)."""
    return None if args.no_grouping else GroupingSettings()


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m dff_gs.query", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", help="run folder or model file: a Gaussian run or PLY, or a NeRF run")
    add_query_arguments(p, multiple=False)
    p.add_argument("--split", default="test", choices=["test", "train", "all"], help="views to render with --out")
    p.add_argument("--out", help="folder for segmentation PNGs and selection.json")
    p.add_argument("--op", default="none", choices=("none", *RENDER_EDITS),
                   help="a NeRF: render --out's views with this render-time edit of the selection")
    p.add_argument("--color", default="1,0,0", help="--op recolor: r,g,b in [0, 1]")
    p.add_argument("--device", default="cpu", help="where the model is loaded: cpu | cuda")
    return p


RENDER_EDITS = ("delete", "extract", "recolor")
"""The NeRF's render-time edits (:class:`dff_gs.edit.nerf.SegmentationEdit`)."""


def run_query(args) -> dict:
    """Everything ``python -m dff_gs.query`` does, on either backbone; returns the summary."""
    specs = query_specs(args)  # every query is checked (QuerySpec) before any work
    ctx = Q.QueryContext.open(args.model, data=args.data, backend=args.backend, device=args.device)
    _check_op(args, ctx)
    if not args.out:
        return _query(args, ctx, specs)
    scene = ctx.scene().split(args.split)
    out = Path(args.out)
    check_not_inputs([*(_png_path(out, n) for n in scene.image_names), out / "selection.json"], ctx.input_files(),
                     [ctx.scene_path])
    with hold_enclosing_runs([out]):  # a run folder being trained (or edited) is written by nobody else
        return _query(args, ctx, specs, scene)


def _query(args, ctx, specs, scene=None) -> dict:
    """The query's summary; with ``--out`` its PNGs of ``scene``'s views and ``selection.json`` written there."""
    gs = ctx.kind == "gs"
    summary: dict = {"model": str(args.model), **({"num_gaussians": ctx.model.num_gaussians} if gs else {})}
    labels = probs = queries = None
    if args.labels is not None:
        names = list(Q.label_list(args.labels))
        if len(names) < 2:
            raise ConfigError("--labels needs at least two labels")
        queries = ctx.teacher.encode_text(names)
        labels = Q.segment_features(ctx.primitive_features(), queries)
        counts = {n: int((labels == i).sum()) for i, n in enumerate(names)}
        summary.update({"labels": counts} if gs else {"labels": names, "cells_per_label": counts})
    elif args.cluster is not None and args.cluster[1] is None:
        k = args.cluster[0]
        labels, _ = Q.kmeans(ctx.primitive_features(), k)
        summary["clusters"] = torch.bincount(labels, minlength=k).tolist()
    else:
        probs, info = Q.query_probabilities(ctx, specs[0], grouping=click_grouping(args))
        summary.update(info)
        sel = Q.select(probs, args.threshold)
        if gs:
            summary["selected"] = sel.count
            if sel.count:
                summary["bbox"] = Q.selection_bbox(ctx.model, sel.mask)
        else:
            summary.update(selected_cells=sel.count, occupied_cells=len(probs))
            if args.out:
                queries = Q.query_label_embeddings(ctx, specs[0])[0]
    if args.out:
        if gs:
            _write_gaussian_renders(args, ctx.model, scene, probs, labels)
        else:
            _write_nerf_renders(args, ctx.model, scene, queries, labels is not None)

        with atomic_write_path(Path(args.out) / "selection.json") as tmp:
            tmp.write_text(json.dumps(summary, indent=2))
    return summary


def _check_op(args, ctx) -> None:
    """``--op`` is a NeRF's render-time edit of one query's selection, rendered into ``--out``."""
    if args.op == "none":
        return
    if ctx.kind == "gs":
        raise ConfigError("--op renders a NeRF with a render-time edit; Gaussians are edited with edit.py RUN --text T "
                          "--op OP --out edited.ply (a persistent edit)")
    if args.labels is not None or args.cluster is not None:
        raise ConfigError("--op edits one query's selection: use --text, --patch or --click")
    if not args.out:
        raise ConfigError("--op renders the edited views: give --out DIR")


def _png_path(out: Path, name: str) -> Path:
    return out / f"{name.replace('/', '_')}.png"


def _write_gaussian_renders(args, model, scene, probs, labels) -> None:
    """Render the selection (or the segmentation) from the scene's cameras, over the model's RGB: per-Gaussian
    values composited."""
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    # per-Gaussian channels: one-hot of the label, or [p, 1-p] for a query
    values = (torch.nn.functional.one_hot(labels).float() if labels is not None
              else torch.stack([probs, 1 - probs], -1))
    for i, name in enumerate(scene.image_names):
        img = Q.segmentation_overlay(model, scene.cameras[[i]], values,
                                     None if labels is not None else args.threshold, args.backend)[0]
        save_png(_png_path(out, name), img)


def _write_nerf_renders(args, model, scene, queries, is_label_set: bool) -> None:
    """Each view: Eq. 5 on the NeRF's rendered features over its RGB, or (``--op``) the view rendered with that
    render-time edit of the query's selection."""
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    edit = None
    if args.op != "none":
        color = torch.tensor([float(c) for c in args.color.split(",")]) if args.op == "recolor" else None
        edit = SegmentationEdit(queries, args.op, args.threshold, color)
    for i, name in enumerate(scene.image_names):
        cams = scene.cameras[[i]]
        if edit is not None:
            img = render_edit(model, cams, edit).rgb[0].clamp(0, 1).cpu()
        else:
            img = Q.rendered_overlay(model, cams, queries, None if is_label_set else args.threshold)[0]
        save_png(_png_path(out, name), img)


def main(argv: list[str] | None = None) -> int:
    """``python -m dff_gs.query`` / ``dff-query`` on either backbone."""
    args = build_parser().parse_args(argv)
    return run_cli(lambda: run_query(args), lambda summary: json.dumps(summary, indent=2))

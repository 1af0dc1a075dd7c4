"""``python -m dff_gs.query RUN_OR_PLY (--text T | --labels A,B,.. | --patch IMG | --click V X Y | --cluster K[:ID])``
(also ``dff-query``; a NeRF run is queried by :mod:`dff_gs.cli.nerf_query`)

Prints how many Gaussians a query selects; with ``--out DIR`` also writes, for each view of the scene's
split, the query rendered as a 2D segmentation (PNG) and ``selection.json``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Optional

import torch

from dff_gs.errors import ConfigError, run_cli
from dff_gs import query as Q


def parse_cluster(text: str) -> tuple[int, Optional[int]]:
    """``"K"`` -> ``(K, None)`` (the whole clustering); ``"K:ID"`` -> ``(K, ID)`` (one cluster)."""
    try:
        parts = [int(t) for t in text.split(":")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected K or K:ID (integers), got {text!r}") from None
    if len(parts) not in (1, 2) or parts[0] < 1 or (len(parts) == 2 and not 0 <= parts[1] < parts[0]):
        raise argparse.ArgumentTypeError(f"expected K or K:ID with K >= 1 and 0 <= ID < K, got {text!r}")
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
    p.add_argument("--backend", default="auto", help="renderer: auto | torch | gsplat")


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
    from dff_gs.grouping import GroupingSettings

    return None if args.no_grouping else GroupingSettings()


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m dff_gs.query", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", help="run folder or PLY")
    add_query_arguments(p, multiple=False)
    p.add_argument("--split", default="test", choices=["test", "train", "all"], help="views to render with --out")
    p.add_argument("--out", help="folder for segmentation PNGs and selection.json")
    return p


def run_query(args) -> dict:
    ctx = Q.QueryContext.open(args.model, data=args.data, backend=args.backend)
    model = ctx.model
    summary: dict = {"model": str(args.model), "num_gaussians": model.num_gaussians}
    labels = probs = None
    if args.labels is not None:
        names = list(Q.label_list(args.labels))
        if len(names) < 2:
            raise ConfigError("--labels needs at least two labels")
        labels = Q.segment_gaussians(model, ctx.teacher.encode_text(names))
        summary["labels"] = {n: int((labels == i).sum()) for i, n in enumerate(names)}
    elif args.cluster is not None and args.cluster[1] is None:
        k = args.cluster[0]
        labels, _ = Q.kmeans(Q.gaussian_features(model), k)
        summary["clusters"] = torch.bincount(labels, minlength=k).tolist()
    else:
        if args.text is not None and not args.text.strip():
            raise ConfigError("the query text is empty")
        probs, info = Q.query_probabilities(ctx, query_specs(args)[0], grouping=click_grouping(args))
        summary.update(info)
        sel = Q.select(probs, args.threshold)
        summary["selected"] = sel.count
        if sel.count:
            summary["bbox"] = Q.selection_bbox(model, sel.mask)
    if args.out:
        _write_renders(args, model, ctx.scene().split(args.split), probs, labels, summary)
    return summary


def _write_renders(args, model, scene, probs, labels, summary) -> None:
    """Render the selection (or the segmentation) from the scene's cameras, over the model's RGB."""
    from dff_gs.io.images import save_png
    from dff_gs.utils import atomic_write_path

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    # per-Gaussian channels: one-hot of the label, or [p, 1-p] for a query
    values = (torch.nn.functional.one_hot(labels).float() if labels is not None
              else torch.stack([probs, 1 - probs], -1))
    for i, name in enumerate(scene.image_names):
        img = Q.segmentation_overlay(model, scene.cameras[[i]], values,
                                     None if labels is not None else args.threshold, args.backend)[0]
        save_png(out / f"{name.replace('/', '_')}.png", img)
    with atomic_write_path(out / "selection.json") as tmp:
        tmp.write_text(json.dumps(summary, indent=2))


def main(argv: list[str] | None = None) -> int:
    """``python -m dff_gs.query`` / ``dff-query``: a NeRF run goes to :mod:`dff_gs.cli.nerf_query`."""
    import sys

    from dff_gs.runs import run_backbone

    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and not argv[0].startswith("-") and Path(argv[0]).exists() and run_backbone(argv[0]) == "nerf":
        from dff_gs.cli.nerf_query import main as nerf_main

        return nerf_main(argv)
    args = build_parser().parse_args(argv)
    return run_cli(lambda: run_query(args), lambda summary: json.dumps(summary, indent=2))

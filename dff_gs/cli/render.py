"""``python -m dff_gs.render RUN_OR_PLY [--data SCENE] [--split test] --out DIR [--text T ...]``

Renders any run (Gaussians or a NeRF, through :class:`dff_gs.backbone.Backbone`) or PLY (ours, or a plain 3DGS
one without features) at a scene's cameras and writes one
RGB PNG per view, named like the scene's images (``images/0008.png`` -> ``DIR/0008.png``). With queries
(``--text`` / ``--patch`` / ``--click`` / ``--cluster K:ID``, repeatable and unioned) it also writes the
query's 2D segmentation over the render, ``DIR/segmentation/NAME.png`` (p(query|x) of Eq. 5 per pixel: the
Gaussians' composited, a NeRF's from its rendered features; selected where it exceeds ``--threshold``). The
scene defaults to the one the run was trained on.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from tqdm import tqdm

from dff_gs import query as Q
from dff_gs.cli.query import add_query_arguments, click_grouping, query_specs
from dff_gs.core.errors import ConfigError, run_cli
from dff_gs.io.images import save_png
from dff_gs.io.run_dir import check_not_inputs, hold_enclosing_runs


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m dff_gs.render", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", help="run folder or PLY (plain 3DGS PLYs work too)")
    add_query_arguments(p, multiple=True)
    p.add_argument("--split", default="test", choices=["test", "train", "all"], help="views to render")
    p.add_argument("--out", required=True, help="folder for the PNGs")
    p.add_argument("--force", action="store_true", help="overwrite existing PNGs of the same names")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def output_names(image_names: list[str]) -> list[str]:
    """PNG file names for the scene's image names: the base name when those are unique, else the relative
    path with '/' -> '_'."""
    base = [Path(n).name for n in image_names]
    if len(set(base)) == len(base):
        return [f"{b}.png" for b in base]
    return [f"{n.replace('/', '_')}.png" for n in image_names]


def run_render(args) -> list[Path]:
    """Render every view of the split with any backbone (Gaussians or a NeRF); with queries also their segmentation
    over the render (Gaussians: per-Gaussian p composited; a NeRF: Eq. 5 on its rendered features)."""
    specs = query_specs(args)
    ctx = Q.QueryContext.open(args.model, data=args.data, backend=args.backend)
    if ctx.kind != "gs" and any(s.kind == "cluster" for s in specs):
        raise ConfigError(f"{args.model}: a NeRF's clusters are not rendered; python -m dff_gs.query RUN --cluster "
                          "K:ID counts a cluster's cells")
    scene, scene_path = ctx.scene(), ctx.scene_path
    if args.split != "all" and not (scene.test_ids if args.split == "test" else scene.train_ids):
        raise ConfigError(f"{scene_path}: the scene has no {args.split} views")
    scene = scene.split(args.split)
    names = output_names(scene.image_names)
    out = Path(args.out)
    files = [out / n for n in names] + ([out / "segmentation" / n for n in names] if specs else [])
    check_not_inputs(files, ctx.input_files(), [scene_path])
    clash = [f for f in files if f.exists()]
    if clash and not args.force:
        raise ConfigError(f"{clash[0]}: exists; pass --force to overwrite, or choose another --out")
    with hold_enclosing_runs([out]):  # a run folder being trained (or edited) is written by nobody else
        return _write_views(args, ctx, specs, scene, names, out)


def _write_views(args, ctx, specs, scene, names: list[str], out: Path) -> list[Path]:
    """Each view's render (and with queries its segmentation) as PNGs in ``out``."""
    backbone = ctx.backbone
    values = label_sets = None
    if specs and ctx.kind == "gs":  # per-Gaussian p composited (the selection an edit would make)
        probs = torch.stack([Q.query_probabilities(ctx, s, click_grouping(args))[0] for s in specs]).amax(0)
        values = torch.stack([probs, 1 - probs], -1)
    elif specs:  # Eq. 5 on the rendered features
        label_sets = [Q.query_label_embeddings(ctx, s)[0] for s in specs]
    threshold = 0.5 if args.threshold is None else args.threshold
    cams = scene.cameras.to(backbone.device)
    written = []
    for i in tqdm(range(len(cams)), desc="render", disable=args.quiet):
        with torch.no_grad():
            rgb = backbone.render(cams[[i]], with_features=False).rgb[0]
        written.append(save_png(out / names[i], rgb.cpu().clamp(0, 1)))
        if specs:
            seg = (Q.segmentation_overlay(ctx.model, cams[[i]], values, threshold, args.backend, rgb=rgb[None])[0]
                   if values is not None else Q.rendered_overlay(ctx.model, cams[[i]], label_sets, threshold)[0])
            written.append(save_png(out / "segmentation" / names[i], seg))
    return written


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_cli(lambda: run_render(args), lambda written: f"wrote {len(written)} PNGs to {args.out}")

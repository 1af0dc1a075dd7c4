"""``python edit.py RUN_OR_PLY [queries] --op OP [op options] --out edited.ply`` (or ``--script edit.yaml``).

Selects Gaussians by p(query | x) (Eq. 5; several queries are unioned), cleans the selection up in 3D, runs
the operations in order and writes the edited scene as a 3DGS PLY with its features (so it can be queried
and edited again), a JSON summary beside it and before | after renders of a few views.

Operations: delete, extract, recolor (--color / --hue / --saturation / --brightness), translate (--offset),
rotate (--axis --degrees [--pivot]), scale (--factor [--pivot]), duplicate (--offset/--axis/--degrees/--factor),
compose (--source PLY_OR_RUN [--offset/--axis/--degrees/--factor] [--features auto|zero|error]).
An option applies to every --op that takes it; use --script for anything finer.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from dff_gs.cli.query import add_query_arguments, query_specs
from dff_gs.core.config import apply_dict
from dff_gs.core.errors import ConfigError, run_cli
from dff_gs.edit.export import export_edit
from dff_gs.edit.script import OPERATIONS, EditScript, load_script
from dff_gs.io.export import check_up, parse_exports


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="edit.py", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", help="run folder or PLY to edit (never overwritten)")
    add_query_arguments(p, multiple=True)
    p.set_defaults(threshold=None)
    p.add_argument("--op", action="append", default=[], choices=list(OPERATIONS),
                   help="operation (repeatable, in order)")
    p.add_argument("--script", help="YAML edit script (select / selection / operations); see configs/edit_example.yaml")
    p.add_argument("--out", required=True, help="edited PLY to write")
    p.add_argument("--force", action="store_true", help="overwrite existing outputs (never the input)")
    o = p.add_argument_group("operation options")
    o.add_argument("--color", help="recolor: target colour r,g,b (0..1) or #rrggbb")
    o.add_argument("--hue", type=float, help="recolor: hue rotation in degrees")
    o.add_argument("--saturation", type=float, help="recolor: saturation factor")
    o.add_argument("--brightness", type=float, help="recolor: brightness factor")
    o.add_argument("--flat", action="store_true", help="recolor: one flat colour instead of keeping the shading")
    o.add_argument("--offset", nargs=3, type=float, metavar=("X", "Y", "Z"), help="translate / duplicate / compose")
    o.add_argument("--axis", nargs=3, type=float, metavar=("X", "Y", "Z"), help="rotate / duplicate / compose axis")
    o.add_argument("--degrees", type=float, help="rotate / duplicate / compose angle")
    o.add_argument("--factor", type=float, help="scale / duplicate / compose uniform scale")
    o.add_argument("--pivot", nargs=3, type=float, metavar=("X", "Y", "Z"),
                   help="rotate / scale / duplicate pivot (default: the selection's AABB centre)")
    o.add_argument("--fill", action="store_true", help="delete: fill the surfaces the deletion reveals (inpainted "
                                                       "training views, new Gaussians fitted to them; needs the scene)")
    o.add_argument("--source", help="compose: PLY or run folder to insert")
    o.add_argument("--features", choices=["auto", "zero", "error"], help="compose: feature mismatch policy")
    s = p.add_argument_group("selection cleanup (dff_gs.edit.selection.SelectionConfig)")
    s.add_argument("--selection-mode", choices=["gaussian", "lifted", "combined"],
                   help="gaussian: each Gaussian's own p(query|x); lifted: the 2D query rendered over training views "
                        "and lifted onto the Gaussians; combined: lifted where drawn, own where hidden "
                        "(default: combined)")
    s.add_argument("--no-cleanup", action="store_true", help="use the thresholded selection as it is")
    s.add_argument("--min-vote", type=float, help="drop selected Gaussians whose knn are less selected than this")
    s.add_argument("--grow-sigma", type=float, help="grow into Gaussians within this many std devs (0: no growing)")
    r = p.add_argument_group("renders")
    r.add_argument("--split", default="test", choices=["test", "train", "all"],
                   help="views the before | after renders are chosen from")
    r.add_argument("--views", type=int, default=3, help="number of before | after renders (0: none)")
    r.add_argument("--quiet", action="store_true", help="no progress bars, summary only")
    x = p.add_argument_group("viewer exports (beside --out, through gsplat's exporter; --out stays the primary)")
    x.add_argument("--export", default="", help="comma list of ply (plain 3DGS PLY, no features) | splat | "
                                                "ply_compressed")
    x.add_argument("--up", default="z", help="up axis of the exports: z (our world) | y (Y-up viewers)")
    return p


_OP_FLAGS = {  # CLI flag -> dataclass field, per operation
    "delete": {"fill": "fill"},
    "recolor": {"color": "color", "hue": "hue", "saturation": "saturation", "brightness": "brightness"},
    "translate": {"offset": "offset"},
    "rotate": {"axis": "axis", "degrees": "degrees", "pivot": "pivot"},
    "scale": {"factor": "factor", "pivot": "pivot"},
    "duplicate": {"offset": "offset", "axis": "axis", "degrees": "degrees", "factor": "factor", "pivot": "pivot"},
    "compose": {"source": "source", "offset": "offset", "axis": "axis", "degrees": "degrees", "factor": "scale",
                "features": "features"},
}


def script_from_args(args):
    """The :class:`EditScript` the flags (and ``--script``) describe, checked."""
    if args.script and args.op:
        raise ConfigError("give the operations either with --op or in --script, not both")
    script = load_script(args.script, check=False) if args.script else EditScript(source="command line")
    specs = query_specs(args)
    script.select = list(script.select) + specs
    sel = {"threshold": args.threshold, "min_vote": args.min_vote, "grow_sigma": args.grow_sigma,
           "mode": args.selection_mode}
    apply_dict(script.selection, {k: v for k, v in sel.items() if v is not None})
    if args.no_cleanup:
        script.selection.cleanup = False
    if args.no_grouping:
        script.selection.click_grouping = False
    for name in args.op:
        op = OPERATIONS[name]()
        for flag, fld in _OP_FLAGS.get(name, {}).items():
            value = getattr(args, flag)
            if value is not None:
                setattr(op, fld, list(value) if isinstance(value, (list, tuple)) else value)
        if name == "recolor" and args.flat:
            op.shading = False
        script.operations.append(op)
    if args.fill and "delete" not in args.op:
        raise ConfigError("--fill fills what --op delete removes: give --op delete")
    return script.check()


def run_edit(args) -> dict:
    """Everything ``edit.py`` does; returns the summary (also written beside the PLY)."""
    script = script_from_args(args)
    exports, up = parse_exports(args.export), check_up(args.up)
    return export_edit(args.model, script, args.out, data=args.data, backend=args.backend, force=args.force,
                       views=args.views, split=args.split, base_dir=Path(args.script).parent if args.script else ".",
                       progress=not args.quiet, exports=exports, up=up)


def format_summary(summary: dict) -> str:
    """A few human-readable lines."""
    lines = []
    sel = summary.get("selection")
    if sel:
        what = ", ".join(f"{q['kind']} {q.get('query') or q.get('patch') or q.get('click') or q.get('cluster')}"
                         for q in sel["queries"])
        lines.append(f"selected {sel['selected']} Gaussians for {what} (p > {summary['threshold']}: "
                     f"{sel['thresholded']}, isolated dropped {sel['dropped_vote']}, small pieces dropped "
                     f"{sel['dropped_components']}, grown {sel['grown']})")
        lo, hi = sel["bbox"]
        corner = lambda c: ", ".join(f"{v:.3f}" for v in c)  # noqa: E731
        lines.append(f"bounding box [{corner(lo)}] .. [{corner(hi)}]")
    for i, st in enumerate(summary["operations"]):
        lines.append(f"{i + 1}. {st['op']}: {st['selected']} selected, Gaussians {st['num_gaussians_before']} -> "
                     f"{st['num_gaussians_after']}")
    for n in summary.get("notes", []):
        lines.append(f"note: {n}")
    lines.append(f"wrote {summary['output']} (+ sidecar), {summary['summary']}"
                 + (f", {len(summary['renders'])} before | after renders in {Path(summary['renders'][0]).parent}"
                    if summary.get("renders") else ""))
    if summary.get("exports"):
        lines.append(f"exported {', '.join(summary['exports'])}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_cli(lambda: run_edit(args), format_summary)


if __name__ == "__main__":
    sys.exit(main())

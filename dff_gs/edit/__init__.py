"""Persistent, composable edits of a feature Gaussian scene.

- :mod:`~dff_gs.edit.selection`: queries -> a cleaned 3D selection (threshold, kNN vote, components, grow)
- :mod:`~dff_gs.edit.ops`: pure operations ``(model, mask) -> OpResult`` (delete, extract, recolor,
  translate, rotate, scale, duplicate, compose)
- :mod:`~dff_gs.edit.script`: YAML edit scripts as dataclasses
- :mod:`~dff_gs.edit.apply`: run a script; :mod:`~dff_gs.edit.outputs`: PLY, summary, before | after PNGs
- :mod:`~dff_gs.cli.edit`: ``python edit.py``

In a notebook::

    from dff_gs.edit import EditScript, SelectionConfig, apply_script, ops, select_gaussians
    from dff_gs.query import QueryContext, QuerySpec
    from dff_gs.engine.runs import load_model

    model, meta = load_model("runs/default")
    ctx = QueryContext(model, meta)
    sel = select_gaussians(ctx, [QuerySpec("text", "chair")])
    moved = ops.translate(model, sel.mask, [0.3, 0.0, 0.0]).model
"""

from dff_gs.core.geometry import Similarity
from dff_gs.edit import ops
from dff_gs.edit.apply import EditOutcome, apply_script
from dff_gs.edit.ops import OpResult
from dff_gs.edit.script import OPERATIONS, EditScript, load_script, parse_script
from dff_gs.edit.selection import EditSelection, EmptySelectionError, SelectionConfig, cleanup_mask, select_gaussians

__all__ = ["ops", "EditOutcome", "apply_script", "OpResult", "OPERATIONS", "EditScript", "load_script",
           "parse_script", "EditSelection", "EmptySelectionError", "SelectionConfig", "cleanup_mask",
           "select_gaussians", "Similarity"]

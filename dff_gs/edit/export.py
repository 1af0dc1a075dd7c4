"""One edit, from its script to its files: what ``edit.py`` and the viewer's "Export PLY" both run.

:func:`export_edit` applies an :class:`~dff_gs.edit.script.EditScript` to a run or PLY and writes the edited PLY
(+ sidecar), the JSON summary and the before | after renders (:mod:`dff_gs.edit.outputs`), holding the output's
lock from the existence check to the last write.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence, Union

from dff_gs.edit.apply import EditOutcome, apply_script
from dff_gs.edit.outputs import OutputPaths, before_after_panels, check_outputs, pick_views, write_outputs
from dff_gs.edit.script import EditEnv, EditScript
from dff_gs.engine.runs import resolve_ply
from dff_gs.io.lock import OutputLock
from dff_gs.io.run_dir import check_not_inputs, hold_enclosing_runs
from dff_gs.query import QueryContext


def export_edit(model: Union[str, Path, QueryContext], script: EditScript, out: Union[str, Path], *,
                data: Optional[str] = None, backend: str = "auto", force: bool = False, views: int = 3,
                split: str = "test", base_dir: Union[str, Path] = ".", progress: bool = False,
                exports: Sequence[str] = (), up: str = "z") -> dict:
    """Apply ``script`` to ``model`` (a run folder or PLY, opened with ``data`` / ``backend``, or an open
    :class:`QueryContext`) and write the outputs at ``out`` (``force``: replace existing outputs; the input is
    never overwritten). ``views`` before | after renders of the ``split`` views; ``exports`` (``ply``, ``splat``,
    ``ply_compressed``) written beside, ``up`` their up axis (:mod:`dff_gs.io.export`). Returns the summary (also
    written beside the PLY), with ``summary`` naming that file."""
    ply = Path(model.source) if isinstance(model, QueryContext) else resolve_ply(model)
    outputs = OutputPaths.for_ply(out, exports, up)
    # one writer per output, and none in a run folder another process holds (a training in progress)
    with OutputLock(outputs.lock, f"output {out}"), hold_enclosing_runs(outputs.all()):
        paths = check_outputs(ply, out, force, exports, up)  # before any work
        ctx = model if isinstance(model, QueryContext) else QueryContext.open(model, data=data, backend=backend)
        check_not_inputs(paths.all(), ctx.input_files(), [ctx.scene_path])  # a run's or scene's files, --force or not
        outcome = apply_script(ctx, script, EditEnv(meta=ctx.meta, base_dir=Path(base_dir)), progress=progress)
        summary = {"input": str(ply), "output": str(paths.ply), **outcome.summary}
        panels = edit_panels(ctx, outcome, views, split, summary.setdefault("notes", []), progress)
        summary["renders"] = [str(paths.renders / n) for n in panels]
        write_outputs(outcome.model, ctx.meta, paths, summary, panels)
    summary["summary"] = str(paths.summary)
    return summary


def edit_panels(ctx: QueryContext, outcome: EditOutcome, views: int, split: str, notes: list[str],
                progress: bool = False) -> dict:
    """The before | after panels of ``views`` views of ``split`` ({} with a note when the sidecar names no scene
    to render from)."""
    if views <= 0:
        return {}
    if ctx.scene_path is None:
        notes.append("no scene to render from (the sidecar names none): pass --data SCENE for before | after renders")
        return {}
    full = ctx.scene()
    scene = full.split(split) if split != "test" or full.test_ids else full
    cams = scene.cameras.to(ctx.model.device)
    mask = outcome.selection.mask if outcome.selection is not None else None
    ids = pick_views(ctx.model, cams, mask, views, ctx.backend)
    return before_after_panels(ctx.model, outcome.model, cams, scene.image_names, ids, ctx.backend, progress=progress)

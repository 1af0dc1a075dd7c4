"""Run an :class:`EditScript` on a model: resolve the selection, apply the operations in order."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import torch
from tqdm import tqdm

from dff_gs.core.errors import ConfigError
from dff_gs.core.gaussians import GaussianModel
from dff_gs.edit.script import EditEnv, EditScript
from dff_gs.edit.selection import EditSelection, select_gaussians
from dff_gs.query import QueryContext, selection_bbox


@dataclass
class EditOutcome:
    """model: the edited model; selection: the script's first selection, on the input model (None if the
    script has no top-level queries); summary: what was selected and done (JSON-ready)."""

    model: GaussianModel
    selection: Optional[EditSelection]
    summary: dict = field(default_factory=dict)


def _selection_summary(model: GaussianModel, sel: EditSelection) -> dict:
    return {"queries": sel.queries, **sel.stats, "bbox": selection_bbox(model, sel.mask)}


def apply_script(ctx: QueryContext, script: EditScript, env: Optional[EditEnv] = None,
                 progress: bool = False) -> EditOutcome:
    """Apply ``script`` to ``ctx.model`` (Gaussians; not modified). Raises ``EmptySelectionError`` when a query selects
    nothing and ``ConfigError`` / ``DataError`` for bad options or files (a NeRF context: a one-line refusal, its edits
    being render-time ones, :mod:`dff_gs.edit.nerf`), before anything is written."""
    ctx.require_gaussians("an edit")
    script.check()
    env = (env or EditEnv(meta=ctx.meta)).bound_to(ctx)
    model = ctx.model
    summary: dict = {"num_gaussians_before": model.num_gaussians, "threshold": script.selection.threshold}
    first = None
    mask = torch.zeros(model.num_gaussians, dtype=torch.bool, device=model.device)
    if script.select:
        first = select_gaussians(ctx, script.select, script.selection)
        mask = first.mask
        summary["selection"] = _selection_summary(model, first)
    steps, notes = [], []
    for i, op in enumerate(tqdm(script.operations, desc="edit", disable=not progress, leave=False)):
        step: dict = {"op": op.name, **{k: v for k, v in op.options().items()}}
        if op.select:
            sel = select_gaussians(ctx.with_model(model), op.select, script.selection)
            mask = sel.mask
            step["selection"] = _selection_summary(model, sel)
        if op.needs_selection and not mask.any():
            raise ConfigError(f"{script.source}: operation {i + 1} ({op.name}) has an empty selection "
                              "(an earlier delete removed it); give it its own select:")
        step["selected"] = int(mask.sum()) if op.needs_selection else 0
        step["num_gaussians_before"] = model.num_gaussians
        result = op.apply(model, mask, env)
        model, mask = result.model, result.mask
        info = dict(result.info)
        notes += info.pop("notes", [])
        step.update(info, num_gaussians_after=model.num_gaussians)
        steps.append(step)
    model.check_finite(f"{ctx.source} (edited)")
    summary.update(operations=steps, num_gaussians_after=model.num_gaussians, notes=notes)
    return EditOutcome(model, first, summary)

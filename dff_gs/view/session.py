"""Everything the viewer does, as a Python API with no GUI: open a run or PLY, query, edit with undo / redo, and
export exactly what ``edit.py`` writes.

The session's edits are an :class:`~dff_gs.edit.script.EditScript` built as the user goes: each operation
records the queries selected when it was applied (``op.select``), and the selection is always resolved by
:func:`dff_gs.edit.select_gaussians` on the model as edited so far, as :func:`dff_gs.edit.apply_script`
resolves it. "Export" runs that script through :func:`dff_gs.edit.export.export_edit`, the code of
``edit.py``, so the files are the ones ``edit.py`` writes for the same queries and operations. ::

    s = ViewerSession.open("runs/default")
    s.query(QuerySpec("text", "chair"))      # s.selected_count
    s.apply(Recolor(color=[0.9, 0.1, 0.1]))
    s.undo(); s.redo()
    s.export("chair_red.ply")
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch

from dff_gs.core.errors import ConfigError, DataError
from dff_gs.core.gaussians import GaussianModel
from dff_gs.edit.export import export_edit
from dff_gs.edit.ops import OpResult
from dff_gs.edit.script import EditEnv, EditScript, Operation
from dff_gs.edit.selection import (
    EditSelection,
    EmptySelectionError,
    SelectionConfig,
    decoded_features,
    model_spacing,
    select_gaussians,
)
from dff_gs.engine.runs import run_backbone
from dff_gs.query import QueryContext, QuerySpec


@dataclass
class Step:
    """One applied operation and the model it made."""

    op: Operation
    model: GaussianModel
    info: dict


class ViewerSession:
    """A model being looked at, queried and edited (see the module docstring).

    base: the context of the opened run / PLY (never modified)
    selection_config: how queries become a selection (the edit's ``selection:``)
    """

    def __init__(self, base: QueryContext, selection_config: Optional[SelectionConfig] = None):
        self.base = base
        self.selection_config = (selection_config or SelectionConfig()).validate()
        self.steps: list[Step] = []
        self.undone: list[Operation] = []
        self.queries: list[QuerySpec] = []
        self.selection: Optional[EditSelection] = None
        self.message = ""  # what the last query / edit said (shown by the GUI)

    @classmethod
    def open(cls, path, *, data: Optional[str] = None, backend: str = "auto") -> "ViewerSession":
        """A session on a Gaussian run folder or PLY. A NeRF run is refused in one line (the viewer draws
        Gaussians; a NeRF's views render with ``dff-render``)."""
        if Path(path).exists() and run_backbone(path) == "nerf":
            raise DataError(f"{path}: a NeRF run has no Gaussians for the viewer to draw; render its views with "
                            f"dff-render {path} and query them with dff-query")
        return cls(QueryContext.open(path, data=data, backend=backend))

    def warm_up(self) -> None:
        """Load what the first query needs (the teacher's text encoder, the model's neighbour spacing and decoded
        features), so that it answers as fast as the next ones."""
        if self.features_reason is None:
            model_spacing(self.ctx)
            decoded_features(self.ctx)
            if self.can_text:
                self.base.teacher.encode_text(["warm up"])

    # ------------------------------------------------------------------------------------ state
    @property
    def model(self) -> GaussianModel:
        """The model as edited so far."""
        return self.steps[-1].model if self.steps else self.base.model

    @property
    def ctx(self) -> QueryContext:
        return self.base.with_model(self.model)

    @property
    def mask(self) -> Optional[np.ndarray]:
        """The current selection ``[N] bool`` (None: nothing selected)."""
        return None if self.selection is None else self.selection.mask.cpu().numpy()

    @property
    def selected_count(self) -> int:
        return 0 if self.selection is None else self.selection.count

    @property
    def features_reason(self) -> Optional[str]:
        """Why queries cannot run on this model (None: they can)."""
        if not self.base.model.feature_dim:
            return f"{self.base.source} carries no distilled features (a plain 3DGS PLY): nothing to query"
        return None

    @property
    def can_text(self) -> bool:
        """Whether text queries work (a teacher with a text encoder is recorded with the model)."""
        try:
            return self.features_reason is None and hasattr(self.base.teacher, "encode_text")
        except ConfigError:
            return False

    @property
    def has_scene(self) -> bool:
        return bool(self.base.scene_path)

    # ------------------------------------------------------------------------------------ queries
    def query(self, *specs: QuerySpec) -> Optional[EditSelection]:
        """Select what ``specs`` (unioned) select on the current model; replaces the current selection.
        Nothing selected is not an error here: the selection is cleared and :attr:`message` says why."""
        if self.features_reason:
            raise ConfigError(self.features_reason)
        self.queries = list(specs)
        self._resolve()
        return self.selection

    def clear_selection(self) -> None:
        self.queries, self.selection, self.message = [], None, "selection cleared"

    def set_threshold(self, threshold: float) -> None:
        """The selection threshold, for the current query and for every edit made so far (as in an edit script,
        one ``selection:`` serves all operations: the edits are re-applied with it)."""
        old = self.selection_config.threshold
        self.selection_config.threshold = float(threshold)
        try:
            self.selection_config.validate()
            if self.steps:
                self._replay([s.op for s in self.steps])
        except (ConfigError, DataError):
            self.selection_config.threshold = old
            raise
        self._resolve()

    def _resolve(self) -> None:
        if not self.queries:
            self.selection = None
            return
        try:
            self.selection = select_gaussians(self.ctx, self.queries, self.selection_config)
            self.message = "selected by " + " + ".join(q.describe() for q in self.queries)
        except EmptySelectionError as err:
            self.selection, self.message = None, str(err)

    # ------------------------------------------------------------------------------------ edits
    def apply(self, op: Operation) -> dict:
        """Apply ``op`` to the current selection (its queries are recorded as ``op.select``); the redo list is
        dropped. Returns what the operation reports (counts, notes)."""
        op = copy.deepcopy(op)
        if op.needs_selection:
            if self.selection is None:
                raise ConfigError(f"{op.name}: select something first")
            op.select = list(self.queries)
        op.check()
        before = self.model.num_gaussians
        step = self._run(op, mask=self.selection.mask if op.needs_selection else None)
        self.steps.append(step)
        self.undone.clear()
        self._resolve()
        self.message = f"{op.name}: Gaussians {before} -> {step.model.num_gaussians}"
        return step.info

    def _run(self, op: Operation, model: Optional[GaussianModel] = None, mask: Optional[torch.Tensor] = None) -> Step:
        """``op`` on ``model`` (default: the current one), its selection resolved as ``apply_script`` does
        (``mask``: already resolved so, on the current model)."""
        model = self.model if model is None else model
        if mask is None and op.select:
            mask = select_gaussians(self.base.with_model(model), op.select, self.selection_config).mask
        elif mask is None:
            mask = torch.zeros(model.num_gaussians, dtype=torch.bool, device=model.device)
        env = EditEnv(meta=self.base.meta).bound_to(self.base)
        result: OpResult = op.apply(model, mask, env)
        return Step(op, result.model, dict(result.info, num_gaussians_after=result.model.num_gaussians))

    def _replay(self, ops: Sequence[Operation]) -> None:
        """Re-apply ``ops`` from the opened model (after a change of the selection settings)."""
        steps, model = [], self.base.model
        for op in ops:
            try:
                step = self._run(op, model)
            except EmptySelectionError as err:
                raise ConfigError(f"with threshold {self.selection_config.threshold}, {op.name} would have "
                                  f"nothing to act on ({err})") from None
            steps.append(step)
            model = step.model
        self.steps = steps

    def undo(self) -> bool:
        """Take back the last operation (False: nothing to undo)."""
        if not self.steps:
            return False
        self.undone.append(self.steps.pop().op)
        self._resolve()
        self.message = f"undid {self.undone[-1].name}"
        return True

    def redo(self) -> bool:
        """Apply again the last operation undone (False: nothing to redo)."""
        if not self.undone:
            return False
        op = self.undone.pop()
        self.steps.append(self._run(op))
        self._resolve()
        self.message = f"redid {op.name}"
        return True

    # ------------------------------------------------------------------------------------ export
    def script(self) -> EditScript:
        """The edits so far as an edit script (what ``edit.py --script`` would run). The first operation's
        queries are the script's ``select:`` (resolved on the opened model either way), so that one query and one
        operation make the script ``edit.py --text T --op OP`` makes."""
        ops = [copy.deepcopy(s.op) for s in self.steps]
        select = []
        if ops and ops[0].select:
            select, ops[0].select = ops[0].select, []
        return EditScript(select=select, selection=copy.deepcopy(self.selection_config), operations=ops,
                          source="viewer")

    def export(self, out, *, force: bool = False, views: int = 3, split: str = "test") -> dict:
        """Write the edited scene as ``edit.py`` does (PLY + sidecar, summary, before | after renders) through
        :func:`dff_gs.edit.export.export_edit`. Returns its summary."""
        if not self.steps:
            raise ConfigError("nothing to export: no edit made yet")
        return export_edit(self.base, self.script().check(), out, force=force, views=views, split=split)

"""Render-time edits of a NeRF by a query's 3D segmentation (the paper's Sec. 4.3): at every sample along
every ray, ``p(query | x)`` (Eq. 5 on the decoded feature) decides whether the sample is selected; the edit
then masks its density (delete / extract) or replaces its colour (recolour). The coarse pass sees the
same edit, so samples follow the edited geometry (e.g. what lies behind a deleted object).

Edits are not stored in the model: pass one to ``NerfModel.render(cameras, edit=...)`` or :func:`render_edit`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import torch
from torch import Tensor

from dff_gs.core.cameras import Cameras
from dff_gs.core.errors import ConfigError
from dff_gs.nerf.model import NerfModel
from dff_gs.query import DEFAULT_TEMPERATURE, label_probabilities
from dff_gs.query.eq5 import text_query_embeddings
from dff_gs.render import RenderOutput

EDIT_OPS = ("delete", "extract", "recolor")


@dataclass
class SegmentationEdit:
    """An edit of the samples whose ``p(query | x) > threshold``.

    queries: Tensor  # [K, C] the query's embedding first, then its competitors (teacher space)
    op: delete (sigma -> 0 where selected) | extract (sigma -> 0 elsewhere) | recolor (rgb -> color where selected)
    color: Tensor  # [3] in [0, 1], for recolor
    """

    queries: Tensor
    op: str = "delete"
    threshold: float = 0.5
    color: Optional[Tensor] = None
    temperature: float = DEFAULT_TEMPERATURE

    def __post_init__(self) -> None:
        if self.op not in EDIT_OPS:
            raise ConfigError(f"unknown NeRF edit {self.op!r} (known: {', '.join(EDIT_OPS)})")
        if self.op == "recolor":
            if self.color is None:
                raise ConfigError("recolor needs a colour (three values in [0, 1])")
            self.color = torch.as_tensor(self.color, dtype=torch.float32).reshape(3)
        if self.queries.dim() != 2 or len(self.queries) < 2:
            raise ConfigError("an edit's query needs its embedding and at least one competitor: [K >= 2, C]")

    def selected(self, decoded: Tensor) -> Tensor:
        """decoded: Tensor  # [N, C]  ->  Tensor  # [N] bool"""
        return label_probabilities(decoded, self.queries, self.temperature)[:, 0] > self.threshold

    def apply(self, x: Tensor, sigma: Tensor, rgb: Optional[Tensor],
              decoded: Tensor) -> tuple[Tensor, Optional[Tensor]]:
        """Edit one batch of samples.

        x: Tensor  # [N, 3] world positions (unused by segmentation edits; part of the interface)
        sigma: Tensor  # [N]
        rgb: Tensor  # [N, 3] or None (coarse pass)
        decoded: Tensor  # [N, C] decoded features
        Returns the edited (sigma, rgb).
        """
        sel = self.selected(decoded)
        if self.op == "delete":
            return sigma * (~sel).to(sigma.dtype), rgb
        if self.op == "extract":
            return sigma * sel.to(sigma.dtype), rgb
        if rgb is not None:
            rgb = torch.where(sel[:, None], self.color.to(rgb), rgb)
        return sigma, rgb


def text_edit(encode_text, query: str, negatives: Sequence[str], op: str = "delete", threshold: float = 0.5,
              color: Optional[Sequence[float]] = None) -> SegmentationEdit:
    """A :class:`SegmentationEdit` of a text query with its negatives."""
    return SegmentationEdit(text_query_embeddings(encode_text, query, negatives), op=op, threshold=threshold,
                            color=None if color is None else torch.tensor(color, dtype=torch.float32))


@torch.no_grad()
def render_edit(model: NerfModel, cameras: Cameras, edit: SegmentationEdit,
                with_features: bool = False) -> RenderOutput:
    """Render ``cameras`` with ``edit`` applied; the model is not modified."""
    if not model.has_features:
        raise ConfigError("render-time edits need a NeRF trained with a teacher (no feature branch)")
    edit.queries = edit.queries.to(model.device)
    return model.render(cameras, with_features=with_features, edit=edit)

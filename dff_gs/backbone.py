"""One interface for a trained scene representation — the Gaussians or the NeRF — so that evaluation, queries
(:class:`dff_gs.query.QueryContext`), segmentation renders, the render command and the backbone benchmark are
written once, against :class:`Backbone`.

A :class:`~dff_gs.core.gaussians.GaussianModel` is one through :class:`GaussianBackbone` (it adds the rasterizer
``backend`` and the background); :class:`~dff_gs.nerf.model.NerfModel` is one itself. :func:`as_backbone`
takes either. A run folder or model file of either kind loads as one with :func:`dff_gs.engine.runs.load_backbone`;
:meth:`Backbone.save` writes one back (a PLY + sidecar, or ``nerf_model.pt``).

Primitives are what a backbone's 3D queries are answered on: each Gaussian, or each occupied cell of a NeRF's
occupancy grid (its centre standing for the field there).
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Protocol, runtime_checkable

import torch
from torch import Tensor

from dff_gs.core.cameras import Cameras
from dff_gs.core.errors import ConfigError
from dff_gs.core.gaussians import GaussianModel
from dff_gs.io.ply import save_ply
from dff_gs.render import RenderOutput, render


@runtime_checkable
class Backbone(Protocol):
    """What every consumer of a trained model needs of it.

    kind: "gs" | "nerf"
    """

    kind: str

    @property
    def has_features(self) -> bool:
        """Whether it carries distilled features."""

    @property
    def output_dim(self) -> int:
        """The decoded features' dimension (the teacher's)."""

    @property
    def device(self) -> torch.device: ...

    def render(self, cameras: Cameras, *, with_features: bool = True) -> RenderOutput:
        """rgb [C, H, W, 3], stored (undecoded) features [C, H, W, D] or None, depth and alpha [C, H, W, 1]."""

    def decode(self, features: Tensor) -> Tensor:
        """Stored features ``[..., D]`` -> the teacher's space ``[..., C]``."""

    def pixel_feature(self, cameras: Cameras, view: int, x: int, y: int) -> Tensor:
        """The decoded rendered feature ``[C]`` at pixel ``(x, y)`` of camera ``view`` (checked by the caller)."""

    def content_features(self, max_points: int = 50000, seed: int = 0) -> Tensor:
        """Decoded features ``[M, C]`` of what the scene holds: each Gaussian's, or the field's at its occupied
        cells (a seeded subset of at most ``max_points``); the competitors of a patch / click reference."""

    def primitive_points(self) -> Tensor:
        """Positions ``[N, 3]`` of every primitive: the Gaussians' centres, or the occupied cells' centres."""

    def primitive_features(self) -> Tensor:
        """Decoded features ``[N, C]`` of every primitive (in the order of :meth:`primitive_points`): what 3D
        queries (Eq. 5 per primitive, k-means clusters) are answered on."""

    def save(self, path: str | Path, metadata: Optional[dict] = None) -> Path:
        """Write the model with ``metadata`` (teacher, scene, ...) to ``path`` atomically; returns the path. It loads
        back with :func:`dff_gs.engine.runs.load_backbone`."""


class GaussianBackbone:
    """:class:`Backbone` over a :class:`GaussianModel`, rendered with ``backend`` over ``background``.

    background: Optional[Tensor]  # [3]
    """

    kind = "gs"

    def __init__(self, model: GaussianModel, backend: str = "auto", background: Optional[Tensor] = None):
        self.model, self.backend = model, backend
        self.background = None if background is None else background.to(model.device)

    @property
    def has_features(self) -> bool:
        return self.model.feature_dim > 0

    @property
    def output_dim(self) -> int:
        return self.model.output_dim

    @property
    def device(self) -> torch.device:
        return self.model.device

    def render(self, cameras: Cameras, *, with_features: bool = True) -> RenderOutput:
        bg = None if self.background is None else self.background[None].expand(len(cameras), -1)
        return render(self.model, cameras.to(self.device), backgrounds=bg,
                      with_features=with_features and self.has_features, backend=self.backend)

    def decode(self, features: Tensor) -> Tensor:
        return self.model.decode(features)

    @torch.no_grad()
    def pixel_feature(self, cameras: Cameras, view: int, x: int, y: int) -> Tensor:
        out = self.render(cameras[[view]], with_features=True)
        return self.decode(out.features[0, y, x])

    @torch.no_grad()
    def content_features(self, max_points: int = 50000, seed: int = 0) -> Tensor:
        return self.decode(self.model.params["features"].detach())

    def primitive_points(self) -> Tensor:
        return self.model.get_means().detach()

    @torch.no_grad()
    def primitive_features(self) -> Tensor:
        require_features(self)
        return self.content_features()

    def save(self, path: str | Path, metadata: Optional[dict] = None) -> Path:
        """A 3DGS PLY with the ``semantic_*`` features and its sidecar (decoder + ``metadata``)."""
        return save_ply(self.model, path, metadata=metadata)


def as_backbone(model, backend: str = "auto", background: Optional[Tensor] = None) -> Backbone:
    """A :class:`Backbone` for ``model``: Gaussians are wrapped (``backend``, ``background``), backbones returned
    as they are."""
    if isinstance(model, GaussianModel):
        return GaussianBackbone(model, backend=backend, background=background)
    if isinstance(model, Backbone):
        return model
    raise ConfigError(f"a {type(model).__name__} is not a backbone: expected a GaussianModel or a NerfModel")


def require_features(backbone: Backbone) -> None:
    """A one-line error for a query on a model without features."""
    if not backbone.has_features:
        raise ConfigError("this model carries no features (a plain 3DGS PLY, or trained without a teacher): lift "
                          "or distil features onto it first (train.py --init-ply PLY --lift, or --teacher NAME)")

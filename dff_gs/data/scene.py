"""``SceneData``: what every loader returns and every trainer consumes."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Optional

import torch
from torch import Tensor

from dff_gs.core.cameras import Cameras
from dff_gs.core.utils import has_depth
from dff_gs.data.region import Region


@dataclass
class SceneData:
    """Posed images of one scene with optional depth, semantics and sparse points.

    images: Tensor                 # [V, H, W, 3] uint8 as decoded, RGBA composited on the background (float32 in
                                   # [0, 1] also accepted); dff_gs.core.utils.as_rgb: float32 of the slice a step uses
    cameras: Cameras               # V cameras, OpenCV convention
    depths: Optional[Tensor]       # [V, H, W] float32 metres, z-depth along the camera axis, 0 = invalid
    semantics: Optional[Tensor]    # [V, H, W] class ids, -1 = unlabeled: int16 as loaded (int32 past 32,767 classes;
                                   # int64 also accepted): .long() where an index or one-hot needs it
    bounds: Tensor                 # [2, 3] scene AABB (min, max)
    points: Optional[Tensor]       # [P, 3] sparse points (COLMAP) for initialisation
    point_colors: Optional[Tensor] # [P, 3] in [0, 1]
    alphas: Optional[Tensor]       # [V, H, W] float32 alpha of RGBA images (None when every image is opaque)
    masks: Optional[Tensor]        # [V, H, W] bool, False = pixel left out of the photometric loss
    downscale: int                 # factor the images were shrunk by from the capture's own size
    background: tuple              # RGB the images were composited on, and that rendering uses
    format: str                    # the loader that read it (transforms | colmap | replica)
    region: Optional[Region]       # without depth or points: the region the training views see (its box = bounds)
    """

    images: Tensor
    cameras: Cameras
    image_names: list[str]
    train_ids: list[int]
    test_ids: list[int]
    bounds: Tensor
    depths: Optional[Tensor] = None
    semantics: Optional[Tensor] = None
    class_names: Optional[list[str]] = None
    points: Optional[Tensor] = None
    point_colors: Optional[Tensor] = None
    source: str = ""
    alphas: Optional[Tensor] = None
    masks: Optional[Tensor] = None
    downscale: int = 1
    background: tuple = (1.0, 1.0, 1.0)
    format: str = ""
    region: Optional["Region"] = None

    @property
    def num_views(self) -> int:
        return self.images.shape[0]

    @property
    def height(self) -> int:
        return self.images.shape[1]

    @property
    def width(self) -> int:
        return self.images.shape[2]

    def subset(self, ids: list[int]) -> "SceneData":
        """The views ``ids`` (renumbered 0..len-1; all of them count as both train and test)."""
        idx = torch.as_tensor(list(ids), dtype=torch.long)
        pick = lambda t: None if t is None else t[idx]  # noqa: E731
        return replace(self, images=self.images[idx], cameras=self.cameras[idx],
                       image_names=[self.image_names[i] for i in ids], train_ids=list(range(len(ids))),
                       test_ids=list(range(len(ids))), depths=pick(self.depths), semantics=pick(self.semantics),
                       alphas=pick(self.alphas), masks=pick(self.masks))

    def split(self, name: str) -> "SceneData":
        """The ``"train"`` or ``"test"`` views as a scene of their own."""
        if name not in ("train", "test", "all"):
            raise ValueError(f"unknown split {name!r} (train | test | all)")
        if name == "all":
            return self
        return self.subset(self.train_ids if name == "train" else self.test_ids)


def split_every(num_views: int, test_every: int) -> tuple[list[int], list[int]]:
    """Train/test ids: view ``i`` is a test view when ``i % test_every == 0`` (3DGS / Mip-NeRF 360 split);
    ``test_every <= 0`` means no test views."""
    if test_every <= 0:
        return list(range(num_views)), []
    test = [i for i in range(num_views) if i % test_every == 0]
    train = [i for i in range(num_views) if i % test_every != 0]
    return train, test


def estimate_bounds(cameras: Cameras, depths: Optional[Tensor] = None, points: Optional[Tensor] = None) -> Tensor:
    """Scene AABB ``[2, 3]`` from depth back-projection, else sparse points (2-98th percentile), with the camera
    centres; else the camera centres padded by their spread. (Scenes without depth or points take the box of
    :func:`dff_gs.data.region.content_region` when it finds one.)"""
    centers = cameras.centers
    if depths is not None:
        pts = cameras.backproject(depths)[has_depth(depths)]
        if len(pts) > 200000:
            pts = pts[torch.randperm(len(pts), generator=torch.Generator().manual_seed(0))[:200000]]
        cloud = torch.cat([pts, centers])
        return torch.stack([cloud.amin(0), cloud.amax(0)])
    if points is not None and len(points) > 10:
        lo = torch.quantile(points, 0.02, dim=0)
        hi = torch.quantile(points, 0.98, dim=0)
        cloud = torch.cat([torch.stack([lo, hi]), centers])
        return torch.stack([cloud.amin(0), cloud.amax(0)])
    lo, hi = centers.amin(0), centers.amax(0)
    pad = (hi - lo).max().clamp_min(1.0) * 0.5
    return torch.stack([lo - pad, hi + pad])

"""The NeRF-DFF baseline as a training method: the field's box and occupancy grid started from the scene's
geometry prior (what the Gaussians start from), trained by a :class:`~dff_gs.nerf.trainer.NerfTrainer` on the
same scene, teacher maps and losses. Its run folder holds ``nerf_model.pt`` in place of ``point_cloud.ply`` and
``num_parameters`` in place of ``num_gaussians``."""

from __future__ import annotations

from typing import Optional, get_args

import torch
from torch import Tensor

from dff_gs.core.errors import ConfigError
from dff_gs.core.features import init_decoder_pca
from dff_gs.core.utils import has_depth, seed_everything
from dff_gs.data import SceneData
from dff_gs.nerf.config import OccInit
from dff_gs.nerf.model import NerfModel
from dff_gs.nerf.trainer import NerfTrainer
from dff_gs.train.config import Config
from dff_gs.train.method import MethodInputs, TrainerMethod, optimizer_groups


def scene_box(bounds: torch.Tensor, padding: float) -> torch.Tensor:
    """The field's AABB ``[2, 3]``: the scene bounds grown by ``padding`` x their largest side on every face."""
    pad = float((bounds[1] - bounds[0]).max()) * padding
    return torch.stack([bounds[0] - pad, bounds[1] + pad]).float()


OCC_INITS = get_args(OccInit)


def resolve_occ_init(scene: SceneData, method: str) -> str:
    """``nerf.occ_init`` with ``auto`` resolved as the Gaussians' ``model.init=auto``: depth > points > full."""
    if method not in OCC_INITS:
        raise ConfigError(f"nerf.occ_init={method!r}: expected one of {', '.join(OCC_INITS)}")
    if method == "auto":
        return "depth" if scene.depths is not None else "points" if scene.points is not None else "full"
    return method


def prior_points(scene: SceneData, method: str, max_points: int = 400_000, seed: int = 0) -> Optional[Tensor]:
    """The geometry prior of the occupancy grid — what the Gaussians start from (``model.init``): the training
    views' depth maps back-projected, or the scene's sparse points; None for a full grid.

    Returns Tensor  # [P, 3] or None
    """
    method = resolve_occ_init(scene, method)
    if method == "full":
        return None
    if method == "points":
        if scene.points is None:
            raise ConfigError(f"nerf.occ_init=points but the scene {scene.source} has no sparse points")
        return scene.points.float()
    if scene.depths is None:
        raise ConfigError(f"nerf.occ_init=depth but the scene {scene.source} has no depth maps")
    pts = scene.cameras.backproject(scene.depths)[has_depth(scene.depths)]
    if len(pts) > max_points:
        pts = pts[torch.randperm(len(pts), generator=torch.Generator().manual_seed(seed))[:max_points]]
    return pts


def init_occupancy(model: NerfModel, scene: SceneData, cfg: Config) -> None:
    """Mark the cells no training camera sees, then start the grid from the prior (or full)."""
    model.occupancy.mark_invisible(scene.cameras.to(model.device), near=cfg.nerf.near)
    pts = prior_points(scene, cfg.nerf.occ_init, seed=cfg.train.seed)
    if pts is not None:
        model.occupancy.init_from_points(pts, 4.0 * model.occupancy_threshold(), cfg.nerf.occ_init_dilation)


class NerfMethod(TrainerMethod):
    """The NeRF (``train.backbone=nerf``): one process, its own background (renders pass none)."""

    kind = "nerf"
    title = "NeRF-DFF"
    exports = False
    evaluates_while_training = True

    def __init__(self, cfg: Config, trainer: NerfTrainer):
        self.cfg, self.trainer = cfg, trainer

    @classmethod
    def build(cls, cfg: Config, inputs: MethodInputs) -> "NerfMethod":
        scene, train, teacher, device = inputs.scene, inputs.train_scene, inputs.teacher, inputs.device
        cfg.nerf.occ_init = resolve_occ_init(train, cfg.nerf.occ_init)
        seed_everything(cfg.train.seed)
        background = torch.tensor(scene.background, dtype=torch.float32)
        model = NerfModel(cfg.nerf, scene_box(scene.bounds, cfg.nerf.aabb_padding), teacher.dim, background)
        if model.decoder is not None and teacher.train_maps is not None:
            init_decoder_pca(model.decoder, teacher.train_maps, seed=cfg.train.seed)
        model = model.to(device)
        init_occupancy(model, train, cfg)
        return cls(cfg, NerfTrainer(cfg, model, train.images.to(device), train.cameras.to(device),
                                    teacher.train_maps, device))

    def checkpoint_args(self, meta: dict) -> tuple:
        return (meta,)  # a NeRF checkpoint carries the run's metadata

    def metadata(self) -> dict:
        return {"backbone": "nerf"}

    def eval_options(self) -> dict:
        return {}  # the field renders its own background

    def final_metrics(self) -> dict:
        self.model.eval()
        return {"train_seconds": self.trainer.train_seconds, "num_parameters": self.model.num_parameters}

    def backbone(self) -> NerfModel:
        return self.model

    def parameter_groups(self) -> dict[str, list[Tensor]]:
        return optimizer_groups({"field": self.trainer.optimizer})

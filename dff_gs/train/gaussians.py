"""The Gaussians as a training method: initial Gaussians (depth maps, sparse points, the region the cameras see, a
PLY), the :class:`~dff_gs.train.trainer.Trainer`, and what the run records of them."""

from __future__ import annotations

import torch
from torch import Tensor

from dff_gs.backbone import GaussianBackbone
from dff_gs.core.errors import ConfigError
from dff_gs.core.features import init_decoder_pca
from dff_gs.core.gaussians import GaussianModel
from dff_gs.core.utils import seed_everything
from dff_gs.data import SceneData
from dff_gs.data.region import (background_share, beyond_points, content_region, depth_background, left_out,
                                left_out_share, mean_colors, points_cover)
from dff_gs.io.ply import load_ply
from dff_gs.teachers.prepare import TeacherOutputs
from dff_gs.train.budget import plan_minutes
from dff_gs.train.config import Config
from dff_gs.train.method import MethodInputs, TrainerMethod, optimizer_groups
from dff_gs.train.schedule import init_method
from dff_gs.train.trainer import TrainData, Trainer, scene_scale_of


def scene_summary(cfg: Config, scene: SceneData) -> dict:
    """What ``metrics.json`` records of the scene a run trained on (format, size used, views, initialisation)."""
    init = init_method(cfg, scene)
    if init == "region" and scene.alphas is not None:
        init = "region (visual hull)"
    elif init == "region" and cfg.model.init_beyond > 0:
        init = f"region ({cfg.model.init_beyond:.0%} beyond)"
    elif init == "depth" and (n := depth_beyond_count(scene, cfg.model.init_points, cfg.model.init_beyond)):
        init = f"depth ({n / cfg.model.init_points:.0%} beyond, on the pixels without depth)"
    elif init == "points" and (n := points_beyond_count(scene, cfg.model.init_beyond, cfg.train.seed)[0]):
        init = f"points (and {n / len(scene.points):.0%} as many beyond, on what they leave out)"
    return {"format": scene.format, "width": scene.width, "height": scene.height, "downscale": scene.downscale,
            "train_views": len(scene.train_ids), "test_views": len(scene.test_ids), "init": init}


BACKGROUND_MIN_SHARE = 0.01
"""Depth maps whose training views show at least this share of background pixels (no depth: the sky, past the
sensor's range) start Gaussians past the content on them; fewer are holes, left to densification."""


POINTS_LEFT_OUT_MIN_SHARE = 0.05
"""Sparse points that leave less than this share of the training views out (:func:`points_beyond_count`) explain
them: what they miss is bits of the content's own edges (2-4% on the rendered ring), where Gaussians past the
content would be floaters; a real capture's walls and sky are more (9% on the thermos)."""


def depth_beyond_count(scene: SceneData, init_points: int, init_beyond: float) -> int:
    """How many of ``init_points`` start past the content of ``scene`` with depth maps: as many as its training
    views' share of background pixels (:func:`~dff_gs.data.region.background_share`), at most ``init_beyond`` of
    them; none under ``BACKGROUND_MIN_SHARE`` (a room whose depth covers every pixel trains as it did)."""
    share = background_share(scene.depths, scene.train_ids) if init_beyond > 0 else 0.0
    return int(round(init_points * min(init_beyond, share))) if share >= BACKGROUND_MIN_SHARE else 0


def points_beyond_count(scene: SceneData, init_beyond: float, seed: int = 0) -> tuple[int, object]:
    """How many Gaussians start past the content of ``scene`` with sparse points, and on which pixels
    (:func:`~dff_gs.data.region.left_out`: where no point falls and the view is not the plain render background):
    ``init_beyond`` of the points, none when those pixels are under ``POINTS_LEFT_OUT_MIN_SHARE`` of the views. A
    capture's walls and railing have few sparse points and get them; an object rendered on a plain backdrop, whose
    points leave out only bits of its own edges, gets none (before: on every pixel, on the backdrop and behind the
    object too, floaters seen from the views across it: -1.35 dB on a rendered scene, benchmarks/RESULTS.md).
    Returns (count, keep: the pixel test for :func:`~dff_gs.data.region.beyond_points`)"""
    if init_beyond <= 0 or scene.points is None or not len(scene.points):
        return 0, None
    keep = left_out(scene.images, points_cover(scene.cameras, scene.points), scene.background)
    share = left_out_share(keep, scene.train_ids, scene.height, scene.width, seed=seed)  # as init_model sees
    return (int(round(len(scene.points) * init_beyond)) if share >= POINTS_LEFT_OUT_MIN_SHARE else 0), keep


def joined(points: Tensor, colors: Tensor | None, far: Tensor, far_colors: Tensor) -> tuple[Tensor, Tensor]:
    """``points  # [P, 3]`` then ``far  # [B, 3]``, and their colours (grey for points without: from_points' own)."""
    colors = torch.full_like(points, 0.5) if colors is None else colors
    return torch.cat([points, far]), torch.cat([colors, far_colors])


def init_model(cfg: Config, scene: SceneData, teacher: TeacherOutputs) -> GaussianModel:
    """Initial Gaussians from ``model.init_ply``, else depth maps, sparse points or random positions
    (``model.init``)."""
    m = cfg.model
    feature_dim = m.feature_dim if teacher.dim else 0
    decoder_dim = None
    if feature_dim and m.decoder:
        decoder_dim = teacher.dim
    elif feature_dim and feature_dim != teacher.dim:
        raise ConfigError(
            f"model.decoder=false needs model.feature_dim == the teacher's dimension ({teacher.dim}), "
            f"got {feature_dim}"
        )
    if m.init_ply:  # a PLY from any 3DGS trainer: its Gaussians, SH degree included, with fresh features
        loaded, _ = load_ply(m.init_ply)
        params = {k: v.detach() for k, v in loaded.params.items()}
        params["features"] = torch.zeros(loaded.num_gaussians, feature_dim)
        return GaussianModel(params, loaded.sh_degree, decoder_dim)
    common = dict(sh_degree=m.sh_degree, feature_dim=feature_dim, decoder_dim=decoder_dim)
    method = init_method(cfg, scene)
    if method == "depth":
        if scene.depths is None:
            raise ConfigError(f"model.init=depth but the scene {scene.source} has no depth maps")
        n_beyond = depth_beyond_count(scene, m.init_points, m.init_beyond)
        beyond = beyond_points(scene.cameras, scene.images, scene.bounds, n_beyond, seed=cfg.train.seed,
                               keep=depth_background(scene.depths)) if n_beyond else None
        return GaussianModel.from_depth(
            scene, max_points=m.init_points - n_beyond, seed=cfg.train.seed, beyond=beyond,
            init_opacity=m.init_opacity, init_scale=m.init_scale, **common
        )
    if method == "points":
        if scene.points is None:
            raise ConfigError(f"model.init=points but the scene {scene.source} has no sparse points")
        pts, colors = scene.points, scene.point_colors
        n_beyond, keep = points_beyond_count(scene, m.init_beyond, cfg.train.seed)
        if n_beyond:  # what the points leave out: walls, a railing, the sky
            pts, colors = joined(pts, colors, *beyond_points(scene.cameras, scene.images, scene.bounds, n_beyond,
                                                             seed=cfg.train.seed, keep=keep))
        return GaussianModel.from_points(pts, colors, init_opacity=m.init_opacity, init_scale=m.init_scale, **common)
    if method == "region":
        region = scene.region or content_region(scene.cameras, scene.alphas)  # computed at load when it could be
        if region is None:
            raise ConfigError(f"model.init=region: the cameras of {scene.source} share no view; give points or depth")
        n_beyond = 0 if region.hull else int(round(m.init_beyond * m.init_points))  # an object's silhouettes: none
        pts = region.sample(m.init_points - n_beyond, seed=cfg.train.seed)
        colors = mean_colors(scene.cameras, scene.images, pts)
        if n_beyond:
            pts, colors = joined(pts, colors, *beyond_points(scene.cameras, scene.images, region.bounds, n_beyond,
                                                             seed=cfg.train.seed))
        return GaussianModel.from_points(pts, colors, init_opacity=m.init_opacity, init_scale=m.init_scale,
                                         **common)
    if method == "random":
        return GaussianModel.random(scene.bounds, m.init_points, init_opacity=m.init_opacity, **common)
    raise ConfigError(f"model.init={method!r}: expected auto | depth | points | region | random")


class GaussianMethod(TrainerMethod):
    """The Gaussians (``train.backbone=gs``): :func:`init_model`, its decoder started from the teacher maps' PCA,
    trained by a :class:`~dff_gs.train.trainer.Trainer` (every torchrun rank its share of each step's views)."""

    kind = "gs"
    title = "Gaussians"
    exports = True
    evaluates_while_training = True

    def __init__(self, cfg: Config, summary: dict, trainer: Trainer, background: Tensor):
        """summary: :func:`scene_summary` of the run's scene (kept instead of the scene and its views)"""
        self.cfg, self.summary, self.trainer, self.background = cfg, summary, trainer, background

    @classmethod
    def build(cls, cfg: Config, inputs: MethodInputs) -> "GaussianMethod":
        seed_everything(cfg.train.seed)
        model = init_model(cfg, inputs.train_scene, inputs.teacher)
        model.antialiased = cfg.model.antialiased
        if model.decoder is not None and inputs.teacher.train_maps is not None:
            init_decoder_pca(model.decoder, inputs.teacher.train_maps, seed=cfg.train.seed)
        background = torch.tensor(inputs.scene.background, dtype=torch.float32)
        train, device = inputs.train_scene, inputs.device
        data = TrainData(
            images=train.images.to(device),
            cameras=train.cameras.to(device),
            teacher_maps=inputs.teacher.train_maps,
            background=background.to(device),
            scene_scale=scene_scale_of(train),
            masks=None if train.masks is None else train.masks.to(device),
            alphas=train.alphas.to(device) if cfg.train.random_background and train.alphas is not None else None,
        )
        if cfg.train.minutes > 0 and not cfg.resume:  # the steps that fill the minutes, measured on this model
            plan_minutes(cfg, model, data, device, inputs.world)
        return cls(cfg, scene_summary(cfg, inputs.scene), Trainer(cfg, model, data, device, inputs.world), background)

    def checkpoint_args(self, meta: dict) -> tuple:
        return ()

    def metadata(self) -> dict:
        return {}

    def eval_options(self) -> dict:
        return {"backend": self.cfg.train.backend, "background": self.background}

    def final_metrics(self) -> dict:
        return {"train_seconds": self.trainer.train_seconds, "num_gaussians": self.model.num_gaussians,
                "scene": self.summary}

    def backbone(self) -> GaussianBackbone:
        return GaussianBackbone(self.model)

    def parameter_groups(self) -> dict[str, list[Tensor]]:
        opts = dict(self.trainer.optimizers)
        if self.trainer.decoder_opt is not None:
            opts["decoder"] = self.trainer.decoder_opt
        return optimizer_groups(opts)

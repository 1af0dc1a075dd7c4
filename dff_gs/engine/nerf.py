"""One NeRF training run end to end, writing the same run-folder layout as the Gaussians:

``config.yaml`` (resolved), ``checkpoint.pt`` (resumable), ``nerf_model.pt`` (the model, in place of
``point_cloud.ply``), ``metrics.json`` (the same keys; ``num_parameters`` instead of ``num_gaussians``),
``history.json`` (training log + periodic held-out metrics against training seconds) and ``renders/``.

Scene loading, teacher maps, losses and evaluation are the Gaussians' own code.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from dff_gs.core.errors import ConfigError
from dff_gs.core.features import init_decoder_pca
from dff_gs.core.utils import seed_everything
from dff_gs.data import SceneData
from dff_gs.engine.common import (
    load_run_scene,
    periodic_eval,
    record_final_eval,
    resolve_device,
    saved_config,
    scene_options,
    start_trainer,
)
from dff_gs.engine.evaluate import evaluate
from dff_gs.engine.plots import plot_run_curves
from dff_gs.io.run_dir import RunFolder, run_metadata
from dff_gs.nerf.model import NerfModel
from dff_gs.nerf.trainer import NerfTrainer
from dff_gs.teachers.prepare import prepare_teacher
from dff_gs.train.config import Config


def scene_box(bounds: torch.Tensor, padding: float) -> torch.Tensor:
    """The field's AABB ``[2, 3]``: the scene bounds grown by ``padding`` x their largest side on every face."""
    pad = float((bounds[1] - bounds[0]).max()) * padding
    return torch.stack([bounds[0] - pad, bounds[1] + pad]).float()


OCC_INITS = ("auto", "depth", "points", "full")


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
    pts = scene.cameras.backproject(scene.depths)[scene.depths > 0]
    if len(pts) > max_points:
        pts = pts[torch.randperm(len(pts), generator=torch.Generator().manual_seed(seed))[:max_points]]
    return pts


def init_occupancy(model: NerfModel, scene: SceneData, cfg: Config) -> None:
    """Mark the cells no training camera sees, then start the grid from the prior (or full)."""
    model.occupancy.mark_invisible(scene.cameras.to(model.device), near=cfg.nerf.near)
    pts = prior_points(scene, cfg.nerf.occ_init, seed=cfg.train.seed)
    if pts is not None:
        model.occupancy.init_from_points(pts, 4.0 * model.occupancy_threshold(), cfg.nerf.occ_init_dilation)


def run_nerf(cfg: Config, run: RunFolder, progress: bool = True) -> dict:
    """Train and evaluate the NeRF backbone as ``cfg`` says into the claimed run folder ``run`` (the
    pipeline :func:`dff_gs.engine.pipeline.run` picks for ``train.backbone=nerf``); returns the metrics (also in
    metrics.json)."""
    seed_everything(cfg.train.seed)
    device = resolve_device(cfg.train.device)
    scene_path, scene, train_scene, test_scene = load_run_scene(cfg, device, progress)

    teacher = prepare_teacher(cfg.teacher, scene, device, progress=progress)
    cfg.nerf.occ_init = resolve_occ_init(train_scene, cfg.nerf.occ_init)

    seed_everything(cfg.train.seed)
    background = torch.tensor(scene.background, dtype=torch.float32)
    model = NerfModel(cfg.nerf, scene_box(scene.bounds, cfg.nerf.aabb_padding), teacher.dim, background)
    if model.decoder is not None and teacher.train_maps is not None:
        init_decoder_pca(model.decoder, teacher.train_maps, seed=cfg.train.seed)
    model = model.to(device)
    init_occupancy(model, train_scene, cfg)
    trainer = NerfTrainer(cfg, model, train_scene.images.to(device), train_scene.cameras.to(device),
                          teacher.train_maps, device)
    meta = run_metadata(teacher.meta, str(scene_path), scene_options(cfg), backbone="nerf")
    checkpoint = start_trainer(cfg, trainer, run, saved_config(cfg, scene), meta)
    trainer.fit(on_checkpoint=checkpoint, progress=progress,
                eval_fn=periodic_eval(trainer, test_scene, device, cfg, None, teacher))  # renders its own background
    checkpoint()

    model = trainer.model.eval()
    metrics: dict = {"train_seconds": trainer.train_seconds, "num_parameters": model.num_parameters}
    if test_scene is not None:
        metrics.update(evaluate(model, test_scene, device=device, class_embeddings=teacher.class_embeddings,
                                teacher_labels=teacher.test_labels, render_dir=run.renders,
                                num_render_views=cfg.train.num_render_views, lpips_weights=cfg.train.lpips_weights,
                                progress=progress))
    record_final_eval(trainer, metrics)
    run.save_model(model, meta)
    run.write_metrics(metrics)
    run.write_history("nerf", trainer.history, trainer.eval_history)
    plot_run_curves(run.path, trainer.eval_history, "NeRF-DFF")
    return metrics

"""The Gaussian pipeline: initial Gaussians (depth maps, sparse points, the region the cameras see, a PLY),
training against the teacher, evaluation, and the run folder's outputs."""

from __future__ import annotations

import torch

from dff_gs.backbone import GaussianBackbone
from dff_gs.core.distributed import PeerLost, World, fingerprint
from dff_gs.core.errors import ConfigError
from dff_gs.core.features import init_decoder_pca
from dff_gs.core.gaussians import GaussianModel
from dff_gs.core.utils import seed_everything
from dff_gs.data import SceneData
from dff_gs.data.region import content_region, mean_colors
from dff_gs.engine.common import (
    export_run,
    load_run_scene,
    periodic_eval,
    record_final_eval,
    resolve_device,
    saved_config,
    scene_options,
    start_trainer,
    stopped_run,
)
from dff_gs.engine.evaluate import evaluate
from dff_gs.engine.plots import plot_run_curves
from dff_gs.io.ply import load_ply
from dff_gs.io.run_dir import RunFolder, run_metadata
from dff_gs.teachers.prepare import TeacherOutputs, prepare_teacher
from dff_gs.train.config import Config
from dff_gs.train.schedule import init_method
from dff_gs.train.trainer import TrainData, Trainer, scene_scale_of


def scene_summary(cfg: Config, scene: SceneData) -> dict:
    """What ``metrics.json`` records of the scene a run trained on (format, size used, views, initialisation)."""
    init = init_method(cfg, scene)
    if init == "region" and scene.alphas is not None:
        init = "region (visual hull)"
    return {"format": scene.format, "width": scene.width, "height": scene.height, "downscale": scene.downscale,
            "train_views": len(scene.train_ids), "test_views": len(scene.test_ids), "init": init}


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
        return GaussianModel.from_depth(
            scene, max_points=m.init_points, seed=cfg.train.seed, init_opacity=m.init_opacity,
            init_scale=m.init_scale, **common
        )
    if method == "points":
        if scene.points is None:
            raise ConfigError(f"model.init=points but the scene {scene.source} has no sparse points")
        return GaussianModel.from_points(
            scene.points, scene.point_colors, init_opacity=m.init_opacity, init_scale=m.init_scale, **common
        )
    if method == "region":
        region = scene.region or content_region(scene.cameras, scene.alphas)  # computed at load when it could be
        if region is None:
            raise ConfigError(f"model.init=region: the cameras of {scene.source} share no view; give points or depth")
        pts = region.sample(m.init_points, seed=cfg.train.seed)
        return GaussianModel.from_points(pts, mean_colors(scene.cameras, scene.images, pts),
                                         init_opacity=m.init_opacity, init_scale=m.init_scale, **common)
    if method == "random":
        return GaussianModel.random(scene.bounds, m.init_points, init_opacity=m.init_opacity, **common)
    raise ConfigError(f"model.init={method!r}: expected auto | depth | points | region | random")


def train_gaussians(cfg: Config, run: RunFolder, progress: bool = True, watch=None) -> dict:
    """The Gaussian pipeline: scene, teacher, model, training, evaluation, outputs into the claimed ``run``.

    Under torchrun every rank trains its share of each step's views (:class:`~dff_gs.train.trainer.Trainer`);
    rank 0 loads the scene and computes the teacher maps first (the others then read its caches), and alone
    writes, evaluates and returns the metrics (the others return an empty dict). ``watch(cfg)``, when given, makes
    the trainer's watcher (the training viewer: called after every step, closed at the end)."""
    world = World.current()
    seed_everything(cfg.train.seed)
    device = world.place(resolve_device(cfg.train.device))
    with world.main_first("loading the scene and computing its teacher maps"):
        scene_path, scene, train_scene, test_scene = load_run_scene(cfg, device, progress)
        teacher = prepare_teacher(cfg.teacher, scene, device, progress=progress, evaluation=world.main)

    seed_everything(cfg.train.seed)
    model = init_model(cfg, train_scene, teacher)
    if model.decoder is not None and teacher.train_maps is not None:
        init_decoder_pca(model.decoder, teacher.train_maps, seed=cfg.train.seed)
    background = torch.tensor(scene.background, dtype=torch.float32)
    data = TrainData(
        images=train_scene.images.to(device),
        cameras=train_scene.cameras.to(device),
        teacher_maps=teacher.train_maps,
        background=background.to(device),
        scene_scale=scene_scale_of(train_scene),
        masks=None if train_scene.masks is None else train_scene.masks.to(device),
    )
    trainer = Trainer(cfg, model, data, device, world)
    checkpoint = start_trainer(cfg, trainer, run, saved_config(cfg, scene), main=world.main)
    eval_fn = periodic_eval(trainer, test_scene, device, cfg, background, teacher) if world.main else None
    trainer.watcher = watch(cfg) if watch is not None and world.main else None
    try:
        trainer.fit(on_checkpoint=checkpoint, progress=progress, eval_fn=eval_fn)
        world.same_everywhere(fingerprint(trainer.model.state_dict().values()), "final parameters")
    except PeerLost as e:
        raise stopped_run(e, trainer, checkpoint, run, world.main) from None
    finally:
        if trainer.watcher is not None:
            trainer.watcher.close()
    if not world.main:
        return {}
    checkpoint()

    model = trainer.model
    metrics: dict = {"train_seconds": trainer.train_seconds, "num_gaussians": model.num_gaussians,
                     "scene": scene_summary(cfg, scene)}
    if test_scene is not None:
        metrics.update(evaluate(model, test_scene, device=device, backend=cfg.train.backend, background=background,
                                class_embeddings=teacher.class_embeddings, teacher_labels=teacher.test_labels,
                                render_dir=run.renders, num_render_views=cfg.train.num_render_views,
                                lpips_weights=cfg.train.lpips_weights, progress=progress))
    run.save_model(GaussianBackbone(model), run_metadata(teacher.meta, str(scene_path), scene_options(cfg)))
    export_run(cfg, model, run.ply)
    run.write_metrics(metrics)
    record_final_eval(trainer, metrics)
    run.write_history("gs", trainer.history, trainer.eval_history)
    plot_run_curves(run.path, trainer.eval_history, "Gaussians")
    return metrics

"""One training run end to end: scene -> teacher maps -> model -> train -> evaluate -> run folder.

A run folder holds ``config.yaml`` (resolved), ``checkpoint.pt``, ``point_cloud.ply`` (+ sidecar),
``metrics.json``, ``history.json`` and ``renders/``.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Callable, Optional

import torch

from dff_gs.config import save_yaml, to_dict
from dff_gs.data import SceneData, load_scene
from dff_gs.errors import ConfigError, DataError
from dff_gs.gaussians import GaussianModel
from dff_gs.io.ply import save_ply
from dff_gs.run_dir import (CHECKPOINT_NAME, CONFIG_NAME, HISTORY_NAME, METRICS_NAME, PLY_NAME, RENDERS_NAME,
                            claim_run_dir, run_dir_for)
from dff_gs.train.config import Config
from dff_gs.train.distill import TeacherOutputs, init_decoder_pca, prepare_teacher
from dff_gs.train.evaluate import evaluate
from dff_gs.train.trainer import Trainer, TrainData, scene_scale_of
from dff_gs.train.validate import validate_config
from dff_gs.utils import atomic_write_path, seed_everything


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"train.device={name!r} but CUDA is not available on this machine")
    try:
        return torch.device(name)
    except RuntimeError:
        raise ConfigError(f"train.device={name!r} is not a device (auto | cpu | cuda)") from None


def resolve_scene_path(cfg: Config) -> Path:
    if cfg.data.path:
        return Path(cfg.data.path)
    from dff_gs.data.synthetic import default_scene_path

    return default_scene_path()


def scene_options(cfg: Config) -> dict:
    """``cfg.data``'s ``load_scene`` options, as the PLY sidecar records them (for tools that reopen the scene)."""
    return {"downscale": cfg.data.downscale, "test_every": cfg.data.test_every, "format": cfg.data.format,
            "background": list(cfg.data.background), "skip_missing": cfg.data.skip_missing}


def load_run_scene(cfg: Config, device: Optional[torch.device] = None, progress: bool = True
                   ) -> tuple[Path, SceneData, SceneData, Optional[SceneData]]:
    """The scene ``cfg.data`` names: its path, the whole scene, the training split and the test split (None when
    ``data.test_every`` holds no views out). Every backbone and the lifting run load it through here. The CPU
    resolution budget ``data.max_side`` applies when ``device`` is the CPU; the factor chosen is written back to
    ``cfg.data.downscale`` so that the run's config reopens the scene at the size it trained on."""
    scene_path = resolve_scene_path(cfg)
    on_cpu = device is None or device.type == "cpu"
    scene = load_scene(scene_path, max_side=cfg.data.max_side if on_cpu else 0, progress=progress, **scene_options(cfg))
    cfg.data.downscale = scene.downscale
    if not scene.train_ids:
        raise DataError(f"{scene.source}: no training views: {len(scene.train_ids) + len(scene.test_ids)} view(s), "
                        f"and data.test_every={cfg.data.test_every} holds out view 0 of every {cfg.data.test_every}; "
                        "give more views or data.test_every=0")
    if not cfg.data.labels and scene.semantics is not None:
        print(f"{scene.source}: label maps withheld (data.labels=false)")
        scene = replace(scene, semantics=None, class_names=None)
    return scene_path, scene, scene.split("train"), scene.split("test") if scene.test_ids else None


def init_method(cfg: Config, scene: SceneData) -> str:
    """``model.init`` with ``auto`` resolved: depth maps, else sparse points, else the region the cameras see."""
    if cfg.model.init_ply:
        return "ply"
    if cfg.model.init != "auto":
        return cfg.model.init
    return "depth" if scene.depths is not None else "points" if scene.points is not None else "region"


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
        from dff_gs.io.ply import load_ply

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
        from dff_gs.data.region import content_region, mean_colors

        region = scene.region or content_region(scene.cameras, scene.alphas)  # computed at load when it could be
        if region is None:
            raise ConfigError(f"model.init=region: the cameras of {scene.source} share no view; give points or depth")
        pts = region.sample(m.init_points, seed=cfg.train.seed)
        return GaussianModel.from_points(pts, mean_colors(scene.cameras, scene.images, pts),
                                         init_opacity=m.init_opacity, init_scale=m.init_scale, **common)
    if method == "random":
        return GaussianModel.random(scene.bounds, m.init_points, init_opacity=m.init_opacity, **common)
    raise ConfigError(f"model.init={method!r}: expected auto | depth | points | region | random")


EVAL_KEYS = ("psnr", "ssim", "miou", "accuracy", "depth_delta1", "depth_absrel")
"""Metrics kept in ``history.json``'s periodic held-out evaluation."""


def periodic_eval(trainer, test_scene: Optional[SceneData], device: torch.device, cfg: Config,
                  background: Optional[torch.Tensor], teacher: TeacherOutputs):
    """The ``eval_fn`` of ``trainer.fit``: held-out metrics every ``train.eval_every`` steps (None if off)."""
    if test_scene is None or not cfg.train.eval_every:
        return None

    def eval_fn() -> dict:
        return evaluate(trainer.model, test_scene, device=device, backend=cfg.train.backend, background=background,
                        class_embeddings=teacher.class_embeddings, progress=False)

    return eval_fn


def eval_row(step: int, seconds: float, metrics: dict) -> Optional[dict]:
    """The ``history.json`` evaluation row of a final ``metrics`` dict (None when it holds no evaluation)."""
    if "psnr" not in metrics:
        return None
    return {"step": step, "seconds": seconds, **{k: metrics[k] for k in EVAL_KEYS if k in metrics}}


def record_final_eval(trainer, metrics: dict) -> None:
    """Close ``trainer.eval_history`` with the final evaluation (if it is not already its last row)."""
    row = eval_row(trainer.step, trainer.train_seconds, metrics)
    if row is not None and (not trainer.eval_history or trainer.eval_history[-1]["step"] != trainer.step):
        trainer.eval_history.append(row)


def write_json(path: Path, data: dict) -> None:
    with atomic_write_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, default=float))


BACKBONES = ("gs", "nerf")
"""Values of ``train.backbone``: Gaussians, or the NeRF-DFF baseline (:mod:`dff_gs.nerf`)."""


def pipeline_of(cfg: Config):
    """The function that trains ``cfg``'s run into a claimed folder: ``(cfg, out_dir, progress) -> metrics``."""
    if cfg.train.backbone == "nerf":
        from dff_gs.nerf.run import run_nerf

        return run_nerf
    if cfg.train.backbone != "gs":
        raise ConfigError(f"train.backbone={cfg.train.backbone!r}: expected one of {', '.join(BACKBONES)}")
    if cfg.lift.enabled:  # features lifted onto model.init_ply in one pass instead of training
        from dff_gs.lift.run import run_lift

        return run_lift
    return train_gaussians


def run(cfg: Config, progress: bool = True) -> dict:
    """Train and evaluate one run as ``cfg`` says; returns the metrics dict (also in metrics.json).

    The config is checked and the run folder claimed (:func:`~dff_gs.run_dir.claim_run_dir`: locked, an
    existing run refused without ``force``) before any work."""
    validate_config(cfg)
    pipeline = pipeline_of(cfg)
    out_dir = run_dir_for(cfg.out, cfg.resume, resolve_scene_path(cfg))
    with claim_run_dir(out_dir, resume=cfg.resume, force=cfg.force):
        cfg.out = str(out_dir)
        return pipeline(cfg, out_dir, progress)


def start_trainer(cfg: Config, trainer, out_dir: Path, *saved) -> Callable[[], Path]:
    """Resume ``trainer`` from ``cfg.resume`` if set, write the run's ``config.yaml`` (after a resume loaded, so
    a failed one leaves the folder as it was) and return the checkpoint writer ``() -> path`` (``saved``: what
    ``trainer.save`` takes after the path)."""
    if cfg.resume:
        trainer.load(cfg.resume)
    save_yaml(cfg, out_dir / CONFIG_NAME)
    ckpt = out_dir / CHECKPOINT_NAME
    return lambda: trainer.save(ckpt, *saved)


def train_gaussians(cfg: Config, out_dir: Path, progress: bool = True) -> dict:
    """The Gaussian pipeline: scene, teacher, model, training, evaluation, outputs into ``out_dir``."""
    seed_everything(cfg.train.seed)
    device = resolve_device(cfg.train.device)
    scene_path, scene, train_scene, test_scene = load_run_scene(cfg, device, progress)
    teacher = prepare_teacher(cfg.teacher, scene, device, progress=progress)

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
    trainer = Trainer(cfg, model, data, device)
    checkpoint = start_trainer(cfg, trainer, out_dir, to_dict(cfg))
    trainer.fit(on_checkpoint=checkpoint, progress=progress,
                eval_fn=periodic_eval(trainer, test_scene, device, cfg, background, teacher))
    checkpoint()

    model = trainer.model
    metrics: dict = {"train_seconds": trainer.train_seconds, "num_gaussians": model.num_gaussians,
                     "scene": scene_summary(cfg, scene)}
    if test_scene is not None:
        metrics.update(evaluate(model, test_scene, device=device, backend=cfg.train.backend, background=background,
                                class_embeddings=teacher.class_embeddings, teacher_labels=teacher.test_labels,
                                render_dir=out_dir / RENDERS_NAME, num_render_views=cfg.train.num_render_views,
                                progress=progress))
    save_ply(model, out_dir / PLY_NAME, metadata={"teacher": teacher.meta, "scene": str(scene_path),
                                                  "scene_options": scene_options(cfg)})
    write_json(out_dir / METRICS_NAME, metrics)
    record_final_eval(trainer, metrics)
    write_json(out_dir / HISTORY_NAME, {"backbone": "gs", "history": trainer.history, "eval": trainer.eval_history})
    return metrics

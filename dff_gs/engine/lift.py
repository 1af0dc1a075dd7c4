"""``train.py --init-ply PLY --lift``: features for any 3DGS scene without training it.

Loads a PLY from any 3DGS trainer (standard layout, features ignored), lifts the teacher's training-view maps
onto it (:func:`~dff_gs.lift.model.lift_model`), optionally distils the features alone for ``lift.steps``
steps (:class:`~dff_gs.lift.tuner.FeatureTuner`: checkpointed, resumable), evaluates it on the held-out views
like a training run and writes the same run folder: ``config.yaml``, ``checkpoint.pt`` (with a fine-tune),
``point_cloud.ply`` + sidecar (decoder, teacher, scene, lift settings), ``metrics.json`` (``train_seconds`` =
lift + fine-tune, plus ``lift_seconds`` / ``finetune_seconds``), ``history.json`` and ``renders/``.
"""

from __future__ import annotations

from pathlib import Path

import torch

from dff_gs.backbone import GaussianBackbone
from dff_gs.core.errors import ConfigError
from dff_gs.core.utils import seed_everything
from dff_gs.engine.common import (
    checkpoint_writer,
    eval_row,
    export_run,
    load_run_scene,
    resolve_device,
    saved_config,
    scene_options,
)
from dff_gs.engine.evaluate import evaluate
from dff_gs.engine.logger import make_logger
from dff_gs.io.ply import load_ply
from dff_gs.io.run_dir import RunFolder, run_metadata
from dff_gs.lift.model import lift_model
from dff_gs.lift.tuner import FeatureTuner
from dff_gs.teachers.prepare import prepare_teacher
from dff_gs.train.config import Config


def check_lift_config(cfg: Config) -> None:
    """Clear errors for settings a lift run cannot honour."""
    if cfg.train.backbone != "gs":
        raise ConfigError(f"--lift lifts onto Gaussians; train.backbone={cfg.train.backbone!r} does not apply")
    if not cfg.model.init_ply:
        raise ConfigError("--lift needs --init-ply PLY: the trained Gaussians to lift teacher features onto")
    if cfg.teacher.name == "none":
        raise ConfigError("--lift needs a teacher (--teacher labels | efficientnet | clip | dino)")
    if cfg.lift.steps < 0:
        raise ConfigError(f"lift.steps must be >= 0, got {cfg.lift.steps}")


def lift_or_resume(cfg: Config, train_scene, teacher, device: torch.device, progress: bool):
    """(model, lift seconds, lift info, checkpoint payload or None): the lifted model of ``cfg.model.init_ply``,
    or, resuming, the one the checkpoint holds (the lift pass is not redone)."""
    if cfg.resume:
        model, payload = FeatureTuner.load_model(cfg.resume, device)
        extra = payload.get("extra") or {}
        return model, float(extra.get("lift_seconds", 0.0)), dict(extra.get("lift_info") or {}), payload
    model, _ = load_ply(cfg.model.init_ply)
    lifted = lift_model(model.to(device), train_scene.cameras, teacher.train_maps, feature_dim=cfg.model.feature_dim,
                        use_decoder=cfg.model.decoder, backend=cfg.lift.backend, top_k=cfg.lift.top_k,
                        resolution=cfg.lift.resolution, seed=cfg.train.seed, progress=progress)
    return lifted.model, lifted.seconds, lifted.info, None


def run_lift(cfg: Config, run: RunFolder, progress: bool = True) -> dict:
    """Lift (and optionally fine-tune) features onto ``cfg.model.init_ply``, evaluate, write the claimed run folder
    ``run`` (a :class:`~dff_gs.io.run_dir.RunFolder`). Returns the metrics dict (also in metrics.json)."""
    check_lift_config(cfg)
    seed_everything(cfg.train.seed)
    device = resolve_device(cfg.train.device)
    scene_path, scene, train_scene, test_scene = load_run_scene(cfg, device, progress)
    teacher = prepare_teacher(cfg.teacher, scene, device, progress=progress)
    model, lift_seconds, lift_info, payload = lift_or_resume(cfg, train_scene, teacher, device, progress)
    run.write_config(cfg)

    tuner = None
    if cfg.lift.steps:
        tuner = FeatureTuner(cfg, model, train_scene.cameras, teacher.train_maps)
        if payload is not None:
            tuner.restore(payload, cfg.resume)
        extra = {"lift_seconds": lift_seconds, "lift_info": lift_info}
        checkpoint = checkpoint_writer(cfg, tuner, run, saved_config(cfg, scene), extra)
        tuner.logger = make_logger(cfg.train.log, run.path)
        tuner.fit(on_checkpoint=checkpoint, progress=progress)
        tuner.logger.close()
        checkpoint()
    finetune_seconds = tuner.train_seconds if tuner is not None else 0.0
    metrics: dict = {
        "train_seconds": lift_seconds + finetune_seconds,
        "lift_seconds": lift_seconds,
        "finetune_seconds": finetune_seconds,
        "num_gaussians": model.num_gaussians,
        "lifted_fraction": lift_info.get("lifted_fraction"),
    }
    background = torch.tensor(scene.background, dtype=torch.float32)
    if test_scene is not None:
        metrics.update(evaluate(
            model, test_scene, device=device, backend=cfg.train.backend, background=background,
            class_embeddings=teacher.class_embeddings, teacher_labels=teacher.test_labels,
            render_dir=run.renders, num_render_views=cfg.train.num_render_views,
            lpips_weights=cfg.train.lpips_weights, progress=progress))
    lift_meta = {"init_ply": str(Path(cfg.model.init_ply).resolve()), "steps": cfg.lift.steps,
                 "top_k": cfg.lift.top_k, "resolution": cfg.lift.resolution, **lift_info}
    run.save_model(GaussianBackbone(model), run_metadata(teacher.meta, str(scene_path), scene_options(cfg),
                                                         lift=lift_meta))
    export_run(cfg, model, run.ply)
    run.write_metrics(metrics)
    final = eval_row(cfg.lift.steps, metrics["train_seconds"], metrics)
    run.write_history("gs", tuner.history if tuner else [], [final] if final else [], lift=True)
    return metrics

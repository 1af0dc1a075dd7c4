"""``train.py --init-ply PLY --lift``: features for any 3DGS scene without training it.

Loads a PLY from any 3DGS trainer (standard layout, features ignored), lifts the teacher's training-view maps
onto it (:func:`~dff_gs.lift.model.lift_model`), optionally distils the features alone for ``lift.steps``
steps, evaluates it on the held-out views like a training run and writes the same run folder:
``config.yaml``, ``point_cloud.ply`` + sidecar (decoder, teacher, scene, lift settings), ``metrics.json``
(``train_seconds`` = lift + fine-tune, plus ``lift_seconds`` / ``finetune_seconds``), ``history.json`` and
``renders/``. There is no ``checkpoint.pt``: nothing here resumes.
"""

from __future__ import annotations

from pathlib import Path

import torch

from dff_gs.config import save_yaml
from dff_gs.errors import ConfigError
from dff_gs.train.config import Config


def check_lift_config(cfg: Config) -> None:
    """Clear errors for settings a lift run cannot honour."""
    if cfg.train.backbone != "gs":
        raise ConfigError(f"--lift lifts onto Gaussians; train.backbone={cfg.train.backbone!r} does not apply")
    if not cfg.model.init_ply:
        raise ConfigError("--lift needs --init-ply PLY: the trained Gaussians to lift teacher features onto")
    if cfg.teacher.name == "none":
        raise ConfigError("--lift needs a teacher (--teacher labels | efficientnet | clip | dino)")
    if cfg.resume:
        raise ConfigError("--resume does not apply to a --lift run (it trains nothing to resume)")
    if cfg.lift.steps < 0:
        raise ConfigError(f"lift.steps must be >= 0, got {cfg.lift.steps}")


def run_lift(cfg: Config, progress: bool = True) -> dict:
    """Lift (and optionally fine-tune) features onto ``cfg.model.init_ply``, evaluate, write the run folder.
    Returns the metrics dict (also in metrics.json)."""
    from dff_gs.io.ply import load_ply, save_ply
    from dff_gs.lift.model import finetune_features, lift_model
    from dff_gs.train.distill import prepare_teacher
    from dff_gs.train.evaluate import evaluate
    from dff_gs.train.run import eval_row, load_run_scene, make_run_dir, resolve_device, scene_options, write_json
    from dff_gs.utils import seed_everything

    check_lift_config(cfg)
    seed_everything(cfg.train.seed)
    device = resolve_device(cfg.train.device)
    scene_path, scene, train_scene, test_scene = load_run_scene(cfg, device)
    model, _ = load_ply(cfg.model.init_ply)
    model = model.to(device)
    teacher = prepare_teacher(cfg.teacher, scene, device, progress=progress)
    out_dir = make_run_dir(cfg, scene_path)
    out_dir.mkdir(parents=True, exist_ok=True)
    cfg.out = str(out_dir)
    save_yaml(cfg, out_dir / "config.yaml")

    lifted = lift_model(model, train_scene.cameras, teacher.train_maps, feature_dim=cfg.model.feature_dim,
                        use_decoder=cfg.model.decoder, backend=cfg.lift.backend, top_k=cfg.lift.top_k,
                        resolution=cfg.lift.resolution, seed=cfg.train.seed, progress=progress)
    model = lifted.model
    tuned = {"seconds": 0.0, "history": []}
    if cfg.lift.steps:
        tuned = finetune_features(model, train_scene.cameras, teacher.train_maps, steps=cfg.lift.steps,
                                  lr=cfg.optim.features_lr, decoder_lr=cfg.optim.decoder_lr,
                                  backend=cfg.train.backend, seed=cfg.train.seed, progress=progress)
    metrics: dict = {
        "train_seconds": lifted.seconds + tuned["seconds"],
        "lift_seconds": lifted.seconds,
        "finetune_seconds": tuned["seconds"],
        "num_gaussians": model.num_gaussians,
        "lifted_fraction": lifted.info["lifted_fraction"],
    }
    background = torch.tensor(scene.background, dtype=torch.float32)
    if test_scene is not None:
        metrics.update(evaluate(
            model, test_scene, device=device, backend=cfg.train.backend, background=background,
            class_embeddings=teacher.class_embeddings, teacher_labels=teacher.test_labels,
            render_dir=out_dir / "renders", num_render_views=cfg.train.num_render_views, progress=progress))
    lift_meta = {"init_ply": str(Path(cfg.model.init_ply).resolve()), "steps": cfg.lift.steps,
                 "top_k": cfg.lift.top_k, "resolution": cfg.lift.resolution, **lifted.info}
    save_ply(model, out_dir / "point_cloud.ply",
             metadata={"teacher": teacher.meta, "scene": str(scene_path), "scene_options": scene_options(cfg),
                       "lift": lift_meta})
    write_json(out_dir / "metrics.json", metrics)
    final = eval_row(cfg.lift.steps, metrics["train_seconds"], metrics)
    write_json(out_dir / "history.json", {"backbone": "gs", "lift": True, "history": tuned["history"],
                                              "eval": [final] if final else []})
    return metrics

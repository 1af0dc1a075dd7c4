"""The lift as a training method (``train.py --init-ply PLY --lift``): features for any 3DGS scene without
training it.

Loads a PLY from any 3DGS trainer (standard layout, features ignored), lifts the teacher's training-view maps
onto it (:func:`~dff_gs.lift.model.lift_model`), optionally distils the features alone for ``lift.steps``
steps (:class:`~dff_gs.lift.tuner.FeatureTuner`: checkpointed, resumable), evaluates it on the held-out views
like a training run and writes the same run folder: ``config.yaml``, ``checkpoint.pt`` (with a fine-tune),
``point_cloud.ply`` + sidecar (decoder, teacher, scene, lift settings), ``metrics.json`` (``train_seconds`` =
lift + fine-tune, plus ``lift_seconds`` / ``finetune_seconds``), ``history.json`` and ``renders/``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import torch
from torch import Tensor

from dff_gs.backbone import GaussianBackbone
from dff_gs.core.errors import ConfigError
from dff_gs.core.gaussians import GaussianModel
from dff_gs.io.ply import load_ply
from dff_gs.lift.model import lift_model
from dff_gs.lift.tuner import FeatureTuner
from dff_gs.train.config import Config
from dff_gs.train.method import MethodInputs, eval_row, optimizer_groups


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


class LiftMethod:
    """Features lifted onto ``model.init_ply`` in one pass, then ``lift.steps`` steps of feature-only fine-tune
    (a :class:`~dff_gs.lift.tuner.FeatureTuner`, the trainer; none without steps). A resumed run continues the
    fine-tune from its checkpoint's lifted model (the lift pass is not redone)."""

    kind = "gs"
    title = None  # no curves: one evaluation, at the end
    exports = True
    evaluates_while_training = False

    def __init__(self, cfg: Config, model: GaussianModel, lift_seconds: float, lift_info: dict,
                 payload: Optional[dict], tuner: Optional[FeatureTuner], background: Tensor):
        self.cfg, self.model, self.trainer, self.background = cfg, model, tuner, background
        self.lift_seconds, self.lift_info, self.payload = lift_seconds, lift_info, payload

    @classmethod
    def build(cls, cfg: Config, inputs: MethodInputs) -> "LiftMethod":
        train, teacher = inputs.train_scene, inputs.teacher
        model, seconds, info, payload = lift_or_resume(cfg, train, teacher, inputs.device, inputs.progress)
        tuner = FeatureTuner(cfg, model, train.cameras, teacher.train_maps) if cfg.lift.steps else None
        background = torch.tensor(inputs.scene.background, dtype=torch.float32)
        return cls(cfg, model, seconds, info, payload, tuner, background)

    def resume(self, path: str) -> None:
        if self.trainer is not None and self.payload is not None:
            self.trainer.restore(self.payload, path)

    def checkpoint_args(self, meta: dict) -> tuple:
        return ({"lift_seconds": self.lift_seconds, "lift_info": self.lift_info},)

    def metadata(self) -> dict:
        lift = self.cfg.lift
        return {"lift": {"init_ply": str(Path(self.cfg.model.init_ply).resolve()), "steps": lift.steps,
                         "top_k": lift.top_k, "resolution": lift.resolution, **self.lift_info}}

    def eval_options(self) -> dict:
        return {"backend": self.cfg.train.backend, "background": self.background}

    def final_metrics(self) -> dict:
        finetune = self.trainer.train_seconds if self.trainer is not None else 0.0
        return {"train_seconds": self.lift_seconds + finetune, "lift_seconds": self.lift_seconds,
                "finetune_seconds": finetune, "num_gaussians": self.model.num_gaussians,
                "lifted_fraction": self.lift_info.get("lifted_fraction")}

    def backbone(self) -> GaussianBackbone:
        return GaussianBackbone(self.model)

    def final_history(self, metrics: dict) -> tuple[list, list, dict]:
        if self.trainer is not None and self.trainer.logger is not None:
            self.trainer.logger.close()
        final = eval_row(self.cfg.lift.steps, metrics["train_seconds"], metrics)
        return self.trainer.history if self.trainer else [], [final] if final else [], {"lift": True}

    def parameter_groups(self) -> dict[str, list[Tensor]]:
        return optimizer_groups({"features": self.trainer.optimizer}) if self.trainer is not None else {}

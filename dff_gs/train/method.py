"""One training interface for every method: the Gaussians (:class:`~dff_gs.train.gaussians.GaussianMethod`), the
NeRF-DFF baseline (:class:`~dff_gs.nerf.method.NerfMethod`) and the lift (:class:`~dff_gs.lift.method.LiftMethod`).

A method is built from the scene, the teacher's outputs and the config, and brings what differs between them: its
model and trainer, how it resumes, what its checkpoints carry, how it is evaluated, its own metrics and logs, the
:class:`~dff_gs.backbone.Backbone` it yields. The one pipeline (:func:`dff_gs.engine.pipeline.train_run`) does the
rest, the same way for all (seed, scene, teacher, fit, evaluate, write, metrics, history, curves).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Protocol

import torch
from torch import Tensor

from dff_gs.backbone import Backbone
from dff_gs.core.distributed import World
from dff_gs.data import SceneData
from dff_gs.teachers.prepare import TeacherOutputs
from dff_gs.train.loop import TrainerBase

EVAL_KEYS = ("psnr", "ssim", "lpips", "miou", "accuracy", "depth_delta1", "depth_absrel")
"""Metrics kept in ``history.json``'s periodic held-out evaluation."""


@dataclass
class MethodInputs:
    """What a method is built from: the scene as loaded for the run, its training split, the teacher's outputs, the
    device, the ranks of the run (:class:`~dff_gs.core.distributed.World`) and whether to show progress."""

    scene: SceneData
    train_scene: SceneData
    teacher: TeacherOutputs
    device: torch.device
    world: World
    progress: bool = True


class Method(Protocol):
    """What the pipeline needs of a training method (built by its class's ``build(cfg, inputs: MethodInputs)``).

    kind: the model's kind, ``"gs"`` or ``"nerf"`` (``history.json``, the saved model);
    title: the name on the run's curves (None: no curves);
    trainer: its :class:`TrainerBase` (None when there is nothing to optimise, e.g. a lift without fine-tune);
    model: the model it trains;
    exports: whether the run writes the viewer exports of ``train.export`` (Gaussians);
    evaluates_while_training: whether the held-out metrics are computed every ``train.eval_every`` steps.
    """

    kind: str
    title: Optional[str]
    trainer: Optional[TrainerBase]
    model: object
    exports: bool
    evaluates_while_training: bool

    def resume(self, path: str) -> None:
        """Continue from the checkpoint ``path`` (``--resume``), exactly."""

    def checkpoint_args(self, meta: dict) -> tuple:
        """What ``trainer.save`` takes after the path and the config (the NeRF: the run's metadata ``meta``; the
        lift: its seconds and figures)."""

    def metadata(self) -> dict:
        """The run metadata's method-specific keys (:func:`~dff_gs.io.run_dir.run_metadata`'s keywords)."""

    def eval_options(self) -> dict:
        """:func:`~dff_gs.engine.evaluate.evaluate`'s rendering options for this model (backend, background)."""

    def final_metrics(self) -> dict:
        """The model made ready for the final evaluation; the method's own figures (seconds, size)."""

    def backbone(self) -> Backbone:
        """The trained model as a :class:`~dff_gs.backbone.Backbone` (what the run folder saves)."""

    def final_history(self, metrics: dict) -> tuple[list, list, dict]:
        """``(training rows, evaluation rows with the final one, extra keys)`` of ``history.json``; the trainer's
        log closed."""

    def parameter_groups(self) -> dict[str, list[Tensor]]:
        """The tensors the trainer optimises, by group (empty when nothing is)."""


class TrainerMethod:
    """What the Gaussians' and the NeRF's methods share: the model is the trainer's, ``--resume`` is the trainer's
    own checkpoint, and ``history.json`` is its log closed by the final evaluation (:func:`record_final_eval`)."""

    trainer: TrainerBase

    @property
    def model(self):
        return self.trainer.model

    def resume(self, path: str) -> None:
        self.trainer.load(path)

    def final_history(self, metrics: dict) -> tuple[list, list, dict]:
        record_final_eval(self.trainer, metrics)
        return self.trainer.history, self.trainer.eval_history, {}


def optimizer_groups(optimizers: dict[str, torch.optim.Optimizer]) -> dict[str, list[Tensor]]:
    """``{name: parameters}`` of each optimizer's groups (``name.group`` where an optimizer has several)."""
    out = {}
    for name, opt in optimizers.items():
        for i, group in enumerate(opt.param_groups):
            key = name if len(opt.param_groups) == 1 else f"{name}.{group.get('name', i)}"
            out[key] = list(group["params"])
    return out


def eval_row(step: int, seconds: float, metrics: dict) -> Optional[dict]:
    """The ``history.json`` evaluation row of a final ``metrics`` dict (None when it holds no evaluation)."""
    if "psnr" not in metrics:
        return None
    return {"step": step, "seconds": seconds, **{k: metrics[k] for k in EVAL_KEYS if k in metrics}}


def record_final_eval(trainer: TrainerBase, metrics: dict) -> None:
    """Close ``trainer.eval_history`` with the final evaluation (if it is not already its last row), and the run's
    log."""
    row = eval_row(trainer.step, trainer.train_seconds, metrics)
    if row is not None and (not trainer.eval_history or trainer.eval_history[-1]["step"] != trainer.step):
        trainer.eval_history.append(row)
        if trainer.logger is not None:
            trainer.logger.scalars(trainer.step, row, "eval")
    if trainer.logger is not None:
        trainer.logger.close()

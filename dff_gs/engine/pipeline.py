"""One training run end to end, the same for every method: config checked, run folder claimed, then scene ->
teacher maps -> the method's model and trainer -> fit -> evaluate -> run folder.

A run folder (:mod:`dff_gs.io.run_dir`) holds ``config.yaml`` (resolved), ``checkpoint.pt``, ``point_cloud.ply``
(+ sidecar) or ``nerf_model.pt``, ``metrics.json``, ``history.json`` and ``renders/``. The methods
(:class:`~dff_gs.train.method.Method`): the Gaussians (:class:`~dff_gs.train.gaussians.GaussianMethod`), the NeRF
(:class:`~dff_gs.nerf.method.NerfMethod`), the lift (:class:`~dff_gs.lift.method.LiftMethod`); what the pipeline
shares with other tools is in :mod:`~dff_gs.engine.common`.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Callable, Optional

from dff_gs.core.distributed import PeerLost, World, env_world_size, fingerprint, join_world, resolve_batch_views
from dff_gs.core.errors import ConfigError, Interrupted
from dff_gs.core.utils import seed_everything
from dff_gs.engine.common import (
    checkpoint_writer,
    export_run,
    load_run_scene,
    periodic_eval,
    resolve_device,
    resolve_scene_path,
    saved_config,
    scene_options,
    stopped_run,
)
from dff_gs.engine.evaluate import evaluate
from dff_gs.engine.logger import make_logger
from dff_gs.engine.plots import plot_run_curves
from dff_gs.engine.validate import validate_config
from dff_gs.io.run_dir import CHECKPOINT_NAME, RunFolder, claim_run_dir, run_dir_for, run_metadata
from dff_gs.lift.method import LiftMethod
from dff_gs.nerf.method import NerfMethod
from dff_gs.teachers.prepare import prepare_teacher
from dff_gs.train.config import Config
from dff_gs.train.gaussians import GaussianMethod
from dff_gs.train.method import Method, MethodInputs

METHODS = {"gs": GaussianMethod, "nerf": NerfMethod, "lift": LiftMethod}
"""The training methods, by name: ``train.backbone`` (gs | nerf), or ``lift`` (``lift.enabled``, onto Gaussians)."""


def method_of(cfg: Config) -> type:
    """The method class that trains ``cfg``'s run (a :class:`~dff_gs.train.method.Method`'s, with ``build``);
    ``cfg`` validated (``train.backbone`` is one of its ``Literal``'s values)."""
    if cfg.train.backbone == "nerf":
        return METHODS["nerf"]
    return METHODS["lift"] if cfg.lift.enabled else METHODS["gs"]


def start(cfg: Config, method: Method, run: RunFolder, meta: dict, saved: dict,
          main: bool = True) -> Optional[Callable[[], Path]]:
    """Resume ``method`` from ``cfg.resume`` if set, write the run's ``config.yaml`` (after a resume loaded, so a
    failed one leaves the folder as it was), give its trainer the run's log (``train.log``) and return the
    checkpoint writer ``() -> path`` (None without a trainer). Not ``main`` (a torchrun rank other than 0): the
    resume alone; it writes nothing and has no logger, and its "writer" only names the checkpoint rank 0 writes
    (for the message of a stop)."""
    trainer = method.trainer
    if trainer is None:
        run.write_config(cfg)
        return None
    if cfg.resume:
        method.resume(cfg.resume)
    if not main:
        return lambda: run.checkpoint
    run.write_config(cfg)
    trainer.logger = make_logger(cfg.train.log, run.path)
    return checkpoint_writer(cfg, trainer, run, saved, *method.checkpoint_args(meta))


def fit(method: Method, world: World, checkpoint, eval_fn, run: RunFolder, progress: bool, watch) -> None:
    """Train ``method`` to its last step (every torchrun rank), with ``watch(cfg)`` watching on rank 0; a rank
    that lost its peers ends in one line, rank 0 saving what it can (:func:`~dff_gs.engine.common.stopped_run`)."""
    trainer = method.trainer
    trainer.watcher = watch(trainer.cfg) if watch is not None and world.main else None
    try:
        trainer.fit(on_checkpoint=checkpoint, progress=progress, eval_fn=eval_fn)
        if world.size > 1:
            world.same_everywhere(fingerprint(trainer.model.state_dict().values()), "final parameters")
    except PeerLost as e:
        raise stopped_run(e, trainer, checkpoint, run, world.main) from None
    finally:
        if trainer.watcher is not None:
            trainer.watcher.close()


def train_run(cfg: Config, method_cls: type, run: RunFolder, progress: bool = True, watch=None) -> dict:
    """The one pipeline: scene, teacher, the method built (``method_cls.build``), fit, evaluation and the outputs
    into the claimed ``run``; returns the metrics (also in metrics.json).

    Under torchrun (the Gaussians) every rank trains its share of each step's views; rank 0 loads the scene and
    computes the teacher maps first (the others then read its caches), and alone writes, evaluates and returns the
    metrics (the others return an empty dict). ``watch(cfg)``, when given, makes the trainer's watcher (the
    training viewer: called after every step, closed at the end)."""
    world = World.current()
    seed_everything(cfg.train.seed)
    device = world.place(resolve_device(cfg.train.device))
    with world.main_first("loading the scene and computing its teacher maps"):
        scene_path, scene, train_scene, test_scene = load_run_scene(cfg, device, progress)
        teacher = prepare_teacher(cfg.teacher, scene, device, progress=progress, evaluation=world.main)
    method = method_cls.build(cfg, MethodInputs(scene, train_scene, teacher, device, world, progress))
    meta = run_metadata(teacher.meta, str(scene_path), scene_options(cfg), **method.metadata())
    checkpoint = start(cfg, method, run, meta, saved_config(cfg, scene), main=world.main)
    del scene  # every view in one tensor beside the splits' copies: freed before training (1.9 GB at 300 x 1080p)
    if method.trainer is not None:
        eval_fn = None
        if world.main and method.evaluates_while_training:
            background = method.eval_options().get("background")
            eval_fn = periodic_eval(method.trainer, test_scene, device, cfg, background, teacher)
        fit(method, world, checkpoint, eval_fn, run, progress, watch)
    if not world.main:
        return {}
    if checkpoint is not None:
        checkpoint()
    metrics = method.final_metrics()
    if test_scene is not None:
        metrics.update(evaluate(method.model, test_scene, device=device, class_embeddings=teacher.class_embeddings,
                                teacher_labels=teacher.test_labels, render_dir=run.renders,
                                num_render_views=cfg.train.num_render_views, lpips_weights=cfg.train.lpips_weights,
                                progress=progress, **method.eval_options()))
    run.save_model(method.backbone(), meta)
    if method.exports:
        export_run(cfg, method.model, run.ply)
    run.write_metrics(metrics)
    history, evals, extra = method.final_history(metrics)
    run.write_history(method.kind, history, evals, **extra)
    if method.title:
        plot_run_curves(run.path, evals, method.title)
    return metrics


def run(cfg: Config, progress: bool = True, watch=None) -> dict:
    """Train and evaluate one run as ``cfg`` says; returns the metrics dict (also in metrics.json).

    The config is checked and the run folder claimed (:func:`~dff_gs.io.run_dir.claim_run_dir`: locked, an
    existing run refused without ``force``) before any work. Ctrl-C / SIGTERM at any point after a checkpoint
    exists (the final evaluation and writing included) is an :class:`Interrupted` that names it.

    Started by torchrun (:mod:`dff_gs.core.distributed`), every rank runs this: rank 0 alone claims and writes the run
    folder (the others learn its path from it, and return an empty dict).

    ``watch(cfg)`` makes what watches the Gaussians train when ``train.viewer`` is set (``train.py`` passes
    :func:`dff_gs.view.live.live_viewer`): called after every step, closed at the end."""
    validate_config(cfg)
    if cfg.train.viewer and watch is None:
        raise ConfigError("train.viewer: the training viewer opens from train.py (or pass "
                          "watch=dff_gs.view.live.live_viewer to dff_gs.engine.pipeline.run)")
    resolve_batch_views(cfg, env_world_size())
    method = method_of(cfg)
    scene_path = resolve_scene_path(cfg)
    with join_world(cfg) as world, contextlib.ExitStack() as held:
        def claim() -> Path:
            out_dir = run_dir_for(cfg.out, cfg.resume, scene_path)
            inputs = [p for p in (cfg.data.path and scene_path, cfg.model.init_ply, cfg.resume) if p]
            return held.enter_context(claim_run_dir(out_dir, resume=cfg.resume, force=cfg.force, inputs=inputs))

        out_dir = Path(world.from_main(claim, "sharing the run folder"))
        cfg.out = str(out_dir)
        try:
            return train_run(cfg, method, RunFolder(out_dir), progress and world.main,
                             watch if cfg.train.viewer else None)
        except KeyboardInterrupt as e:
            ckpt = out_dir / CHECKPOINT_NAME
            if world.main and getattr(e, "checkpoint", None) is None and ckpt.is_file():
                raise Interrupted(ckpt, getattr(e, "signal_name", "SIGINT")) from None
            raise

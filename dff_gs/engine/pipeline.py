"""One training run end to end: config checked, run folder claimed, then the backbone's pipeline: scene ->
teacher maps -> model -> train -> evaluate -> run folder.

A run folder (:mod:`dff_gs.io.run_dir`) holds ``config.yaml`` (resolved), ``checkpoint.pt``, ``point_cloud.ply``
(+ sidecar) or ``nerf_model.pt``, ``metrics.json``, ``history.json`` and ``renders/``.

- :mod:`~dff_gs.engine.common`: what every pipeline shares;
- :mod:`~dff_gs.engine.gaussians`: the Gaussians' pipeline;
- :mod:`dff_gs.engine.nerf`, :mod:`dff_gs.engine.lift`: the NeRF's and the lift's.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

from dff_gs.core.distributed import env_world_size, join_world, resolve_batch_views
from dff_gs.core.errors import ConfigError, Interrupted
from dff_gs.engine.common import resolve_scene_path
from dff_gs.engine.gaussians import train_gaussians
from dff_gs.engine.lift import run_lift
from dff_gs.engine.nerf import run_nerf
from dff_gs.engine.validate import validate_config
from dff_gs.io.run_dir import CHECKPOINT_NAME, RunFolder, claim_run_dir, run_dir_for
from dff_gs.train.config import Config

BACKBONES = ("gs", "nerf")
"""Values of ``train.backbone``: Gaussians, or the NeRF-DFF baseline (:mod:`dff_gs.nerf`)."""


def pipeline_of(cfg: Config):
    """The function that trains ``cfg``'s run into a claimed folder: ``(cfg, run: RunFolder, progress) -> metrics``;
    every pipeline writes its outputs through the :class:`~dff_gs.io.run_dir.RunFolder` it is given."""
    if cfg.train.backbone == "nerf":
        return run_nerf
    if cfg.train.backbone != "gs":
        raise ConfigError(f"train.backbone={cfg.train.backbone!r}: expected one of {', '.join(BACKBONES)}")
    if cfg.lift.enabled:  # features lifted onto model.init_ply in one pass instead of training
        return run_lift
    return train_gaussians


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
    pipeline = pipeline_of(cfg)
    scene_path = resolve_scene_path(cfg)
    with join_world(cfg) as world, contextlib.ExitStack() as held:
        def claim() -> Path:
            out_dir = run_dir_for(cfg.out, cfg.resume, scene_path)
            inputs = [p for p in (cfg.data.path and scene_path, cfg.model.init_ply, cfg.resume) if p]
            return held.enter_context(claim_run_dir(out_dir, resume=cfg.resume, force=cfg.force, inputs=inputs))

        out_dir = Path(world.from_main(claim, "sharing the run folder"))
        cfg.out = str(out_dir)
        try:
            watching = {"watch": watch} if cfg.train.viewer else {}
            return pipeline(cfg, RunFolder(out_dir), progress and world.main, **watching)
        except KeyboardInterrupt as e:
            ckpt = out_dir / CHECKPOINT_NAME
            if world.main and getattr(e, "checkpoint", None) is None and ckpt.is_file():
                raise Interrupted(ckpt, getattr(e, "signal_name", "SIGINT")) from None
            raise

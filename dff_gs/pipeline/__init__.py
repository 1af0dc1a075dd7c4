"""One training run end to end: config checked, run folder claimed, then the backbone's pipeline: scene ->
teacher maps -> model -> train -> evaluate -> run folder.

A run folder (:mod:`dff_gs.run_dir`) holds ``config.yaml`` (resolved), ``checkpoint.pt``, ``point_cloud.ply``
(+ sidecar) or ``nerf_model.pt``, ``metrics.json``, ``history.json`` and ``renders/``.

- :mod:`~dff_gs.pipeline.common`: what every pipeline shares;
- :mod:`~dff_gs.pipeline.gaussians`: the Gaussians' pipeline;
- :mod:`dff_gs.nerf.run`, :mod:`dff_gs.lift.run`: the NeRF's and the lift's.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

from dff_gs.distributed import env_world_size, join_world, resolve_batch_views
from dff_gs.errors import ConfigError, Interrupted
from dff_gs.pipeline.common import resolve_scene_path
from dff_gs.run_dir import CHECKPOINT_NAME, RunFolder, claim_run_dir, run_dir_for
from dff_gs.train.config import Config
from dff_gs.train.validate import validate_config

BACKBONES = ("gs", "nerf")
"""Values of ``train.backbone``: Gaussians, or the NeRF-DFF baseline (:mod:`dff_gs.nerf`)."""


def pipeline_of(cfg: Config):
    """The function that trains ``cfg``'s run into a claimed folder: ``(cfg, run: RunFolder, progress) -> metrics``;
    every pipeline writes its outputs through the :class:`~dff_gs.run_dir.RunFolder` it is given."""
    if cfg.train.backbone == "nerf":
        from dff_gs.nerf.run import run_nerf

        return run_nerf
    if cfg.train.backbone != "gs":
        raise ConfigError(f"train.backbone={cfg.train.backbone!r}: expected one of {', '.join(BACKBONES)}")
    if cfg.lift.enabled:  # features lifted onto model.init_ply in one pass instead of training
        from dff_gs.lift.run import run_lift

        return run_lift
    from dff_gs.pipeline.gaussians import train_gaussians

    return train_gaussians


def run(cfg: Config, progress: bool = True) -> dict:
    """Train and evaluate one run as ``cfg`` says; returns the metrics dict (also in metrics.json).

    The config is checked and the run folder claimed (:func:`~dff_gs.run_dir.claim_run_dir`: locked, an
    existing run refused without ``force``) before any work. Ctrl-C / SIGTERM at any point after a checkpoint
    exists (the final evaluation and writing included) is an :class:`Interrupted` that names it.

    Started by torchrun (:mod:`dff_gs.distributed`), every rank runs this: rank 0 alone claims and writes the run
    folder (the others learn its path from it, and return an empty dict)."""
    validate_config(cfg)
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
            return pipeline(cfg, RunFolder(out_dir), progress and world.main)
        except KeyboardInterrupt as e:
            ckpt = out_dir / CHECKPOINT_NAME
            if world.main and getattr(e, "checkpoint", None) is None and ckpt.is_file():
                raise Interrupted(ckpt, getattr(e, "signal_name", "SIGINT")) from None
            raise

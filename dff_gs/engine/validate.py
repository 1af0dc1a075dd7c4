"""One check of a run's config before any work: every section's own (:meth:`dff_gs.core.config.Section.validate`:
ranges, finiteness, choices, registered names), then what only this machine and this run can say (CUDA for a CUDA
renderer, the LPIPS weights file, the viewer's port, the number of processes, what a lift needs).

:func:`validate_config` raises a :class:`~dff_gs.core.errors.ConfigError` ``<key>=<value>: <requirement>`` for the
first value out of place (types were already checked when the config was read).
"""

from __future__ import annotations

import torch

from dff_gs.core.distributed import check_distributable, env_world_size
from dff_gs.core.errors import ConfigError, DataError
from dff_gs.core.ports import check_port
from dff_gs.eval.lpips import load_lpips
from dff_gs.eval.metrics import SSIM_WINDOW
from dff_gs.lift.method import check_lift_config
from dff_gs.train.config import Config


def validate_config(cfg: Config) -> None:
    """Every section checked by itself, then this machine and this run: a CUDA-only renderer where CUDA is, the
    LPIPS weights readable, the viewer's port free, several views a step or several processes (torchrun) only
    where the pipeline trains them, and a lift's model and teacher."""
    cfg.validate()
    check_renderers(cfg)
    if cfg.train.lpips_weights:  # read now (and kept): a bad file is refused before any work, not after training
        load_lpips(cfg.train.lpips_weights)
    check_viewer(cfg)
    check_distributable(cfg, env_world_size())
    if cfg.lift.enabled:
        check_lift_config(cfg)


def check_renderers(cfg: Config) -> None:
    """A CUDA-only renderer or lifting backend named on a machine without CUDA is refused before any work."""
    if torch.cuda.is_available() and cfg.train.device != "cpu":
        return
    where = "train.device=cpu" if torch.cuda.is_available() else "this machine has no CUDA device"
    for key, value in (("train.backend", cfg.train.backend), ("lift.backend", cfg.lift.backend)):
        if value in ("gsplat", "cuda_ext"):
            raise ConfigError(f"{key}={value}: needs CUDA and {where}; use auto, cpu or torch")


def check_viewer(cfg: Config) -> None:
    """The training viewer shows Gaussians, on a port free now (refused before any work otherwise)."""
    if not cfg.train.viewer:
        return
    if cfg.train.backbone != "gs" or cfg.lift.enabled:
        raise ConfigError("train.viewer: the training viewer shows the Gaussians trained by train.backbone=gs; "
                          "a NeRF or a lifting run trains without it")
    check_port("127.0.0.1", int(cfg.train.viewer), "train.viewer=")


def check_image_size(cfg: Config, scene) -> None:
    """The images of ``scene`` (a :class:`~dff_gs.data.SceneData` just loaded as ``cfg.data`` says, before its
    ``data.downscale`` is resolved into ``cfg``) are at least :data:`SSIM_WINDOW` pixels a side; else a one-line
    error naming what made them smaller: ``data.downscale``, the CPU budget ``data.max_side``, or the scene."""
    w, h = scene.width, scene.height
    if min(w, h) >= SSIM_WINDOW:
        return
    size = f"{w}x{h} px, smaller than the {SSIM_WINDOW}-px SSIM window"
    if scene.downscale > 1 and cfg.data.downscale >= 1:
        raise ConfigError(f"data.downscale={cfg.data.downscale}: the images become {size}; lower data.downscale")
    if scene.downscale > 1:
        raise ConfigError(f"data.max_side={cfg.data.max_side}: the automatic downscale ({scene.downscale}x) makes the "
                          f"images {size}; raise data.max_side or set data.downscale=1")
    raise DataError(f"{scene.source}: its images are {size}; training needs images of at least "
                    f"{SSIM_WINDOW}x{SSIM_WINDOW}")

"""One check of a run's config values before any work: ranges, finiteness, choices and what this machine can run.

:func:`validate_config` raises a :class:`~dff_gs.errors.ConfigError` ``<key>=<value>: <requirement>`` for the
first value out of range (types were already checked when the config was read).
"""

from __future__ import annotations

import math
from typing import Any, Callable

from dff_gs.distributed import check_distributable, env_world_size
from dff_gs.errors import ConfigError
from dff_gs.train.config import Config


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and math.isfinite(v)


def at_least(low: float) -> tuple[Callable[[Any], bool], str]:
    return (lambda v: _finite(v) and v >= low), f"must be >= {low:g}"


def within(low: float, high: float, open_low: bool = False) -> tuple[Callable[[Any], bool], str]:
    if open_low:
        return (lambda v: _finite(v) and low < v <= high), f"must be in ({low:g}, {high:g}]"
    return (lambda v: _finite(v) and low <= v <= high), f"must be in [{low:g}, {high:g}]"


def one_of(*choices: str) -> tuple[Callable[[Any], bool], str]:
    return (lambda v: v in choices), f"must be one of {' | '.join(choices)}"


POSITIVE = (lambda v: _finite(v) and v > 0), "must be > 0"
RULES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "data.downscale": at_least(0),
    "data.max_side": at_least(0),
    "data.test_every": ((lambda v: v == 0 or v >= 2), "must be 0 (no test views) or >= 2 (1 holds every view out)"),
    "model.sh_degree": within(0, 3),
    "model.feature_dim": at_least(0),
    "model.init_points": at_least(1),
    "model.init_opacity": within(0, 1, open_low=True),
    "model.init_scale": POSITIVE,
    "strategy.refine_start": at_least(0),
    "strategy.refine_stop_frac": within(0, 1),
    "strategy.refine_every": at_least(1),
    "strategy.grow_grad2d": at_least(0),
    "strategy.grow_scale3d": at_least(0),
    "strategy.prune_opa": within(0, 1),
    "strategy.reset_every": at_least(1),
    "strategy.max_gaussians": at_least(1),
    "teacher.patch": at_least(1),
    "teacher.noise": within(0, 1),
    "teacher.wrong_views": within(0, 1),
    "train.steps": at_least(0),
    "train.batch_views": at_least(1),
    "train.backend": one_of("auto", "cpu", "torch", "gsplat"),
    "train.ssim_lambda": within(0, 1),
    "train.feature_lambda": at_least(0),
    "train.feature_start": at_least(0),
    "train.feature_max_side": at_least(0),
    "train.sh_degree_interval": at_least(1),
    "train.log_every": at_least(1),
    "train.eval_every": at_least(0),
    "train.checkpoint_every": at_least(0),
    "train.checkpoint_minutes": at_least(0),
    "train.num_render_views": at_least(0),
    "train.viewer": within(0, 65535),
    "train.viewer_every": at_least(1),
    "train.image_every": at_least(0),
    "lift.steps": at_least(0),
    "lift.top_k": at_least(0),
    "lift.resolution": one_of("image", "map"),
    "train.log": one_of("tensorboard", "none"),
    "train.export_up": one_of("z", "y"),
    "model.init": one_of("auto", "depth", "points", "region", "random"),
    "nerf.occ_init": one_of("auto", "depth", "points", "full"),
    "teacher.text_model": one_of("minilm", "clip"),
    "nerf.batch_rays": at_least(1),
    "nerf.patch_size": at_least(1),
    "nerf.coarse_samples": at_least(1),
    "nerf.fine_samples": at_least(1),
    "nerf.near": at_least(0),
    "nerf.occ_resolution": at_least(2),
    "nerf.occ_update_every": at_least(1),
    "nerf.chunk": at_least(1),
    "nerf.feature_dim": at_least(0),
}
RULES.update({f"optim.{k}": at_least(0) for k in ("means_lr", "quats_lr", "scales_lr", "opacities_lr", "sh0_lr",
                                                   "shN_lr", "features_lr", "decoder_lr")})
RULES["optim.means_lr_final"] = within(0, 1, open_low=True)
"""``key: (check, requirement)`` of every bounded config value."""


def value_of(cfg: Config, key: str) -> Any:
    obj: Any = cfg
    for part in key.split("."):
        obj = getattr(obj, part)
    return obj


def check_registries(cfg: Config) -> None:
    """Names looked up in a registry (scene formats, teachers, NeRF fields, lifting backends) exist."""
    from dff_gs.data.registry import loader_names
    from dff_gs.lift.core import LIFT_BACKENDS
    from dff_gs.nerf.field import FIELDS
    from dff_gs.teachers import teacher_names

    import dff_gs.data  # noqa: F401  (the loaders register themselves)

    choices = {"data.format": ("auto", *loader_names()), "teacher.name": (*teacher_names(), "none"),
               "nerf.field": FIELDS, "lift.backend": LIFT_BACKENDS}
    for key, allowed in choices.items():
        if value_of(cfg, key) not in allowed:
            raise ConfigError(f"{key}={value_of(cfg, key)!r}: must be one of {' | '.join(allowed)}")


def check_renderers(cfg: Config) -> None:
    """A CUDA-only renderer or lifting backend named on a machine without CUDA is refused before any work."""
    import torch

    if torch.cuda.is_available() and cfg.train.device != "cpu":
        return
    where = "train.device=cpu" if torch.cuda.is_available() else "this machine has no CUDA device"
    for key in ("train.backend", "lift.backend"):
        if value_of(cfg, key) in ("gsplat", "cuda_ext"):
            raise ConfigError(f"{key}={value_of(cfg, key)}: needs CUDA and {where}; use auto, cpu or torch")


def validate_config(cfg: Config) -> None:
    """Every bounded value in range and finite, the background an RGB in [0, 1], the renderer runnable here, and
    several views a step or several processes (torchrun) only where the pipeline trains them."""
    for key, (ok, requirement) in RULES.items():
        value = value_of(cfg, key)
        if not ok(value):
            raise ConfigError(f"{key}={value!r}: {requirement}")
    bg = cfg.data.background
    if len(bg) != 3 or not all(_finite(c) and 0 <= c <= 1 for c in bg):
        raise ConfigError(f"data.background={list(bg)!r}: must be three numbers (RGB) in [0, 1]")
    if cfg.train.device not in ("auto", "cpu") and not str(cfg.train.device).startswith("cuda"):
        raise ConfigError(f"train.device={cfg.train.device!r}: must be auto | cpu | cuda[:N]")
    check_registries(cfg)
    check_renderers(cfg)
    if cfg.train.export:
        from dff_gs.io.export import parse_exports

        parse_exports(cfg.train.export, "train.export")
        if cfg.train.backbone == "nerf":
            raise ConfigError(f"train.export={cfg.train.export}: the NeRF backbone has no Gaussians to export")
    if cfg.train.lpips_weights:  # read now (and kept): a bad file is refused before any work, not after training
        from dff_gs.eval.lpips import load_lpips

        load_lpips(cfg.train.lpips_weights)
    check_viewer(cfg)
    check_distributable(cfg, env_world_size())


def check_viewer(cfg: Config) -> None:
    """The training viewer shows Gaussians, on a port free now (refused before any work otherwise)."""
    if not cfg.train.viewer:
        return
    if cfg.train.backbone != "gs" or cfg.lift.enabled:
        raise ConfigError("train.viewer: the training viewer shows the Gaussians trained by train.backbone=gs; "
                          "a NeRF or a lifting run trains without it")
    from dff_gs.view.server import check_port

    check_port("127.0.0.1", int(cfg.train.viewer), "train.viewer=")

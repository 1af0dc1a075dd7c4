"""One check of a run's config values before any work: ranges, finiteness, choices and what this machine can run.

:func:`validate_config` raises a :class:`~dff_gs.core.errors.ConfigError` ``<key>=<value>: <requirement>`` for the
first value out of range (types were already checked when the config was read).
"""

from __future__ import annotations

import math
from typing import Any, Callable

import dff_gs.data  # noqa: F401  (the loaders register themselves)
from dff_gs.core.config import leaves, to_dict
from dff_gs.core.distributed import check_distributable, env_world_size
from dff_gs.core.errors import ConfigError, DataError, quote
from dff_gs.core.ports import check_port
from dff_gs.data.registry import loader_names
from dff_gs.eval.lpips import load_lpips
from dff_gs.eval.metrics import SSIM_WINDOW
from dff_gs.io.export import parse_exports
from dff_gs.lift.method import check_lift_config
from dff_gs.lift.core import LIFT_BACKENDS
from dff_gs.nerf.field import FIELDS
from dff_gs.teachers import teacher_names
from dff_gs.train.config import Config


def _finite(v: Any) -> bool:
    """A number (not a bool) that is finite; an integer too large for a float (10**400) counts as out of range."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return False
    try:
        return math.isfinite(v)
    except OverflowError:
        return False


def _num(x: float) -> str:
    return str(x) if isinstance(x, int) else f"{x:g}"


MAX_COUNT = 2**31 - 1
"""Upper bound of every step / count / interval key: a 32-bit count (2^31 steps is ~68 years at one a second), so
that ``train.steps=1e300`` is one line, not a run that never ends or an index overflow in a library."""
MAX_LR = 1e3
"""Upper bound of every learning rate: Adam moves a parameter by about ``lr`` a step, and the largest rate here is
5e-2 (logit opacities); a rate of 1e3 already throws every parameter off in one step, so anything above is a typo
(a missing ``e-``), refused before any work rather than trained into NaNs."""
MAX_MAGNITUDE = 2**31
"""Every other number of the config is finite and below this in magnitude (:func:`validate_config`)."""


def at_least(low: float, high: float | None = None) -> tuple[Callable[[Any], bool], str]:
    if high is None:
        return (lambda v: _finite(v) and v >= low), f"must be >= {_num(low)}"
    return (lambda v: _finite(v) and low <= v <= high), f"must be >= {_num(low)} and <= {_num(high)}"


def count(low: int) -> tuple[Callable[[Any], bool], str]:
    """A step, count or interval: ``low`` .. :data:`MAX_COUNT`."""
    return at_least(low, MAX_COUNT)


def within(low: float, high: float, open_low: bool = False) -> tuple[Callable[[Any], bool], str]:
    if open_low:
        return (lambda v: _finite(v) and low < v <= high), f"must be in ({_num(low)}, {_num(high)}]"
    return (lambda v: _finite(v) and low <= v <= high), f"must be in [{_num(low)}, {_num(high)}]"


def one_of(*choices: str) -> tuple[Callable[[Any], bool], str]:
    return (lambda v: v in choices), f"must be one of {' | '.join(choices)}"


POSITIVE = (lambda v: _finite(v) and v > 0), "must be > 0"

# Upper bounds on the values whose memory grows with them, so that a typo (model.feature_dim=300000) is one line
# naming the key before any work, not an allocator's traceback minutes in. Each is generous, far above any run
# this code makes sense for, yet below what no machine holds:
MAX_FEATURE_DIM = 4096  # the widest teacher maps are 1536 (DINOv2-g) / 1280 (EfficientNet); 4096 floats x 50M
# Gaussians x 4 (value, gradient, two Adam moments) is already 3 TB
MAX_GAUSSIANS = 50_000_000  # ~8x the largest 3DGS scenes (~6M); each Gaussian costs ~1 KB with its optimizer state
MAX_HASH_LOG2 = 26  # hash-grid table entries per level: Instant-NGP uses 2^19..2^24
MAX_RAYS = 1 << 22  # rays a step / a rendering chunk (4M; the presets use 1024 / 8192)
MAX_SAMPLES = 4096  # samples along a ray (the presets use 48 + 16)
MAX_OCC_RESOLUTION = 1024  # occupancy-grid cells along the longest side: 1024^3 = 1G cells
MAX_WIDTH = 4096  # hidden widths of the NeRF's MLPs (presets: 64 / 128)
RULES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "data.downscale": count(0),
    "data.max_side": count(0),
    "data.test_every": ((lambda v: v == 0 or (_finite(v) and 2 <= v <= MAX_COUNT)),
                        "must be 0 (no test views) or >= 2 (1 holds every view out)"),
    "model.sh_degree": within(0, 3),
    "model.feature_dim": within(0, MAX_FEATURE_DIM),
    "model.init_points": within(1, MAX_GAUSSIANS),
    "model.init_opacity": within(0, 1, open_low=True),
    "model.init_scale": POSITIVE,
    "strategy.refine_start": count(0),
    "strategy.refine_stop_frac": within(0, 1),
    "strategy.refine_every": count(1),
    "strategy.grow_grad2d": at_least(0),
    "strategy.grow_scale3d": at_least(0),
    "strategy.prune_opa": within(0, 1),
    "strategy.reset_every": count(1),
    "strategy.max_gaussians": within(1, MAX_GAUSSIANS),
    "teacher.patch": count(1),
    "teacher.noise": within(0, 1),
    "teacher.wrong_views": within(0, 1),
    "train.steps": count(0),
    "train.batch_views": ((lambda v: _finite(v) and 0 <= v <= 1024), "must be in [1, 1024] (0: one view per process)"),
    "train.backend": one_of("auto", "cpu", "torch", "gsplat"),
    "train.ssim_lambda": within(0, 1),
    "train.feature_lambda": at_least(0),
    "train.feature_start": count(0),
    "train.feature_max_side": count(0),
    "train.sh_degree_interval": count(1),
    "train.log_every": count(1),
    "train.eval_every": count(0),
    "train.checkpoint_every": count(0),
    "train.checkpoint_minutes": at_least(0),
    "train.num_render_views": count(0),
    "train.viewer": within(0, 65535),
    "train.viewer_every": count(1),
    "train.image_every": count(0),
    "lift.steps": count(0),
    "lift.top_k": count(0),
    "lift.resolution": one_of("image", "map"),
    "train.log": one_of("tensorboard", "none"),
    "train.export_up": one_of("z", "y"),
    "model.init": one_of("auto", "depth", "points", "region", "random"),
    "nerf.occ_init": one_of("auto", "depth", "points", "full"),
    "teacher.text_model": one_of("minilm", "clip"),
    "nerf.batch_rays": within(1, MAX_RAYS),
    "nerf.patch_size": count(1),
    "nerf.coarse_samples": within(1, MAX_SAMPLES),
    "nerf.fine_samples": within(1, MAX_SAMPLES),
    "nerf.near": at_least(0),
    "nerf.occ_resolution": within(2, MAX_OCC_RESOLUTION),
    "nerf.occ_update_every": count(1),
    "nerf.chunk": within(1, MAX_RAYS),
    "nerf.feature_dim": within(0, MAX_FEATURE_DIM),
    "nerf.hash_log2_size": within(1, MAX_HASH_LOG2),
    "nerf.feature_log2_size": within(1, MAX_HASH_LOG2),
    "nerf.mlp_width": within(1, MAX_WIDTH),
    "nerf.hidden": within(1, MAX_WIDTH),
}
RULES.update({f"optim.{k}": within(0, MAX_LR) for k in ("means_lr", "quats_lr", "scales_lr", "opacities_lr",
                                                         "sh0_lr", "shN_lr", "features_lr", "decoder_lr")})
RULES["optim.means_lr_final"] = within(0, 1, open_low=True)
RULES.update({"nerf.lr": within(0, MAX_LR), "nerf.decoder_lr": within(0, MAX_LR), "nerf.lr_final": within(0, MAX_LR),
              "nerf.lr_warmup": count(0), "nerf.occ_warmup": count(0)})
"""``key: (check, requirement)`` of every bounded config value."""


def value_of(cfg: Config, key: str) -> Any:
    obj: Any = cfg
    for part in key.split("."):
        obj = getattr(obj, part)
    return obj


def check_registries(cfg: Config) -> None:
    """Names looked up in a registry (scene formats, teachers, NeRF fields, lifting backends) exist."""
    choices = {"data.format": ("auto", *loader_names()), "teacher.name": (*teacher_names(), "none"),
               "nerf.field": FIELDS, "lift.backend": LIFT_BACKENDS}
    for key, allowed in choices.items():
        if value_of(cfg, key) not in allowed:
            raise ConfigError(f"{key}={quote(value_of(cfg, key))}: must be one of {' | '.join(allowed)}")


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
            raise ConfigError(f"{key}={quote(value)}: {requirement}")
    for key, value in leaves(to_dict(cfg)).items():  # every number, ruled or not: finite, below 2^31
        if isinstance(value, (int, float)) and not isinstance(value, bool) and not (
                _finite(value) and abs(value) < MAX_MAGNITUDE):
            raise ConfigError(f"{key}={quote(value)}: must be a finite number of magnitude below 2^31")
    bg = cfg.data.background
    if len(bg) != 3 or not all(_finite(c) and 0 <= c <= 1 for c in bg):
        raise ConfigError(f"data.background={quote(list(bg))}: must be three numbers (RGB) in [0, 1]")
    if cfg.train.device not in ("auto", "cpu") and not str(cfg.train.device).startswith("cuda"):
        raise ConfigError(f"train.device={quote(cfg.train.device)}: must be auto | cpu | cuda[:N]")
    check_registries(cfg)
    check_renderers(cfg)
    if cfg.train.export:
        parse_exports(cfg.train.export, "train.export")
        if cfg.train.backbone == "nerf":
            raise ConfigError(f"train.export={cfg.train.export}: the NeRF backbone has no Gaussians to export")
    if cfg.train.lpips_weights:  # read now (and kept): a bad file is refused before any work, not after training
        load_lpips(cfg.train.lpips_weights)
    check_viewer(cfg)
    check_distributable(cfg, env_world_size())
    if cfg.lift.enabled:
        check_lift_config(cfg)


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

"""``train.minutes``: the Gaussians' schedule from a time budget instead of a step count.

A step's cost depends on the machine, the views' size, the backend and how many Gaussians there are, so the steps
that fit ``M`` minutes are measured, not guessed: before training, a throwaway trainer (a copy of the initial
model, the run's own views, config and backend; random states restored afterwards, so the run trains as it would
have) times a few steps with the initial Gaussians and with as many as ``strategy.max_gaussians`` (the initial ones
repeated). The run's Gaussians are taken to grow from the first count to the cap over the densification window
(``strategy.refine_stop_frac`` of the steps) and to stay there, so a step costs on average

    frac * (t_start + t_cap) / 2 + (1 - frac) * t_cap

and ``train.steps`` is the budget over that (at least ``MIN_STEPS``). The densification window and the
learning-rate decay follow the steps, as for a given ``train.steps`` (the SH degree rises every
``train.sh_degree_interval`` steps, whatever the length). The budget is the
training clock (``train_seconds``: the steps themselves); loading, the teacher maps and the final evaluation come on
top, and a run whose Gaussians stop short of the cap ends early. One printed line says what was chosen; the run's
``config.yaml`` holds the steps (a resume continues to them).
"""

from __future__ import annotations

import copy
import time

import torch

from dff_gs.core.distributed import env_world_size
from dff_gs.core.errors import ConfigError
from dff_gs.core.gaussians import PARAM_KEYS, GaussianModel
from dff_gs.train.checkpoint import rng_state, set_rng_state
from dff_gs.train.trainer import Trainer

MIN_STEPS = 100
"""The fewest steps a budget buys (a shorter run would not densify once)."""
WARMUP_STEPS = 2
"""Untimed steps before each measurement (first-call allocations, the compiled kernels' first run)."""
TIMED_STEPS = 4
"""Steps timed per measurement."""


def check_minutes(cfg) -> None:
    """``train.minutes`` asks for the Gaussians' schedule alone: not beside ``train.steps``, a NeRF, the lift or
    torchrun (whose ranks would each time their own share). A resumed run keeps the steps its config holds."""
    if cfg.train.minutes <= 0 or cfg.resume:
        return
    if cfg.train.steps:
        raise ConfigError(f"train.minutes={cfg.train.minutes} and train.steps={cfg.train.steps}: give one (the "
                          "minutes choose the steps)")
    if env_world_size() > 1:
        raise ConfigError(f"train.minutes under torchrun ({env_world_size()} processes): each would time its own "
                          "share and choose its own steps; give train.steps")
    if cfg.train.backbone != "gs" or cfg.lift.enabled:
        raise ConfigError(f"train.minutes applies to the Gaussians' training (train.backbone=gs without the lift); "
                          f"give train.steps for train.backbone={cfg.train.backbone}"
                          f"{' with lift.enabled' if cfg.lift.enabled else ''}")


def repeated(model: GaussianModel, n: int) -> GaussianModel:
    """A copy of ``model`` with ``n`` Gaussians: its own repeated in order (or its first ``n``), the same decoder."""
    idx = torch.arange(n, device=model.device) % model.num_gaussians
    params = {k: model.params[k].detach()[idx] for k in PARAM_KEYS}
    out = GaussianModel(params, model.sh_degree, antialiased=model.antialiased)
    out.decoder = copy.deepcopy(model.decoder)
    return out.to(model.device)


def step_seconds(cfg, model: GaussianModel, data, device: torch.device, world=None) -> float:
    """Seconds of one training step of ``model`` on ``data`` with ``cfg`` (a throwaway trainer; the caller keeps
    the random states)."""
    trainer = Trainer(cfg, model, data, device, world)
    for _ in range(WARMUP_STEPS):
        trainer.train_step()
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    sync()
    t0 = time.perf_counter()
    for _ in range(TIMED_STEPS):
        trainer.train_step()
    sync()
    return (time.perf_counter() - t0) / TIMED_STEPS


def steps_for(minutes: float, t_start: float, t_cap: float, refine_frac: float) -> int:
    """Steps that fill ``minutes`` when a step costs ``t_start`` seconds at first and ``t_cap`` once the Gaussians
    reached the cap, growing over the first ``refine_frac`` of the run (see the module docstring)."""
    frac = min(max(refine_frac, 0.0), 1.0)
    mean = frac * 0.5 * (t_start + t_cap) + (1.0 - frac) * t_cap
    return max(MIN_STEPS, int(minutes * 60.0 / max(mean, 1e-6)))


def plan_minutes(cfg, model: GaussianModel, data, device: torch.device, world=None) -> dict:
    """Set ``cfg.train.steps`` from ``cfg.train.minutes`` for ``model`` (the initial Gaussians) and ``data`` (the
    training views), measured as the module docstring says; returns the plan (also printed in one line)."""
    cap = max(cfg.strategy.max_gaussians, model.num_gaussians) if cfg.strategy.enabled else model.num_gaussians
    probe = copy.deepcopy(cfg)
    probe.train.steps = 10 * (WARMUP_STEPS + TIMED_STEPS)  # a schedule of any length: densification stays off
    state = rng_state()
    try:
        t_start = step_seconds(probe, repeated(model, model.num_gaussians), data, device, world)
        t_cap = t_start if cap == model.num_gaussians else step_seconds(probe, repeated(model, cap), data, device,
                                                                        world)
    finally:
        set_rng_state(state)
    steps = steps_for(cfg.train.minutes, t_start, t_cap, cfg.strategy.refine_stop_frac if cfg.strategy.enabled
                      else 0.0)
    cfg.train.steps = steps
    plan = {"minutes": cfg.train.minutes, "steps": steps, "step_seconds_start": round(t_start, 4),
            "step_seconds_cap": round(t_cap, 4), "gaussians_start": model.num_gaussians, "gaussians_cap": cap}
    print(f"train.minutes={cfg.train.minutes:g}: train.steps={steps:,} (a step measured {t_start:.3f} s with the "
          f"{model.num_gaussians:,} initial Gaussians, {t_cap:.3f} s with {cap:,} (strategy.max_gaussians)); "
          f"densification to step {int(cfg.strategy.refine_stop_frac * steps):,}; the teacher maps and the final "
          f"evaluation come on top")
    return plan

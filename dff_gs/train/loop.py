"""The optimisation loop every trainer shares: steps, progress bar, log, evaluation, checkpoints, Ctrl-C / SIGTERM.

A trainer is a :class:`TrainerBase` (the Gaussians' :class:`~dff_gs.train.trainer.Trainer`, the NeRF's
:class:`~dff_gs.nerf.trainer.NerfTrainer`, the lift fine-tune's :class:`~dff_gs.lift.tuner.FeatureTuner`): it
brings its step, its state and its checkpoint; :func:`fit_loop` does the rest.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Callable, Optional

from dff_gs.core.errors import Interrupted
from dff_gs.train.checkpoint import set_rng_state


class TrainerBase:
    """The state every trainer shares, and its loop: the Gaussians' :class:`~dff_gs.train.trainer.Trainer`, the
    NeRF's :class:`~dff_gs.nerf.trainer.NerfTrainer` and the lift fine-tune's
    :class:`~dff_gs.lift.tuner.FeatureTuner` bring :meth:`train_step`, :meth:`state`, :meth:`save` and
    :meth:`load`; :meth:`fit` (:func:`fit_loop`) does the rest.

    cfg: the run's :class:`~dff_gs.train.config.Config`; model: what it optimises (a Backbone's model);
    step / total_steps: steps done / to do; train_seconds: time spent in ``train_step`` only;
    history / eval_history: the training log rows and the held-out evaluation rows;
    stop_requested: False, or the name of the signal that asked the run to stop (a test may set it True);
    logger: the run's :class:`~dff_gs.engine.logger.RunLogger` when the run set one; watcher: called after every
    step when set (the training viewer).
    """

    desc = "train"
    """The progress bar's label."""

    def __init__(self, cfg, model, total_steps: int):
        self.cfg = cfg
        self.model = model
        self.step = 0
        self.total_steps = total_steps
        self.train_seconds = 0.0
        self.history: list[dict] = []
        self.eval_history: list[dict] = []  # held-out metrics every train.eval_every steps, vs training seconds
        self.stop_requested: bool | str = False
        self.logger = None
        self.watcher: Optional[Callable] = None

    def train_step(self) -> dict:
        """One optimisation step; returns its stats (``loss`` at least)."""
        raise NotImplementedError

    def postfix(self, stats: dict) -> dict:
        """What the progress bar shows of a step's stats."""
        return dict(loss=f"{stats['loss']:.4f}")

    def fit(self, on_checkpoint: Optional[Callable[[], Path]] = None, progress: bool = True,
            eval_fn: Optional[Callable[[], dict]] = None) -> None:
        """Run to ``total_steps`` (:func:`fit_loop`): ``eval_fn()`` (held-out metrics) every ``train.eval_every``
        steps, recorded in ``eval_history`` with the step and the training seconds so far (its own time not
        counted); Ctrl-C / SIGTERM writes a checkpoint (``on_checkpoint``) and raises :class:`Interrupted`."""
        fit_loop(self, desc=self.desc, postfix=self.postfix, progress=progress, on_checkpoint=on_checkpoint,
                 eval_fn=eval_fn)

    def state(self) -> dict:
        """Everything that continues training exactly (step, optimizers, logs; the model where it is not saved
        beside it)."""
        raise NotImplementedError

    def save(self, path: str | Path, config: dict, *extra) -> Path:
        """A resumable checkpoint of :meth:`state`, the model, ``config`` and the random states."""
        raise NotImplementedError

    def load(self, path: str | Path) -> None:
        """Continue from :meth:`save`'s checkpoint, bit-identically."""
        raise NotImplementedError

    def restore_progress(self, saved: dict, rng: dict) -> None:
        """The shared part of :meth:`load`: step, training seconds and logs from ``saved`` (a :meth:`state`), then
        the random states ``rng`` of the moment it was written."""
        self.step = int(saved["step"])
        self.train_seconds = float(saved.get("train_seconds", 0.0))
        self.history = list(saved.get("history", []))
        self.eval_history = list(saved.get("eval_history", []))
        set_rng_state(rng)


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
"""Signals that stop a run cleanly: the current step finishes, a checkpoint is written, then :class:`Interrupted`."""


def _install_stop_handlers(trainer) -> dict:
    """Route Ctrl-C and SIGTERM to ``trainer.stop_requested`` (the signal's name); returns the previous handlers."""

    def on_signal(signum, frame):  # finish the current step, then stop cleanly; a second signal stops at once
        if trainer.stop_requested:
            raise Interrupted(None, signal.Signals(signum).name)
        trainer.stop_requested = signal.Signals(signum).name

    previous = {}
    for sig in STOP_SIGNALS:
        try:
            previous[sig] = signal.signal(sig, on_signal)
        except ValueError:  # not in the main thread
            pass
    return previous


def fit_loop(trainer, *, desc: str, postfix: Callable[[dict], dict], progress: bool = True,
             on_checkpoint: Optional[Callable[[], Path]] = None,
             eval_fn: Optional[Callable[[], dict]] = None) -> None:
    """Run ``trainer`` (a :class:`TrainerBase`) to ``trainer.total_steps``.

    Only ``train_step()`` is on the training clock (``trainer.train_seconds``). Every ``train.log_every`` steps
    the stats go to ``trainer.history`` and ``postfix(stats)`` to the progress bar; every ``train.eval_every``
    steps :func:`record_eval` runs and every ``train.image_every`` steps ``trainer.preview()`` (render | ground
    truth | features, when the trainer has one) goes to the log (both off the clock); ``on_checkpoint()`` (which
    returns the file it wrote) every
    ``train.checkpoint_every`` steps and whenever ``train.checkpoint_minutes`` of wall time passed since the last
    one. Ctrl-C or SIGTERM finishes the current step, writes a checkpoint and raises :class:`Interrupted`.
    """
    from tqdm import tqdm

    cfg = trainer.cfg.train
    total = trainer.total_steps
    logger, watcher = trainer.logger, trainer.watcher
    bar = tqdm(total=total, initial=trainer.step, desc=desc, disable=not progress, dynamic_ncols=True)
    previous = _install_stop_handlers(trainer)
    last_checkpoint = time.monotonic()
    try:
        while trainer.step < total:
            t0 = time.perf_counter()
            stats = trainer.train_step()
            trainer.train_seconds += time.perf_counter() - t0
            if trainer.step % cfg.log_every == 0 or trainer.step == total:
                bar.set_postfix(**postfix(stats))
                trainer.history.append(dict(stats, step=trainer.step, seconds=trainer.train_seconds))
                if logger is not None:
                    logger.scalars(trainer.step, dict(stats, seconds=trainer.train_seconds), "train")
            bar.update(1)
            if logger is not None and cfg.image_every and trainer.step % cfg.image_every == 0 and \
                    hasattr(trainer, "preview"):
                logger.image(trainer.step, "train/comparison", trainer.preview())
            if watcher is not None:
                watcher(trainer)
            if eval_fn is not None and cfg.eval_every and trainer.step % cfg.eval_every == 0:
                row = record_eval(trainer, eval_fn)
                if logger is not None:
                    logger.scalars(trainer.step, row, "eval")
            due = (cfg.checkpoint_every and trainer.step % cfg.checkpoint_every == 0) or (
                cfg.checkpoint_minutes > 0 and time.monotonic() - last_checkpoint >= 60 * cfg.checkpoint_minutes)
            if on_checkpoint is not None and due and trainer.step < total:
                on_checkpoint()
                last_checkpoint = time.monotonic()
            if trainer.stop_requested:
                break
        if trainer.stop_requested:  # also a signal that came during the last step
            name = trainer.stop_requested if isinstance(trainer.stop_requested, str) else "SIGINT"
            raise Interrupted(on_checkpoint() if on_checkpoint is not None else None, name)
    finally:
        bar.close()
        if logger is not None:
            logger.flush()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def record_eval(trainer, eval_fn: Callable[[], dict]) -> dict:
    """Evaluate now (the model in eval mode, off the training clock) and append the step, the training seconds
    so far and the numeric metrics to ``trainer.eval_history``; returns that row."""
    was_training = trainer.model.training
    trainer.model.eval()
    try:
        metrics = eval_fn()
    finally:
        trainer.model.train(was_training)
    row = {"step": trainer.step, "seconds": trainer.train_seconds,
           **{k: v for k, v in metrics.items() if isinstance(v, (int, float))}}
    trainer.eval_history.append(row)
    return row

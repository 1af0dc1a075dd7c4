"""The optimisation loop every trainer shares: steps, progress bar, log, evaluation, checkpoints, Ctrl-C / SIGTERM.

A trainer is a :class:`LoopTrainer` (the Gaussians' :class:`~dff_gs.train.trainer.Trainer`, the NeRF's
:class:`~dff_gs.nerf.trainer.NerfTrainer`, the lift fine-tune's :class:`~dff_gs.lift.tuner.FeatureTuner`): it
brings its step, its state and its checkpoint; :func:`fit_loop` does the rest.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Callable, Optional, Protocol, runtime_checkable

from dff_gs.core.errors import Interrupted


@runtime_checkable
class LoopTrainer(Protocol):
    """What :func:`fit_loop` runs and a run folder checkpoints.

    cfg: the run's :class:`~dff_gs.train.config.Config`; model: what it optimises (a Backbone's model);
    step / total_steps: steps done / to do; train_seconds: time spent in ``train_step`` only;
    history / eval_history: the training log rows and the held-out evaluation rows;
    _interrupted: False, or the name of the signal that asked it to stop (a test may set it True).
    """

    cfg: object
    model: object
    step: int
    total_steps: int
    train_seconds: float
    history: list
    eval_history: list

    def train_step(self) -> dict:
        """One optimisation step; returns its stats (``loss`` at least)."""

    def fit(self, on_checkpoint: Optional[Callable[[], Path]] = None, progress: bool = True,
            eval_fn: Optional[Callable[[], dict]] = None) -> None:
        """:func:`fit_loop` to ``total_steps``, with ``eval_fn`` every ``train.eval_every`` steps."""

    def state(self) -> dict:
        """Everything that continues training exactly (step, optimizers, logs; the model where it is not saved
        beside it)."""

    def save(self, path: str | Path, config: dict, *extra) -> Path:
        """A resumable checkpoint of :meth:`state`, the model, ``config`` and the random states."""

    def load(self, path: str | Path) -> None:
        """Continue from :meth:`save`'s checkpoint, bit-identically."""


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
"""Signals that stop a run cleanly: the current step finishes, a checkpoint is written, then :class:`Interrupted`."""


def _install_stop_handlers(trainer) -> dict:
    """Route Ctrl-C and SIGTERM to ``trainer._interrupted`` (the signal's name); returns the previous handlers."""

    def on_signal(signum, frame):  # finish the current step, then stop cleanly; a second signal stops at once
        if trainer._interrupted:
            raise Interrupted(None, signal.Signals(signum).name)
        trainer._interrupted = signal.Signals(signum).name

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
    """Run ``trainer`` to ``trainer.total_steps``.

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
    logger = getattr(trainer, "logger", None)  # a RunLogger (dff_gs.engine.logger), when the run set one
    watcher = getattr(trainer, "watcher", None)  # called after every step (the training viewer), when set
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
            if trainer._interrupted:
                break
        if trainer._interrupted:  # also a signal that came during the last step
            name = trainer._interrupted if isinstance(trainer._interrupted, str) else "SIGINT"
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

"""The optimisation loop both backbones share: steps, progress bar, log, periodic evaluation, checkpoints, Ctrl-C.

A trainer brings ``cfg`` (the run :class:`~dff_gs.train.config.Config`), ``model``, ``step``,
``train_seconds``, ``history``, ``eval_history``, ``train_step() -> dict`` (its stats; ``loss`` and ``psnr`` at
least) and ``_interrupted`` (False; the SIGINT handler sets it, and so may a test); :func:`fit_loop` does the
rest.
"""

from __future__ import annotations

import signal
import time
from typing import Callable, Optional


def fit_loop(trainer, *, desc: str, postfix: Callable[[dict], dict], progress: bool = True,
             on_checkpoint: Optional[Callable[[], None]] = None,
             eval_fn: Optional[Callable[[], dict]] = None) -> None:
    """Run ``trainer`` to ``cfg.train.steps``.

    Only ``train_step()`` is on the training clock (``trainer.train_seconds``). Every ``train.log_every`` steps
    the stats go to ``trainer.history`` and ``postfix(stats)`` to the progress bar; every ``train.eval_every``
    steps :func:`record_eval` runs (off the clock); every ``train.checkpoint_every`` steps
    ``on_checkpoint()``. Ctrl-C finishes the current step, writes a checkpoint and re-raises KeyboardInterrupt.
    """
    from tqdm import tqdm

    cfg = trainer.cfg.train

    def _on_sigint(signum, frame):  # finish the current step, then stop cleanly
        trainer._interrupted = True

    bar = tqdm(total=cfg.steps, initial=trainer.step, desc=desc, disable=not progress, dynamic_ncols=True)
    previous = signal.getsignal(signal.SIGINT)
    try:
        signal.signal(signal.SIGINT, _on_sigint)
    except ValueError:  # not in the main thread
        previous = None
    try:
        while trainer.step < cfg.steps:
            t0 = time.perf_counter()
            stats = trainer.train_step()
            trainer.train_seconds += time.perf_counter() - t0
            if trainer.step % cfg.log_every == 0 or trainer.step == cfg.steps:
                bar.set_postfix(**postfix(stats))
                trainer.history.append(dict(stats, step=trainer.step, seconds=trainer.train_seconds))
            bar.update(1)
            if eval_fn is not None and cfg.eval_every and trainer.step % cfg.eval_every == 0:
                record_eval(trainer, eval_fn)
            if on_checkpoint is not None and cfg.checkpoint_every and trainer.step % cfg.checkpoint_every == 0:
                on_checkpoint()
            if trainer._interrupted:
                if on_checkpoint is not None:
                    on_checkpoint()
                raise KeyboardInterrupt
    finally:
        bar.close()
        if previous is not None:
            signal.signal(signal.SIGINT, previous)


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

"""A run's training log besides ``history.json``: TensorBoard event files in ``<run>/tb`` (``train.log=tensorboard``)
with the training stats every ``train.log_every`` steps (loss terms, PSNR, Gaussian count), every held-out
evaluation row and, every ``train.image_every`` steps, a comparison image (:mod:`dff_gs.train.preview`), against
the step; ``train.log=none`` writes nothing. ``tensorboard --logdir runs`` shows every run."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from dff_gs.io.run_dir import TB_NAME


class RunLogger:
    """Scalars of a run, to TensorBoard event files in ``folder`` (None: nowhere)."""

    def __init__(self, folder: Optional[Path] = None):
        self._writer = None
        if folder is not None:
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(log_dir=str(folder))

    def scalars(self, step: int, values: dict, prefix: str) -> None:
        """``prefix/key`` for each numeric value of ``values`` at ``step``."""
        if self._writer is None:
            return
        for key, value in values.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool) and key != "step":
                self._writer.add_scalar(f"{prefix}/{key}", value, step)

    def image(self, step: int, tag: str, image) -> None:
        """An RGB ``image  # [H, W, 3]`` in [0, 1] under ``tag`` at ``step``."""
        if self._writer is not None:
            self._writer.add_image(tag, image, step, dataformats="HWC")

    def flush(self) -> None:
        if self._writer is not None:
            self._writer.flush()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


def make_logger(kind: str, run_dir: Path) -> RunLogger:
    """The logger ``train.log`` names for a run in ``run_dir``."""
    return RunLogger(run_dir / TB_NAME if kind == "tensorboard" else None)

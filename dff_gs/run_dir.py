"""The run folder a training (Gaussians, NeRF or lift) writes: its file names, and claiming it before any work.

Claiming a folder (:func:`claim_run_dir`) takes its lock (so two processes never write one run), notices a
read-only or impossible ``--out`` at once, and refuses a folder that already holds a run unless the command
continues it (``--resume``) or replaces it (``--force``, which first removes the old run's files so that no
mix of old and new outputs can remain).
"""

from __future__ import annotations

import contextlib
import shutil
import time
from pathlib import Path
from typing import Iterator

from dff_gs.errors import OutputError
from dff_gs.io.lock import OutputLock

CONFIG_NAME = "config.yaml"
CHECKPOINT_NAME = "checkpoint.pt"
PLY_NAME = "point_cloud.ply"
SIDECAR_NAME = "point_cloud.dff.json"
NERF_MODEL_NAME = "nerf_model.pt"
METRICS_NAME = "metrics.json"
HISTORY_NAME = "history.json"
RENDERS_NAME = "renders"
LOCK_NAME = ".dff.lock"
RUN_FILES = (CONFIG_NAME, CHECKPOINT_NAME, PLY_NAME, SIDECAR_NAME, NERF_MODEL_NAME, METRICS_NAME, HISTORY_NAME,
             RENDERS_NAME)
"""Everything a run writes into its folder (the lock aside)."""


def run_dir_for(out: str, resume: str, scene_path: Path) -> Path:
    """``out``; else the folder of the run ``resume`` continues; else ``runs/<scene>-<time>``."""
    if out:
        return Path(out)
    if resume:
        r = Path(resume)
        return r if r.is_dir() else r.parent
    return Path("runs") / f"{scene_path.name}-{time.strftime('%Y%m%d-%H%M%S')}"


def _remove_run(folder: Path, names: list[str]) -> None:
    for name in names:
        p = folder / name
        shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink()


@contextlib.contextmanager
def claim_run_dir(out: Path, *, resume: str = "", force: bool = False) -> Iterator[Path]:
    """Hold ``out`` for one run: locked, and free of any other run's files.

    A folder that holds a run is refused unless ``resume`` names a checkpoint in it (the run continues there)
    or ``force`` is set (its run files are removed first). Yields ``out``; the lock goes on exit, and so does
    a folder this call created when the run failed before writing anything into it."""
    if out.exists() and not out.is_dir():
        raise OutputError(f"{out}: exists and is not a folder; --out names the run folder")
    created = not out.exists()
    try:
        with OutputLock(out / LOCK_NAME, f"run folder {out}"):
            existing = [n for n in RUN_FILES if (out / n).exists()]
            continuing = bool(resume) and _same_folder(Path(resume), out)
            if existing and not continuing:
                if not force:
                    raise OutputError(f"{out}: holds a run already ({', '.join(existing)}); pass --force to replace "
                                      f"it, --resume {out} to continue it, or choose another --out")
                _remove_run(out, existing)
            yield out
    finally:
        if created and out.is_dir() and not any(out.iterdir()):  # a run that failed before writing anything
            out.rmdir()


def _same_folder(resume: Path, out: Path) -> bool:
    folder = resume if resume.is_dir() else resume.parent
    return folder.resolve() == out.resolve()

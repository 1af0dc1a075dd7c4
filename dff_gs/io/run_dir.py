"""The run folder a training (Gaussians, NeRF or lift) writes: its file names, the :class:`RunFolder` every
pipeline writes its outputs through, and claiming it before any work.

Claiming a folder (:func:`claim_run_dir`) takes its lock (so two processes never write one run), notices a
read-only or impossible ``--out`` at once, and refuses a folder that already holds a run unless the command
continues it (``--resume`` of its own checkpoint) or replaces it (``--force``, which first removes the old run's
files, so that no mix of old and new outputs can remain). A folder holding files of these names that is not a
dff_gs run, or one holding the run's own inputs, is never cleared.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Optional, Sequence

from dff_gs.core.config import save_yaml
from dff_gs.core.errors import OutputError
from dff_gs.core.utils import write_json
from dff_gs.io.lock import OutputLock

CONFIG_NAME = "config.yaml"
CHECKPOINT_NAME = "checkpoint.pt"
PLY_NAME = "point_cloud.ply"
SIDECAR_NAME = "point_cloud.dff.json"
NERF_MODEL_NAME = "nerf_model.pt"
METRICS_NAME = "metrics.json"
HISTORY_NAME = "history.json"
RENDERS_NAME = "renders"
TB_NAME = "tb"
PSNR_CURVE_NAME, MIOU_CURVE_NAME = "psnr_vs_time.png", "miou_vs_time.png"  # dff_gs.engine.plots, periodic evaluation
LOCK_NAME = ".dff.lock"
EXPORT_SUFFIXES = {"ply": ".plain.ply", "splat": ".splat", "ply_compressed": ".compressed.ply"}
"""Viewer exports (``--export``, dff_gs.io.export): format -> the suffix that replaces ``.ply`` of the PLY's name."""
EXPORT_NAMES = tuple(PLY_NAME[: -len(".ply")] + s for s in EXPORT_SUFFIXES.values())
RUN_FILES = (CONFIG_NAME, CHECKPOINT_NAME, PLY_NAME, SIDECAR_NAME, NERF_MODEL_NAME, METRICS_NAME, HISTORY_NAME,
             RENDERS_NAME, TB_NAME, PSNR_CURVE_NAME, MIOU_CURVE_NAME, *EXPORT_NAMES)
"""Everything a run writes into its folder (the lock aside)."""


@dataclass(frozen=True)
class RunFolder:
    """One run folder: where each of its files lies, and the writers of its outputs; every pipeline (Gaussians,
    NeRF, lift) writes through one, so that the files and their schema are known here only.

    The model file holds the model and the run's metadata (:func:`run_metadata`): ``point_cloud.ply`` with its
    sidecar ``point_cloud.dff.json`` (format / version checked on load, :func:`dff_gs.io.ply.load_ply`), or
    ``nerf_model.pt`` (tagged and versioned likewise, :func:`dff_gs.nerf.io.load_nerf`).
    """

    path: Path

    config = property(lambda self: self.path / CONFIG_NAME)
    checkpoint = property(lambda self: self.path / CHECKPOINT_NAME)
    ply = property(lambda self: self.path / PLY_NAME)
    sidecar = property(lambda self: self.path / SIDECAR_NAME)
    nerf_model = property(lambda self: self.path / NERF_MODEL_NAME)
    metrics = property(lambda self: self.path / METRICS_NAME)
    history = property(lambda self: self.path / HISTORY_NAME)
    renders = property(lambda self: self.path / RENDERS_NAME)
    tb = property(lambda self: self.path / TB_NAME)

    def model_file(self, kind: str) -> Path:
        """Where a backbone of ``kind`` (``"gs"`` | ``"nerf"``) is saved."""
        return self.nerf_model if kind == "nerf" else self.ply

    def write_config(self, cfg) -> Path:
        """``config.yaml``: the resolved config (what ``--resume`` and the query / edit tools read back)."""
        save_yaml(cfg, self.config)
        return self.config

    def save_model(self, backbone, metadata: dict) -> Path:
        """The trained :class:`~dff_gs.backbone.Backbone` with the run's ``metadata`` (:func:`run_metadata`)."""
        return backbone.save(self.model_file(backbone.kind), metadata)

    def write_metrics(self, metrics: dict) -> Path:
        """``metrics.json``: the final held-out metrics and the run's figures."""
        return write_json(self.metrics, metrics)

    def write_history(self, backbone: str, history: list, evals: list, **extra) -> Path:
        """``history.json``: ``{"backbone", **extra (e.g. lift: true), "history": training log rows, "eval":
        held-out evaluation rows}``."""
        return write_json(self.history, {"backbone": backbone, **extra, "history": history, "eval": evals})


def run_metadata(teacher: dict, scene: str, scene_options: dict, *, backbone: Optional[str] = None,
                 lift: Optional[dict] = None) -> dict:
    """The metadata a run stores with its model (the PLY's sidecar, or ``nerf_model.pt``): the teacher (to encode
    queries), the scene and its ``load_scene`` options (to reopen it as trained), and for a NeRF its ``backbone``,
    for a lifted run its ``lift`` settings. Edits keep it and append their ``edits`` history."""
    meta = {"teacher": teacher, "scene": scene, "scene_options": scene_options}
    if backbone is not None:
        meta["backbone"] = backbone
    if lift is not None:
        meta["lift"] = lift
    return meta


def resume_folder(resume: str | Path) -> Path:
    """The folder of the run a ``--resume`` path continues (a run folder, or the folder of its checkpoint file,
    links resolved)."""
    r = Path(resume).resolve()
    return r if r.is_dir() else r.parent


def run_dir_for(out: str, resume: str, scene_path: Path) -> Path:
    """``out``; else the folder of the run ``resume`` continues; else ``runs/<scene>-<time>``."""
    if out:
        return Path(out)
    if resume:
        return resume_folder(resume)
    return Path("runs") / f"{scene_path.name}-{time.strftime('%Y%m%d-%H%M%S')}"


def is_run(folder: Path) -> bool:
    """Whether ``folder`` holds a dff_gs run: its ``config.yaml`` reads as a run config, or it has a checkpoint."""
    if (folder / CHECKPOINT_NAME).is_file():
        return True
    try:
        import yaml

        cfg = yaml.safe_load((folder / CONFIG_NAME).read_text())
    except (OSError, ValueError, yaml.YAMLError):
        return False
    return isinstance(cfg, dict) and isinstance(cfg.get("train"), dict) and isinstance(cfg.get("data"), dict)


def _inside(path: Path, folder: Path) -> bool:
    try:
        path.resolve().relative_to(folder.resolve())
        return True
    except ValueError:
        return False


def _remove_run(folder: Path, names: list[str]) -> None:
    """Remove a run's own files: its named files, the PNGs of its ``renders/`` and the event files of its ``tb/``
    (those folders only if then empty)."""
    own = {RENDERS_NAME: "*.png", TB_NAME: "events.out.tfevents.*"}
    for name in names:
        p = folder / name
        if name in own and p.is_dir() and not p.is_symlink():
            for f in p.glob(own[name]):
                f.unlink()
            with contextlib.suppress(OSError):
                p.rmdir()
        elif p.is_file() or p.is_symlink():
            p.unlink()


def _check_replaceable(out: Path, existing: list[str], force: bool, inputs: Sequence[str | Path]) -> None:
    if not is_run(out):
        raise OutputError(f"{out}: holds {', '.join(existing)} but is not a dff_gs run folder; choose another --out")
    if not force:
        raise OutputError(f"{out}: holds a run already ({', '.join(existing)}); pass --force to replace it, "
                          f"--resume {out} to continue it, or choose another --out")
    inside = [str(i) for i in inputs if i and _inside(Path(i), out)]
    if inside:
        raise OutputError(f"{out}: --force would remove this run's own input {inside[0]}; choose another --out")


@contextlib.contextmanager
def claim_run_dir(out: Path, *, resume: str = "", force: bool = False,
                  inputs: Sequence[str | Path] = ()) -> Iterator[Path]:
    """Hold ``out`` for one run: locked, and free of any other run's files.

    A folder that holds a run is refused unless ``resume`` is its own checkpoint (the run continues there) or
    ``force`` is set and none of ``inputs`` (the scene, an initial PLY) lies in it (its run files are then removed
    first). Yields ``out``; the lock goes on exit, and so does a folder this call created when the run failed
    before writing anything into it."""
    if out.exists() and not out.is_dir():
        raise OutputError(f"{out}: exists and is not a folder; --out names the run folder")
    created = not out.exists()
    try:
        with OutputLock(out / LOCK_NAME, f"run folder {out}"):
            existing = [n for n in RUN_FILES if (out / n).exists()]
            continuing = bool(resume) and _own_checkpoint(Path(resume), out)
            if existing and not continuing:
                _check_replaceable(out, existing, force, inputs)
                _remove_run(out, existing)
            yield out
    finally:
        if created and out.is_dir() and not any(out.iterdir()):  # a run that failed before writing anything
            out.rmdir()


def enclosing_run(path: Path) -> Optional[Path]:
    """The nearest folder holding ``path`` (or ``path`` itself when a folder) that is a dff_gs run folder: one with a
    run's config or checkpoint (:func:`is_run`), or with a lock file (a training that has not written its config
    yet). None when no folder above it is a run."""
    p = Path(path).absolute()
    for folder in ([p] if p.is_dir() else []) + list(p.parents):
        if (folder / LOCK_NAME).exists() or is_run(folder):
            return folder
    return None


@contextlib.contextmanager
def hold_enclosing_runs(outputs: Iterable[str | Path]) -> Iterator[list[Path]]:
    """Hold the lock of every run folder one of ``outputs`` lies in (:func:`enclosing_run`) while a command writes
    them: a run folder whose lock another process holds (a training in progress, another edit) stops every writer
    with a one-line :class:`OutputError`, as it stops ``train.py``. Yields the run folders held."""
    folders = sorted({f.resolve() for f in map(enclosing_run, outputs) if f is not None})
    with contextlib.ExitStack() as stack:
        for folder in folders:
            stack.enter_context(OutputLock(folder / LOCK_NAME, f"run folder {folder}"))
        yield folders


def check_not_inputs(outputs: Iterable[str | Path], input_files: Iterable[str | Path] = (),
                     input_folders: Iterable[str | Path] = ()) -> None:
    """Refuse, whatever ``--force`` says, to write over what a command reads (links resolved): an output that is one
    of ``input_files`` (a model, its sidecar, a run's config / checkpoint), or an existing file inside one of
    ``input_folders`` (a scene; files of a dff_gs run folder kept inside the scene are the run's, not the scene's).
    Raises a one-line :class:`OutputError` naming the output and the input."""
    files = {Path(f).resolve() for f in input_files if f}
    folders = [Path(f).resolve() for f in input_folders if f]
    for out in map(Path, outputs):
        target = out.resolve()
        if target in files:
            raise OutputError(f"{out}: is an input of this command ({target}); it is never overwritten, --force or "
                              "not: choose another --out")
        if not (target.exists() or target.is_symlink()):
            continue
        run = enclosing_run(target)
        for folder in folders:
            runs_own = run is not None and run.resolve() != folder and _inside(run, folder)
            if _inside(target, folder) and not runs_own:
                raise OutputError(f"{out}: exists in the scene {folder} this command reads; a scene's files are never "
                                  "overwritten, --force or not: choose an --out outside it")


def _own_checkpoint(resume: Path, out: Path) -> bool:
    """Whether ``resume`` is the checkpoint of the run in ``out`` (the folder, or its checkpoint.pt)."""
    r = resume.resolve()
    return resume_folder(r) == out.resolve() and (r.is_dir() or r.name == CHECKPOINT_NAME)

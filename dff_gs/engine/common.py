"""What the pipeline (:mod:`dff_gs.engine.pipeline`) shares with the tools that reopen a run's scene: the device,
the scene a config names and its split, periodic evaluation, the checkpoint writer, exports and the one-line end
of a run whose torchrun peers stopped.
"""

from __future__ import annotations

import signal
from dataclasses import replace
from pathlib import Path
from typing import Callable, Optional

import torch

from dff_gs.core.config import to_dict
from dff_gs.core.distributed import PeerLost
from dff_gs.core.errors import ConfigError, DataError, warn
from dff_gs.data import SceneData, load_scene
from dff_gs.data.fingerprint import fingerprint_difference, scene_fingerprint, scene_location
from dff_gs.data.synthetic import default_scene_path
from dff_gs.engine.evaluate import evaluate
from dff_gs.engine.validate import check_image_size
from dff_gs.io.export import export_model, parse_exports
from dff_gs.io.run_dir import RunFolder
from dff_gs.teachers.prepare import TeacherOutputs
from dff_gs.train.checkpoint import check_progress, resolve_checkpoint, run_record, with_scene
from dff_gs.train.config import Config
from dff_gs.train.loop import STOP_SIGNALS
from dff_gs.train.schedule import resolve_steps


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"train.device={name!r} but CUDA is not available on this machine")
    try:
        return torch.device(name)
    except RuntimeError:
        raise ConfigError(f"train.device={name!r} is not a device (auto | cpu | cuda)") from None


def resolve_scene_path(cfg: Config) -> Path:
    return scene_path_of(cfg.data.path)


def scene_path_of(data_path: str) -> Path:
    """The scene a ``data.path`` value names (empty: the embedded default scene)."""
    if data_path:
        return Path(data_path)

    return default_scene_path()


def check_resumed_scene(cfg: Config, scene_path: Path, scene: SceneData) -> None:
    """A resumed run (``cfg.resume``) that reads its scene from another folder than it trained on continues only on
    the same scene: the loaded scene's fingerprint must be the one its checkpoint stores (a moved, renamed or
    copied scene is; another scene is a :class:`ConfigError` saying what differs). A checkpoint written before
    fingerprints is trusted, with one warning that the scene could not be verified."""
    ckpt, config, fingerprint = run_record(cfg.resume, mmap=True)
    run_data = config.get("data") if isinstance(config.get("data"), dict) else {}
    run_path = str(run_data.get("path") or "")
    if fingerprint is not None and fingerprint.get("source") == scene_location(scene):
        return  # the folder it trained on (a relative data.path is compared where it pointed then)
    if fingerprint is None and (run_path == cfg.data.path or
                                scene_path_of(run_path).expanduser().resolve() == scene_path.expanduser().resolve()):
        return
    trained_on = run_path or "the embedded scene"
    if fingerprint is None:
        warn(f"{scene_path}: could not be verified as the scene {ckpt} was trained on ({trained_on}): the "
             "checkpoint predates scene fingerprints; continuing on it")
        return
    diff = fingerprint_difference(fingerprint, scene_fingerprint(scene))
    if diff is not None:
        raise ConfigError(f"{scene_path}: not the scene {ckpt} was trained on ({trained_on}): {diff}; --resume "
                          "continues a run on its own scene (moved or copied is fine): give that scene, or start a "
                          "new run with --out")


def saved_config(cfg: Config, scene: SceneData) -> dict:
    """What a run's checkpoints store as their ``config``: the resolved config and the fingerprint of the scene it
    trains on (:func:`~dff_gs.train.checkpoint.with_scene`), which a resume from another path checks."""
    return with_scene(to_dict(cfg), scene_fingerprint(scene))


def scene_options(cfg: Config) -> dict:
    """``cfg.data``'s ``load_scene`` options, as a run's metadata records them (for tools that reopen the scene)."""
    return {"downscale": cfg.data.downscale, "test_every": cfg.data.test_every, "format": cfg.data.format,
            "background": list(cfg.data.background), "skip_missing": cfg.data.skip_missing,
            **({"posed_out": cfg.data.posed_out} if cfg.data.posed_out else {})}


def load_run_scene(cfg: Config, device: Optional[torch.device] = None, progress: bool = True
                   ) -> tuple[Path, SceneData, SceneData, Optional[SceneData]]:
    """The scene ``cfg.data`` names: its path, the whole scene, the training split and the test split (None when
    ``data.test_every`` holds no views out). Every backbone and the lifting run load it through here. The CPU
    resolution budget ``data.max_side`` applies when ``device`` is the CPU; the factor chosen is written back to
    ``cfg.data.downscale`` so that the run's config reopens the scene at the size it trained on."""
    scene_path = resolve_scene_path(cfg)
    on_cpu = device is None or device.type == "cpu"
    scene = load_scene(scene_path, max_side=cfg.data.max_side if on_cpu else 0, progress=progress, **scene_options(cfg))
    if cfg.resume:  # first: another scene is refused as that, whatever else is wrong with it for this run
        check_resumed_scene(cfg, scene_path, scene)
    check_image_size(cfg, scene)  # before data.downscale is resolved: the message names the key that shrank them
    cfg.data.downscale = scene.downscale
    resolve_steps(cfg, scene)
    if not scene.train_ids:
        raise DataError(f"{scene.source}: no training views: {len(scene.train_ids) + len(scene.test_ids)} view(s), "
                        f"and data.test_every={cfg.data.test_every} holds out view 0 of every {cfg.data.test_every}; "
                        "give more views or data.test_every=0")
    if not cfg.data.labels and scene.semantics is not None:
        print(f"{scene.source}: label maps withheld (data.labels=false)")
        scene = replace(scene, semantics=None, class_names=None)
    return scene_path, scene, scene.split("train"), scene.split("test") if scene.test_ids else None


def periodic_eval(trainer, test_scene: Optional[SceneData], device: torch.device, cfg: Config,
                  background: Optional[torch.Tensor], teacher: TeacherOutputs):
    """The ``eval_fn`` of ``trainer.fit``: held-out metrics every ``train.eval_every`` steps (None if off)."""
    if test_scene is None or not cfg.train.eval_every:
        return None

    def eval_fn() -> dict:
        return evaluate(trainer.model, test_scene, device=device, backend=cfg.train.backend, background=background,
                        class_embeddings=teacher.class_embeddings, lpips_weights=cfg.train.lpips_weights,
                        progress=False)

    return eval_fn


def export_run(cfg: Config, model, ply: Path) -> list[Path]:
    """The viewer exports ``train.export`` names, beside the run's PLY (:mod:`dff_gs.io.export`)."""
    if not cfg.train.export:
        return []

    return export_model(model, ply, parse_exports(cfg.train.export, "train.export"), cfg.train.export_up)


def checkpoint_writer(cfg: Config, trainer, run: RunFolder, *saved) -> Callable[[], Path]:
    """The checkpoint writer ``() -> path`` of a run: ``trainer.save(run.checkpoint, *saved)``, refused (one line,
    :func:`~dff_gs.train.checkpoint.check_progress`) when the model holds NaN / inf, so that a diverged run never
    replaces its last good checkpoint."""
    previous = resolve_checkpoint(cfg.resume) if cfg.resume else None

    def write() -> Path:
        check_progress(trainer.model, trainer.step, run.checkpoint, previous)
        return trainer.save(run.checkpoint, *saved)

    return write


def stopped_run(err: PeerLost, trainer, checkpoint: Callable[[], Path], run: RunFolder, main: bool) -> PeerLost:
    """The one-line error a rank ends with when another rank stopped mid-run (:class:`PeerLost`). Rank 0 (``main``)
    first saves the state of the last finished step when nothing of the failed step was applied
    (``err.state_intact``), so that the run resumes exactly; else it names its last checkpoint. While it writes,
    SIGTERM / SIGINT (torchrun stopping the survivors) are ignored."""
    where = f"training stopped at step {trainer.step}: {err}"
    if not main:
        return PeerLost(f"{where}; rank 0 writes the run's checkpoints")
    ckpt = run.checkpoint
    if err.state_intact:
        previous = {sig: signal.signal(sig, signal.SIG_IGN) for sig in STOP_SIGNALS}
        try:
            checkpoint()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        saved = f"its progress (step {trainer.step}) is in {ckpt}"
    elif ckpt.is_file():
        saved = f"its last checkpoint is {ckpt}"
    else:
        return PeerLost(f"{where}; nothing was saved (no checkpoint yet)")
    return PeerLost(f"{where}; {saved}: continue with torchrun ... train.py --resume {run.path}")

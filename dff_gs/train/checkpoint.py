"""Checkpoints that resume exactly: model, optimizers, densification state and RNG states."""

from __future__ import annotations

import itertools
import random
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch

from dff_gs.core.errors import CheckpointError, OutputError, check_version
from dff_gs.core.utils import atomic_write_path
from dff_gs.io.run_dir import CHECKPOINT_NAME

CHECKPOINT_VERSION = 1


def rng_state() -> dict:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> Path:
    """Write ``payload`` (plus version and RNG state) atomically to ``path``."""
    path = Path(path)
    payload = dict(payload, version=CHECKPOINT_VERSION, rng=rng_state())
    write_torch(payload, path)
    return path


def write_torch(payload: Any, path: Path) -> None:
    """``torch.save`` atomically; a failed write (a full disk: torch's ``enforce fail at inline_container.cc``)
    is one line naming the file, and the previous file stays as it was."""
    try:
        with atomic_write_path(path) as tmp:
            torch.save(payload, tmp)
    except RuntimeError as e:
        raise OutputError(f"{path}: could not be written ({str(e).splitlines()[0][:200]}; is the disk full?)") from None


def resolve_checkpoint(path: str | Path) -> Path:
    """A run folder or a checkpoint file -> the checkpoint file (clear error if absent)."""
    path = Path(path)
    if path.is_dir():
        path = path / CHECKPOINT_NAME
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    return path


def read_payload(path: Path, map_location: str | torch.device = "cpu", mmap: bool = False) -> Any:
    """``torch.load`` of a checkpoint file, a truncated or foreign file being a :class:`CheckpointError`.
    ``mmap``: tensors mapped, not read (for a look at the small entries of a large checkpoint)."""
    try:
        return torch.load(path, map_location=map_location, weights_only=False, mmap=mmap)
    except Exception as e:  # torch raises RuntimeError / EOFError / UnpicklingError on bad files
        raise CheckpointError(f"{path}: not a readable checkpoint (truncated or corrupt: {type(e).__name__})") from None


SCENE_KEY = "scene_fingerprint"
"""The entry of a checkpoint's ``config`` that holds the fingerprint of the scene the run read
(:func:`dff_gs.data.fingerprint.scene_fingerprint`), beside the config's own sections; absent in checkpoints
written before fingerprints."""


def with_scene(config: dict, fingerprint: dict) -> dict:
    """What a checkpoint stores as its ``config``: the config dict and the scene's fingerprint under
    :data:`SCENE_KEY`."""
    return dict(config, **{SCENE_KEY: fingerprint})


def run_record(path: str | Path, mmap: bool = False) -> tuple[Path, dict, Optional[dict]]:
    """(the checkpoint file, the config it was trained with, the fingerprint of its scene or None) of a run folder
    or checkpoint of any backbone."""
    path = resolve_checkpoint(path)
    payload = read_payload(path, mmap=mmap)
    config = payload.get("config") if isinstance(payload, dict) else None
    if not isinstance(config, dict):
        raise CheckpointError(f"{path}: not a dff_gs checkpoint (it holds no training config)")
    config = dict(config)
    fingerprint = config.pop(SCENE_KEY, None)
    return path, config, fingerprint if isinstance(fingerprint, dict) else None


def checkpoint_config(path: str | Path) -> tuple[Path, dict]:
    """(the checkpoint file, the config it was trained with) of a run folder or checkpoint of any backbone."""
    path, config, _ = run_record(path)
    return path, config


def non_finite(model: torch.nn.Module) -> Optional[str]:
    """None when every floating value of ``model``'s state is finite, else which parameter is not and how much of
    it ("parameter 'means' has 12 of 300 values NaN/inf")."""
    for name, t in itertools.chain(model.named_parameters(), model.named_buffers()):  # no copies (state_dict's)
        if t.is_floating_point():
            bad = int((~torch.isfinite(t.detach())).sum())
            if bad:
                return f"parameter {name!r} has {bad} of {t.numel()} values NaN/inf"
    return None


def check_progress(model: torch.nn.Module, step: int, checkpoint: Path, previous: Optional[Path] = None) -> None:
    """Refuse to save a model that diverged as progress: a :class:`CheckpointError` naming the step, the
    parameter and the last good checkpoint (``checkpoint`` itself when it exists, else ``previous``: the one a
    resumed run started from), which is left as it was."""
    bad = non_finite(model)
    if bad is None:
        return
    last = checkpoint if checkpoint.is_file() else previous
    kept = f"the last good checkpoint is {last}" if last is not None else "nothing was saved (no checkpoint yet)"
    raise CheckpointError(f"{checkpoint.parent}: training diverged at step {step}: {bad}; not saved; {kept} "
                          "(lower the learning rates, or check the scene's cameras)")


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint, turning truncation or a foreign file into a clear CheckpointError."""
    path = resolve_checkpoint(path)
    payload = read_payload(path, map_location)
    if not isinstance(payload, dict) or "model" not in payload or "version" not in payload:
        raise CheckpointError(f"{path}: not a dff_gs Gaussian checkpoint")
    check_version(path, "checkpoint", payload["version"], CHECKPOINT_VERSION)
    return payload

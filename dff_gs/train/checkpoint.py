"""Checkpoints that resume exactly: model, optimizers, densification state and RNG states."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dff_gs.errors import CheckpointError, OutputError, check_version
from dff_gs.run_dir import CHECKPOINT_NAME
from dff_gs.utils import atomic_write_path

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


def read_payload(path: Path, map_location: str | torch.device = "cpu") -> Any:
    """``torch.load`` of a checkpoint file, a truncated or foreign file being a :class:`CheckpointError`."""
    try:
        return torch.load(path, map_location=map_location, weights_only=False)
    except Exception as e:  # torch raises RuntimeError / EOFError / UnpicklingError on bad files
        raise CheckpointError(f"{path}: not a readable checkpoint (truncated or corrupt: {type(e).__name__})") from None


def checkpoint_config(path: str | Path) -> tuple[Path, dict]:
    """(the checkpoint file, the config it was trained with) of a run folder or checkpoint of any backbone."""
    path = resolve_checkpoint(path)
    payload = read_payload(path)
    config = payload.get("config") if isinstance(payload, dict) else None
    if not isinstance(config, dict):
        raise CheckpointError(f"{path}: not a dff_gs checkpoint (it holds no training config)")
    return path, config


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint, turning truncation or a foreign file into a clear CheckpointError."""
    path = resolve_checkpoint(path)
    payload = read_payload(path, map_location)
    if not isinstance(payload, dict) or "model" not in payload or "version" not in payload:
        raise CheckpointError(f"{path}: not a dff_gs Gaussian checkpoint")
    check_version(path, "checkpoint", payload["version"], CHECKPOINT_VERSION)
    return payload

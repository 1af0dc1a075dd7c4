"""Saving and loading NeRF models (``nerf_model.pt`` in a run folder) and NeRF training checkpoints.

A model file is a ``torch.save`` dict tagged ``format = "dff_gs-nerf"`` holding the NeRF config, the scene
box, the teacher dimension, the weights (occupancy grid included) and the run metadata (teacher, scene),
so it can be rebuilt without the training config. Handing a Gaussian run, PLY or checkpoint to the NeRF
loader (or the reverse, see :mod:`dff_gs.engine.runs`) is a clear error, not a shape mismatch.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Optional

import torch

from dff_gs.core.errors import CheckpointError, DataError, check_version
from dff_gs.io.run_dir import NERF_MODEL_NAME, PLY_NAME
from dff_gs.nerf.config import NerfConfig
from dff_gs.nerf.model import NERF_FORMAT, NERF_VERSION, NerfModel
from dff_gs.train.checkpoint import resolve_checkpoint, rng_state, write_torch

NERF_CHECKPOINT_FORMAT = "dff_gs-nerf-checkpoint"
GAUSSIAN_HINT = "open it with dff_gs.engine.runs.load_model or load_backbone (or edit.py for a persistent edit)"


def save_nerf(model: NerfModel, path: str | Path, metadata: Optional[dict] = None) -> Path:
    """Write ``model`` (+ ``metadata``: teacher, scene) to ``path`` atomically (:meth:`NerfModel.save`). Returns the
    path."""
    return model.save(path, metadata)


def model_from_payload(payload: dict, source: str = "NeRF model") -> NerfModel:
    """Rebuild a :class:`NerfModel` from :meth:`NerfModel.payload`'s dict."""
    try:
        known = {f.name for f in dataclasses.fields(NerfConfig)}
        cfg = NerfConfig(**{k: v for k, v in payload["config"].items() if k in known})
        model = NerfModel(cfg, payload["aabb"], int(payload["teacher_dim"]))
        model.load_state_dict(payload["state"])
    except (KeyError, RuntimeError, TypeError, ValueError) as e:
        raise CheckpointError(f"{source}: NeRF weights do not match their config ({type(e).__name__}: {e})") from None
    check_finite(model, source)
    return model


def check_finite(model: NerfModel, source: str) -> None:
    """A :class:`CheckpointError` naming ``source`` and the parameter when any weight is NaN / inf."""
    for name, p in model.state_dict().items():
        if p.is_floating_point() and not torch.isfinite(p).all():
            raise CheckpointError(f"{source}: parameter {name!r} has non-finite values (NaN/inf)")


def _read(path: Path) -> Any:
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:  # noqa: BLE001  torch raises several types on foreign / truncated files
        raise CheckpointError(f"{path}: not a readable NeRF file (truncated or corrupt: {type(e).__name__})") from None


def is_nerf_file(path: str | Path) -> bool:
    """Whether ``path`` is a NeRF model or NeRF checkpoint written by this package (cheap for other files)."""
    p = Path(path)
    if not p.is_file() or p.suffix != ".pt":
        return False
    try:
        payload = torch.load(p, map_location="cpu", weights_only=False)
    except Exception:  # noqa: BLE001
        return False
    return isinstance(payload, dict) and payload.get("format") in (NERF_FORMAT, NERF_CHECKPOINT_FORMAT)


def resolve_nerf_path(path: str | Path) -> Path:
    """A NeRF run folder or model file -> the model file; Gaussian runs and PLYs are a clear error."""
    p = Path(path)
    if p.is_dir():
        if (p / NERF_MODEL_NAME).is_file():
            return p / NERF_MODEL_NAME
        if (p / PLY_NAME).is_file():
            raise DataError(f"{p}: this is a Gaussian run (point_cloud.ply), not a NeRF run; {GAUSSIAN_HINT}")
        raise DataError(f"{p}: not a NeRF run folder (no {NERF_MODEL_NAME} in it)")
    if not p.exists():
        raise DataError(f"{p}: no such NeRF run folder or model file")
    if p.suffix.lower() == ".ply":
        raise DataError(f"{p}: this is a Gaussian PLY, not a NeRF model; {GAUSSIAN_HINT}")
    return p


def load_nerf(path: str | Path, map_location: str | torch.device = "cpu") -> tuple[NerfModel, dict]:
    """(model, metadata) of a NeRF run folder, a ``nerf_model.pt`` or a NeRF training checkpoint."""
    p = resolve_nerf_path(path)
    payload = _read(p)
    if isinstance(payload, dict) and payload.get("format") == NERF_CHECKPOINT_FORMAT:
        payload = payload["model"]
    if not isinstance(payload, dict) or payload.get("format") != NERF_FORMAT:
        if isinstance(payload, dict) and isinstance(payload.get("model"), dict) and "params.means" in payload["model"]:
            raise DataError(f"{p}: this is a Gaussian checkpoint, not a NeRF model; {GAUSSIAN_HINT}")
        raise DataError(f"{p}: not a dff_gs NeRF model (no '{NERF_FORMAT}' tag)")
    check_version(p, "NeRF model", payload.get("version"), NERF_VERSION)
    model = model_from_payload(payload, str(p)).to(map_location)
    return model, dict(payload.get("metadata") or {})


def save_nerf_checkpoint(path: str | Path, model: NerfModel, trainer_state: dict, config: dict,
                         metadata: Optional[dict] = None) -> Path:
    """A resumable training checkpoint: the model payload, optimiser/step state, config and RNG states."""
    payload = {"format": NERF_CHECKPOINT_FORMAT, "version": NERF_VERSION, "model": model.payload(metadata),
               "trainer": trainer_state, "config": config, "rng": rng_state()}
    path = Path(path)
    write_torch(payload, path)
    return path


def load_nerf_checkpoint(path: str | Path) -> dict:
    """Read a NeRF training checkpoint (a run folder or the .pt), with clear errors for anything else."""
    p = resolve_checkpoint(path)
    payload = _read(p)
    if not isinstance(payload, dict) or payload.get("format") != NERF_CHECKPOINT_FORMAT:
        if isinstance(payload, dict) and isinstance(payload.get("model"), dict) and "params.means" in payload["model"]:
            raise CheckpointError(f"{p}: this is a Gaussian checkpoint; resume it with train.backbone=gs")
        raise CheckpointError(f"{p}: not a dff_gs NeRF checkpoint")
    check_version(p, "NeRF checkpoint", payload.get("version"), NERF_VERSION)
    return payload

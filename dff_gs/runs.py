"""Open a trained result: a run folder (``point_cloud.ply`` + sidecar) or any PLY, and the teacher that
goes with it (to encode text / patch queries in the same feature space)."""

from __future__ import annotations

from pathlib import Path

from dff_gs.errors import DataError
from dff_gs.gaussians import GaussianModel


def resolve_ply(path: str | Path) -> Path:
    p = Path(path)
    if p.is_dir():
        if not (p / "point_cloud.ply").is_file():
            raise DataError(f"{p}: not a run folder (no point_cloud.ply in it)")
        return p / "point_cloud.ply"
    if not p.exists():
        raise DataError(f"{p}: no such run folder or PLY file")
    return p


def load_model(path: str | Path) -> tuple[GaussianModel, dict]:
    """(model, sidecar metadata) of a run folder or a PLY file (ours or plain 3DGS)."""
    from dff_gs.io.ply import load_ply

    return load_ply(resolve_ply(path))


def teacher_from_meta(meta: dict):
    """The teacher a model was distilled from, rebuilt from its sidecar metadata (None if unknown)."""
    from dff_gs.teachers import get_teacher

    t = dict(meta.get("teacher") or {})
    name = t.pop("name", None)
    if not name or name == "none":
        return None
    for k in ("dim", "cache_key", "class_names"):
        t.pop(k, None)
    return get_teacher(name, **t)

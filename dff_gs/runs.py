"""Open a trained result: a run folder (``point_cloud.ply`` + sidecar) or any PLY, and the teacher that
goes with it (to encode text / patch queries in the same feature space).

These are the Gaussian tools' entry (edit.py, ``python -m dff_gs.query``, ``python -m dff_gs.render``). A
NeRF run (``train.backbone=nerf``) is refused here with a clear error; it opens with
:func:`dff_gs.nerf.load_nerf`.
"""

from __future__ import annotations

from pathlib import Path

from dff_gs.errors import DataError
from dff_gs.gaussians import GaussianModel
from dff_gs.run_dir import CONFIG_NAME, NERF_MODEL_NAME, PLY_NAME

NERF_HINT = ("edit.py and the Gaussian loaders need a Gaussian run or PLY; a NeRF renders with python -m "
             "dff_gs.render and queries (render-time edits too) with python -m dff_gs.query, or open it with "
             "dff_gs.nerf.load_nerf and use dff_gs.query's 2D queries, dff_gs.nerf.query's 3D ones, dff_gs.nerf.edit")


def run_config(folder: Path) -> dict | None:
    """The ``config.yaml`` of a run folder as a dict (None when there is none or it does not read as a mapping)."""
    cfg = folder / CONFIG_NAME
    if not cfg.is_file():
        return None
    import yaml

    try:
        data = yaml.safe_load(cfg.read_text())
    except (OSError, yaml.YAMLError):
        return None
    return data if isinstance(data, dict) else None


def run_backbone(path: str | Path) -> str | None:
    """``"gs"`` or ``"nerf"`` for a run folder or a model file, None when it cannot tell."""
    p = Path(path)
    if p.is_dir():
        if (p / PLY_NAME).is_file():
            return "gs"
        if (p / NERF_MODEL_NAME).is_file():
            return "nerf"
        cfg = run_config(p)  # an interrupted run has only its config and checkpoint
        backbone = (cfg.get("train") or {}).get("backbone") if cfg is not None else None
        return backbone if backbone in ("gs", "nerf") else None
    if p.suffix.lower() == ".ply":
        return "gs"
    if p.suffix == ".pt" and p.is_file():
        from dff_gs.nerf.io import is_nerf_file

        return "nerf" if is_nerf_file(p) else None
    return None



def scene_options_of(data: dict) -> dict:
    """The ``load_scene`` options (downscale, test split, format, background, skip_missing) in a config's ``data``
    section (the downscale a run resolved, so its scene reopens at the size it trained on)."""
    opts = {k: data[k] for k in ("downscale", "test_every") if isinstance(data.get(k), int)}
    if isinstance(data.get("format"), str) and data["format"]:
        opts["format"] = data["format"]
    bg = data.get("background")
    if isinstance(bg, (list, tuple)) and len(bg) == 3 and all(isinstance(c, (int, float)) for c in bg):
        opts["background"] = [float(c) for c in bg]
    if isinstance(data.get("skip_missing"), bool):
        opts["skip_missing"] = data["skip_missing"]
    return opts


def run_scene_options(path: str | Path) -> dict:
    """``load_scene`` options a model was trained with (downscale, test split): from the ``config.yaml`` of the
    run folder it lives in, else from its sidecar's ``scene_options`` (runs and edits write them, so an edited
    PLY moved elsewhere keeps them); {} when neither says."""
    p = Path(path)
    folder = p if p.is_dir() else p.parent
    if (folder / CONFIG_NAME).is_file():
        cfg = run_config(folder)
        data = (cfg or {}).get("data")
        return scene_options_of(data) if isinstance(data, dict) else {}
    if p.is_file():
        import json

        from dff_gs.io.ply import sidecar_path

        try:
            meta = json.loads(sidecar_path(p).read_text())
        except (OSError, ValueError):
            return {}
        opts = meta.get("scene_options") if isinstance(meta, dict) else None
        return scene_options_of(opts) if isinstance(opts, dict) else {}
    return {}

def resolve_ply(path: str | Path) -> Path:
    p = Path(path)
    if p.exists() and run_backbone(p) == "nerf":
        raise DataError(f"{p}: this is a NeRF run, not Gaussians; {NERF_HINT}")
    if p.is_dir():
        if not (p / PLY_NAME).is_file():
            raise DataError(f"{p}: not a run folder (no {PLY_NAME} in it)")
        return p / PLY_NAME
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

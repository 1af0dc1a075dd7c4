"""Open a trained result: a run folder or model file of either backbone (:func:`load_backbone`: Gaussians, a PLY
of ours or any plain 3DGS one, or a NeRF run), and the teacher that goes with it (to encode text / patch queries in
the same feature space).

:func:`load_model` is the Gaussian loader (edits, lifting, composing): it refuses a NeRF run in one line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import torch

from dff_gs.backbone import Backbone, GaussianBackbone
from dff_gs.core.errors import DataError
from dff_gs.core.gaussians import GaussianModel
from dff_gs.io.ply import load_ply, read_sidecar, sidecar_path
from dff_gs.io.run_dir import CONFIG_NAME, NERF_MODEL_NAME, PLY_NAME
from dff_gs.nerf.io import is_nerf_file, load_nerf, resolve_nerf_path
from dff_gs.teachers import get_teacher

NERF_HINT = ("a NeRF's edits are render-time ones: python -m dff_gs.query RUN --text T --op delete --out DIR, or "
             "dff_gs.engine.runs.load_backbone and dff_gs.edit.nerf")


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
    if isinstance(data.get("posed_out"), str) and data["posed_out"]:
        opts["posed_out"] = data["posed_out"]
    return opts


def run_scene_options(path: str | Path, meta: Optional[dict] = None) -> dict:
    """``load_scene`` options a model was trained with (downscale, test split): from the ``config.yaml`` of the
    run folder it lives in, else from its metadata's ``scene_options`` (``meta`` as loaded: a PLY's sidecar or a
    NeRF model file's metadata; a PLY's sidecar is read when not given). Runs and edits record them, so an edited
    PLY moved elsewhere keeps them; {} when neither says."""
    p = Path(path)
    folder = p if p.is_dir() else p.parent
    if (folder / CONFIG_NAME).is_file():
        cfg = run_config(folder)
        data = (cfg or {}).get("data")
        return scene_options_of(data) if isinstance(data, dict) else {}
    if meta is None and p.is_file() and p.suffix.lower() == ".ply":
        meta = read_sidecar(sidecar_path(p))
    opts = (meta or {}).get("scene_options")
    return scene_options_of(opts) if isinstance(opts, dict) else {}


def resolve_ply(path: str | Path) -> Path:
    p = Path(path)
    if p.exists() and run_backbone(p) == "nerf":
        raise DataError(f"{p}: this is a NeRF run, and this needs Gaussians (a run or PLY); {NERF_HINT}")
    if p.is_dir():
        if not (p / PLY_NAME).is_file():
            raise DataError(f"{p}: not a run folder (no {PLY_NAME} in it)")
        return p / PLY_NAME
    if not p.exists():
        raise DataError(f"{p}: no such run folder or PLY file")
    return p


def load_model(path: str | Path) -> tuple[GaussianModel, dict]:
    """(model, sidecar metadata) of a Gaussian run folder or a PLY file (ours or plain 3DGS)."""
    return load_ply(resolve_ply(path))


def resolve_model(path: str | Path) -> tuple[str, Path]:
    """``("gs" | "nerf", the model file)`` of a run folder or model file: its PLY, or its ``nerf_model.pt`` (a NeRF
    model file or checkpoint as it is). A missing path or a folder without a model is a one-line ``DataError``."""
    p = Path(path)
    if p.exists() and run_backbone(p) == "nerf":
        return "nerf", resolve_nerf_path(p)
    return "gs", resolve_ply(p)


def load_backbone(path: str | Path, *, backend: str = "auto", device: str | torch.device = "cpu",
                  background: Optional[torch.Tensor] = None) -> tuple[Backbone, dict]:
    """(backbone, metadata: teacher, scene, scene options, ...) of a run folder or model file of either kind: the
    Gaussians of a run or PLY as a :class:`~dff_gs.backbone.GaussianBackbone` rendered with ``backend`` over
    ``background: Tensor  # [3]`` (None: the renderer's), a NeRF run (``nerf_model.pt`` or a NeRF checkpoint) as
    its :class:`~dff_gs.nerf.model.NerfModel` in eval mode (over the background it was trained with); either on
    ``device``. :meth:`Backbone.save` writes one back."""
    kind, file = resolve_model(path)
    if kind == "nerf":
        model, meta = load_nerf(file, map_location=device)
        return model.eval(), meta
    model, meta = load_model(file)
    return GaussianBackbone(model.to(device), backend=backend, background=background), meta


def teacher_from_meta(meta: dict):
    """The teacher a model was distilled from, rebuilt from its sidecar metadata (None if unknown)."""
    t = dict(meta.get("teacher") or {})
    name = t.pop("name", None)
    if not name or name == "none":
        return None
    for k in ("dim", "cache_key", "class_names"):
        t.pop(k, None)
    return get_teacher(name, **t)

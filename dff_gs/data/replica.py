"""The Replica layout of Semantic-NeRF: ``rgb/rgb_{i}.png``, ``depth/depth_{i}.png`` (16-bit millimetres),
``semantic_class/semantic_class_{i}.png`` and ``traj_w_c.txt`` (one row-major 4x4 camera-to-world per line,
OpenCV camera axes). Intrinsics: ``intrinsics.json`` (fl_x, fl_y, cx, cy) if present, else Semantic-NeRF's
90 degree horizontal field of view. Class names: ``classes.json`` (list) or Replica's
``info_semantic.json`` (``classes: [{id, name}]``), searched here and in the parent folder; class 0 is
"void" (unlabeled) when it carries no name.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import torch

from dff_gs.core.cameras import check_rigid
from dff_gs.core.errors import DataError
from dff_gs.data.frames import Frame, assemble
from dff_gs.data.image_io import image_size, load_labels
from dff_gs.data.registry import register_loader
from dff_gs.data.scene import SceneData
from dff_gs.data.transforms import read_json
from dff_gs.data.validate import check_intrinsics, check_position

REPLICA_HFOV_DEG = 90.0


def detect(path: Path) -> bool:
    return path.is_dir() and (path / "rgb").is_dir() and (path / "traj_w_c.txt").is_file()


def _numbered(folder: Path, prefix: str) -> dict[int, Path]:
    out = {}
    if folder.is_dir():
        for p in folder.iterdir():
            m = re.fullmatch(rf"{prefix}_(\d+)\.(png|jpg|npy)", p.name)
            if m:
                out[int(m.group(1))] = p
    return out


def _class_names(root: Path) -> tuple[list[str] | None, int | None]:
    for d in (root, root.parent):
        if (d / "classes.json").is_file():
            names = read_json(d / "classes.json")
            if not isinstance(names, list):
                raise DataError(f"{d / 'classes.json'}: expected a JSON list of class names")
            return [str(n) for n in names], None
        if (d / "info_semantic.json").is_file():
            info = read_json(d / "info_semantic.json")
            try:
                pairs = {int(c["id"]): str(c["name"]) for c in info["classes"]}
            except (KeyError, TypeError, ValueError):
                raise DataError(f"{d / 'info_semantic.json'}: expected 'classes': "
                                "[{'id': int, 'name': str}]") from None
            n = max(pairs) + 1 if pairs else 0
            names = [pairs.get(i, f"class_{i}") for i in range(n)]
            ignore = 0 if pairs.get(0, "") in ("", "void", "undefined") else None
            if ignore == 0 and n:
                names[0] = "void"
            return names, ignore
    return None, None


def load(path: Path, downscale: int = 1, test_every: int = 8, background=(1.0, 1.0, 1.0), max_side: int = 0,
         skip_missing: bool = False, progress: bool = False) -> SceneData:
    root = Path(path)
    traj_path = root / "traj_w_c.txt"
    try:
        traj = np.loadtxt(traj_path, ndmin=2)
    except (OSError, ValueError) as err:
        raise DataError(f"{traj_path}: not a readable trajectory ({err})") from None
    if traj.shape[1] != 16:
        raise DataError(f"{traj_path}: each line must hold a row-major 4x4 matrix (16 numbers), got {traj.shape[1]}")
    check_rigid(torch.from_numpy(traj.reshape(-1, 4, 4)), str(traj_path))
    for i, row in enumerate(traj):
        check_position(row[[3, 7, 11]], f"{traj_path}: pose {i}", "its translation")
    rgb = _numbered(root / "rgb", "rgb")
    if not rgb:
        raise DataError(f"{root / 'rgb'}: no rgb_<i>.png images")
    ids = sorted(rgb)
    if ids[-1] >= len(traj):
        raise DataError(f"{traj_path}: {len(traj)} poses but image rgb_{ids[-1]} needs pose {ids[-1]}")
    depth = _numbered(root / "depth", "depth")
    sem = _numbered(root / "semantic_class", "semantic_class")
    w, h = image_size(rgb[ids[0]])
    if (root / "intrinsics.json").is_file():
        k = read_json(root / "intrinsics.json")
        try:
            K = torch.tensor([[k["fl_x"], 0, k["cx"]], [0, k.get("fl_y", k["fl_x"]), k["cy"]], [0, 0, 1]],
                             dtype=torch.float32)
        except (KeyError, TypeError, ValueError, AttributeError):
            raise DataError(f"{root / 'intrinsics.json'}: expected numbers fl_x, cx, cy (optionally fl_y)") from None
        check_intrinsics(K, w, h, str(root / "intrinsics.json"))
    else:
        f = 0.5 * w / math.tan(math.radians(REPLICA_HFOV_DEG) / 2)
        K = torch.tensor([[f, 0, w / 2], [0, f, h / 2], [0, 0, 1]], dtype=torch.float32)
    class_names, ignore = _class_names(root)
    if sem and class_names is None:
        n = 1 + max(int(load_labels(p).max()) for p in sem.values())
        class_names = [f"class_{i}" for i in range(n)]
    frames = [Frame(rgb[i], torch.from_numpy(traj[i].reshape(4, 4)).float(), K, w, h, f"rgb_{i}",
                    sem.get(i), depth.get(i)) for i in ids]
    return assemble(frames, source=root, convention="opencv", downscale=downscale, test_every=test_every,
                    background=background, class_names=class_names, ignore_label=ignore, max_side=max_side,
                    progress=progress)


register_loader("replica", detect, load)

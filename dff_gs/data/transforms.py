"""Blender / nerfstudio / instant-ngp ``transforms.json`` scenes (OpenGL camera-to-world poses).

Per frame: ``file_path`` (extension optional), ``transform_matrix``, optional ``semantic_path`` (PNG of
class ids), ``depth_path`` (``.npy`` metres or 16-bit PNG millimetres; top-level ``depth_scale`` overrides
1000 units per metre), ``mask_path`` (nerfstudio: zero pixels are left out of the loss) and per-frame
intrinsics with nerfstudio's distortion ``k1 k2 k3 k4 p1 p2`` (``camera_model`` ``OPENCV`` or
``OPENCV_FISHEYE``; removed at load). Top level: ``ply_file_path`` (nerfstudio: initial points, in the poses'
world frame). Class names in ``classes.json`` beside the json. Separate ``transforms_train.json`` /
``transforms_test.json`` (Blender synthetic) give the split. RGBA images are composited on the background.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import torch

from dff_gs.data.frames import Frame, assemble, check_missing
from dff_gs.data.image_io import image_size, image_stem, resolve_image
from dff_gs.data.registry import register_loader
from dff_gs.data.scene import SceneData
from dff_gs.data.undistort import Distortion
from dff_gs.errors import DataError


def _json_path(path: Path) -> Path:
    return path if path.is_file() else path / "transforms.json"


def detect(path: Path) -> bool:
    if path.is_file():
        return path.suffix == ".json"
    return (path / "transforms.json").is_file() or (path / "transforms_train.json").is_file()


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DataError(f"{path}: malformed JSON ({err})") from None


def _intrinsics(meta: dict, frame: dict, path: Path, image: Path) -> tuple[torch.Tensor, int, int]:
    get = lambda k: frame.get(k, meta.get(k))  # noqa: E731  per-frame values override the global ones
    w, h = get("w"), get("h")
    if w is None or h is None:
        w, h = image_size(image)
    w, h = int(w), int(h)
    fx, fy = get("fl_x"), get("fl_y")
    if fx is None:
        ax = get("camera_angle_x")
        if ax is None:
            raise DataError(f"{path}: no focal length: give camera_angle_x or fl_x (globally or per frame)")
        fx = 0.5 * w / math.tan(0.5 * float(ax))
    if fy is None:
        ay = get("camera_angle_y")
        fy = 0.5 * h / math.tan(0.5 * float(ay)) if ay is not None else fx
    cx, cy = get("cx"), get("cy")
    cx = w / 2.0 if cx is None else cx
    cy = h / 2.0 if cy is None else cy
    try:
        K = torch.tensor([[float(fx), 0.0, float(cx)], [0.0, float(fy), float(cy)], [0.0, 0.0, 1.0]])
    except (TypeError, ValueError):
        raise DataError(f"{path}: intrinsics must be numbers (fl_x, fl_y, cx, cy)") from None
    return K, w, h


def _distortion(meta: dict, frame: dict, path: Path) -> Distortion | None:
    """nerfstudio's ``k1 k2 k3 k4 p1 p2`` (per frame or global) as OpenCV coefficients, None when all are zero."""
    get = lambda k: frame.get(k, meta.get(k))  # noqa: E731
    model = str(get("camera_model") or "OPENCV").upper()
    try:
        k = [float(get(n) or 0.0) for n in ("k1", "k2", "k3", "k4", "p1", "p2")]
    except (TypeError, ValueError):
        raise DataError(f"{path}: distortion parameters k1..k4, p1, p2 must be numbers") from None
    if model == "OPENCV_FISHEYE":
        dist = Distortion("fisheye", tuple(k[:4]))
    elif model in ("OPENCV", "PINHOLE", "SIMPLE_PINHOLE", "PERSPECTIVE"):
        if abs(k[3]) > 1e-9:
            raise DataError(f"{path}: k4 is only defined for camera_model OPENCV_FISHEYE (got {model})")
        dist = Distortion("perspective", (k[0], k[1], k[4], k[5], k[2]))
    else:
        raise DataError(f"{path}: camera_model {model!r} is not supported (OPENCV, OPENCV_FISHEYE, PINHOLE)")
    return None if dist.is_zero else dist


def _frames(path: Path, meta: dict, skipped: list[str]) -> list[Frame]:
    """The frames of one json; frames whose image is missing are named in ``skipped`` and left out."""
    if not isinstance(meta, dict) or not isinstance(meta.get("frames"), list):
        raise DataError(f"{path}: expected a JSON object with a 'frames' list")
    root = path.parent
    out = []
    for i, fr in enumerate(meta["frames"]):
        if not isinstance(fr, dict) or "file_path" not in fr or "transform_matrix" not in fr:
            raise DataError(f"{path}: frame {i} needs 'file_path' and 'transform_matrix'")
        try:
            image = resolve_image(root / fr["file_path"])
        except DataError:
            skipped.append(str(fr["file_path"]))
            continue
        try:
            c2w = torch.tensor(fr["transform_matrix"], dtype=torch.float64)
        except (TypeError, ValueError):
            raise DataError(f"{path}: frame {i} ({fr['file_path']}): transform_matrix is not a 4x4 matrix") from None
        if c2w.shape not in ((4, 4), (3, 4)):
            raise DataError(f"{path}: frame {i} ({fr['file_path']}): transform_matrix has shape {list(c2w.shape)}, "
                            f"expected 4x4")
        if c2w.shape == (3, 4):
            c2w = torch.cat([c2w, torch.tensor([[0.0, 0.0, 0.0, 1.0]], dtype=c2w.dtype)])
        K, w, h = _intrinsics(meta, fr, path, image)
        sem = root / fr["semantic_path"] if fr.get("semantic_path") else None
        dep = root / fr["depth_path"] if fr.get("depth_path") else None
        mask = root / fr["mask_path"] if fr.get("mask_path") else None
        out.append(Frame(image, c2w.float(), K, w, h, image_stem(fr["file_path"]), sem, dep, mask,
                         _distortion(meta, fr, path)))
    return out


def _ply_points(path: Path) -> tuple[torch.Tensor, torch.Tensor | None]:
    """nerfstudio's ``ply_file_path``: vertex ``x y z`` (and ``red green blue`` 0..255) as initial points."""
    import numpy as np
    from plyfile import PlyData

    try:
        v = PlyData.read(str(path))["vertex"]
        xyz = np.stack([v["x"], v["y"], v["z"]], -1).astype(np.float32)
    except FileNotFoundError:
        raise DataError(f"{path}: ply_file_path names a file that does not exist") from None
    except (KeyError, ValueError, OSError) as err:
        raise DataError(f"{path}: not a point-cloud PLY with vertex x y z ({err})") from None
    names = v.data.dtype.names
    rgb = None
    if all(c in names for c in ("red", "green", "blue")):
        rgb = torch.from_numpy(np.stack([v["red"], v["green"], v["blue"]], -1).astype(np.float32) / 255.0)
    return torch.from_numpy(xyz), rgb


def _check_rigid_each(frames: list[Frame], path: Path) -> None:
    from dff_gs.cameras import check_rigid

    for f in frames:
        check_rigid(f.c2w[None], f"{path}: frame {f.name}")


def load(path: Path, downscale: int = 1, test_every: int = 8, background=(1.0, 1.0, 1.0), max_side: int = 0,
         skip_missing: bool = False, progress: bool = False) -> SceneData:
    path = Path(path)
    root = path if path.is_dir() else path.parent
    skipped: list[str] = []
    if path.is_dir() and not (path / "transforms.json").is_file() and (path / "transforms_train.json").is_file():
        frames, split, metas = [], ([], []), []
        for part, ids in (("train", split[0]), ("val", None), ("test", split[1])):
            p = path / f"transforms_{part}.json"
            if not p.is_file() or ids is None:
                continue
            meta = read_json(p)
            fr = _frames(p, meta, skipped)
            _check_rigid_each(fr, p)
            ids.extend(range(len(frames), len(frames) + len(fr)))
            frames += fr
            metas.append(meta)
        meta, json_path = metas[0], path / "transforms_train.json"
    else:
        json_path = _json_path(path)
        meta = read_json(json_path)
        frames = _frames(json_path, meta, skipped)
        _check_rigid_each(frames, json_path)
        split = None
    check_missing(skipped, len(frames) + len(skipped), skip_missing, json_path)
    class_names = None
    classes_path = root / "classes.json"
    if classes_path.is_file():
        class_names = read_json(classes_path)
        if not isinstance(class_names, list) or not all(isinstance(c, str) for c in class_names):
            raise DataError(f"{classes_path}: expected a JSON list of class names (index = class id)")
    elif any(f.semantic for f in frames):
        raise DataError(f"{classes_path}: not found, but frames name semantic_path maps (class names are needed)")
    bounds = meta.get("aabb", meta.get("scene_bounds"))
    if bounds is not None:
        try:
            bounds = torch.tensor(bounds, dtype=torch.float32).reshape(2, 3)
        except (TypeError, ValueError, RuntimeError):
            raise DataError(f"{json_path}: 'aabb' must be [[xmin, ymin, zmin], [xmax, ymax, zmax]]") from None
    points = colors = None
    if meta.get("ply_file_path"):
        points, colors = _ply_points(root / meta["ply_file_path"])
    return assemble(frames, source=root, convention="opengl", downscale=downscale, test_every=test_every,
                    background=background, class_names=class_names, ignore_label=meta.get("ignore_label"),
                    depth_png_scale=float(meta.get("depth_scale", 1000.0)), split=split, bounds=bounds,
                    points=points, point_colors=colors, max_side=max_side, progress=progress)


register_loader("transforms", detect, load)

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

from dff_gs.core.cameras import check_rigid
from dff_gs.core.errors import DataError
from dff_gs.data.frames import Frame, assemble, check_missing
from dff_gs.data.image_io import ImageMissing, image_size, image_stem, path_problem, report_ambiguous, resolve_image
from dff_gs.data.registry import register_loader
from dff_gs.data.scene import SceneData
from dff_gs.data.undistort import Distortion
from dff_gs.data.validate import (
    check_finite_points,
    check_intrinsics,
    check_position,
    number,
    optional_int,
    optional_str,
    positive_int,
    real_array,
)


def _json_path(path: Path) -> Path:
    return path if path.is_file() else path / "transforms.json"


def detect(path: Path) -> bool:
    if path.is_file():
        return path.suffix == ".json"
    return (path / "transforms.json").is_file() or (path / "transforms_train.json").is_file()


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_bytes())
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise DataError(f"{path}: is a folder, not a JSON file") from None
    except (ValueError, RecursionError) as err:  # JSONDecodeError, UnicodeDecodeError; nesting too deep
        raise DataError(f"{path}: malformed JSON ({type(err).__name__}: {err})") from None
    except OSError as err:  # a symlink loop, no permission
        raise DataError(f"{path}: {path_problem(path) or (err.strerror or str(err)).lower()}") from None


def _focal_from_angle(value, size: int, where: str, name: str) -> float:
    """The focal length of a field of view ``value`` (radians, in (0, pi)) over ``size`` pixels."""
    a = number(value, where, name)
    t = math.tan(0.5 * a) if 0.0 < a < math.pi else 0.0
    if not t > 0.0:
        raise DataError(f"{where}: {name} must be a field of view in radians in (0, pi), got {a!r}")
    return 0.5 * size / t


def _intrinsics(meta: dict, frame: dict, where: str, image: Path) -> tuple[torch.Tensor, int, int]:
    """``K  # [3, 3]`` and the image size of one frame (per-frame values override the global ones): every value
    a finite number, the focal lengths > 0, the size positive integers (read from the image when not given)."""
    def get(k):
        return frame.get(k, meta.get(k))

    w, h = get("w"), get("h")
    if w is None or h is None:
        w, h = image_size(image)
    w, h = positive_int(w, where, "w"), positive_int(h, where, "h")
    fx, fy = get("fl_x"), get("fl_y")
    if fx is None:
        ax = get("camera_angle_x")
        if ax is None:
            raise DataError(f"{where}: no focal length: give camera_angle_x or fl_x (globally or per frame)")
        fx = _focal_from_angle(ax, w, where, "camera_angle_x")
    fx = number(fx, where, "fl_x", positive=True)
    if fy is None:
        ay = get("camera_angle_y")
        fy = _focal_from_angle(ay, h, where, "camera_angle_y") if ay is not None else fx
    fy = number(fy, where, "fl_y", positive=True)
    cx, cy = get("cx"), get("cy")
    cx = w / 2.0 if cx is None else number(cx, where, "cx")
    cy = h / 2.0 if cy is None else number(cy, where, "cy")
    K = torch.tensor([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])
    check_intrinsics(K, w, h, where)  # float32 can still overflow
    return K, w, h


def _distortion(meta: dict, frame: dict, where: str) -> Distortion | None:
    """nerfstudio's ``k1 k2 k3 k4 p1 p2`` (per frame or global) as OpenCV coefficients, None when all are zero."""
    def get(k):
        return frame.get(k, meta.get(k))

    model = get("camera_model") or "OPENCV"
    if not isinstance(model, str):
        raise DataError(f"{where}: camera_model must be a string (OPENCV, OPENCV_FISHEYE, PINHOLE), got {model!r:.40}")
    model = model.upper()
    k = [0.0 if get(n) is None else number(get(n), where, n) for n in ("k1", "k2", "k3", "k4", "p1", "p2")]
    if model == "OPENCV_FISHEYE":
        dist = Distortion("fisheye", tuple(k[:4]))
    elif model in ("OPENCV", "PINHOLE", "SIMPLE_PINHOLE", "PERSPECTIVE"):
        if abs(k[3]) > 1e-9:
            raise DataError(f"{where}: k4 is only defined for camera_model OPENCV_FISHEYE (got {model})")
        dist = Distortion("perspective", (k[0], k[1], k[4], k[5], k[2]))
    else:
        raise DataError(f"{where}: camera_model {model[:40]!r} is not supported (OPENCV, OPENCV_FISHEYE, PINHOLE)")
    return None if dist.is_zero else dist


def _pose(fr: dict, where: str) -> torch.Tensor:
    """A frame's ``transform_matrix``: 4x4 (or 3x4, completed) numbers, as float64 ``[4, 4]``."""
    m = real_array(fr["transform_matrix"], where, "transform_matrix", [(4, 4), (3, 4)])
    c2w = torch.from_numpy(m)
    if c2w.shape == (3, 4):
        c2w = torch.cat([c2w, torch.tensor([[0.0, 0.0, 0.0, 1.0]], dtype=c2w.dtype)])
    if bool(torch.isfinite(c2w).all()):  # non-finite poses: check_rigid names them
        check_position(c2w[:3, 3], where, "transform_matrix")
    return c2w


def _frames(path: Path, meta: dict, skipped: list[str]) -> list[Frame]:
    """The frames of one json; frames whose image is missing are named in ``skipped`` and left out; extension-less
    names that several files match are reported in one warning."""
    if not isinstance(meta, dict) or not isinstance(meta.get("frames"), list):
        raise DataError(f"{path}: expected a JSON object with a 'frames' list")
    root = path.parent
    out, ambiguous = [], []
    for i, fr in enumerate(meta["frames"]):
        if not isinstance(fr, dict) or "file_path" not in fr or "transform_matrix" not in fr:
            raise DataError(f"{path}: frame {i} needs 'file_path' and 'transform_matrix'")
        file_path = fr["file_path"]
        if not isinstance(file_path, str) or not file_path:
            raise DataError(f"{path}: frame {i}: file_path must be a non-empty string, got {file_path!r:.40}")
        where = f"{path}: frame {i} ({file_path})"
        try:
            image = resolve_image(root / file_path, ambiguous)
        except ImageMissing:
            skipped.append(file_path)
            continue
        c2w = _pose(fr, where)
        K, w, h = _intrinsics(meta, fr, where, image)
        sem, dep, mask = (optional_str(fr.get(k), where, k) for k in ("semantic_path", "depth_path", "mask_path"))
        out.append(Frame(image, c2w.float(), K, w, h, image_stem(file_path), root / sem if sem else None,
                         root / dep if dep else None, root / mask if mask else None, _distortion(meta, fr, where)))
    report_ambiguous(ambiguous, path)
    return out


def _ply_points(path: Path) -> tuple[torch.Tensor, torch.Tensor | None]:
    """nerfstudio's ``ply_file_path``: vertex ``x y z`` (and ``red green blue`` 0..255) as initial points."""
    import numpy as np
    from plyfile import PlyData

    try:
        v = PlyData.read(str(path))["vertex"]
        xyz = np.stack([v["x"], v["y"], v["z"]], -1).astype(np.float32)
        names = v.data.dtype.names
        rgb = None
        if all(c in names for c in ("red", "green", "blue")):
            rgb = torch.from_numpy(np.stack([v["red"], v["green"], v["blue"]], -1).astype(np.float32) / 255.0)
    except FileNotFoundError:
        raise DataError(f"{path}: ply_file_path names a file that does not exist") from None
    except Exception as err:  # noqa: BLE001  plyfile raises many kinds for truncated/corrupt files
        raise DataError(f"{path}: not a point-cloud PLY with vertex x y z ({type(err).__name__}: {err})") from None
    check_finite_points(xyz, str(path))
    if rgb is not None and not bool(torch.isfinite(rgb).all()):
        raise DataError(f"{path}: point colours are not finite")
    return torch.from_numpy(xyz), rgb


def _check_rigid_each(frames: list[Frame], path: Path) -> None:
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
    return assemble(frames, source=root, convention="opengl", downscale=downscale, test_every=test_every,
                    background=background, class_names=class_names, split=split, max_side=max_side,
                    progress=progress, **_scene_options(meta, json_path, root))


def _scene_options(meta: dict, json_path: Path, root: Path) -> dict:
    """The top-level keys ``aabb`` (or ``scene_bounds``), ``ply_file_path``, ``ignore_label`` and ``depth_scale``
    as :func:`assemble` options, each checked."""
    where = str(json_path)
    bounds = meta.get("aabb", meta.get("scene_bounds"))
    if bounds is not None:
        bounds = torch.from_numpy(real_array(bounds, where, "aabb", [(2, 3), (6,)])).float().reshape(2, 3)
        if not bool(torch.isfinite(bounds).all()) or bool((bounds[0] > bounds[1]).any()):
            raise DataError(f"{where}: 'aabb' must be finite [[xmin, ymin, zmin], [xmax, ymax, zmax]] with min <= max")
    points = colors = None
    ply = optional_str(meta.get("ply_file_path"), where, "ply_file_path")
    if ply:
        points, colors = _ply_points(root / ply)
    depth_scale = meta.get("depth_scale")
    return {"bounds": bounds, "points": points, "point_colors": colors,
            "ignore_label": optional_int(meta.get("ignore_label"), where, "ignore_label"),
            "depth_png_scale": 1000.0 if depth_scale is None else number(depth_scale, where, "depth_scale",
                                                                          positive=True)}


register_loader("transforms", detect, load)

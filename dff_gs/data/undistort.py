"""Lens distortion removed once, at load: per camera, to a pinhole ``K`` with a crop to valid pixels.

Conventions: intrinsics here are ours (pixel centres at ``+0.5``, as COLMAP and gsplat); OpenCV puts them at
integer coordinates, so ``cx, cy`` are shifted by half a pixel on the way in and out. Distortion coefficients
act on normalised coordinates, so they are unchanged when an image is downscaled (only ``K`` scales).

Undistorted images are cached on disk under ``$DFF_GS_CACHE/undistorted`` (keyed by the source file, its size
and modification time, and the camera), so a capture is undistorted once.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from torch import Tensor

from dff_gs.core.errors import DataError
from dff_gs.core.utils import atomic_write_path, cache_dir
from dff_gs.data.image_io import load_depth


@dataclass(frozen=True)
class Distortion:
    """A lens model's distortion: ``"perspective"`` (OpenCV's ``k1 k2 p1 p2 [k3 [k4 k5 k6]]``) or ``"fisheye"``
    (OpenCV's equidistant ``k1 k2 k3 k4``)."""

    kind: str
    coeffs: tuple[float, ...]

    @property
    def is_zero(self) -> bool:
        return all(abs(c) < 1e-9 for c in self.coeffs)

    def describe(self) -> str:
        return f"{self.kind} {', '.join(f'{c:.4g}' for c in self.coeffs)}"


@dataclass(frozen=True)
class Undistortion:
    """The remap of one camera: source ``K`` / size -> pinhole ``K`` (ours) and the crop ``(x, y, w, h)``."""

    K: Tensor  # [3, 3] of the cropped undistorted image
    width: int
    height: int
    map_x: np.ndarray  # [H0, W0] float32 source x of each output pixel (before the crop)
    map_y: np.ndarray
    crop: tuple[int, int, int, int]


def _cv2():
    try:
        import cv2
    except ImportError:  # a declared dependency: only a broken install lands here
        raise DataError("lens distortion needs OpenCV: pip install opencv-python-headless") from None
    return cv2


def _valid_crop(valid: np.ndarray) -> tuple[int, int, int, int]:
    """The largest box reached by shrinking the image's sides, one line at a time (the side with the most invalid
    pixels first), until every pixel inside is valid. ``valid: [H, W] bool``; returns ``(x, y, w, h)``."""
    x0, y0, x1, y1 = 0, 0, valid.shape[1], valid.shape[0]
    bad = ~valid
    while x1 - x0 > 1 and y1 - y0 > 1:
        box = bad[y0:y1, x0:x1]
        if not box.any():
            break
        edges = [box[0].sum(), box[-1].sum(), box[:, 0].sum(), box[:, -1].sum()]
        side = int(np.argmax(edges))
        if side == 0:
            y0 += 1
        elif side == 1:
            y1 -= 1
        elif side == 2:
            x0 += 1
        else:
            x1 -= 1
    return x0, y0, x1 - x0, y1 - y0


def undistortion(K: Tensor, dist: Distortion, width: int, height: int) -> Undistortion:
    """The remap taking a ``width x height`` image of a camera ``K`` (ours) with ``dist`` to a pinhole image,
    cropped to the pixels every source pixel covers (``alpha = 0`` in OpenCV's terms, then a crop of the rest)."""
    cv2 = _cv2()
    Kcv = K.double().numpy().copy()
    Kcv[:2, 2] -= 0.5
    D = np.asarray(dist.coeffs, dtype=np.float64)
    size = (int(width), int(height))
    if dist.kind == "fisheye":
        newK = cv2.fisheye.estimateNewCameraMatrixForUndistortRectify(Kcv, D[:4], size, np.eye(3), balance=0.0)
        mx, my = cv2.fisheye.initUndistortRectifyMap(Kcv, D[:4], np.eye(3), newK, size, cv2.CV_32FC1)
    elif dist.kind == "perspective":
        newK, _ = cv2.getOptimalNewCameraMatrix(Kcv, D, size, 0.0, size)
        mx, my = cv2.initUndistortRectifyMap(Kcv, D, None, newK, size, cv2.CV_32FC1)
    else:
        raise ValueError(f"unknown distortion kind {dist.kind!r}")
    valid = (mx >= -0.5) & (mx <= width - 0.5) & (my >= -0.5) & (my <= height - 0.5)
    x, y, w, h = _valid_crop(valid)
    if w < width // 4 or h < height // 4:
        raise DataError(f"undistorting a {width}x{height} camera ({dist.describe()}) leaves only a {w}x{h} valid "
                        f"crop: the distortion parameters look wrong")
    out = torch.tensor(newK, dtype=torch.float32)
    out[0, 2] += 0.5 - x
    out[1, 2] += 0.5 - y
    return Undistortion(out, w, h, mx, my, (x, y, w, h))


def remap(array: np.ndarray, u: Undistortion, nearest: bool = False) -> np.ndarray:
    """Undistort and crop an image / label / depth ``array  # [H0, W0, ...]`` (bilinear, or nearest for ids and
    depths)."""
    cv2 = _cv2()
    interp = cv2.INTER_NEAREST if nearest else cv2.INTER_LINEAR
    out = cv2.remap(array, u.map_x, u.map_y, interp, borderMode=cv2.BORDER_REPLICATE)
    x, y, w, h = u.crop
    return np.ascontiguousarray(out[y:y + h, x:x + w])


def cache_root() -> Path:
    return cache_dir("undistorted")


def cached_undistorted(src: Path, u: Undistortion, dist: Distortion, K: Tensor, kind: str = "image",
                       depth_png_scale: float = 1000.0) -> Path:
    """The undistorted copy of ``src`` (an RGB(A) image, a label / mask PNG when ``kind="labels"``, a depth map
    when ``kind="depth"``, stored as ``.npy`` metres), written once to the cache and reused while ``src`` is
    unchanged."""
    from PIL import Image

    try:
        st = src.stat()
    except FileNotFoundError:
        raise DataError(f"{src}: file not found") from None
    key = hashlib.sha1(repr((str(src.resolve()), st.st_size, st.st_mtime_ns, dist, K.tolist(), u.crop, kind,
                                     depth_png_scale))
                       .encode()).hexdigest()[:20]
    dst = cache_root() / key[:2] / (key + (".npy" if kind == "depth" else ".png"))
    if dst.is_file():
        return dst
    dst.parent.mkdir(parents=True, exist_ok=True)
    if kind == "depth":
        arr = remap(load_depth(src, png_scale=depth_png_scale).numpy(), u, nearest=True)
        with atomic_write_path(dst) as tmp:
            with open(tmp, "wb") as f:
                np.save(f, arr)
        return dst
    try:
        with Image.open(src) as im:
            im.load()
            arr = np.asarray(im)
            mode = im.mode
    except OSError as err:
        raise DataError(f"{src}: not a readable image ({err})") from None
    out = remap(arr, u, nearest=kind != "image")
    with atomic_write_path(dst) as tmp:
        Image.fromarray(out, mode=None if mode == "P" else mode).save(tmp, format="PNG")
    return dst


def undistort_frame_paths(frames, source: Path, depth_png_scale: float = 1000.0, progress: bool = False):
    """Frames with distortion replaced by pinhole frames whose files are cached undistorted copies (their
    ``distortion`` cleared, ``K`` / size those of the crop). One remap per distinct camera; one printed line."""
    todo = [f for f in frames if f.distortion is not None and not f.distortion.is_zero]
    if not todo:
        return [replace(f, distortion=None) for f in frames]
    remaps: dict = {}
    for f in todo:
        cam = _camera_key(f)
        if cam not in remaps:
            remaps[cam] = undistortion(f.K, f.distortion, f.width, f.height)
    remaps = _common_size(remaps)
    it = frames
    if progress:
        from tqdm import tqdm

        it = tqdm(frames, desc="undistorting", leave=False)
    out = []
    for f in it:
        if f.distortion is None or f.distortion.is_zero:
            out.append(replace(f, distortion=None))
            continue
        u = remaps[_camera_key(f)]
        paths = {"image": cached_undistorted(f.image, u, f.distortion, f.K)}
        for attr, kind in (("semantic", "labels"), ("depth", "depth"), ("mask", "labels")):
            p: Optional[Path] = getattr(f, attr)
            paths[attr] = (cached_undistorted(p, u, f.distortion, f.K, kind, depth_png_scale)
                           if p is not None else None)
        out.append(replace(f, image=paths["image"], semantic=paths["semantic"], depth=paths["depth"],
                           mask=paths["mask"], K=u.K.clone(), width=u.width, height=u.height, distortion=None))
    u0 = next(iter(remaps.values()))
    d0 = todo[0].distortion
    more = f", the first {d0.describe()}" if len(remaps) > 1 else f", {d0.describe()}"
    print(f"{source}: {len(todo)} of {len(frames)} images undistorted ({len(remaps)} camera(s){more}) to pinhole "
          f"{u0.width}x{u0.height} (cropped from {todo[0].width}x{todo[0].height}); cached in {cache_root()}")
    return out


def _camera_key(f) -> tuple:
    return f.distortion, tuple(f.K.flatten().tolist()), f.width, f.height


def _common_size(remaps: dict) -> dict:
    """Cameras whose valid crops differ (e.g. one SIMPLE_RADIAL camera per image): every crop shrunk about its
    centre to the smallest width and height, so all views have one size."""
    w = min(u.width for u in remaps.values())
    h = min(u.height for u in remaps.values())
    out = {}
    for key, u in remaps.items():
        dx, dy = (u.width - w) // 2, (u.height - h) // 2
        K = u.K.clone()
        K[0, 2] -= dx
        K[1, 2] -= dy
        x, y = u.crop[:2]
        out[key] = replace(u, K=K, width=w, height=h, crop=(x + dx, y + dy, w, h))
    return out

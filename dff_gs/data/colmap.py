"""COLMAP sparse models (text or binary ``cameras``, ``images``, ``points3D``) with undistorted images.

Looks for the model in ``sparse/0``, ``sparse`` or the folder itself, and the images in ``images/`` (or the
3DGS convention's pre-downscaled ``images_2`` / ``images_4`` / ``images_8`` when a downscale asks for one;
intrinsics scaled to the folder used). Poses are world-to-camera in the OpenCV convention already. Cameras:
SIMPLE_PINHOLE and PINHOLE as they are; SIMPLE_RADIAL, RADIAL, OPENCV, FULL_OPENCV, OPENCV_FISHEYE,
SIMPLE_RADIAL_FISHEYE and RADIAL_FISHEYE undistorted with OpenCV at load (:mod:`dff_gs.data.undistort`, cached);
other models refused by name. The sparse points initialise the Gaussians.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from dff_gs.data.frames import Frame, assemble, check_missing
from dff_gs.data.image_io import image_size, image_stem, resolve_image
from dff_gs.data.registry import register_loader
from dff_gs.data.scene import SceneData
from dff_gs.data.undistort import Distortion
from dff_gs.errors import DataError

# model id -> (name, number of params)
CAMERA_MODELS = {0: ("SIMPLE_PINHOLE", 3), 1: ("PINHOLE", 4), 2: ("SIMPLE_RADIAL", 4), 3: ("RADIAL", 5),
                 4: ("OPENCV", 8), 5: ("OPENCV_FISHEYE", 8), 6: ("FULL_OPENCV", 12), 7: ("FOV", 5),
                 8: ("SIMPLE_RADIAL_FISHEYE", 4), 9: ("RADIAL_FISHEYE", 5), 10: ("THIN_PRISM_FISHEYE", 12)}
MODEL_IDS = {name: (i, n) for i, (name, n) in CAMERA_MODELS.items()}


@dataclass
class ColmapCamera:
    id: int
    model: str
    width: int
    height: int
    params: list[float]


@dataclass
class ColmapImage:
    id: int
    qvec: list[float]  # w, x, y, z (world-to-camera rotation)
    tvec: list[float]
    camera_id: int
    name: str
    points2d: np.ndarray = field(default_factory=lambda: np.zeros((0, 3)))  # [M, 3]: x, y, point3D id


@dataclass
class ColmapModel:
    cameras: dict[int, ColmapCamera]
    images: dict[int, ColmapImage]
    xyz: np.ndarray  # [P, 3]
    rgb: np.ndarray  # [P, 3] uint8
    point_ids: np.ndarray  # [P]


def qvec_to_rotmat(q) -> np.ndarray:
    w, x, y, z = np.asarray(q, dtype=np.float64) / np.linalg.norm(q)
    return np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
                     [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
                     [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)]])


def rotmat_to_qvec(R: np.ndarray) -> np.ndarray:
    """Unit quaternion (w, x, y, z) of a rotation matrix, w >= 0."""
    R = np.asarray(R, dtype=np.float64)
    K = np.array([[R[0, 0] - R[1, 1] - R[2, 2], 0, 0, 0],
                  [R[1, 0] + R[0, 1], R[1, 1] - R[0, 0] - R[2, 2], 0, 0],
                  [R[2, 0] + R[0, 2], R[2, 1] + R[1, 2], R[2, 2] - R[0, 0] - R[1, 1], 0],
                  [R[2, 1] - R[1, 2], R[0, 2] - R[2, 0], R[1, 0] - R[0, 1], R[0, 0] + R[1, 1] + R[2, 2]]]) / 3.0
    vals, vecs = np.linalg.eigh(K)
    q = vecs[[3, 0, 1, 2], np.argmax(vals)]
    return -q if q[0] < 0 else q


# ------------------------------------------------------------------------------------------- reading


class _Reader:
    def __init__(self, path: Path):
        self.path = path
        self.data = path.read_bytes()
        self.pos = 0

    def read(self, fmt: str):
        size = struct.calcsize("<" + fmt)
        if self.pos + size > len(self.data):
            raise DataError(f"{self.path}: truncated binary file (needed {size} bytes at offset {self.pos}, "
                            f"file has {len(self.data)})")
        out = struct.unpack_from("<" + fmt, self.data, self.pos)
        self.pos += size
        return out

    def read_string(self) -> str:
        end = self.data.find(b"\0", self.pos)
        if end < 0:
            raise DataError(f"{self.path}: truncated binary file (unterminated image name)")
        s = self.data[self.pos:end].decode("utf-8", errors="replace")
        self.pos = end + 1
        return s


def _text_lines(path: Path):
    for n, line in enumerate(path.read_text().splitlines(), 1):
        line = line.strip()
        if line and not line.startswith("#"):
            yield n, line


def read_cameras(path: Path) -> dict[int, ColmapCamera]:
    cams = {}
    if path.suffix == ".bin":
        r = _Reader(path)
        (num,) = r.read("Q")
        for _ in range(num):
            cid, mid, w, h = r.read("iiQQ")
            if mid not in CAMERA_MODELS:
                raise DataError(f"{path}: camera {cid} has unknown model id {mid}")
            name, n = CAMERA_MODELS[mid]
            cams[cid] = ColmapCamera(cid, name, int(w), int(h), list(r.read("d" * n)))
        return cams
    for n, line in _text_lines(path):
        tok = line.split()
        try:
            cid, model, w, h = int(tok[0]), tok[1], int(tok[2]), int(tok[3])
            params = [float(x) for x in tok[4:]]
        except (IndexError, ValueError):
            raise DataError(f"{path}:{n}: malformed camera line {line!r}") from None
        if model not in MODEL_IDS or len(params) != MODEL_IDS[model][1]:
            raise DataError(f"{path}:{n}: camera model {model!r} with {len(params)} params is not valid")
        cams[cid] = ColmapCamera(cid, model, w, h, params)
    return cams


def read_images(path: Path) -> dict[int, ColmapImage]:
    images = {}
    if path.suffix == ".bin":
        r = _Reader(path)
        (num,) = r.read("Q")
        for _ in range(num):
            iid, qw, qx, qy, qz, tx, ty, tz, cid = r.read("idddddddi")
            name = r.read_string()
            (m,) = r.read("Q")
            pts = np.array(r.read("ddq" * m), dtype=np.float64).reshape(m, 3) if m else np.zeros((0, 3))
            images[iid] = ColmapImage(iid, [qw, qx, qy, qz], [tx, ty, tz], cid, name, pts)
        return images
    # two lines per image (the second, the 2D points, may be empty): pair them up, comments dropped
    raw = [(n, ln.strip()) for n, ln in enumerate(path.read_text().splitlines(), 1) if not ln.startswith("#")]
    while raw and not raw[-1][1]:
        raw.pop()
    for k in range(0, len(raw), 2):
        n, line = raw[k]
        tok = line.split()
        try:
            iid = int(tok[0])
            q = [float(x) for x in tok[1:5]]
            t = [float(x) for x in tok[5:8]]
            cid = int(tok[8])
            name = " ".join(tok[9:])
            if not name:
                raise ValueError
        except (IndexError, ValueError):
            raise DataError(f"{path}:{n}: malformed image line {line!r}") from None
        pts_line = raw[k + 1][1] if k + 1 < len(raw) else ""
        try:
            pts = np.array([float(x) for x in pts_line.split()], dtype=np.float64).reshape(-1, 3)
        except ValueError:
            raise DataError(f"{path}:{raw[k + 1][0]}: malformed 2D point line (expected X Y POINT3D_ID triples)") from None
        images[iid] = ColmapImage(iid, q, t, cid, name, pts)
    return images


def read_points3d(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    if not path.is_file():
        return np.zeros((0, 3)), np.zeros((0, 3), np.uint8), np.zeros(0, np.int64)
    xyz, rgb, ids = [], [], []
    if path.suffix == ".bin":
        r = _Reader(path)
        (num,) = r.read("Q")
        for _ in range(num):
            pid, x, y, z, cr, cg, cb, _err, tl = r.read("QdddBBBdQ")
            r.read("ii" * tl)
            ids.append(pid)
            xyz.append((x, y, z))
            rgb.append((cr, cg, cb))
    else:
        for n, line in _text_lines(path):
            tok = line.split()
            try:
                ids.append(int(tok[0]))
                xyz.append([float(v) for v in tok[1:4]])
                rgb.append([int(v) for v in tok[4:7]])
            except (IndexError, ValueError):
                raise DataError(f"{path}:{n}: malformed point line") from None
    return (np.asarray(xyz, np.float64).reshape(-1, 3), np.asarray(rgb, np.uint8).reshape(-1, 3),
            np.asarray(ids, np.int64))


def find_model_dir(root: Path) -> Path | None:
    for d in (root / "sparse" / "0", root / "sparse", root):
        for ext in (".bin", ".txt"):
            if (d / f"cameras{ext}").is_file() and (d / f"images{ext}").is_file():
                return d
    return None


def read_model(model_dir: Path) -> ColmapModel:
    ext = ".bin" if (model_dir / "cameras.bin").is_file() else ".txt"
    xyz, rgb, ids = read_points3d(model_dir / f"points3D{ext}")
    return ColmapModel(read_cameras(model_dir / f"cameras{ext}"), read_images(model_dir / f"images{ext}"), xyz, rgb, ids)


# ------------------------------------------------------------------------------------------- writing


def write_model(model: ColmapModel, model_dir: Path, binary: bool = True) -> None:
    """Write a COLMAP model (used by tests and by exports for other tools)."""
    model_dir.mkdir(parents=True, exist_ok=True)
    if binary:
        with open(model_dir / "cameras.bin", "wb") as f:
            f.write(struct.pack("<Q", len(model.cameras)))
            for c in model.cameras.values():
                f.write(struct.pack("<iiQQ", c.id, MODEL_IDS[c.model][0], c.width, c.height))
                f.write(struct.pack("<" + "d" * len(c.params), *c.params))
        with open(model_dir / "images.bin", "wb") as f:
            f.write(struct.pack("<Q", len(model.images)))
            for im in model.images.values():
                f.write(struct.pack("<idddddddi", im.id, *im.qvec, *im.tvec, im.camera_id))
                f.write(im.name.encode() + b"\0")
                f.write(struct.pack("<Q", len(im.points2d)))
                for x, y, pid in im.points2d:
                    f.write(struct.pack("<ddq", x, y, int(pid)))
        with open(model_dir / "points3D.bin", "wb") as f:
            f.write(struct.pack("<Q", len(model.xyz)))
            for pid, p, c in zip(model.point_ids, model.xyz, model.rgb):
                f.write(struct.pack("<QdddBBBdQ", int(pid), *p, *[int(v) for v in c], 0.0, 0))
        return
    lines = ["# Camera list with one line of data per camera:"]
    lines += [f"{c.id} {c.model} {c.width} {c.height} " + " ".join(repr(float(p)) for p in c.params)
              for c in model.cameras.values()]
    (model_dir / "cameras.txt").write_text("\n".join(lines) + "\n")
    lines = ["# Image list with two lines of data per image:"]
    for im in model.images.values():
        lines.append(f"{im.id} " + " ".join(repr(float(v)) for v in [*im.qvec, *im.tvec]) + f" {im.camera_id} {im.name}")
        lines.append(" ".join(f"{float(x)!r} {float(y)!r} {int(p)}" for x, y, p in im.points2d))
    (model_dir / "images.txt").write_text("\n".join(lines) + "\n")
    lines = ["# 3D point list with one line of data per point:"]
    lines += [f"{int(pid)} {p[0]!r} {p[1]!r} {p[2]!r} {int(c[0])} {int(c[1])} {int(c[2])} 0.0"
              for pid, p, c in zip(model.point_ids, model.xyz.tolist(), model.rgb)]
    (model_dir / "points3D.txt").write_text("\n".join(lines) + "\n")


# ------------------------------------------------------------------------------------------- loader


def camera_intrinsics(cam: ColmapCamera, where: str) -> tuple[torch.Tensor, Optional[Distortion]]:
    """Pixel intrinsics ``K  # [3, 3]`` and the lens distortion (None for pinhole models) of a COLMAP camera;
    models OpenCV cannot undistort are refused by name."""
    p = cam.params
    m = cam.model
    if m in ("SIMPLE_PINHOLE", "SIMPLE_RADIAL", "RADIAL", "SIMPLE_RADIAL_FISHEYE", "RADIAL_FISHEYE"):
        fx = fy = p[0]
        cx, cy, k = p[1], p[2], list(p[3:])
    elif m in ("PINHOLE", "OPENCV", "OPENCV_FISHEYE", "FULL_OPENCV"):
        fx, fy, cx, cy, k = p[0], p[1], p[2], p[3], list(p[4:])
    else:
        raise DataError(f"{where}: camera {cam.id} uses the {m} model, which dff_gs cannot undistort (supported: "
                        f"SIMPLE_PINHOLE, PINHOLE, SIMPLE_RADIAL, RADIAL, OPENCV, FULL_OPENCV, OPENCV_FISHEYE, "
                        f"SIMPLE_RADIAL_FISHEYE, RADIAL_FISHEYE); undistort with colmap image_undistorter first")
    dist = None
    if m in ("SIMPLE_RADIAL", "RADIAL", "OPENCV", "FULL_OPENCV"):  # OpenCV order: k1 k2 p1 p2 [k3 k4 k5 k6]
        k1, k2 = k[0], (k[1] if len(k) > 1 else 0.0)
        p1, p2 = (k[2], k[3]) if m in ("OPENCV", "FULL_OPENCV") else (0.0, 0.0)
        dist = Distortion("perspective", (k1, k2, p1, p2, *k[4:]))
    elif m in ("OPENCV_FISHEYE", "SIMPLE_RADIAL_FISHEYE", "RADIAL_FISHEYE"):  # theta_d = theta (1 + k1 theta^2 ..)
        dist = Distortion("fisheye", tuple(k + [0.0] * (4 - len(k))))
    K = torch.tensor([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]], dtype=torch.float32)
    return K, dist


def detect(path: Path) -> bool:
    return path.is_dir() and find_model_dir(path) is not None


def _image_folder(root: Path, first: str, factor: int) -> tuple[Path, int]:
    """The folder to read images from and the factor its images are smaller by: ``images_<factor>`` (the 3DGS
    convention) when it exists and holds the first image, else ``images`` (or the scene folder)."""
    base = root / "images" if (root / "images").is_dir() else root
    if factor > 1:
        pre = root / f"images_{factor}"
        if pre.is_dir():
            try:
                resolve_image(pre / first)
                return pre, factor
            except DataError:
                pass
    return base, 1


def load(path: Path, downscale: int = 1, test_every: int = 8, background=(1.0, 1.0, 1.0), max_side: int = 0,
         skip_missing: bool = False, progress: bool = False) -> SceneData:
    from dff_gs.data.frames import announce_downscale, resolve_downscale

    root = Path(path)
    model_dir = find_model_dir(root)
    if model_dir is None:
        raise DataError(f"{root}: no COLMAP model (cameras.bin/txt and images.bin/txt in sparse/0, sparse or here)")
    model = read_model(model_dir)
    images = sorted(model.images.values(), key=lambda im: im.name)
    if not images:
        raise DataError(f"{model_dir}: the model has no images")
    for im in images:
        if im.camera_id not in model.cameras:
            raise DataError(f"{model_dir}: image {im.name} names camera {im.camera_id}, which the model lacks")
    cam0 = model.cameras[images[0].camera_id]
    factor = resolve_downscale(cam0.width, cam0.height, downscale, max_side)
    image_dir, pre = _image_folder(root, images[0].name, factor)
    if downscale == 0 and factor > 1:
        announce_downscale(root, cam0.width, cam0.height, factor, max_side,
                           via=f" (from {image_dir.name}/)" if pre > 1 else "")
    found, missing = [], []
    for im in images:
        try:
            found.append((im, resolve_image(image_dir / im.name)))
        except DataError:
            missing.append(im.name)
    check_missing(missing, len(images), skip_missing, image_dir)
    frames = []
    for im, file in found:
        cam = model.cameras[im.camera_id]
        K, dist = camera_intrinsics(cam, str(model_dir))
        w, h = cam.width, cam.height
        if pre > 1:  # images_N: intrinsics scaled to the folder's own image size (the 3DGS convention)
            w, h = image_size(file)
            K = K.clone()
            K[0] *= w / cam.width
            K[1] *= h / cam.height
        w2c = np.eye(4)
        w2c[:3, :3] = qvec_to_rotmat(im.qvec)
        w2c[:3, 3] = im.tvec
        c2w = torch.from_numpy(np.linalg.inv(w2c)).float()
        frames.append(Frame(file, c2w, K, w, h, image_stem(im.name), distortion=dist))
    points = torch.from_numpy(model.xyz).float() if len(model.xyz) else None
    colors = torch.from_numpy(model.rgb).float() / 255.0 if len(model.xyz) else None
    return assemble(frames, source=root, convention="opencv", downscale=1 if pre > 1 else factor,
                    test_every=test_every, background=background, points=points, point_colors=colors,
                    prescaled=pre, progress=progress)


register_loader("colmap", detect, load)

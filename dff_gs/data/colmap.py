"""COLMAP sparse models (text or binary ``cameras``, ``images``, ``points3D``) with undistorted images.

Looks for the model in ``sparse/0``, ``sparse`` or the folder itself, and the images in ``images/``.
Poses are world-to-camera in the OpenCV convention already. Intrinsics: SIMPLE_PINHOLE, PINHOLE, and the
OPENCV / SIMPLE_RADIAL / RADIAL models whose distortion must be zero (undistort with
``colmap image_undistorter`` first). The sparse points initialise the Gaussians.
"""

from __future__ import annotations

import struct
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from dff_gs.data.frames import Frame, assemble
from dff_gs.data.image_io import image_stem, resolve_image
from dff_gs.data.registry import register_loader
from dff_gs.data.scene import SceneData
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


def _K(cam: ColmapCamera, where: str) -> torch.Tensor:
    p = cam.params
    if cam.model == "SIMPLE_PINHOLE":
        fx = fy = p[0]
        cx, cy, dist = p[1], p[2], []
    elif cam.model == "PINHOLE":
        fx, fy, cx, cy, dist = p[0], p[1], p[2], p[3], []
    elif cam.model in ("SIMPLE_RADIAL", "RADIAL"):
        fx = fy = p[0]
        cx, cy, dist = p[1], p[2], p[3:]
    elif cam.model == "OPENCV":
        fx, fy, cx, cy, dist = p[0], p[1], p[2], p[3], p[4:]
    else:
        raise DataError(f"{where}: camera {cam.id} uses the {cam.model} model; undistort the images first "
                        f"(colmap image_undistorter) to get a PINHOLE model")
    if any(abs(d) > 1e-6 for d in dist):
        warnings.warn(f"{where}: camera {cam.id} ({cam.model}) has non-zero distortion {dist}; dff_gs treats "
                      f"the images as undistorted pinhole images", stacklevel=3)
    return torch.tensor([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]], dtype=torch.float32)


def detect(path: Path) -> bool:
    return path.is_dir() and find_model_dir(path) is not None


def load(path: Path, downscale: int = 1, test_every: int = 8, background=(1.0, 1.0, 1.0),
         progress: bool = False) -> SceneData:
    root = Path(path)
    model_dir = find_model_dir(root)
    if model_dir is None:
        raise DataError(f"{root}: no COLMAP model (cameras.bin/txt and images.bin/txt in sparse/0, sparse or here)")
    model = read_model(model_dir)
    image_dir = root / "images" if (root / "images").is_dir() else root
    frames = []
    for im in sorted(model.images.values(), key=lambda im: im.name):
        if im.camera_id not in model.cameras:
            raise DataError(f"{model_dir}: image {im.name} names camera {im.camera_id}, which the model lacks")
        cam = model.cameras[im.camera_id]
        w2c = np.eye(4)
        w2c[:3, :3] = qvec_to_rotmat(im.qvec)
        w2c[:3, 3] = im.tvec
        c2w = torch.from_numpy(np.linalg.inv(w2c)).float()
        frames.append(Frame(resolve_image(image_dir / im.name), c2w, _K(cam, str(model_dir)), cam.width, cam.height,
                            image_stem(im.name)))
    points = torch.from_numpy(model.xyz).float() if len(model.xyz) else None
    colors = torch.from_numpy(model.rgb).float() / 255.0 if len(model.xyz) else None
    return assemble(frames, source=root, convention="opencv", downscale=downscale, test_every=test_every,
                    background=background, points=points, point_colors=colors, progress=progress)


register_loader("colmap", detect, load)

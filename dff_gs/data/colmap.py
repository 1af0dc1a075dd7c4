"""COLMAP sparse models (text or binary ``cameras``, ``images``, ``points3D``) with undistorted images.

Looks for the model in ``sparse/0``, ``sparse`` or the folder itself, and the images in ``images/`` (or the
3DGS convention's pre-downscaled ``images_2`` / ``images_4`` / ``images_8`` when a downscale asks for one;
intrinsics scaled to the folder used). Poses are world-to-camera in the OpenCV convention already. Cameras:
SIMPLE_PINHOLE and PINHOLE as they are; SIMPLE_RADIAL, RADIAL, OPENCV, FULL_OPENCV, OPENCV_FISHEYE,
SIMPLE_RADIAL_FISHEYE and RADIAL_FISHEYE undistorted with OpenCV at load (:mod:`dff_gs.data.undistort`, cached);
other models refused by name. The sparse points initialise the Gaussians.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from dff_gs.core.errors import DataError
from dff_gs.data.frames import Frame, announce_downscale, assemble, check_missing, resolve_downscale
from dff_gs.data.image_io import ImageMissing, image_size, image_stem, report_ambiguous, resolve_image
from dff_gs.data.registry import register_loader
from dff_gs.data.scene import SceneData
from dff_gs.data.undistort import Distortion
from dff_gs.data.validate import check_finite_points, check_intrinsic_range, check_position

# model id -> (name, number of params)
CAMERA_MODELS = {0: ("SIMPLE_PINHOLE", 3), 1: ("PINHOLE", 4), 2: ("SIMPLE_RADIAL", 4), 3: ("RADIAL", 5),
                 4: ("OPENCV", 8), 5: ("OPENCV_FISHEYE", 8), 6: ("FULL_OPENCV", 12), 7: ("FOV", 5),
                 8: ("SIMPLE_RADIAL_FISHEYE", 4), 9: ("RADIAL_FISHEYE", 5), 10: ("THIN_PRISM_FISHEYE", 12)}
MODEL_IDS = {name: (i, n) for i, (name, n) in CAMERA_MODELS.items()}
ONE_FOCAL = ("SIMPLE_PINHOLE", "SIMPLE_RADIAL", "RADIAL", "SIMPLE_RADIAL_FISHEYE", "RADIAL_FISHEYE")  # f, cx, cy, ..
FLOAT32_MAX = float(np.finfo(np.float32).max)  # intrinsics are kept as float32


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

    def camera_to_world(self) -> np.ndarray:
        """The OpenCV camera-to-world matrix ``[4, 4]`` of this image's pose."""
        w2c = np.eye(4)
        w2c[:3, :3], w2c[:3, 3] = qvec_to_rotmat(self.qvec), self.tvec
        return np.linalg.inv(w2c)


@dataclass
class ColmapModel:
    cameras: dict[int, ColmapCamera]
    images: dict[int, ColmapImage]
    xyz: np.ndarray  # [P, 3]
    rgb: np.ndarray  # [P, 3] uint8
    point_ids: np.ndarray  # [P]


def qvec_to_rotmat(q) -> np.ndarray:
    q = np.asarray(q, dtype=np.float64)
    q = q / np.abs(q).max()  # first to at most 1, so that the norm of a huge quaternion does not overflow
    w, x, y, z = q / np.linalg.norm(q)
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
    """Little-endian reads from a binary model file; running past its end is a ``DataError`` naming the file."""

    def __init__(self, path: Path):
        self.path = path
        self.data = path.read_bytes()
        self.pos = 0

    def _need(self, size: int, what: str) -> None:
        if size > len(self.data) - self.pos:
            raise DataError(f"{self.path}: truncated or corrupt binary file ({what} needs {size} bytes at offset "
                            f"{self.pos}, {len(self.data) - self.pos} are left)")

    def read(self, fmt: str):
        size = struct.calcsize("<" + fmt)
        self._need(size, f"a {fmt!r} record")
        out = struct.unpack_from("<" + fmt, self.data, self.pos)
        self.pos += size
        return out

    def count(self, item_size: int, what: str) -> int:
        """A uint64 count of items of at least ``item_size`` bytes each, checked against the bytes left (a corrupt
        count is an error here, not a huge allocation)."""
        (n,) = self.read("Q")
        self._need(n * item_size, f"{n} {what}")
        return n

    def skip(self, size: int, what: str) -> None:
        self._need(size, what)
        self.pos += size

    def array(self, dtype: np.dtype, n: int) -> np.ndarray:
        """``n`` records of ``dtype`` (a copy)."""
        dtype = np.dtype(dtype)
        self._need(n * dtype.itemsize, f"{n} records of {dtype.itemsize} bytes")
        out = np.frombuffer(self.data, dtype=dtype, count=n, offset=self.pos).copy()
        self.pos += n * dtype.itemsize
        return out

    def read_string(self) -> str:
        end = self.data.find(b"\0", self.pos)
        if end < 0:
            raise DataError(f"{self.path}: truncated binary file (unterminated image name)")
        s = self.data[self.pos:end].decode("utf-8", errors="replace")
        self.pos = end + 1
        return s


def _read_text(path: Path) -> str:
    try:
        return path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as err:
        raise DataError(f"{path}: not UTF-8 text (byte {err.start}: {err.reason})") from None


def _text_lines(path: Path):
    for n, line in enumerate(_read_text(path).splitlines(), 1):
        line = line.strip()
        if line and not line.startswith("#"):
            yield n, line


def check_camera(cam: ColmapCamera, where: str) -> None:
    """A camera's size is positive, its parameters finite and its focal length(s) (the first one or two
    parameters) positive; a ``DataError`` naming ``where`` and the camera otherwise."""
    if cam.width < 1 or cam.height < 1:
        raise DataError(f"{where}: camera {cam.id} has size {cam.width}x{cam.height}")
    if not all(math.isfinite(v) and abs(v) < FLOAT32_MAX for v in cam.params):
        raise DataError(f"{where}: camera {cam.id} has parameters that are not finite float32 numbers {cam.params}")
    n_focal = 1 if cam.model in ONE_FOCAL else 2
    if not all(v > 0 for v in cam.params[:n_focal]):
        raise DataError(f"{where}: camera {cam.id} has a focal length <= 0 ({cam.params[:n_focal]})")
    if len(cam.params) >= n_focal + 2:
        f, (cx, cy) = cam.params[:n_focal], cam.params[n_focal:n_focal + 2]
        check_intrinsic_range(f[0], f[-1], cx, cy, cam.width, cam.height, f"{where}: camera {cam.id} ({cam.model})")


def check_pose(qvec, tvec, where: str) -> None:
    """A finite, non-zero rotation quaternion and a finite translation."""
    if not all(math.isfinite(v) for v in (*qvec, *tvec)):
        raise DataError(f"{where}: the pose is not finite (q {list(qvec)}, t {list(tvec)})")
    if math.hypot(*qvec) < 1e-12:
        raise DataError(f"{where}: the rotation quaternion is all zero")
    check_position(tvec, where, "the translation")  # |t| of world-to-camera = the camera centre's distance


def read_cameras(path: Path) -> dict[int, ColmapCamera]:
    cams = {}
    if path.suffix == ".bin":
        r = _Reader(path)
        for _ in range(r.count(24, "cameras")):
            cid, mid, w, h = r.read("iiQQ")
            if mid not in CAMERA_MODELS:
                raise DataError(f"{path}: camera {cid} has unknown model id {mid}")
            name, n = CAMERA_MODELS[mid]
            cams[cid] = ColmapCamera(cid, name, int(w), int(h), list(r.read("d" * n)))
            check_camera(cams[cid], str(path))
        return cams
    for n, line in _text_lines(path):
        tok = line.split()
        try:
            cid, model, w, h = int(tok[0]), tok[1], int(tok[2]), int(tok[3])
            params = [float(x) for x in tok[4:]]
        except (IndexError, ValueError):
            raise DataError(f"{path}:{n}: malformed camera line {line[:80]!r}") from None
        if model not in MODEL_IDS and model.upper() in MODEL_IDS:
            raise DataError(f"{path}:{n}: camera model {model[:40]!r}: camera model names are upper case: "
                            f"{model.upper()}")
        if model not in MODEL_IDS or len(params) != MODEL_IDS[model][1]:
            raise DataError(f"{path}:{n}: camera model {model[:40]!r} with {len(params)} params is not valid")
        cams[cid] = ColmapCamera(cid, model, w, h, params)
        check_camera(cams[cid], f"{path}:{n}")
    return cams


def read_images(path: Path) -> dict[int, ColmapImage]:
    images = {}
    if path.suffix == ".bin":
        r = _Reader(path)
        for _ in range(r.count(73, "images")):
            iid, qw, qx, qy, qz, tx, ty, tz, cid = r.read("idddddddi")
            name = r.read_string()
            pts = r.array(np.dtype([("x", "<f8"), ("y", "<f8"), ("id", "<i8")]), r.count(24, "2D points"))
            pts = np.stack([pts["x"], pts["y"], pts["id"].astype(np.float64)], 1) if len(pts) else np.zeros((0, 3))
            check_pose([qw, qx, qy, qz], [tx, ty, tz], f"{path}: image {iid} ({name})")
            images[iid] = ColmapImage(iid, [qw, qx, qy, qz], [tx, ty, tz], cid, name, pts)
        return images
    # two lines per image (the second, the 2D points, may be empty): pair them up, comments dropped
    raw = [(n, ln.strip()) for n, ln in enumerate(_read_text(path).splitlines(), 1) if not ln.startswith("#")]
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
            raise DataError(f"{path}:{n}: malformed image line {line[:80]!r}") from None
        check_pose(q, t, f"{path}:{n}: image {iid} ({name})")
        pts_line = raw[k + 1][1] if k + 1 < len(raw) else ""
        try:
            pts = np.array([float(x) for x in pts_line.split()], dtype=np.float64).reshape(-1, 3)
        except ValueError:
            raise DataError(f"{path}:{raw[k + 1][0]}: malformed 2D point line (expected X Y POINT3D_ID "
                            "triples)") from None
        images[iid] = ColmapImage(iid, q, t, cid, name, pts)
    return images


def _point_line(path: Path, n: int, line: str) -> tuple[int, list[float], list[int]]:
    """``POINT3D_ID X Y Z R G B ERROR TRACK[]`` of points3D.txt: the id, the position and the colour."""
    tok = line.split()
    try:
        if len(tok) < 7:
            raise ValueError
        pid, xyz, rgb = int(tok[0]), [float(v) for v in tok[1:4]], [int(v) for v in tok[4:7]]
    except ValueError:
        raise DataError(f"{path}:{n}: malformed point line (expected POINT3D_ID X Y Z R G B ...)") from None
    if not 0 <= pid < 2 ** 63 or not all(0 <= c <= 255 for c in rgb):
        raise DataError(f"{path}:{n}: point id {pid} or colour {rgb} out of range")
    return pid, xyz, rgb


def read_points3d(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    if not path.is_file():
        return np.zeros((0, 3)), np.zeros((0, 3), np.uint8), np.zeros(0, np.int64)
    xyz, rgb, ids = [], [], []
    if path.suffix == ".bin":
        r = _Reader(path)
        for _ in range(r.count(51, "points")):
            pid, x, y, z, cr, cg, cb, _err, tl = r.read("QdddBBBdQ")
            r.skip(8 * tl, f"a track of {tl} (image id, point index) pairs")
            if pid >= 2 ** 63:
                raise DataError(f"{path}: point id {pid} out of range")
            ids.append(pid)
            xyz.append((x, y, z))
            rgb.append((cr, cg, cb))
    else:
        for n, line in _text_lines(path):
            pid, p, c = _point_line(path, n, line)
            ids.append(pid)
            xyz.append(p)
            rgb.append(c)
    xyz_a = np.asarray(xyz, np.float64).reshape(-1, 3)
    check_finite_points(xyz_a, str(path))
    return xyz_a, np.asarray(rgb, np.uint8).reshape(-1, 3), np.asarray(ids, np.int64)


def find_model_dir(root: Path) -> Path | None:
    for d in (root / "sparse" / "0", root / "sparse", root):
        for ext in (".bin", ".txt"):
            if (d / f"cameras{ext}").is_file() and (d / f"images{ext}").is_file():
                return d
    return None


def read_model(model_dir: Path) -> ColmapModel:
    ext = ".bin" if (model_dir / "cameras.bin").is_file() else ".txt"
    xyz, rgb, ids = read_points3d(model_dir / f"points3D{ext}")
    cameras, images = read_cameras(model_dir / f"cameras{ext}"), read_images(model_dir / f"images{ext}")
    return ColmapModel(cameras, images, xyz, rgb, ids)


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
        pose = " ".join(repr(float(v)) for v in [*im.qvec, *im.tvec])
        lines.append(f"{im.id} {pose} {im.camera_id} {im.name}")
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
    if m in ONE_FOCAL:
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
                resolve_image(pre / first, [])  # a probe: the images are resolved (and reported) after
                return pre, factor
            except DataError:
                pass
    return base, 1


def load(path: Path, downscale: int = 1, test_every: int = 8, background=(1.0, 1.0, 1.0), max_side: int = 0,
         skip_missing: bool = False, progress: bool = False) -> SceneData:
    root = Path(path)
    model_dir = find_model_dir(root)
    if model_dir is None:
        raise DataError(f"{root}: no COLMAP model (cameras.bin/txt and images.bin/txt in sparse/0, sparse or here)")
    model = read_model(model_dir)
    ext = ".bin" if (model_dir / "cameras.bin").is_file() else ".txt"  # as read_model picks
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
    found, missing, ambiguous = [], [], []
    for im in images:
        try:
            found.append((im, resolve_image(image_dir / im.name, ambiguous)))
        except ImageMissing:
            missing.append(im.name)
    report_ambiguous(ambiguous, image_dir)
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
        elif image_size(file) != (w, h):
            raise DataError(f"{file}: the image is {'x'.join(map(str, image_size(file)))} but camera {cam.id} in "
                            f"{model_dir / ('cameras' + ext)} says {w}x{h}")
        c2w = torch.from_numpy(im.camera_to_world()).float()
        frames.append(Frame(file, c2w, K, w, h, image_stem(im.name), distortion=dist))
    points = torch.from_numpy(model.xyz).float() if len(model.xyz) else None
    colors = torch.from_numpy(model.rgb).float() / 255.0 if len(model.xyz) else None
    return assemble(frames, source=root, convention="opencv", downscale=1 if pre > 1 else factor,
                    test_every=test_every, background=background, points=points, point_colors=colors,
                    prescaled=pre, progress=progress)


register_loader("colmap", detect, load)

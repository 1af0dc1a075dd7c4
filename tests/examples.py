"""Tiny valid scenes of every format the loaders read — nerfstudio / Blender ``transforms.json``, COLMAP text and
binary models — and a tiny feature PLY with its sidecar: a few 8x6 pixels each, written in milliseconds, for the
reader tests and the fuzz benchmark (``benchmarks/fuzz_readers.py``) to start from."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from dff_gs.core.gaussians import GaussianModel
from dff_gs.data.colmap import ColmapCamera, ColmapImage, ColmapModel, rotmat_to_qvec, write_model
from dff_gs.io.ply import save_ply


def look_at(position, target=(0.0, 0.0, 0.2), up=(0.0, 0.0, 1.0)) -> np.ndarray:
    """OpenCV camera-to-world ``[4, 4]`` at ``position`` looking at ``target``."""
    position = np.asarray(position, float)
    fwd = np.asarray(target, float) - position
    fwd /= np.linalg.norm(fwd)
    right = np.cross(fwd, up)
    right /= np.linalg.norm(right)
    c2w = np.eye(4)
    c2w[:3, :3] = np.stack([right, np.cross(fwd, right), fwd], 1)
    c2w[:3, 3] = position
    return c2w


def ring(n: int) -> list[np.ndarray]:
    return [look_at([4 * math.cos(a), 4 * math.sin(a), 1.0]) for a in np.linspace(0, 2 * math.pi, n, endpoint=False)]


def save_png(path: Path, arr: np.ndarray) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)


def make_transforms(root: Path, w: int = 8, h: int = 6) -> Path:
    """Three views with depth (.npy and 16-bit PNG), semantics, per-frame and global intrinsics."""
    rng = np.random.default_rng(0)
    frames = []
    flip = np.diag([1.0, -1.0, -1.0, 1.0])
    for i, c2w in enumerate(ring(3)):
        save_png(root / f"images/{i}.png", rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
        save_png(root / f"sem/{i}.png", rng.integers(0, 3, (h, w), dtype=np.uint8))
        if i % 2:
            save_png(root / f"depth/{i}.png", rng.integers(500, 6000, (h, w)).astype(np.uint16))
        else:
            (root / "depth").mkdir(exist_ok=True)
            np.save(root / f"depth/{i}.npy", rng.uniform(0.5, 5.0, (h, w)).astype(np.float32))
        fr = {"file_path": f"images/{i}" + (".png" if i else ""), "transform_matrix": (c2w @ flip).tolist(),
              "semantic_path": f"sem/{i}.png", "depth_path": f"depth/{i}.{'png' if i % 2 else 'npy'}"}
        if i == 0:
            fr.update(fl_x=7.0, fl_y=7.5)
        frames.append(fr)
    meta = {"camera_angle_x": 1.0, "w": w, "h": h, "cx": w / 2, "cy": h / 2, "k1": 0.0, "camera_model": "OPENCV",
            "depth_scale": 1000.0, "frames": frames}
    (root / "transforms.json").write_text(json.dumps(meta, indent=1))
    (root / "classes.json").write_text(json.dumps(["a", "b", "c"]))
    return root / "transforms.json"


def make_colmap(root: Path, binary: bool, w: int = 8, h: int = 6) -> Path:
    """Three views, two pinhole cameras (one SIMPLE_PINHOLE), ten sparse points; the model in sparse/0."""
    rng = np.random.default_rng(1)
    cams = {1: ColmapCamera(1, "PINHOLE", w, h, [7.0, 7.5, 4.0, 3.0]),
            2: ColmapCamera(2, "SIMPLE_PINHOLE", w, h, [6.5, 4.25, 2.75])}
    images = {}
    for k, c2w in enumerate(ring(3)):
        w2c = np.linalg.inv(c2w)
        pts = np.array([[1.5, 2.5, k + 1], [3.0, 4.0, -1]], dtype=np.float64)
        images[k + 1] = ColmapImage(k + 1, list(rotmat_to_qvec(w2c[:3, :3])), list(w2c[:3, 3]), 1 + k % 2,
                                    f"v{k}.png", pts)
        save_png(root / "images" / f"v{k}.png", rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
    model = ColmapModel(cams, images, rng.normal(size=(10, 3)), rng.integers(0, 256, (10, 3)).astype(np.uint8),
                        np.arange(1, 11, dtype=np.int64))
    write_model(model, root / "sparse" / "0", binary=binary)
    return root / "sparse" / "0"


def make_ply(root: Path, N: int = 6) -> Path:
    """A PLY of ``N`` Gaussians (SH degree 1, 3 feature dims) with a linear decoder in its sidecar."""
    import torch

    g = torch.Generator().manual_seed(0)
    params = {"means": torch.randn(N, 3, generator=g), "quats": torch.randn(N, 4, generator=g),
              "scales": torch.randn(N, 3, generator=g) - 3, "opacities": torch.randn(N, generator=g),
              "sh0": torch.randn(N, 1, 3, generator=g), "shN": torch.randn(N, 3, 3, generator=g),
              "features": torch.randn(N, 3, generator=g)}
    return save_ply(GaussianModel(params, 1, decoder_dim=4), root / "point_cloud.ply",
                    metadata={"teacher": {"name": "x"}})


def textured_scene(seed: int = 0):
    """A floor and two boxes covered in small random-coloured Gaussians (a texture SIFT finds features on): a
    :class:`~dff_gs.core.gaussians.GaussianModel` of 15,500 Gaussians."""
    import torch

    g = torch.Generator().manual_seed(seed)

    def box(lo, hi, n):  # n Gaussians on the faces of an axis-aligned box (all but the bottom)
        lo, hi = torch.tensor(lo), torch.tensor(hi)
        p = lo + torch.rand(n, 3, generator=g) * (hi - lo)
        face = torch.randint(0, 5, (n,), generator=g)
        axis, side = torch.tensor([0, 0, 1, 1, 2])[face], torch.tensor([0, 1, 0, 1, 1])[face]
        p[torch.arange(n), axis] = torch.where(side.bool(), hi[axis], lo[axis])
        return p

    floor = torch.cat([torch.rand(8000, 2, generator=g) * 5 - 2.5, torch.zeros(8000, 1)], 1)
    points = torch.cat([floor, box([-0.6, -0.5, 0.0], [0.5, 0.4, 0.9], 5000),
                        box([0.7, 0.3, 0.0], [1.3, 0.9, 0.5], 2500)])
    colors = torch.rand(len(points), 3, generator=g)
    return GaussianModel.from_points(points, colors, sh_degree=0, init_opacity=0.95,
                                     scales=torch.full((len(points),), 0.035))


def ring_cameras(num_views: int = 36, width: int = 240, height: int = 180):
    """``num_views`` cameras on a ring around :func:`textured_scene`, as one walks around an object with a phone:
    (OpenCV camera-to-world ``[V, 4, 4]``, their :class:`~dff_gs.core.cameras.Cameras`)."""
    import torch

    from dff_gs.core.cameras import Cameras

    angles = np.linspace(0.0, 2 * math.pi, num_views, endpoint=False)
    c2ws = np.stack([look_at([3.0 * math.cos(a), 3.0 * math.sin(a), 1.8 + 0.3 * math.sin(2 * a)],
                             target=(0.0, 0.0, 0.4)) for a in angles])
    f = 0.9 * width
    K = torch.tensor([[f, 0.0, width / 2], [0.0, f, height / 2], [0.0, 0.0, 1.0]]).expand(num_views, 3, 3)
    return c2ws, Cameras(torch.linalg.inv(torch.tensor(c2ws, dtype=torch.float32)), K.clone(), width, height)


def textured_views(folder: Path, num_views: int = 36, width: int = 240, height: int = 180, seed: int = 0
                   ) -> np.ndarray:
    """:func:`textured_scene` rendered by our own rasterizer from :func:`ring_cameras`, for posing tests: writes
    ``folder/view_000.png`` ... (images only, no poses) and returns the true camera-to-world matrices
    ``[V, 4, 4]``."""
    import torch

    from dff_gs.render import render

    model = textured_scene(seed)
    c2ws, cams = ring_cameras(num_views, width, height)
    folder.mkdir(parents=True, exist_ok=True)
    with torch.no_grad():
        for i in range(num_views):
            rgb = render(model, cams[[i]], backgrounds=torch.ones(3), with_features=False, backend="torch").rgb[0]
            save_png(folder / f"view_{i:03d}.png", (rgb.clamp(0, 1).numpy() * 255).astype(np.uint8))
    return c2ws


def alignment(c2ws_true: np.ndarray, c2ws_est: np.ndarray) -> tuple[np.ndarray, float, np.ndarray, np.ndarray]:
    """The similarity that maps estimated camera-to-world poses ``[V, 4, 4]`` onto the true ones: its rotation the
    one that best maps the estimated orientations onto the true ones (chordal mean; camera centres along an arc pin
    a rotation down poorly), its scale and translation the least-squares fit of the centres under that rotation.
    Returns ``(R [3, 3], s, mean_est [3], mean_true [3])``: a point ``x`` of the estimate maps to
    ``s * R (x - mean_est) + mean_true``."""
    M = np.einsum("vij,vkj->ik", c2ws_true[:, :3, :3], c2ws_est[:, :3, :3])
    U, _, Vt = np.linalg.svd(M)
    R = U @ np.diag([1.0, 1.0, np.sign(np.linalg.det(U @ Vt))]) @ Vt
    a, b = c2ws_est[:, :3, 3], c2ws_true[:, :3, 3]
    xa, xb = (a - a.mean(0)) @ R.T, b - b.mean(0)
    return R, float((xa * xb).sum() / (xa ** 2).sum()), a.mean(0), b.mean(0)


def pose_errors(c2ws_true: np.ndarray, c2ws_est: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rotation errors (degrees) and position errors (fraction of the true cameras' extent) of estimated
    camera-to-world poses ``[V, 4, 4]`` after the similarity of :func:`alignment`."""
    R, s, mean_est, mean_true = alignment(c2ws_true, c2ws_est)
    b = c2ws_true[:, :3, 3]
    moved = s * (c2ws_est[:, :3, 3] - mean_est) @ R.T + mean_true
    pos = np.linalg.norm(moved - b, axis=1) / np.linalg.norm(b.max(0) - b.min(0))
    rel = np.einsum("ij,vjk,vlk->vil", R, c2ws_est[:, :3, :3], c2ws_true[:, :3, :3])
    rot = np.degrees(np.arccos(np.clip((np.trace(rel, axis1=1, axis2=2) - 1) / 2, -1, 1)))
    return rot, pos

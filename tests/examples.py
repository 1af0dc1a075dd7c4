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

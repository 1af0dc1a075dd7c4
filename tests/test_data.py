"""The data layer: camera conventions, the transforms.json / COLMAP / Replica loaders, the synthetic room,
and the errors bad input raises. Every fixture is written here, into tmp_path, at a few pixels a side."""

import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

from dff_gs.core.utils import as_rgb
from dff_gs.core.cameras import Cameras, check_rigid, intrinsics_from_fov
from dff_gs.data import load_scene
from dff_gs.data.colmap import (ColmapCamera, ColmapImage, ColmapModel, qvec_to_rotmat, read_model,
                                rotmat_to_qvec, write_model)
from tests.examples import look_at
from dff_gs.data.synthetic import generate_scene
from dff_gs.core.errors import DataError

W, H = 16, 12
FLIP = np.diag([1.0, -1.0, -1.0, 1.0])  # OpenCV <-> OpenGL camera axes


# ---------------------------------------------------------------------------------------------- helpers


def ring_poses(n, radius=4.0, height=1.0) -> list[np.ndarray]:
    """OpenCV c2w poses on a ring, all looking at the origin."""
    return [look_at([radius * math.cos(a), radius * math.sin(a), height + 0.3 * k], [0.0, 0.0, 0.2])
            for k, a in enumerate(np.linspace(0, 2 * math.pi, n, endpoint=False) + 0.3)]


def K_of(fx, fy, cx, cy) -> np.ndarray:
    return np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])


def save_u8(path, arr):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.asarray(arr, np.uint8)).save(path)


def save_u16(path, arr):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.asarray(arr, np.uint16)).save(path)


def random_rigid(rng) -> np.ndarray:
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] *= -1
    m = np.eye(4)
    m[:3, :3] = q
    m[:3, 3] = rng.normal(size=3)
    return m


def assert_close(a, b, atol=1e-5):
    a, b = (x.detach().double() if isinstance(x, torch.Tensor) else torch.tensor(np.array(x, np.float64))
            for x in (a, b))
    assert a.shape == b.shape, (a.shape, b.shape)
    err = (a - b).abs().max().item() if a.numel() else 0.0
    assert err <= atol, f"max abs error {err} > {atol}"


# ------------------------------------------------------------------------------------ 1. camera conventions


def test_project_known_points():
    K = K_of(20.0, 22.0, 8.0, 6.0)
    c2w = np.eye(4)
    c2w[:3, 3] = [0.0, 0.0, -5.0]  # at z = -5 looking down +z at the origin; x right, y down
    cams = Cameras.from_camtoworlds(torch.tensor(c2w), torch.tensor(K), W, H)
    pts = torch.tensor([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 5.0]])
    uv, depth = cams.project(pts)
    assert uv.shape == (1, 4, 2) and depth.shape == (1, 4)
    assert_close(uv[0, 0], [8.0, 6.0])  # the origin lands on the principal point
    assert_close(uv[0, 1], [8.0 + 20.0 / 5.0, 6.0])  # +x world: right of centre
    assert_close(uv[0, 2], [8.0, 6.0 + 22.0 / 5.0])  # +y world: below centre (OpenCV y down)
    assert_close(depth[0], [5.0, 5.0, 5.0, 10.0])
    assert_close(cams.centers, [[0.0, 0.0, -5.0]])

    # the same camera given in the OpenGL convention (y up, z backward) projects identically
    gl = Cameras.from_camtoworlds(torch.tensor(c2w @ FLIP), torch.tensor(K), W, H, convention="opengl")
    assert_close(gl.viewmats, cams.viewmats)

    # a general pose against the textbook formula K (R p + t) / z
    c2w2 = look_at([3.0, -2.0, 1.5], [0.2, 0.1, 0.3])
    cams2 = Cameras.from_camtoworlds(torch.tensor(c2w2), torch.tensor(K), W, H)
    p = np.array([[0.2, 0.1, 0.3], [0.5, -0.3, 0.8], [-0.4, 0.6, 0.0]])
    pc = (np.linalg.inv(c2w2) @ np.c_[p, np.ones(3)].T)[:3].T
    expect = (pc @ K.T)[:, :2] / pc[:, 2:]
    uv2, z2 = cams2.project(torch.tensor(p, dtype=torch.float32))
    assert_close(uv2[0], expect, atol=1e-4)
    assert_close(z2[0], pc[:, 2], atol=1e-5)
    assert_close(uv2[0, 0], [8.0, 6.0], atol=1e-4)  # the look-at target is on the optical axis


def test_opengl_round_trip_and_viewmats():
    rng = np.random.default_rng(0)
    c2w_gl = np.stack([random_rigid(rng) for _ in range(4)])
    K = torch.tensor(K_of(15.0, 15.0, 8.0, 6.0), dtype=torch.float32)
    cams = Cameras.from_camtoworlds(torch.tensor(c2w_gl), K, W, H, convention="opengl")
    assert cams.Ks.shape == (4, 3, 3)
    assert_close(cams.to_opengl_camtoworlds(), c2w_gl)
    assert_close(cams.viewmats, np.linalg.inv(c2w_gl @ FLIP))
    assert_close(cams.camtoworlds, c2w_gl @ FLIP)
    assert_close(cams.centers, c2w_gl[:, :3, 3])
    # [C, 3, 4] poses are accepted too
    assert_close(Cameras.from_camtoworlds(torch.tensor(c2w_gl[:, :3]), K, W, H, "opengl").viewmats, cams.viewmats)
    with pytest.raises(ValueError):
        Cameras.from_camtoworlds(torch.tensor(c2w_gl), K, W, H, convention="blender")


def test_rays_hit_their_own_pixel_centres():
    K = torch.tensor(np.stack([K_of(14.0, 16.0, 7.3, 6.4), K_of(20.0, 18.0, 8.5, 5.0)]), dtype=torch.float32)
    c2w = torch.tensor(np.stack(ring_poses(2)))
    cams = Cameras.from_camtoworlds(c2w, K, W, H)
    o, d = cams.generate_rays()
    assert o.shape == d.shape == (2, H, W, 3)
    assert_close(d.norm(dim=-1), torch.ones(2, H, W))
    assert_close(o[:, 0, 0], c2w[:, :3, 3])
    vv, uu = torch.meshgrid(torch.arange(H) + 0.5, torch.arange(W) + 0.5, indexing="ij")
    centres = torch.stack([uu, vv], -1).reshape(-1, 2)
    for c in range(2):
        pts = (o[c] + 2.5 * d[c]).reshape(-1, 3)
        uv, z = cams[c].project(pts)
        assert_close(uv[0], centres, atol=2e-4)
        assert bool((z > 0).all())
    # rays of a sub-batch
    o1, d1 = cams.generate_rays(1)
    assert_close(d1, d[1:])
    # rays of single pixels: the same rays, without every pixel's
    view, y, x = torch.tensor([0, 1, 1]), torch.tensor([0, H - 1, 3]), torch.tensor([W - 1, 0, 5])
    op, dp = cams.pixel_rays(view, x, y)
    assert torch.equal(op, o[view, y, x]) and torch.equal(dp, d[view, y, x])


def test_scaled_projects_consistently():
    K = torch.tensor(K_of(14.0, 16.0, 7.3, 6.4), dtype=torch.float32)
    cams = Cameras.from_camtoworlds(torch.tensor(ring_poses(1)[0]), K, W, H)
    pts = torch.tensor([[0.0, 0.0, 0.2], [0.3, -0.2, 0.5], [-0.5, 0.4, 0.0]])
    uv, z = cams.project(pts)
    half = cams.scaled(0.5)
    assert (half.width, half.height) == (W // 2, H // 2)
    uv2, z2 = half.project(pts)
    assert_close(uv2, uv * 0.5, atol=1e-4)
    assert_close(z2, z)
    assert_close(half.viewmats, cams.viewmats)
    # odd sizes round; intrinsics follow the real ratio, so rays still hit pixel centres
    odd = Cameras(cams.viewmats, cams.Ks, 17, 13).scaled(0.5)
    assert (odd.width, odd.height) == (8, 6)
    uv3, _ = odd.project(pts)
    assert_close(uv3, uv * torch.tensor([8 / 17, 6 / 13]), atol=1e-4)
    o, d = odd.generate_rays()
    uv4, _ = odd.project((o[0] + d[0]).reshape(-1, 3))
    assert_close(uv4[0, 0], [0.5, 0.5], atol=1e-4)
    assert_close(uv4[0, -1], [7.5, 5.5], atol=1e-4)


def test_indexing_keeps_the_batch_dim():
    poses = torch.tensor(np.stack(ring_poses(4)))
    Ks = torch.stack([torch.tensor(K_of(10.0 + i, 10.0 + i, 8.0, 6.0)) for i in range(4)]).float()
    cams = Cameras.from_camtoworlds(poses, Ks, W, H)
    assert len(cams) == 4
    for idx, ids in [(0, [0]), (3, [3]), (-1, [3]), (-4, [0]), (np.int64(2), [2]), (slice(1, 3), [1, 2]),
                     ([0, 2], [0, 2]), ((3, 1), [3, 1]), (torch.tensor([2, 0]), [2, 0]),
                     (torch.tensor([True, False, True, False]), [0, 2]), ([False, True, True, False], [1, 2]),
                     (np.array([False, False, False, True]), [3]), ([], [])]:
        sub = cams[idx]
        assert isinstance(sub, Cameras)
        assert sub.viewmats.shape == (len(ids), 4, 4) and sub.Ks.shape == (len(ids), 3, 3), idx
        assert_close(sub.viewmats, cams.viewmats[ids])
        assert_close(sub.Ks, cams.Ks[ids])
        assert (sub.width, sub.height) == (W, H)
    for bad in (4, -5):
        with pytest.raises(IndexError):
            cams[bad]
    # a single [4, 4] / [3, 3] becomes a batch of one
    one = Cameras(cams.viewmats[0], cams.Ks[0], W, H)
    assert one.viewmats.shape == (1, 4, 4) and one.Ks.shape == (1, 3, 3)
    assert_close(one.centers, poses[:1, :3, 3])


def test_check_rigid():
    rng = np.random.default_rng(1)
    good = torch.tensor(np.stack([random_rigid(rng) for _ in range(3)]))
    check_rigid(good)
    for i, tamper in enumerate([lambda m: m[:3, :3].mul_(2.0), lambda m: m[:3, 0].mul_(-1.0),
                                lambda m: m[3].copy_(torch.tensor([0.0, 0.0, 1.0, 1.0])),
                                lambda m: m[0].fill_(float("nan"))]):
        bad = good.clone()
        tamper(bad[1])
        with pytest.raises(DataError, match="my_poses.txt: pose 1"):
            check_rigid(bad, "my_poses.txt")


def test_intrinsics_from_fov():
    K = intrinsics_from_fov(math.radians(90.0), 16, 12)
    assert_close(K, K_of(8.0, 8.0, 8.0, 6.0))


# ------------------------------------------------------------------------------------ 2. transforms.json


CLASSES = ["floor", "wall", "table", "chair"]


def make_transforms_scene(root, n=5, *, rgba_frame=None, with_ext=True):
    """Random images with known poses, intrinsics, semantics and depth (.npy and 16-bit PNG) in the
    transforms.json layout. Returns the ground truth."""
    rng = np.random.default_rng(7)
    K = K_of(13.0, 14.0, 7.5, 6.25)
    gt = {"K": K, "c2w_gl": [], "rgb": [], "alpha": {}, "sem": [], "depth": [], "names": []}
    frames = []
    for i, c2w in enumerate(ring_poses(n)):
        name = f"images/{i:04d}"
        rgb = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
        if i == rgba_frame:
            alpha = rng.integers(0, 256, (H, W, 1), dtype=np.uint8)
            save_u8(root / f"{name}.png", np.concatenate([rgb, alpha], -1))
            gt["alpha"][i] = alpha[..., 0] / 255.0
        else:
            save_u8(root / f"{name}.png", rgb)
        sem = rng.integers(0, len(CLASSES), (H, W))
        save_u8(root / f"semantics/{i:04d}.png", sem)
        if i % 2 == 0:
            depth = rng.uniform(0.5, 6.0, (H, W)).astype(np.float32)
            depth[0, 0] = 0.0  # invalid stays 0
            (root / "depth").mkdir(exist_ok=True)
            np.save(root / f"depth/{i:04d}.npy", depth)
            dpath = f"depth/{i:04d}.npy"
        else:
            mm = rng.integers(500, 6000, (H, W))
            save_u16(root / f"depth/{i:04d}.png", mm)
            depth = (mm / 1000.0).astype(np.float32)
            dpath = f"depth/{i:04d}.png"
        c2w_gl = c2w @ FLIP
        frames.append({"file_path": f"{name}.png" if with_ext or i % 2 else name,
                       "transform_matrix": c2w_gl.tolist(),
                       "semantic_path": f"semantics/{i:04d}.png", "depth_path": dpath})
        for k, v in (("c2w_gl", c2w_gl), ("rgb", rgb / 255.0), ("sem", sem), ("depth", depth), ("names", name)):
            gt[k].append(v)
    meta = {"fl_x": K[0, 0], "fl_y": K[1, 1], "cx": K[0, 2], "cy": K[1, 2], "w": W, "h": H, "frames": frames}
    (root / "transforms.json").write_text(json.dumps(meta))
    (root / "classes.json").write_text(json.dumps(CLASSES))
    return gt


def test_transforms_round_trip(tmp_path):
    gt = make_transforms_scene(tmp_path, n=5, with_ext=False)
    scene = load_scene(tmp_path, test_every=3)
    assert scene.num_views == 5 and (scene.height, scene.width) == (H, W)
    assert scene.images.shape == (5, H, W, 3) and scene.images.dtype == torch.uint8  # a quarter of float32
    assert_close(as_rgb(scene.images), np.stack(gt["rgb"]), atol=1e-6)  # exactly the 8-bit files' values
    assert scene.image_names == gt["names"]
    assert (scene.cameras.width, scene.cameras.height) == (W, H)
    assert_close(scene.cameras.viewmats, np.linalg.inv(np.stack(gt["c2w_gl"]) @ FLIP))
    assert_close(scene.cameras.to_opengl_camtoworlds(), np.stack(gt["c2w_gl"]))
    assert_close(scene.cameras.Ks, np.broadcast_to(gt["K"], (5, 3, 3)))
    assert scene.semantics.dtype == torch.int16  # class ids that fit 16 bits: a quarter of int64
    assert torch.equal(scene.semantics.long(), torch.as_tensor(np.stack(gt["sem"])).long())
    assert scene.class_names == CLASSES
    assert_close(scene.depths, np.stack(gt["depth"]), atol=1e-6)
    assert scene.train_ids == [1, 2, 4] and scene.test_ids == [0, 3]
    assert scene.bounds.shape == (2, 3)
    assert bool((scene.bounds[0] <= scene.cameras.centers.amin(0) + 1e-5).all())
    assert bool((scene.bounds[1] >= scene.cameras.centers.amax(0) - 1e-5).all())
    assert scene.points is None

    assert load_scene(tmp_path, test_every=0).test_ids == []
    # the json file itself is a valid path, and the split views keep their data
    by_file = load_scene(tmp_path / "transforms.json", test_every=3)
    assert torch.equal(by_file.images, scene.images)
    train = scene.split("train")
    assert train.num_views == 3 and torch.equal(train.semantics, scene.semantics[[1, 2, 4]])
    assert len(train.cameras) == 3 and torch.equal(train.depths, scene.depths[[1, 2, 4]])


def test_transforms_downscale(tmp_path):
    make_transforms_scene(tmp_path, n=3)
    full = load_scene(tmp_path)
    half = load_scene(tmp_path, downscale=2)
    assert half.images.shape == (3, H // 2, W // 2, 3)
    assert half.depths.shape == half.semantics.shape == (3, H // 2, W // 2)
    assert (half.cameras.width, half.cameras.height) == (W // 2, H // 2)
    expect_K = full.cameras.Ks.clone()
    expect_K[:, :2] *= 0.5
    assert_close(half.cameras.Ks, expect_K)
    assert_close(half.cameras.viewmats, full.cameras.viewmats)
    # box filter: each pixel is the mean of its 2x2 block (8-bit rounding aside)
    blocks = as_rgb(full.images).reshape(3, H // 2, 2, W // 2, 2, 3).mean((2, 4))
    assert_close(as_rgb(half.images), blocks, atol=1.5 / 255)
    # nearest neighbour: labels and depths are values from their own 2x2 block
    for full_t, half_t in ((full.semantics, half.semantics), (full.depths, half.depths)):
        b = full_t.reshape(3, H // 2, 2, W // 2, 2).permute(0, 1, 3, 2, 4).reshape(3, H // 2, W // 2, 4)
        assert bool((b == half_t[..., None]).any(-1).all())
    # the same pixel seen through either: a point projects to half the pixel coordinates
    pts = torch.tensor([[0.1, 0.2, 0.3]])
    assert_close(half.cameras.project(pts)[0], full.cameras.project(pts)[0] * 0.5, atol=1e-4)


def test_transforms_rgba_background(tmp_path):
    gt = make_transforms_scene(tmp_path, n=2, rgba_frame=1)
    bg = np.array([0.0, 0.25, 1.0])
    scene = load_scene(tmp_path, background=tuple(bg))
    a = gt["alpha"][1][..., None]
    assert_close(as_rgb(scene.images[1]), gt["rgb"][1] * a + bg * (1 - a), atol=0.5 / 255 + 1e-6)  # kept as 8 bits
    assert_close(as_rgb(scene.images[0]), gt["rgb"][0], atol=1e-6)  # opaque images ignore the background
    white = load_scene(tmp_path)
    assert_close(as_rgb(white.images[1]), gt["rgb"][1] * a + (1 - a), atol=0.5 / 255 + 1e-6)


def test_transforms_rgba_downscale(tmp_path):
    make_transforms_scene(tmp_path, n=2, rgba_frame=0)
    bg = (0.2, 0.9, 0.0)
    full = load_scene(tmp_path, background=bg)
    half = load_scene(tmp_path, background=bg, downscale=2)
    # resizing before compositing must weight colours by alpha: the result is the composited image's box mean
    blocks = as_rgb(full.images).reshape(2, H // 2, 2, W // 2, 2, 3).mean((2, 4))
    assert_close(as_rgb(half.images), blocks, atol=3 / 255)


def test_transforms_options(tmp_path):
    """16-bit semantic PNGs, ignore_label, depth_scale, per-frame intrinsics, 3x4 matrices, an aabb."""
    make_transforms_scene(tmp_path, n=3)
    rng = np.random.default_rng(9)
    sem = rng.integers(0, 4, (H, W))
    sem[:2] = 1000  # the dataset's "unlabeled" id
    save_u16(tmp_path / "semantics" / "0000.png", sem)
    mm = rng.integers(1, 60000, (H, W))
    save_u16(tmp_path / "depth" / "0001.png", mm)  # in units of 1/10000 m below

    def edit(meta):
        meta.update(ignore_label=1000, depth_scale=10000.0, aabb=[[-1, -2, -3], [1, 2, 3]])
        meta["frames"][2].update(fl_x=20.0, fl_y=21.0, cx=8.5, cy=5.5)
        meta["frames"][1]["transform_matrix"] = meta["frames"][1]["transform_matrix"][:3]

    rewrite_frames(tmp_path, edit)
    scene = load_scene(tmp_path)
    expect = torch.as_tensor(np.where(sem == 1000, -1, sem))
    assert torch.equal(scene.semantics[0].long(), expect.long())
    assert_close(scene.depths[1], mm / 10000.0, atol=1e-6)
    assert_close(scene.cameras.Ks[2], K_of(20.0, 21.0, 8.5, 5.5))
    assert_close(scene.cameras.Ks[0], K_of(13.0, 14.0, 7.5, 6.25))
    assert_close(scene.bounds, [[-1, -2, -3], [1, 2, 3]])
    half = load_scene(tmp_path, downscale=2)
    s0 = half.semantics[0]
    assert set(torch.unique(s0).tolist()) <= {-1, 0, 1, 2, 3} and bool((s0[0] == -1).all())


def test_transforms_camera_angle_and_blender_split(tmp_path):
    rng = np.random.default_rng(3)
    poses = ring_poses(5)
    for part, ids in (("train", [0, 1, 2]), ("test", [3, 4])):
        frames = []
        for i in ids:
            save_u8(tmp_path / part / f"r_{i}.png", rng.integers(0, 256, (H, W, 3)))
            frames.append({"file_path": f"./{part}/r_{i}", "transform_matrix": (poses[i] @ FLIP).tolist()})
        (tmp_path / f"transforms_{part}.json").write_text(json.dumps({"camera_angle_x": 0.9, "frames": frames}))
    scene = load_scene(tmp_path, test_every=2)  # the files' own split wins
    assert scene.train_ids == [0, 1, 2] and scene.test_ids == [3, 4]
    assert scene.image_names == ["train/r_0", "train/r_1", "train/r_2", "test/r_3", "test/r_4"]
    f = 0.5 * W / math.tan(0.45)
    assert_close(scene.cameras.Ks[0], K_of(f, f, W / 2, H / 2), atol=1e-4)
    assert_close(scene.cameras.viewmats, np.linalg.inv(np.stack(poses)))
    assert scene.semantics is None and scene.depths is None and scene.class_names is None


# --------------------------------------------------------------------------------------------- 3. COLMAP


def make_colmap_model(n_images=4):
    rng = np.random.default_rng(11)
    cams = {1: ColmapCamera(1, "PINHOLE", W, H, [13.0, 14.0, 7.5, 6.0]),
            2: ColmapCamera(2, "SIMPLE_PINHOLE", W, H, [12.0, 8.25, 5.5]),
            3: ColmapCamera(3, "OPENCV", W, H, [11.0, 11.5, 8.0, 6.5, 0.0, 0.0, 0.0, 0.0])}
    images, truth = {}, {}
    for k, c2w in enumerate(ring_poses(n_images)):
        w2c = np.linalg.inv(c2w)
        iid = 10 + (k * 7) % n_images  # ids out of name order
        name = f"view_{k}.png"
        pts2d = np.array([[1.5, 2.5, k], [3.25, 4.0, -1]], dtype=np.float64)
        images[iid] = ColmapImage(iid, list(rotmat_to_qvec(w2c[:3, :3])), list(w2c[:3, 3]), 1 + k % 3, name, pts2d)
        truth[name] = (w2c, cams[1 + k % 3])
    xyz = rng.normal(size=(20, 3))
    rgb = rng.integers(0, 256, (20, 3)).astype(np.uint8)
    return ColmapModel(cams, images, xyz, rgb, np.arange(1, 21, dtype=np.int64)), truth


def colmap_K(cam):
    p = cam.params
    if cam.model == "SIMPLE_PINHOLE":
        return K_of(p[0], p[0], p[1], p[2])
    return K_of(p[0], p[1], p[2], p[3])


def test_quaternion_round_trip():
    rng = np.random.default_rng(5)
    for _ in range(20):
        R = random_rigid(rng)[:3, :3]
        q = rotmat_to_qvec(R)
        assert q[0] >= 0 and abs(np.linalg.norm(q) - 1) < 1e-9
        assert_close(qvec_to_rotmat(q), R, atol=1e-9)
    # qvec_to_rotmat follows COLMAP (Hamilton, w first): 90 degrees about z
    assert_close(qvec_to_rotmat([math.sqrt(0.5), 0, 0, math.sqrt(0.5)]), [[0, -1, 0], [1, 0, 0], [0, 0, 1]], 1e-12)


@pytest.fixture
def colmap_scenes(tmp_path):
    model, truth = make_colmap_model()
    rng = np.random.default_rng(2)
    pixels = {name: rng.integers(0, 256, (H, W, 3)) for name in truth}
    roots = {}
    for binary in (False, True):
        root = roots[binary] = tmp_path / ("bin" if binary else "txt")
        write_model(model, root / "sparse" / "0", binary=binary)
        for name, rgb in pixels.items():
            save_u8(root / "images" / name, rgb)
    return model, truth, roots


def test_colmap_text_and_binary(colmap_scenes):
    model, truth, roots = colmap_scenes
    # the raw models read back equal to what was written
    for root in roots.values():
        back = read_model(root / "sparse" / "0")
        assert {k: (c.model, c.width, c.height, c.params) for k, c in back.cameras.items()} == \
               {k: (c.model, c.width, c.height, c.params) for k, c in model.cameras.items()}
        assert sorted(back.images) == sorted(model.images)
        for iid, im in model.images.items():
            assert back.images[iid].name == im.name and back.images[iid].camera_id == im.camera_id
            assert_close(back.images[iid].qvec, im.qvec, 1e-12)
            assert_close(back.images[iid].tvec, im.tvec, 1e-12)
            assert_close(back.images[iid].points2d, im.points2d, 1e-12)
        assert_close(back.xyz, model.xyz, 1e-12)
        assert np.array_equal(back.rgb, model.rgb) and np.array_equal(back.point_ids, model.point_ids)

    txt, bin_ = load_scene(roots[False], test_every=2), load_scene(roots[True], test_every=2)
    names = sorted(truth)
    for s in (txt, bin_):
        assert s.image_names == [n[:-4] for n in names]
        assert_close(s.cameras.viewmats, np.stack([truth[n][0] for n in names]))
        assert_close(s.cameras.Ks, np.stack([colmap_K(truth[n][1]) for n in names]))
        assert_close(s.points, model.xyz)
        assert_close(s.point_colors, model.rgb / 255.0)
        assert s.train_ids == [1, 3] and s.test_ids == [0, 2]
        assert s.depths is None and s.semantics is None
    assert torch.equal(txt.images, bin_.images)
    assert_close(txt.cameras.viewmats, bin_.cameras.viewmats, 1e-6)
    assert torch.equal(txt.cameras.Ks, bin_.cameras.Ks)
    assert torch.equal(txt.points, bin_.points) and torch.equal(txt.bounds, bin_.bounds)
    for i, n in enumerate(names):
        img = np.asarray(Image.open(roots[True] / "images" / n)) / 255.0
        assert_close(as_rgb(bin_.images[i]), img, atol=1e-6)


def test_colmap_model_in_sparse_or_root(tmp_path):
    model, truth = make_colmap_model(2)
    for name in truth:
        save_u8(tmp_path / name, np.zeros((H, W, 3)))
    write_model(model, tmp_path, binary=False)  # model and images side by side
    scene = load_scene(tmp_path)
    assert scene.num_views == 2 and scene.points.shape == (20, 3)


# -------------------------------------------------------------------------------------------- 4. Replica


def make_replica(root, n=4):
    rng = np.random.default_rng(4)
    poses = ring_poses(n)
    gt = {"c2w": poses, "depth": [], "sem": [], "rgb": []}
    for i in range(n):
        rgb = rng.integers(0, 256, (H, W, 3))
        mm = rng.integers(0, 8000, (H, W))
        sem = rng.integers(0, 5, (H, W))
        save_u8(root / "rgb" / f"rgb_{i}.png", rgb)
        save_u16(root / "depth" / f"depth_{i}.png", mm)
        save_u8(root / "semantic_class" / f"semantic_class_{i}.png", sem)
        gt["rgb"].append(rgb / 255.0)
        gt["depth"].append(mm / 1000.0)
        gt["sem"].append(sem)
    np.savetxt(root / "traj_w_c.txt", np.stack([p.reshape(-1) for p in poses]))
    return gt


def test_replica_layout(tmp_path):
    gt = make_replica(tmp_path)
    names = ["void", "floor", "wall", "chair", "lamp"]
    (tmp_path / "classes.json").write_text(json.dumps(names))
    scene = load_scene(tmp_path, test_every=0)
    assert scene.source == str(tmp_path)
    assert scene.image_names == [f"rgb_{i}" for i in range(4)]
    assert_close(scene.cameras.viewmats, np.linalg.inv(np.stack(gt["c2w"])))
    assert_close(scene.cameras.Ks, np.broadcast_to(K_of(W / 2, W / 2, W / 2, H / 2), (4, 3, 3)))  # 90 deg hfov
    assert_close(as_rgb(scene.images), np.stack(gt["rgb"]), atol=1e-6)
    assert_close(scene.depths, np.stack(gt["depth"]), atol=1e-6)
    assert torch.equal(scene.semantics.long(), torch.as_tensor(np.stack(gt["sem"])).long())
    assert scene.class_names == names and scene.train_ids == [0, 1, 2, 3] and scene.test_ids == []

    # intrinsics.json overrides the default field of view; Replica's info_semantic.json names classes with
    # class 0 as void (unlabeled)
    (tmp_path / "intrinsics.json").write_text(json.dumps({"fl_x": 9.0, "fl_y": 10.0, "cx": 7.0, "cy": 5.0}))
    (tmp_path / "classes.json").unlink()
    (tmp_path / "info_semantic.json").write_text(json.dumps(
        {"classes": [{"id": 1, "name": "floor"}, {"id": 2, "name": "wall"}, {"id": 4, "name": "lamp"}]}))
    scene = load_scene(tmp_path, downscale=2)
    assert_close(scene.cameras.Ks[0], K_of(4.5, 5.0, 3.5, 2.5))
    assert scene.class_names == ["void", "floor", "wall", "class_3", "lamp"]
    assert scene.semantics.shape == (4, H // 2, W // 2)
    full = load_scene(tmp_path)
    assert torch.equal(full.semantics == -1, torch.as_tensor(np.stack(gt["sem"]) == 0))


# ------------------------------------------------------------------------------------ 5. synthetic room


@pytest.fixture(scope="module")
def synthetic_room(tmp_path_factory):
    return generate_scene(tmp_path_factory.mktemp("syn") / "room", seed=0, width=48, height=36, num_views=6)


def test_synthetic_scene_files(synthetic_room):
    classes = json.loads((synthetic_room / "classes.json").read_text())
    objects = [c for c in classes if c not in ("floor", "wall", "ceiling")]
    assert len(objects) >= 6
    with Image.open(synthetic_room / "contact_sheet.png") as im:
        assert im.size[0] > 0 and im.size[1] > 0
    meta = json.loads((synthetic_room / "scene_meta.json").read_text())
    assert meta["seed"] == 0 and meta["num_views"] == 6 and meta["classes"] == classes
    scene = load_scene(synthetic_room)
    assert scene.num_views == 6 and (scene.width, scene.height) == (48, 36)
    assert scene.class_names == classes
    assert scene.depths is not None and bool((scene.depths > 0).all())
    assert int(scene.semantics.min()) >= 0 and int(scene.semantics.max()) < len(classes)
    assert len(torch.unique(scene.semantics)) >= 5
    assert_close(scene.bounds, meta["room"]["aabb"])


def test_synthetic_depth_and_semantics_agree_across_views(synthetic_room):
    scene = load_scene(synthetic_room)
    cams, depths, sems = scene.cameras, scene.depths, scene.semantics
    o, d = cams.generate_rays()
    z_dir = torch.einsum("cij,chwj->chwi", cams.viewmats[:, :3, :3], d)[..., 2]
    world = o + d * (depths / z_dir)[..., None]  # [V, H, W, 3]
    h, w = scene.height, scene.width
    agree = total = 0
    for a in range(scene.num_views):
        pts, lab_a = world[a].reshape(-1, 3), sems[a].reshape(-1)
        for b in range(scene.num_views):
            if a == b:
                continue
            uv, z = cams[b].project(pts)
            uv, z = uv[0], z[0]
            u, v = uv[:, 0].floor().long(), uv[:, 1].floor().long()
            inside = (z > 0.05) & (u >= 0) & (u < w) & (v >= 0) & (v < h)
            u, v = u.clamp(0, w - 1), v.clamp(0, h - 1)
            visible = inside & ((depths[b][v, u] - z).abs() < 0.03)
            total += int(visible.sum())
            agree += int((visible & (sems[b][v, u] == lab_a)).sum())
    assert total > 500, total
    assert agree / total >= 0.95, (agree, total)
    # a view reprojected into itself lands on its own pixel centres
    uv, _ = cams[0].project(world[0].reshape(-1, 3))
    vv, uu = torch.meshgrid(torch.arange(h) + 0.5, torch.arange(w) + 0.5, indexing="ij")
    assert_close(uv[0], torch.stack([uu, vv], -1).reshape(-1, 2), atol=1e-2)


def test_synthetic_is_deterministic(tmp_path):
    a = generate_scene(tmp_path / "a", seed=5, width=16, height=12, num_views=2)
    b = generate_scene(tmp_path / "b", seed=5, width=16, height=12, num_views=2)
    for rel in ("images/0000.png", "images/0001.png", "semantics/0001.png", "depth/0001.npy", "transforms.json"):
        assert (a / rel).read_bytes() == (b / rel).read_bytes(), rel
    with pytest.raises(DataError, match="exists"):
        generate_scene(a, seed=5, width=16, height=12, num_views=2)


# ------------------------------------------------------------------------------------------ 6. bad input


def write_json(path, obj):
    path.write_text(json.dumps(obj))


def rewrite_frames(root, fn):
    meta = json.loads((root / "transforms.json").read_text())
    fn(meta)
    write_json(root / "transforms.json", meta)


def test_error_missing_image(tmp_path):
    make_transforms_scene(tmp_path, n=3)
    (tmp_path / "images" / "0001.png").unlink()
    with pytest.raises(DataError, match="0001"):
        load_scene(tmp_path)


def test_error_unreadable_image(tmp_path):
    make_transforms_scene(tmp_path, n=3)
    (tmp_path / "images" / "0002.png").write_bytes(b"not a png at all")
    with pytest.raises(DataError, match="0002.png"):
        load_scene(tmp_path)


def test_error_malformed_json(tmp_path):
    make_transforms_scene(tmp_path, n=2)
    (tmp_path / "transforms.json").write_text('{"frames": [')
    with pytest.raises(DataError, match="transforms.json.*malformed JSON"):
        load_scene(tmp_path)
    write_json(tmp_path / "transforms.json", {"frames": [{"file_path": "images/0000.png"}]})
    with pytest.raises(DataError, match="transforms.json"):
        load_scene(tmp_path)
    make_transforms_scene(tmp_path, n=2)
    (tmp_path / "classes.json").write_text("[\"floor\", ")
    with pytest.raises(DataError, match="classes.json"):
        load_scene(tmp_path)


def test_error_non_rigid_pose(tmp_path):
    make_transforms_scene(tmp_path, n=3)

    def scale(meta):
        m = np.array(meta["frames"][1]["transform_matrix"])
        m[:3, :3] *= 2.0
        meta["frames"][1]["transform_matrix"] = m.tolist()

    rewrite_frames(tmp_path, scale)
    with pytest.raises(DataError, match="transforms.json.*0001.*not a rigid"):
        load_scene(tmp_path)


def test_error_bad_transform_matrix_shape(tmp_path):
    make_transforms_scene(tmp_path, n=2)
    rewrite_frames(tmp_path, lambda meta: meta["frames"][0].update(transform_matrix=[[1, 0], [0, 1]]))
    with pytest.raises(DataError, match="transforms.json.*transform_matrix"):
        load_scene(tmp_path)


def test_error_semantic_id_without_name(tmp_path):
    make_transforms_scene(tmp_path, n=3)
    sem = np.zeros((H, W), np.uint8)
    sem[3, 4] = len(CLASSES)  # one past the last named class
    save_u8(tmp_path / "semantics" / "0002.png", sem)
    with pytest.raises(DataError, match=r"semantics/0002.png: class id 4 has no name"):
        load_scene(tmp_path)
    (tmp_path / "classes.json").unlink()
    with pytest.raises(DataError, match="classes.json"):
        load_scene(tmp_path)


def test_error_image_size_differs(tmp_path):
    make_transforms_scene(tmp_path, n=3)
    save_u8(tmp_path / "images" / "0001.png", np.zeros((H, W + 4, 3)))
    with pytest.raises(DataError, match="0001.png"):  # json says w, h
        load_scene(tmp_path)

    def drop_size(meta):
        del meta["w"], meta["h"]

    rewrite_frames(tmp_path, drop_size)
    with pytest.raises(DataError, match="0001.png.*differs"):  # sizes read from the images
        load_scene(tmp_path)


def test_error_depth_or_semantic_map_size_differs(tmp_path):
    make_transforms_scene(tmp_path, n=2)
    np.save(tmp_path / "depth" / "0000.npy", np.ones((H + 1, W), np.float32))
    with pytest.raises(DataError, match="0000.npy"):
        load_scene(tmp_path)
    make_transforms_scene(tmp_path, n=2)
    save_u8(tmp_path / "semantics" / "0001.png", np.zeros((H, W - 2)))
    with pytest.raises(DataError, match="semantics/0001.png"):
        load_scene(tmp_path)
    make_transforms_scene(tmp_path, n=2)
    (tmp_path / "depth" / "0000.npy").write_bytes(b"\x93NUMPY garbage")
    with pytest.raises(DataError, match="0000.npy"):
        load_scene(tmp_path)


@pytest.mark.parametrize("part", ["cameras.bin", "images.bin", "points3D.bin"])
@pytest.mark.parametrize("cut", [5, 40])
def test_error_truncated_colmap_binary(tmp_path, part, cut):
    model, truth = make_colmap_model(3)
    write_model(model, tmp_path / "sparse" / "0", binary=True)
    for name in truth:
        save_u8(tmp_path / "images" / name, np.zeros((H, W, 3)))
    f = tmp_path / "sparse" / "0" / part
    f.write_bytes(f.read_bytes()[:-cut])
    with pytest.raises(DataError, match=part):
        load_scene(tmp_path)


def test_error_colmap_text_and_missing_image(tmp_path):
    model, truth = make_colmap_model(2)
    write_model(model, tmp_path / "sparse" / "0", binary=False)
    save_u8(tmp_path / "images" / "view_0.png", np.zeros((H, W, 3)))
    with pytest.raises(DataError, match="view_1.png"):
        load_scene(tmp_path)
    save_u8(tmp_path / "images" / "view_1.png", np.zeros((H, W, 3)))
    load_scene(tmp_path)
    cams = tmp_path / "sparse" / "0" / "cameras.txt"
    cams.write_text(cams.read_text().replace("PINHOLE", "PINHOLE 1.0", 1))
    with pytest.raises(DataError, match="cameras.txt"):
        load_scene(tmp_path)


def test_error_replica(tmp_path):
    make_replica(tmp_path, n=3)
    traj = tmp_path / "traj_w_c.txt"
    poses = np.loadtxt(traj)
    np.savetxt(traj, poses[:, :12])
    with pytest.raises(DataError, match="traj_w_c.txt"):
        load_scene(tmp_path)
    np.savetxt(traj, poses[:2])
    with pytest.raises(DataError, match="traj_w_c.txt"):  # rgb_2 has no pose
        load_scene(tmp_path)
    bad = poses.copy()
    bad[1, [0, 5, 10]] *= 2.0
    np.savetxt(traj, bad)
    with pytest.raises(DataError, match="traj_w_c.txt.*pose 1"):
        load_scene(tmp_path)


def test_error_replica_files(tmp_path):
    make_replica(tmp_path, n=2)
    (tmp_path / "intrinsics.json").write_text(json.dumps({"fl_x": 9.0}))
    with pytest.raises(DataError, match="intrinsics.json"):
        load_scene(tmp_path)
    (tmp_path / "intrinsics.json").unlink()
    (tmp_path / "depth" / "depth_1.png").write_bytes(b"garbage")
    with pytest.raises(DataError, match="depth_1.png"):
        load_scene(tmp_path)
    (tmp_path / "semantic_class" / "semantic_class_0.png").write_bytes(b"garbage")
    with pytest.raises(DataError, match="semantic_class_0.png"):
        load_scene(tmp_path)
    (tmp_path / "rgb" / "rgb_0.png").write_bytes(b"garbage")
    with pytest.raises(DataError, match="rgb_0.png"):
        load_scene(tmp_path)


def test_error_scene_path(tmp_path):
    missing = tmp_path / "no_such_scene"
    with pytest.raises(DataError, match="no_such_scene"):
        load_scene(missing)
    (tmp_path / "empty_dir").mkdir()
    with pytest.raises(DataError, match="empty_dir"):
        load_scene(tmp_path / "empty_dir")
    with pytest.raises(DataError, match="no_such_scene"):
        load_scene(missing, format="transforms")
    with pytest.raises(DataError, match="unknown scene format"):
        load_scene(tmp_path, format="nope")

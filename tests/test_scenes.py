"""Scenes people bring: lens undistortion (COLMAP and nerfstudio), images_N folders, the CPU resolution budget,
missing images, RGBA objects and the region cameras look at, masks and initial points, the label-free teacher
and the preset a scene's format gets. Every scene is made here, in tmp_path, with known answers."""

import dataclasses
import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

from dff_gs.data import load_scene
from dff_gs.data.colmap import ColmapCamera, ColmapImage, ColmapModel, rotmat_to_qvec, write_model
from dff_gs.core.errors import DataError
from dff_gs.core.utils import as_rgb
from tests.test_data import FLIP, look_at, ring_poses, save_u8

cv2 = pytest.importorskip("cv2")

W, H = 120, 90
FX, FY, CX, CY = 100.0, 104.0, 61.0, 44.0  # ours: pixel centres at +0.5


def pattern(xn: np.ndarray, yn: np.ndarray) -> np.ndarray:
    """A smooth colour pattern over normalised camera coordinates (about 0.2 rad a pixel at this focal length,
    so a half-pixel error in the conventions shows)."""
    return np.stack([0.5 + 0.4 * np.sin(20 * xn + 3 * yn), 0.5 + 0.4 * np.cos(17 * yn - 5 * xn),
                     0.5 + 0.3 * np.sin(11 * (xn + yn))], -1)


def distorted_image(kind: str, coeffs, fx: float = FX, fy: float = FY) -> np.ndarray:
    """What a camera with ``coeffs`` records of :func:`pattern`: each pixel's ray found by undistorting its
    position with OpenCV (OpenCV pixel centres are integers: ours minus 0.5)."""
    v, u = np.mgrid[0:H, 0:W].astype(np.float64)
    pts = np.stack([u, v], -1).reshape(-1, 1, 2)
    Kcv = np.array([[fx, 0, CX - 0.5], [0, fy, CY - 0.5], [0, 0, 1]])
    D = np.asarray(coeffs, np.float64)
    und = cv2.fisheye.undistortPoints(pts, Kcv, D) if kind == "fisheye" else cv2.undistortPoints(pts, Kcv, D)
    xn, yn = und[:, 0, 0].reshape(H, W), und[:, 0, 1].reshape(H, W)
    return (np.clip(pattern(xn, yn), 0, 1) * 255 + 0.5).astype(np.uint8)


def check_undistorted(scene, view: int = 0, tol: float = 0.012) -> None:
    """The loaded view equals the pattern seen by the pinhole camera the loader reports."""
    K = scene.cameras.Ks[view].double().numpy()
    h, w = scene.height, scene.width
    v, u = np.mgrid[0:h, 0:w].astype(np.float64)
    xn, yn = (u + 0.5 - K[0, 2]) / K[0, 0], (v + 0.5 - K[1, 2]) / K[1, 1]
    err = np.abs(as_rgb(scene.images[view]).numpy() - pattern(xn, yn))[2:-2, 2:-2]
    assert err.mean() < tol, err.mean()


MODELS = {  # COLMAP model -> (params after fx fy cx cy or f cx cy, OpenCV kind, OpenCV coefficients)
    "OPENCV": ([FX, FY, CX, CY, -0.12, 0.03, 0.002, -0.001], "perspective", [-0.12, 0.03, 0.002, -0.001]),
    "SIMPLE_RADIAL": ([FX, CX, CY, 0.08], "perspective", [0.08, 0, 0, 0]),
    "OPENCV_FISHEYE": ([FX, FY, CX, CY, 0.05, -0.01, 0.0, 0.0], "fisheye", [0.05, -0.01, 0.0, 0.0]),
}


def write_colmap(root, cams: dict, cam_of_image, n=4, images_dir="images", image_fn=None, skip=()):
    images = {}
    for k, c2w in enumerate(ring_poses(n)):
        w2c = np.linalg.inv(c2w)
        images[k + 1] = ColmapImage(k + 1, list(rotmat_to_qvec(w2c[:3, :3])), list(w2c[:3, 3]), cam_of_image(k),
                                    f"v{k}.png")
        if k not in skip:
            save_u8(root / images_dir / f"v{k}.png", image_fn(k) if image_fn else np.zeros((H, W, 3)))
    pts = np.random.default_rng(0).normal(size=(30, 3))
    write_model(ColmapModel(cams, images, pts, np.full((30, 3), 200, np.uint8), np.arange(1, 31)),
                root / "sparse" / "0", binary=True)


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("DFF_GS_CACHE", str(tmp_path / "cache"))


@pytest.mark.parametrize("model", sorted(MODELS))
def test_colmap_distortion_is_removed(tmp_path, model, capsys):
    params, kind, coeffs = MODELS[model]
    fy = FX if model == "SIMPLE_RADIAL" else FY  # one focal length in SIMPLE_RADIAL
    img = distorted_image(kind, coeffs, FX, fy)
    write_colmap(tmp_path, {1: ColmapCamera(1, model, W, H, params)}, lambda k: 1, image_fn=lambda k: img)
    scene = load_scene(tmp_path, test_every=0)
    out = capsys.readouterr().out
    assert out.count("images undistorted") == 1 and "4 of 4 images" in out  # one line per scene
    assert scene.width <= W and scene.height <= H and scene.width > W * 0.7 and scene.height > H * 0.7
    check_undistorted(scene)
    # cached: the second load reads the undistorted files, same pixels
    again = load_scene(tmp_path, test_every=0)
    assert torch.equal(again.images, scene.images) and torch.equal(again.cameras.Ks, scene.cameras.Ks)


def test_nerfstudio_distortion_mask_and_points(tmp_path, capsys):
    coeffs = [-0.12, 0.03, 0.002, -0.001]
    img = distorted_image("perspective", coeffs)
    frames = []
    for k, c2w in enumerate(ring_poses(3)):
        save_u8(tmp_path / f"images/{k}.png", img)
        mask = np.full((H, W), 255, np.uint8)
        mask[:, : W // 2] = 0
        save_u8(tmp_path / f"masks/{k}.png", mask)
        frames.append({"file_path": f"images/{k}.png", "mask_path": f"masks/{k}.png",
                       "transform_matrix": (c2w @ FLIP).tolist()})
    from plyfile import PlyData, PlyElement

    verts = np.array([(0.1, 0.2, 0.3, 255, 0, 0), (1.0, -1.0, 0.5, 0, 255, 0)],
                     dtype=[("x", "f4"), ("y", "f4"), ("z", "f4"), ("red", "u1"), ("green", "u1"), ("blue", "u1")])
    PlyData([PlyElement.describe(verts, "vertex")]).write(str(tmp_path / "sparse_pc.ply"))
    meta = {"camera_model": "OPENCV", "fl_x": FX, "fl_y": FY, "cx": CX, "cy": CY, "w": W, "h": H,
            "k1": coeffs[0], "k2": coeffs[1], "p1": coeffs[2], "p2": coeffs[3], "ply_file_path": "sparse_pc.ply",
            "frames": frames}
    (tmp_path / "transforms.json").write_text(json.dumps(meta))
    scene = load_scene(tmp_path, test_every=0)
    assert capsys.readouterr().out.count("images undistorted") == 1
    check_undistorted(scene)
    assert scene.masks is not None and scene.masks.shape == (3, scene.height, scene.width)
    assert not scene.masks[0, :, :5].any() and scene.masks[0, :, -5:].all()  # undistorted with the images
    assert torch.allclose(scene.points, torch.tensor([[0.1, 0.2, 0.3], [1.0, -1.0, 0.5]]))
    assert torch.allclose(scene.point_colors[0], torch.tensor([1.0, 0.0, 0.0]))


def test_one_camera_per_image_gives_one_size(tmp_path, capsys):
    """A phone capture: a SIMPLE_RADIAL camera per image, each with its own k: one image size, one line."""
    cams = {k + 1: ColmapCamera(k + 1, "SIMPLE_RADIAL", W, H, [FX, CX, CY, 0.03 + 0.02 * k]) for k in range(4)}
    write_colmap(tmp_path, cams, lambda k: k + 1)
    scene = load_scene(tmp_path, test_every=0)
    assert capsys.readouterr().out.count("images undistorted") == 1
    assert scene.images.shape[1:3] == (scene.height, scene.width)
    assert len({tuple(K.flatten().tolist()) for K in scene.cameras.Ks}) == 4  # each its own pinhole K


def test_unsupported_camera_model_is_refused_by_name(tmp_path):
    write_colmap(tmp_path, {1: ColmapCamera(1, "FOV", W, H, [FX, FY, CX, CY, 0.1])}, lambda k: 1)
    with pytest.raises(DataError, match="FOV model"):
        load_scene(tmp_path)


def test_images_n_folder_budget_and_missing_images(tmp_path, capsys):
    cams = {1: ColmapCamera(1, "PINHOLE", W, H, [FX, FY, CX, CY])}
    write_colmap(tmp_path, cams, lambda k: 1, image_fn=lambda k: np.full((H, W, 3), 10))
    for k in range(4):  # the 3DGS convention's pre-downscaled folder, told apart by its colour
        save_u8(tmp_path / f"images_2/v{k}.png", np.full((H // 2, W // 2, 3), 200))
    half = load_scene(tmp_path, downscale=2, test_every=0)
    assert half.images.shape[1:3] == (H // 2, W // 2) and half.downscale == 2
    assert bool((half.images == 200).all())
    assert torch.allclose(half.cameras.Ks[0], torch.tensor([[FX / 2, 0, CX / 2], [0, FY / 2, CY / 2], [0, 0, 1]]))
    capsys.readouterr()
    auto = load_scene(tmp_path, downscale=0, max_side=60, test_every=0)  # the CPU budget picks images_2
    out = capsys.readouterr().out
    assert auto.width == W // 2 and out.count("downscaled 2x") == 1 and "data.max_side=60" in out
    third = load_scene(tmp_path, downscale=0, max_side=40, test_every=0)  # no images_3: resized from images/
    assert (third.width, third.height, third.downscale) == (40, 30, 3)
    assert bool((third.images == 10).all())
    assert load_scene(tmp_path, downscale=0, max_side=0, test_every=0).width == W  # no budget (a GPU)
    (tmp_path / "images" / "v2.png").unlink()
    with pytest.raises(DataError, match=r"1 of the 4 images .* v2\.png.*skip_missing"):
        load_scene(tmp_path)
    rest = load_scene(tmp_path, skip_missing=True, test_every=0)
    assert rest.image_names == ["v0", "v1", "v3"] and "1 of the 4" in capsys.readouterr().out


def sphere_views(tmp_path, n=24, radius=0.6, centre=(0.3, -0.2, 0.5)):
    """A Blender-style object scene: RGBA renders of a red sphere (alpha = its silhouette) from a ring of cameras
    far outside it, split into transforms_train.json / transforms_test.json."""
    frames = {"train": [], "test": []}
    fl = 0.5 * W / math.tan(0.35)
    c = np.asarray(centre)
    for k, c2w in enumerate(ring_poses(n, radius=4.0, height=1.5)):
        c2w = look_at(c2w[:3, 3], c)
        v, u = np.mgrid[0:H, 0:W] + 0.5
        d = np.stack([(u - W / 2) / fl, (v - H / 2) / fl, np.ones_like(u)], -1) @ c2w[:3, :3].T
        d /= np.linalg.norm(d, axis=-1, keepdims=True)
        oc = c - c2w[:3, 3]
        dist = np.linalg.norm(np.cross(d, oc), axis=-1)  # ray's distance to the centre
        alpha = (dist < radius).astype(np.uint8) * 255
        rgba = np.dstack([np.full((H, W), 220), np.full((H, W), 30), np.full((H, W), 30), alpha]).astype(np.uint8)
        part = "test" if k % 6 == 0 else "train"
        Image.fromarray(rgba, "RGBA").save(tmp_path / f"{part}_{k}.png")
        frames[part].append({"file_path": f"./{part}_{k}", "transform_matrix": (c2w @ FLIP).tolist()})
    for part, fr in frames.items():
        (tmp_path / f"transforms_{part}.json").write_text(json.dumps({"camera_angle_x": 0.7, "frames": fr}))
    return np.asarray(centre), radius


def test_rgba_object_background_hull_init_and_scale(tmp_path):
    from dff_gs.data.region import content_region
    from dff_gs.train.config import Config
    from dff_gs.teachers.prepare import TeacherOutputs
    from dff_gs.train.gaussians import init_model
    from dff_gs.train.schedule import init_method
    from dff_gs.train.trainer import scene_scale_of

    centre, radius = sphere_views(tmp_path)
    white = load_scene(tmp_path)
    black = load_scene(tmp_path, background=(0, 0, 0))
    out = white.alphas < 0.5
    assert white.alphas is not None and out.any() and (~out).any()
    assert bool((white.images[out] == 255).all()) and bool((black.images[out] == 0).all())
    assert torch.equal(white.images[~out], black.images[~out])
    assert white.background == (1.0, 1.0, 1.0) and black.background == (0.0, 0.0, 0.0)
    # the region the training cameras look at is the sphere's visual hull, not the cameras' 8 m box
    train = white.split("train")
    region = content_region(train.cameras, train.alphas)
    assert region.hull
    lo, hi = region.bounds  # holds the sphere; a ring of cameras above it leaves the hull longer below it
    c = torch.tensor(centre, dtype=torch.float32)
    assert (lo <= c - radius + 0.05).all() and (hi >= c + radius - 0.05).all()
    assert (lo >= c - radius - 0.3).all() and (hi <= c + radius + 0.3).all()
    assert torch.allclose(white.bounds, region.bounds)
    cfg = Config()
    cfg.model.init_points, cfg.model.feature_dim = 2000, 0
    assert init_method(cfg, white) == "region"
    model = init_model(cfg, train, TeacherOutputs())
    d = (model.params["means"] - torch.tensor(centre, dtype=torch.float32)).norm(dim=-1)
    assert d.quantile(0.9) < radius * 1.1 and d.max() < radius * 1.6  # inside the hull
    assert model.get_scales().max() < 0.2 * radius  # sizes from the local density
    colours = model.params["sh0"][:, 0] * 0.28209479177387814 + 0.5
    assert (colours[:, 0] > colours[:, 1] + 0.3).float().mean() > 0.9  # red, from the views
    assert scene_scale_of(white) < 2 * radius * 1.3  # from the object, not the camera ring (radius 4)
    # without silhouettes (opaque images) the cameras alone still bound it far tighter than their ring
    assert content_region(white.cameras, None).bounds.sub(torch.tensor(centre)).abs().max() < 3.0


def test_beyond_points_lie_on_pixel_rays_past_the_region(tmp_path):
    """Region init without silhouettes also starts Gaussians past the content (floor to the horizon, sky): each on
    the ray of the pixel it takes its colour from, outside the region's box, no farther than FAR_REACH allows."""
    from dff_gs.data.region import FAR_REACH, beyond_points, content_region
    from dff_gs.teachers.prepare import TeacherOutputs
    from dff_gs.train.config import Config
    from dff_gs.train.gaussians import init_model

    sphere_views(tmp_path)
    train = load_scene(tmp_path).split("train")
    cams = train.cameras
    region = content_region(cams, None)
    assert region is not None and not region.hull
    V, H, W = len(cams), cams.height, cams.width
    # every pixel's colour names it: (view, row, column)
    grid = torch.stack(torch.meshgrid(torch.arange(V), torch.arange(H), torch.arange(W), indexing="ij"), -1)
    images = (grid.float() + 0.5) / torch.tensor([V, H, W])
    pts, cols = beyond_points(cams, images, region.bounds, 500, seed=3)
    assert pts.shape == (500, 3) and cols.shape == (500, 3)
    v, y, x = (cols * torch.tensor([V, H, W]) - 0.5).round().long().unbind(-1)
    uv, z = cams.project(pts)  # [V, P, 2]
    idx = torch.arange(500)
    assert (z[v, idx] > 0).all()
    assert torch.allclose(uv[v, idx], torch.stack([x, y], -1).float() + 0.5, atol=1e-2)
    lo, hi = region.bounds
    inside = ((pts > lo + 1e-4) & (pts < hi - 1e-4)).all(-1)
    assert not inside.any()
    centre, half = region.bounds.mean(0), 0.5 * (hi - lo).norm()
    reach = (cams.centers - centre).norm(dim=-1).max() + FAR_REACH * half
    assert (pts - centre).norm(dim=-1).max() <= reach * 1.01
    assert (pts - centre).norm(dim=-1).median() < 0.5 * reach  # uniform in inverse distance: mostly near
    # through init: the share asked for past the box, the rest inside it; none with silhouettes (the test above)
    cfg = Config()
    cfg.model.init_points, cfg.model.feature_dim, cfg.model.init = 1000, 0, "region"
    opaque = dataclasses.replace(train, alphas=None, region=region)
    for share, beyond in ((0.0, 0), (0.3, 300)):
        cfg.model.init_beyond = share
        means = init_model(cfg, opaque, TeacherOutputs()).params["means"]
        assert len(means) == 1000
        outside = ~((means >= lo - 1e-4) & (means <= hi + 1e-4)).all(-1)
        assert int(outside.sum()) == beyond


def test_beyond_points_of_sparse_points_go_where_the_points_and_the_backdrop_leave_out(tmp_path):
    """A points scene starts Gaussians past the content only on the pixels of cells no sparse point falls in and
    whose colour is not the plain render background: none behind what the points already explain (floaters seen
    from the views across it), none on a plain backdrop the background draws; a scene the points and its backdrop
    explain but for a few per cent (the points' own gaps) gets none at all."""
    from dff_gs.data.region import beyond_points, left_out, points_cover
    from dff_gs.train.gaussians import points_beyond_count

    sphere_views(tmp_path)
    train = load_scene(tmp_path).split("train")
    cams = train.cameras
    V, H, W = len(cams), cams.height, cams.width
    pts = train.bounds.mean(0) + 0.2 * torch.randn(200, 3, generator=torch.Generator().manual_seed(0))
    covered, cell = points_cover(cams, pts)
    uv, z = cams.project(pts)
    v, i = 2, 0
    assert covered.shape == (V, -(-H // cell), -(-W // cell)) and cell >= 1
    assert covered[v, int(uv[v, i, 1]) // cell, int(uv[v, i, 0]) // cell]
    assert 0 < covered.float().mean() < 1
    # every pixel's colour names it; the left half of each view is the plain white backdrop
    grid = torch.stack(torch.meshgrid(torch.arange(V), torch.arange(H), torch.arange(W), indexing="ij"), -1)
    images = 0.9 * (grid.float() + 0.5) / torch.tensor([V, H, W])
    images[:, :, : W // 2] = 1.0
    keep = left_out(images, (covered, cell), (1.0, 1.0, 1.0))
    _, cols = beyond_points(cams, images, train.bounds, 300, seed=1, keep=keep)
    v, y, x = (cols / 0.9 * torch.tensor([V, H, W]) - 0.5).round().long().unbind(-1)
    assert (x >= W // 2).all() and not covered[v, y // cell, x // cell].any()
    # through the scene: init_beyond of the points where something is left out, none on a plain backdrop
    scene = dataclasses.replace(train, points=pts, point_colors=torch.full((200, 3), 0.5), images=images)
    assert points_beyond_count(scene, 0.3)[0] == 60
    plain = dataclasses.replace(scene, images=torch.ones_like(images))
    assert points_beyond_count(plain, 0.3)[0] == 0 and points_beyond_count(scene, 0.0)[0] == 0
    edges = torch.ones_like(images)  # a little left out (3% of the columns): the points' own gaps, none either
    edges[:, :, -max(1, W * 3 // 100):] = 0.2
    assert points_beyond_count(dataclasses.replace(scene, images=edges), 0.3)[0] == 0


def test_label_free_teacher_and_format_presets(tmp_path, capsys):
    from dff_gs.cli.train import build_parser, resolve_config
    from dff_gs.teachers.settings import TeacherSettings
    from dff_gs.teachers.prepare import LABEL_FREE_TEACHER, prepare_teacher

    (tmp_path / "obj").mkdir()
    sphere_views(tmp_path / "obj", n=6)
    scene = load_scene(tmp_path / "obj")
    settings = TeacherSettings(cache_dir=str(tmp_path / "teachers"))
    out = prepare_teacher(settings, scene, torch.device("cpu"), progress=False)
    assert settings.name == LABEL_FREE_TEACHER and out.dim > 0 and out.train_maps.shape[0] == len(scene.train_ids)
    assert capsys.readouterr().out.count(f"teacher.name={LABEL_FREE_TEACHER}") == 1

    def preset(*argv):
        cfg = resolve_config(build_parser().parse_args(list(argv)))
        return cfg, capsys.readouterr().out

    cfg, said = preset("--data", str(tmp_path / "obj"))
    assert "configs/blender.yaml" in said and cfg.model.init == "auto"
    col = tmp_path / "col"
    write_colmap(col, {1: ColmapCamera(1, "PINHOLE", W, H, [FX, FY, CX, CY])}, lambda k: 1)
    assert "configs/colmap.yaml" in preset("--data", str(col))[1]
    assert "preset" not in preset()[1]  # the embedded default: the defaults, nothing to say
    cfg, said = preset("--data", str(col), "--config", "configs/default.yaml")  # an explicit preset wins, silently
    assert said == "" and cfg.strategy.max_gaussians == 35000  # colmap.yaml's 60000 not applied


def test_feature_loss_pooling():
    from dff_gs.train.losses import feature_grid, feature_loss, pool_features

    assert feature_grid(400, 300, 128) == (128, 96) and feature_grid(96, 128, 128) == (96, 128)
    assert feature_grid(400, 300, 0) == (400, 300)
    g = torch.Generator().manual_seed(0)
    pred, target = torch.randn(1, 8, 6, 5, generator=g), torch.randn(1, 8, 6, 5, generator=g)
    target[0, :2] = 0  # unlabeled pixels do not count
    valid = target.abs().sum(-1) > 0
    assert torch.allclose(feature_loss(pred, target), (pred - target).abs()[valid].mean())
    f = torch.randn(1, 8, 6, 4, generator=g)
    dec = torch.nn.Linear(4, 5)
    pooled = pool_features(f, 4, 3)
    assert torch.allclose(dec(pooled), pool_features(dec(f), 4, 3), atol=1e-6)  # linear: pool, then decode
    assert torch.allclose(pooled[0, 0, 0], f[0, :2, :2].mean((0, 1)))


def test_labels_can_be_withheld(capsys):
    """data.labels=false trains a scene with label maps as one without: no semantics reach the trainer."""
    from dff_gs.train.config import Config
    from dff_gs.engine.common import load_run_scene

    cfg = Config()
    _, scene, train, _ = load_run_scene(cfg)
    assert scene.semantics is not None and train.semantics is not None
    capsys.readouterr()
    cfg.data.labels = False
    _, scene, train, test = load_run_scene(cfg)
    assert scene.semantics is None and train.semantics is None and test.semantics is None
    assert scene.class_names is None and "withheld" in capsys.readouterr().out


def test_depth_maps_background_pixels_start_gaussians_past_the_content(tiny_scene):
    """A scene with depth maps whose views show the sky (no depth there) starts Gaussians on those pixels' rays past
    the content, as many as the share of such pixels (at most ``init_beyond``); depth on every pixel: the same
    model as without (a room trains as it did). A scene with sparse points starts ``init_beyond`` as many again
    past the points' box."""
    from dff_gs.data.region import background_share
    from dff_gs.teachers.prepare import TeacherOutputs
    from dff_gs.train.config import Config
    from dff_gs.train.gaussians import init_model

    train = load_scene(tiny_scene).split("train")
    cfg = Config()
    cfg.model.init_points, cfg.model.feature_dim = 1000, 0
    assert background_share(train.depths, train.train_ids) == 0.0
    full = init_model(cfg, train, TeacherOutputs()).params
    cfg.model.init_beyond = 0.0
    assert all(torch.equal(full[k], v) for k, v in init_model(cfg, train, TeacherOutputs()).params.items())

    depths = train.depths.clone()
    depths[:, :12] = 0.0  # the top third of every view: sky
    sky = dataclasses.replace(train, depths=depths)
    lo, hi = sky.bounds
    for share, beyond in ((0.0, 0), (0.2, 200), (0.9, 333)):  # at most the sky's third of the pixels
        cfg.model.init_beyond = share
        means = init_model(cfg, sky, TeacherOutputs()).params["means"]
        assert len(means) == 1000
        outside = ~((means >= lo - 1e-4) & (means <= hi + 1e-4)).all(-1)
        assert int(outside.sum()) == beyond
    uv, z = sky.cameras.project(means[outside])  # [V, P, 2]: each on the ray of a sky pixel of some view
    on_sky = (z > 0) & (uv[..., 0] >= 0) & (uv[..., 0] < 48) & (uv[..., 1] >= 0) & (uv[..., 1] < 12)
    assert on_sky.any(0).all()

    # sparse points: init_beyond as many again past the points' box (what SfM leaves out: walls, the sky)
    g = torch.Generator().manual_seed(0)
    points = lo + (hi - lo) * torch.rand(400, 3, generator=g)
    sparse = dataclasses.replace(train, depths=None, points=points, point_colors=torch.rand(400, 3, generator=g))
    for share, beyond in ((0.0, 0), (0.3, 120)):
        cfg.model.init_beyond = share
        means = init_model(cfg, sparse, TeacherOutputs()).params["means"]
        assert len(means) == 400 + beyond and torch.equal(means[:400], points)
        assert not ((means[400:] >= lo) & (means[400:] <= hi)).all(-1).any()


def test_no_depth_is_one_rule_zero_nan_or_inf(tiny_scene):
    """A pixel without depth is the same to every reader of depth maps whether it holds 0 (what the loaders write),
    NaN or inf (a scene built in code): the init starts the same Gaussians, none at infinity, and the depth metrics
    skip it."""
    from dff_gs.core.utils import has_depth
    from dff_gs.eval.metrics import depth_metrics
    from dff_gs.teachers.prepare import TeacherOutputs
    from dff_gs.train.config import Config
    from dff_gs.train.gaussians import init_model

    assert has_depth(torch.tensor([0.0, -1.0, float("nan"), float("inf"), 2.5])).tolist() == [
        False, False, False, False, True]
    train = load_scene(tiny_scene).split("train")
    cfg = Config()
    cfg.model.init_points, cfg.model.feature_dim = 1000, 0
    started = []
    for none in (0.0, float("nan"), float("inf")):
        depths = train.depths.clone()
        depths[:, :12] = none  # the top third of every view: sky
        started.append(init_model(cfg, dataclasses.replace(train, depths=depths), TeacherOutputs()).params["means"])
    assert torch.isfinite(started[0]).all()
    assert all(torch.equal(started[0], m) for m in started[1:])
    gt = train.depths[:1].clone()
    gt[:, :12] = float("inf")
    assert depth_metrics(train.depths[:1], gt) == depth_metrics(train.depths[:1, 12:], train.depths[:1, 12:])

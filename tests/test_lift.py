"""Feature lifting: the torch path against a brute-force per-pixel reference and the renderer's gradient,
top-k, PCA linearity, the ``--init-ply --lift`` run end to end, and (GPU) gsplat / cuda_ext against torch."""

import copy
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import cuda_ext
from cuda_ext import build
from dff_gs.render import reference
from dff_gs.core.cameras import Cameras
from dff_gs.core.errors import ConfigError
from dff_gs.core.gaussians import GaussianModel
from dff_gs.lift import lift_features, lift_model
from dff_gs.lift.tiles import tile_lists
from dff_gs.render import rasterize
from dff_gs.render.projection import project_gaussians

NEEDS_CUDA = pytest.mark.skipif(not torch.cuda.is_available(),
                                reason="needs a CUDA device: the gsplat and cuda_ext lifting backends are CUDA-only")


# ------------------------------------------------------------------------------------------------ fixtures
def tiny_model(n: int = 80, seed: int = 0) -> GaussianModel:
    """Gaussians 2..4 in front of the cameras, many nearly opaque (pixels stop at T <= 1e-4)."""
    g = torch.Generator().manual_seed(seed)
    means = torch.cat([(torch.rand(n, 2, generator=g) * 2 - 1) * 1.2, 2 + 2 * torch.rand(n, 1, generator=g)], 1)
    means[: n // 10, 0] += 6.0  # a few outside every view: never seen
    params = {
        "means": means,
        "quats": torch.randn(n, 4, generator=g),
        "scales": torch.log(0.05 + 0.25 * torch.rand(n, 3, generator=g)),
        "opacities": 5.0 + 2.0 * torch.randn(n, generator=g),
        "sh0": torch.zeros(n, 1, 3),
        "shN": torch.zeros(n, 0, 3),
        "features": torch.zeros(n, 0),
    }
    return GaussianModel(params, 0)


def tiny_cameras(views: int = 3, width: int = 20, height: int = 14) -> Cameras:
    mats = []
    for v in range(views):
        a = 0.12 * (v - 1)
        m = torch.eye(4)
        m[:3, :3] = torch.tensor([[math.cos(a), 0.0, math.sin(a)], [0.0, 1.0, 0.0], [-math.sin(a), 0.0, math.cos(a)]])
        m[:3, 3] = torch.tensor([0.1 * v, -0.05 * v, 0.0])
        mats.append(m)
    K = torch.tensor([[18.0, 0.0, width / 2], [0.0, 18.0, height / 2], [0.0, 0.0, 1.0]])
    return Cameras(torch.stack(mats), K, width, height)


def tiny_maps(views: int = 3, h: int = 7, w: int = 10, C: int = 5, seed: int = 1) -> torch.Tensor:
    """Coarser than the images, with some all-zero (unlabeled) texels."""
    g = torch.Generator().manual_seed(seed)
    maps = torch.randn(views, h, w, C, generator=g)
    maps[torch.rand(views, h, w, generator=g) < 0.15] = 0.0
    return maps


def naive_lift(model, cams, maps, top_k: int = 0, resolution: str = "image", eps: float = 1e-8):
    """Brute force in float64: every pixel composites every projected Gaussian in depth order (no tiles)."""
    V, h, w, C = maps.shape
    if resolution == "map":
        cams = cams.resized(w, h)
    H, W = cams.height, cams.width
    with torch.no_grad():
        means2d, conics, depths, radii = project_gaussians(model.get_means(), model.get_quats(), model.get_scales(),
                                                           cams.viewmats, cams.Ks, W, H)
        opac = model.get_opacities().double().tolist()
    feats = F.interpolate(maps.permute(0, 3, 1, 2).double(), size=(H, W), mode="bilinear", align_corners=False)
    feats = feats.permute(0, 2, 3, 1).numpy()
    valid = (maps.abs().sum(-1) > 0).double()[:, None]
    pw = (F.interpolate(valid, size=(H, W), mode="bilinear", align_corners=False)[:, 0] > 0).double().numpy()
    N = model.num_gaussians
    fsum, wsum = np.zeros((N, C)), np.zeros(N)
    stats = {"stopped": 0, "contributions": 0, "skipped_pixels": 0}
    for v in range(V):
        vis = (radii[v] > 0).all(-1).nonzero()[:, 0]
        order = vis[torch.argsort(depths[v, vis])].tolist()
        m, con = means2d[v].double().tolist(), conics[v].double().tolist()
        for y in range(H):
            for x in range(W):
                if pw[v, y, x] == 0:
                    stats["skipped_pixels"] += 1
                    continue
                T, contrib = 1.0, []
                for gi in order:
                    dx, dy = m[gi][0] - (x + 0.5), m[gi][1] - (y + 0.5)
                    a, b, c = con[gi]
                    sigma = 0.5 * (a * dx * dx + c * dy * dy) + b * dx * dy
                    alpha = min(0.999, opac[gi] * math.exp(-sigma))
                    if sigma < 0 or alpha < 1 / 255:
                        continue
                    if T * (1 - alpha) <= 1e-4:
                        stats["stopped"] += 1
                        break
                    contrib.append((alpha * T, gi))
                    T *= 1 - alpha
                if top_k:
                    contrib = sorted(contrib, key=lambda c: -c[0])[:top_k]  # stable: ties keep depth order
                for wv, gi in contrib:
                    fsum[gi] += wv * pw[v, y, x] * feats[v, y, x]
                    wsum[gi] += wv * pw[v, y, x]
                stats["contributions"] += len(contrib)
    out = np.where(wsum[:, None] > eps, fsum / np.maximum(wsum, eps)[:, None], 0.0)
    return torch.from_numpy(out).float(), torch.from_numpy(wsum).float(), stats


@pytest.fixture(scope="module")
def scene():
    return tiny_model(), tiny_cameras(), tiny_maps()


# ------------------------------------------------------------------------------------------------ CPU
@pytest.mark.parametrize("resolution", ["image", "map"])
def test_torch_lift_matches_brute_force(scene, resolution):
    model, cams, maps = scene
    feats, wsum = lift_features(model, cams, maps, backend="torch", resolution=resolution)
    ref_f, ref_w, stats = naive_lift(model, cams, maps, resolution=resolution)
    # the scene exercises what matters: occlusion stops, unlabeled pixels, many contributors, unseen Gaussians
    assert stats["stopped"] > 10 and stats["skipped_pixels"] > 0 and stats["contributions"] > 200
    assert 10 < int((ref_w > 0).sum()) < model.num_gaussians
    torch.testing.assert_close(wsum, ref_w, rtol=1e-3, atol=1e-5)
    torch.testing.assert_close(feats, ref_f, rtol=1e-3, atol=1e-4)


def test_compositing_weights_lift_like_lift_features(scene):
    """The sparse weights kept for many queries lift a map as lift_features does (full-resolution maps, every
    pixel counted), and dropping weights below min_weight only drops small terms."""
    from dff_gs.lift import compositing_weights

    model, cams, _ = scene
    maps = torch.rand(len(cams), cams.height, cams.width, 3, generator=torch.Generator().manual_seed(3))
    valid = torch.ones(maps.shape[:3], dtype=torch.bool)
    ref, ref_w = lift_features(model, cams, maps, backend="torch", valid=valid)
    w = compositing_weights(model, cams, min_weight=0.0)
    torch.testing.assert_close(w.weight_sum, ref_w, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(w.lift(maps), ref, rtol=1e-4, atol=1e-5)
    pruned = compositing_weights(model, cams, min_weight=0.05)
    assert 0 < len(pruned.weight) < len(w.weight) and (pruned.weight >= 0.05).all()
    assert (pruned.weight_sum <= ref_w + 1e-6).all()


@pytest.mark.parametrize("k", [1, 2])
def test_top_k_matches_brute_force(scene, k):
    model, cams, maps = scene
    feats, wsum = lift_features(model, cams, maps, backend="torch", top_k=k)
    ref_f, ref_w, _ = naive_lift(model, cams, maps, top_k=k)
    torch.testing.assert_close(wsum, ref_w, rtol=1e-3, atol=1e-5)
    torch.testing.assert_close(feats, ref_f, rtol=1e-3, atol=1e-4)
    all_w = lift_features(model, cams, maps, backend="torch")[1]
    assert float(wsum.sum()) < float(all_w.sum()) - 1e-3  # top-k drops weight


def test_torch_lift_is_the_renderers_gradient(scene):
    """sum_p w_gp F(p) is the gradient of <F, render(colours)> w.r.t. Gaussian g's colour (torch rasterizer)."""
    model, cams, maps = scene
    H, W = cams.height, cams.width
    target = F.interpolate(maps.permute(0, 3, 1, 2), size=(H, W), mode="bilinear", align_corners=False)
    target = target.permute(0, 2, 3, 1)
    valid = (maps.abs().sum(-1) > 0).float()[:, None]
    pw = (F.interpolate(valid, size=(H, W), mode="bilinear", align_corners=False)[:, 0] > 0).float()
    target = torch.cat([target * pw[..., None], pw[..., None]], -1)  # [V, H, W, C + 1]
    colors = torch.zeros(model.num_gaussians, maps.shape[-1] + 1, requires_grad=True)
    with torch.no_grad():
        geo = (model.get_means(), model.get_quats(), model.get_scales(), model.get_opacities())
    img, _, _, _ = rasterize(*geo, colors[None].expand(len(cams), -1, -1), cams.viewmats, cams.Ks, W, H,
                             render_depth=False, backend="torch")
    (grad,) = torch.autograd.grad(img, colors, grad_outputs=target)
    feats, wsum = lift_features(model, cams, maps, backend="torch")
    torch.testing.assert_close(wsum, grad[:, -1], rtol=1e-3, atol=1e-5)
    seen = wsum > 1e-6
    torch.testing.assert_close(feats[seen], grad[seen, :-1] / grad[seen, -1:], rtol=1e-3, atol=1e-4)


def test_tiles_and_batches_do_not_change_the_result(scene):
    model, cams, maps = scene
    ref = lift_features(model, cams, maps, backend="torch", tile_size=8, camera_batch=4)
    for ts, cb in [(16, 1), (8, 2)]:
        out = lift_features(model, cams, maps, backend="torch", tile_size=ts, camera_batch=cb)
        torch.testing.assert_close(out[0], ref[0], rtol=1e-3, atol=1e-4)
        torch.testing.assert_close(out[1], ref[1], rtol=1e-3, atol=1e-5)


def test_reference_accumulates_into_given_buffers(scene):
    model, cams, maps = scene
    with torch.no_grad():
        geo = (model.get_means(), model.get_quats(), model.get_scales(), model.get_opacities())
    L = tile_lists(*geo, cams.viewmats, cams.Ks, cams.width, cams.height, 8)
    fs, ws = reference.lift_accumulate_reference(L.means2d, L.conics, L.opacities, maps, L.tile_offsets, L.flatten_ids,
                                                cams.width, cams.height, 8)
    fs2, ws2 = reference.lift_accumulate_reference(L.means2d, L.conics, L.opacities, maps, L.tile_offsets,
                                                  L.flatten_ids, cams.width, cams.height, 8,
                                                  feat_sum=torch.ones_like(fs), weight_sum=torch.ones_like(ws))
    torch.testing.assert_close(fs2, fs + 1)
    torch.testing.assert_close(ws2, ws + 1)
    out = reference.lift_normalize_reference(fs, ws, out=torch.full_like(fs, float("nan")))
    assert torch.isfinite(out).all()


def test_pca_lift_equals_lifting_in_teacher_space(scene):
    """Lifting is linear: lifting PCA coefficients and decoding = lifting the teacher's features (rank <= D)."""
    model, cams, _ = scene
    g = torch.Generator().manual_seed(5)
    emb = torch.randn(4, 12, generator=g)  # 4 "classes" in a 12-d teacher space
    labels = torch.randint(0, 5, (3, 7, 10), generator=g)
    maps = torch.cat([emb, torch.zeros(1, 12)])[labels]  # label 4 = unlabeled (zero feature)
    lifted = lift_model(model, cams, maps, feature_dim=6, use_decoder=True, backend="torch")
    assert lifted.model.feature_dim == 6 and lifted.model.decoder.out_features == 12
    direct, wsum = lift_features(model, cams, maps, backend="torch")
    seen = wsum > 1e-6
    decoded = lifted.model.decode(lifted.model.params["features"].detach())
    torch.testing.assert_close(decoded[seen], direct[seen], rtol=1e-3, atol=1e-4)
    teacher_space = lift_model(model, cams, maps, feature_dim=12, use_decoder=False, backend="torch")
    assert teacher_space.model.decoder is None
    torch.testing.assert_close(teacher_space.model.params["features"].detach(), direct)
    with pytest.raises(ConfigError, match="feature_dim"):
        lift_model(model, cams, maps, feature_dim=6, use_decoder=False, backend="torch")


def test_lift_errors_are_clear(scene):
    model, cams, maps = scene
    with pytest.raises(ConfigError, match="unknown lift backend"):
        lift_features(model, cams, maps, backend="vulkan")
    with pytest.raises(ConfigError, match="maps for"):
        lift_features(model, cams[[0, 1]], maps, backend="torch")
    with pytest.raises(ConfigError, match="resolution"):
        lift_features(model, cams, maps, backend="torch", resolution="half")
    if not torch.cuda.is_available():
        for name in ("cuda_ext", "gsplat"):
            with pytest.raises(ConfigError, match="CUDA"):
                lift_features(model, cams, maps, backend=name)


def test_cuda_ext_refuses_cpu_tensors_without_building():
    x = torch.zeros(1, 1, 2)
    with pytest.raises(cuda_ext.CudaExtUnavailable, match="CUDA tensors"):
        cuda_ext.lift_accumulate(x, torch.zeros(1, 1, 3), torch.zeros(1), torch.zeros(1, 1, 1, 1),
                                 torch.zeros(1, 1, 1, dtype=torch.int32), torch.zeros(0, dtype=torch.int32), 1, 1, 16)
    if not torch.cuda.is_available():
        ok, why = cuda_ext.available()
        assert not ok and "CUDA device" in why


def test_one_source_list_for_setup_and_jit():
    csrc = Path(build.HERE) / "csrc"
    on_disk = sorted(str(p.relative_to(build.HERE)) for p in csrc.iterdir() if p.suffix in (".cu", ".cpp"))
    assert sorted(build.SOURCES + build.CPU_SOURCES) == on_disk  # every source is in one of the two builds
    headers = sorted(str(p.relative_to(build.HERE)) for p in csrc.iterdir() if p.suffix == ".h")
    assert sorted(build.HEADERS + build.CPU_HEADERS) == headers
    setup_py = (Path(build.HERE).parent / "setup.py").read_text()
    assert "\"build.py\"" in setup_py and "build.source_paths(" in setup_py  # the list comes from cuda_ext/build.py


# ------------------------------------------------------------------------------------------------ end to end
@pytest.fixture(scope="module")
def plain_ply(tiny_scene, tmp_path_factory):
    """The tiny generated scene and a plain 3DGS PLY of it (standard properties, no sidecar), as another
    trainer would write: here simply the depth-initialised Gaussians."""
    from plyfile import PlyData, PlyElement

    from dff_gs.data import load_scene
    from dff_gs.io.ply import model_to_array

    root = tmp_path_factory.mktemp("lift_e2e")
    scene_dir = tiny_scene
    scene = load_scene(scene_dir, test_every=5)
    model = GaussianModel.from_depth(scene.split("train"), max_points=1500, sh_degree=1, init_opacity=0.9)
    ply = root / "foreign.ply"
    PlyData([PlyElement.describe(model_to_array(model), "vertex")], text=False).write(str(ply))
    return scene_dir, ply, model.num_gaussians


def test_init_ply_lift_end_to_end(plain_ply, tmp_path, capsys):
    from dff_gs.cli.query import main as query_main
    from dff_gs.cli.train import main as train_main

    scene_dir, ply, n = plain_ply
    out = tmp_path / "lifted"
    rc = train_main(["--init-ply", str(ply), "--data", str(scene_dir), "--teacher", "labels", "--lift",
                     "--lift-steps", "5", "--out", str(out), "--device", "cpu", "--backend", "torch", "--quiet",
                     "data.test_every=5", "model.feature_dim=8", f"teacher.cache_dir={tmp_path / 'cache'}"])
    assert rc == 0, capsys.readouterr().err
    for name in ["config.yaml", "point_cloud.ply", "point_cloud.dff.json", "metrics.json"]:
        assert (out / name).is_file(), name
    assert list((out / "renders").glob("*.png"))
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["num_gaussians"] == n and metrics["lift_seconds"] > 0 and metrics["finetune_seconds"] > 0
    assert metrics["lifted_fraction"] > 0.5
    assert metrics["accuracy"] > 0.5 and 0 <= metrics["miou"] <= 1  # untrained geometry, yet well above chance
    side = json.loads((out / "point_cloud.dff.json").read_text())
    assert side["teacher"]["name"] == "labels" and side["decoder"]["in"] == 8 and side["decoder"]["out"] == 384
    assert side["lift"]["steps"] == 5
    capsys.readouterr()
    assert query_main([str(out), "--text", "chair"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["num_gaussians"] == n and "selected" in summary


def test_lift_needs_init_ply_and_teacher(plain_ply, tmp_path, capsys):
    from dff_gs.cli.train import main as train_main

    scene_dir, ply, _ = plain_ply
    assert train_main(["--data", str(scene_dir), "--lift", "--out", str(tmp_path / "a"), "--quiet"]) == 2
    assert "--init-ply" in capsys.readouterr().err
    assert train_main(["--init-ply", str(ply), "--data", str(scene_dir), "--teacher", "none", "--lift",
                       "--out", str(tmp_path / "b"), "--quiet"]) == 2
    assert "teacher" in capsys.readouterr().err


def test_init_ply_without_lift_initialises_training(plain_ply):
    from dff_gs.train.config import Config
    from dff_gs.teachers.prepare import TeacherOutputs
    from dff_gs.train.gaussians import init_model

    _, ply, n = plain_ply
    cfg = Config()
    cfg.model.init_ply = str(ply)
    cfg.model.feature_dim = 8
    model = init_model(cfg, None, TeacherOutputs(dim=384))
    assert model.num_gaussians == n and model.feature_dim == 8 and model.decoder.out_features == 384
    assert model.sh_degree == 1 and float(model.params["features"].detach().abs().sum()) == 0


# ------------------------------------------------------------------------------------------------ GPU
def random_gpu_scene(n: int, views: int, width: int, height: int, seed: int):
    model = tiny_model(n, seed)
    with torch.no_grad():
        model.params["means"][:, :2] *= 1.5
        model.params["scales"] -= 0.7
    return model.to("cuda"), tiny_cameras(views, width, height).to("cuda")


@NEEDS_CUDA
@pytest.mark.parametrize("C,tile_size,top_k,dtype", [
    (3, 16, 0, torch.float32), (16, 16, 0, torch.float16), (37, 8, 3, torch.float32), (300, 16, 0, torch.float32),
    (64, 16, 5, torch.float16), (130, 8, 0, torch.float16),
])
def test_cuda_ext_matches_its_twin_on_random_inputs(C, tile_size, top_k, dtype):
    model, cams = random_gpu_scene(3000, 3, 67, 45, seed=C)
    g = torch.Generator(device="cuda").manual_seed(C)
    maps = torch.randn(3, 23, 34, C, generator=g, device="cuda").to(dtype)
    pw = torch.rand(3, 45, 67, generator=g, device="cuda")
    pw[pw < 0.1] = 0.0
    with torch.no_grad():
        geo = (model.get_means(), model.get_quats(), model.get_scales(), model.get_opacities())
    L = tile_lists(*geo, cams.viewmats, cams.Ks, 67, 45, tile_size)
    assert L.num_intersections > 1000
    args = (L.means2d, L.conics, L.opacities, maps, L.tile_offsets, L.flatten_ids, 67, 45, tile_size)
    fs, ws = cuda_ext.lift_accumulate(*args, pix_weights=pw, top_k=top_k)
    rf, rw = reference.lift_accumulate_reference(*args, pix_weights=pw, top_k=top_k)
    assert int((rw > 0).sum()) > 100
    torch.testing.assert_close(ws, rw, rtol=2e-3, atol=1e-4)
    torch.testing.assert_close(fs, rf, rtol=2e-3, atol=2e-3 * float(rf.abs().max()))


@NEEDS_CUDA
def test_cuda_ext_writes_every_output_and_accumulates_in_place():
    model, cams = random_gpu_scene(2000, 2, 40, 30, seed=7)
    maps = torch.randn(2, 15, 20, 24, device="cuda")
    with torch.no_grad():
        geo = (model.get_means(), model.get_quats(), model.get_scales(), model.get_opacities())
    L = tile_lists(*geo, cams.viewmats, cams.Ks, 40, 30, 16, "torch")
    args = (L.means2d, L.conics, L.opacities, maps, L.tile_offsets, L.flatten_ids, 40, 30, 16)
    fs, ws = cuda_ext.lift_accumulate(*args)
    fs2, ws2 = cuda_ext.lift_accumulate(*args, feat_sum=torch.full_like(fs, 2.0), weight_sum=torch.full_like(ws, 2.0))
    torch.testing.assert_close(fs2, fs + 2.0, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(ws2, ws + 2.0, rtol=1e-4, atol=1e-4)
    assert bool((ws == 0).any()) and bool((ws > 0).any())  # both branches of the normalisation are exercised
    out = cuda_ext.lift_normalize(fs, ws, 1e-8, out=torch.full_like(fs, float("nan")))
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out, reference.lift_normalize_reference(fs, ws, 1e-8))


@NEEDS_CUDA
@pytest.mark.parametrize("backend,top_k", [("cuda_ext", 0), ("cuda_ext", 2), ("gsplat", 0)])
def test_gpu_backends_match_torch(scene, backend, top_k):
    cpu_model, cpu_cams, maps = scene
    model, cams = copy.deepcopy(cpu_model).to("cuda"), cpu_cams.to("cuda")  # Module.to moves in place
    ref_f, ref_w = lift_features(model, cams, maps, backend="torch", top_k=top_k)
    feats, wsum = lift_features(model, cams, maps, backend=backend, top_k=top_k)
    torch.testing.assert_close(wsum, ref_w, rtol=2e-3, atol=1e-4)
    torch.testing.assert_close(feats, ref_f, rtol=2e-3, atol=1e-3)
    nf, nw, _ = naive_lift(cpu_model, cpu_cams, maps, top_k=top_k)
    torch.testing.assert_close(wsum.cpu(), nw, rtol=2e-3, atol=1e-4)
    torch.testing.assert_close(feats.cpu(), nf, rtol=2e-3, atol=1e-3)


@NEEDS_CUDA
def test_cuda_ext_tile_lists_from_gsplat_and_torch_agree():
    model, cams = random_gpu_scene(3000, 2, 64, 48, seed=11)
    maps = torch.randn(2, 16, 21, 10, device="cuda")
    a = lift_features(model, cams, maps, backend="cuda_ext", tile_source="gsplat")
    b = lift_features(model, cams, maps, backend="cuda_ext", tile_source="torch")
    torch.testing.assert_close(a[1], b[1], rtol=2e-3, atol=1e-4)
    torch.testing.assert_close(a[0], b[0], rtol=2e-3, atol=1e-3)

"""The compiled CPU rasterizer (``backend="cpu"``, ``cuda_ext.rasterize_cpu``) against its twin, the torch backend,
in float32 on a scene of a few thousand overlapping Gaussians: one test per output (RGB, features, depth, alpha,
the ``info`` densification reads, ``means2d`` gradients, parameter gradients), determinism, and how ``auto``
chooses. The float64 comparisons with the naive compositor and ``gradcheck`` are in ``tests/test_render.py``."""

import importlib
import math

import pytest
import torch

import cuda_ext
from dff_gs.render import reference
from dff_gs.render import rasterize, resolve_backend

rasterize_module = importlib.import_module("dff_gs.render.rasterize")  # the module (the package exports the function)

N, C, W, H, D = 3000, 2, 72, 56, 16  # D feature channels after 3 colour channels


@pytest.fixture(scope="module")
def problem():
    g = torch.Generator().manual_seed(7)
    fx = fy = 64.0
    Ks = torch.tensor([[fx, 0.0, W / 2], [0.0, fy, H / 2], [0.0, 0.0, 1.0]]).expand(C, 3, 3).contiguous()
    view2 = torch.eye(4)
    a = 0.15
    view2[:3, :3] = torch.tensor([[math.cos(a), 0.0, math.sin(a)], [0.0, 1.0, 0.0], [-math.sin(a), 0.0, math.cos(a)]])
    view2[:3, 3] = torch.tensor([0.3, -0.05, 0.2])
    viewmats = torch.stack([torch.eye(4), view2])
    z = 2.0 + 4.0 * torch.rand(N, generator=g)
    u = (torch.rand(N, generator=g) * 1.3 - 0.15) * W
    v = (torch.rand(N, generator=g) * 1.3 - 0.15) * H
    means = torch.stack([(u - W / 2) * z / fx, (v - H / 2) * z / fy, z], -1)
    return dict(
        means=means, quats=torch.randn(N, 4, generator=g),
        scales=torch.exp(torch.empty(N, 3).uniform_(math.log(0.02), math.log(0.15), generator=g)),
        opacities=torch.empty(N).uniform_(0.02, 0.98, generator=g),
        colors=torch.cat([torch.rand(C, N, 3, generator=g), torch.randn(C, N, D, generator=g)], -1),
        viewmats=viewmats, Ks=Ks, bg=torch.cat([torch.rand(C, 3, generator=g), torch.zeros(C, D)], -1),
        w_img=torch.randn(C, H, W, 3 + D, generator=g), w_alpha=torch.randn(C, H, W, 1, generator=g),
        w_depth=0.1 * torch.randn(C, H, W, 1, generator=g))


def run(p, backend, tile_size=8):
    leaves = [p[k].clone().requires_grad_(True) for k in ("means", "quats", "scales", "opacities", "colors")]
    img, depth, alpha, info = rasterize(*leaves, p["viewmats"], p["Ks"], W, H, backgrounds=p["bg"], backend=backend,
                                        tile_size=tile_size)
    covered = (alpha.detach() > 0.5).float()  # expected depth is compared where a pixel is well covered
    loss = (img * p["w_img"]).sum() + (alpha * p["w_alpha"]).sum() + (depth * covered * p["w_depth"]).sum()
    loss.backward()
    grads = dict(zip(("means", "quats", "scales", "opacities", "colors"), (t.grad for t in leaves)))
    grads["means2d"] = info["means2d"].grad
    return dict(img=img.detach(), depth=depth.detach(), alpha=alpha.detach(), covered=covered, info=info,
                grads=grads)


@pytest.fixture(scope="module")
def both(problem):
    return {b: run(problem, b) for b in ("torch", "cpu")}


def test_scene_is_a_real_workload(both):
    alpha = both["torch"]["alpha"]
    assert (alpha > 0.99).float().mean() > 0.1 and (alpha < 0.5).float().mean() > 0.02  # opaque and sparse parts
    assert both["torch"]["covered"].mean() > 0.5


def test_rgb(both):
    torch.testing.assert_close(both["cpu"]["img"][..., :3], both["torch"]["img"][..., :3], rtol=0, atol=1e-5)


FEATURE_ATOL = 5e-5
"""Feature channels are signed (randn, |x| up to ~4): their composited sums cancel, so float32 rounding of terms of
size ~4 shows at ~1e-5 absolute, and the torch twin's own kernels sum in an order that depends on the processor
(AVX-512 or not): 1.3e-5 seen on an AVX-512 machine. RGB, alpha and depth keep 1e-5."""


def test_features(both):
    torch.testing.assert_close(both["cpu"]["img"][..., 3:], both["torch"]["img"][..., 3:], rtol=1e-5,
                               atol=FEATURE_ATOL)


def test_alpha(both):
    torch.testing.assert_close(both["cpu"]["alpha"], both["torch"]["alpha"], rtol=0, atol=1e-5)


def test_depth(both):
    m = both["torch"]["covered"].bool()
    torch.testing.assert_close(both["cpu"]["depth"][m], both["torch"]["depth"][m], rtol=1e-5, atol=1e-5)


def test_info_for_densification(both):
    ci, ti = both["cpu"]["info"], both["torch"]["info"]
    assert torch.equal(ci["radii"], ti["radii"]) and ci["radii"].dtype == torch.int32
    torch.testing.assert_close(ci["means2d"].detach(), ti["means2d"].detach(), rtol=1e-5, atol=1e-4)  # pixels
    torch.testing.assert_close(ci["conics"].detach(), ti["conics"].detach(), rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(ci["depths"].detach(), ti["depths"].detach(), rtol=1e-6, atol=1e-6)
    for key in ("width", "height", "n_cameras", "tile_size"):
        assert ci[key] == ti[key]


def rel_err(a, b):
    return ((a - b).abs().max() / b.abs().max()).item()


def test_means2d_gradients(both):
    ct, tt = both["cpu"]["grads"]["means2d"], both["torch"]["grads"]["means2d"]
    assert ct is not None and ct.shape == (C, N, 2) and (tt != 0).any()
    assert rel_err(ct, tt) < 1e-4


@pytest.mark.parametrize("name", ["means", "quats", "scales", "opacities", "colors"])
def test_parameter_gradients(both, name):
    ct, tt = both["cpu"]["grads"][name], both["torch"]["grads"][name]
    assert (tt != 0).any()
    assert rel_err(ct, tt) < 1e-4, (name, rel_err(ct, tt))


@pytest.mark.parametrize("tile_size", [4, 16])
def test_other_tile_sizes(problem, both, tile_size):
    out = run(problem, "cpu", tile_size)
    torch.testing.assert_close(out["img"][..., :3], both["torch"]["img"][..., :3], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(out["img"][..., 3:], both["torch"]["img"][..., 3:], rtol=1e-5, atol=FEATURE_ATOL)
    assert rel_err(out["grads"]["means"], both["torch"]["grads"]["means"]) < 1e-4


def test_deterministic(problem, both):
    again = run(problem, "cpu")
    assert torch.equal(again["img"], both["cpu"]["img"])
    for name, grad in both["cpu"]["grads"].items():
        assert torch.equal(again["grads"][name], grad), name


def test_opacity_per_camera_and_direct_call(problem):
    """``cuda_ext.rasterize_cpu`` takes [N] or [C, N] opacities, as its twin ``rasterize_reference`` does."""
    from dff_gs.render.projection import project_gaussians

    p = problem
    means2d, conics, depths, radii = project_gaussians(p["means"], p["quats"], p["scales"], p["viewmats"], p["Ks"],
                                                       W, H)
    op = p["opacities"][None].expand(C, N) * torch.tensor([[1.0], [0.5]])
    a = cuda_ext.rasterize_cpu(means2d, conics, op, p["colors"], depths, radii, W, H, 8)
    b = reference.rasterize_reference(means2d, conics, op, p["colors"], depths, radii, W, H, 8)
    for x, y in zip(a, b):
        torch.testing.assert_close(x, y, rtol=1e-5, atol=1e-5)


def test_auto_picks_the_compiled_backend_or_says_why(monkeypatch, capsys):
    assert resolve_backend("auto", torch.device("cpu")) == "cpu"
    monkeypatch.setattr(rasterize_module, "cpu_backend_available", lambda: (False, "no compiler here"))
    monkeypatch.setattr(rasterize_module, "_said_why", False)
    assert resolve_backend("auto", torch.device("cpu")) == "torch"
    assert resolve_backend("auto", torch.device("cpu")) == "torch"
    err = capsys.readouterr().err
    assert err.count("torch backend") == 1 and "no compiler here" in err  # one line, once


def test_projection_twin_float64_with_culling_and_clamping():
    """``cuda_ext.project_cpu`` against ``project_reference`` in float64, outputs and gradients, on Gaussians that
    exercise every branch: far outside the field of view (Jacobian clamped), behind the camera, nearer than the
    near plane, beyond the far plane, unnormalised quaternions."""
    g = torch.Generator().manual_seed(3)
    F64 = torch.float64
    n = 400
    means = torch.cat([torch.randn(n, 2, generator=g, dtype=F64) * 3.0, 0.5 + 4 * torch.rand(n, 1, generator=g,
                                                                                          dtype=F64)], -1)
    means[:20, 2] = -1.0  # behind
    means[20:30, 2] = 0.005  # nearer than the near plane
    quats = torch.randn(n, 4, generator=g, dtype=F64) * 3.0
    scales = torch.exp(torch.empty(n, 3, dtype=F64).uniform_(-4.0, -1.0, generator=g))
    viewmats = torch.eye(4, dtype=F64).repeat(2, 1, 1)
    viewmats[1, :3, 3] = torch.tensor([0.2, -0.1, 0.3], dtype=F64)
    Ks = torch.tensor([[60.0, 0.0, 36.0], [0.0, 55.0, 28.0], [0.0, 0.0, 1.0]], dtype=F64).repeat(2, 1, 1)
    ref = reference.project_reference(means, quats, scales, viewmats, Ks, W, H, 0.01, 5.0, 0.3)
    out = cuda_ext.project_cpu(means, quats, scales, viewmats, Ks, W, H, 0.01, 5.0, 0.3)
    assert torch.equal(out[3], ref[3])
    culled = (ref[3] == 0).all(-1)
    assert culled[0, :30].all() and culled[:, :20].all() and (~culled).sum() > 200 and culled[:, 30:].any()
    for a, b in zip(out[:3], ref[:3]):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)
    ws = [torch.randn(t.shape, generator=g, dtype=F64) for t in ref[:3]]

    def grads(fn):
        leaves = [t.clone().requires_grad_(True) for t in (means, quats, scales)]
        res = fn(*leaves, viewmats, Ks, W, H, 0.01, 5.0, 0.3)
        sum((r * w).sum() for r, w in zip(res[:3], ws)).backward()
        return [t.grad for t in leaves]

    for a, b in zip(grads(cuda_ext.project_cpu), grads(reference.project_reference)):
        torch.testing.assert_close(a, b, rtol=1e-8, atol=1e-9)


def test_a_stale_prebuilt_module_is_rebuilt_just_in_time(monkeypatch):
    """A prebuilt module whose compiled-in source hash differs from the sources is not used: the JIT build is."""
    import sys
    import types

    fake = types.ModuleType("dff_gs_fake_prebuilt")
    fake.source_hash = "old"
    monkeypatch.setitem(sys.modules, "dff_gs_fake_prebuilt", fake)
    rebuilt = types.ModuleType("rebuilt")
    ext = cuda_ext._Extension("dff_gs_fake_prebuilt", lambda verbose, build_dir: rebuilt, "advice", lambda: "new")
    assert ext.load() is rebuilt

    def no_compiler(verbose, build_dir):
        raise RuntimeError("no compiler here")

    ext = cuda_ext._Extension("dff_gs_fake_prebuilt", no_compiler, "use the torch backend", lambda: "new")
    with pytest.raises(cuda_ext.CudaExtUnavailable, match="stale.*no compiler here.*use the torch backend"):
        ext.load()
    with pytest.raises(cuda_ext.CudaExtUnavailable):  # the reason is kept: no second build attempt
        ext.load()
    fake.source_hash = "new"
    assert cuda_ext._Extension("dff_gs_fake_prebuilt", no_compiler, "", lambda: "new").load() is fake


def test_the_loaded_module_is_built_from_these_sources():
    mod = cuda_ext.load_cpu()
    assert mod.source_hash in ("", cuda_ext.build.cpu_source_hash())  # "": a JIT build, keyed on the sources
    assert mod.openmp


def test_depth_ties_keep_the_reference_order():
    """Tile lists equal the torch twin's (sorted by depth, ties by index) with many equal depths, -0 and +0."""
    from dff_gs.render.backend_torch import tile_intersections

    g = torch.Generator().manual_seed(3)
    n, w, h, ts = 4000, 64, 48, 8
    means2d = torch.rand(1, n, 2, generator=g) * torch.tensor([w, h])
    radii = torch.randint(1, 9, (1, n, 2), generator=g, dtype=torch.int32)
    depths = torch.tensor([2.0, 1.0, -0.0, 0.0, 3.5, 1e-30])[torch.randint(0, 6, (1, n), generator=g)]
    opac = torch.full((1, n), 0.9)
    conics = torch.tensor([1.0, 0.0, 1.0]).expand(1, n, 3).contiguous()
    colors = torch.rand(1, n, 3, generator=g)
    _, _, offsets, ids, _ = cuda_ext.load_cpu().rasterize_forward(means2d, conics, opac, colors, depths, radii, w, h,
                                                                  ts, False)
    tile, gid, tw, th = tile_intersections(means2d[0], radii[0], depths[0], w, h, ts, opac[0])
    assert torch.equal(ids.long(), gid)
    assert torch.equal(offsets[1:] - offsets[:-1], torch.bincount(tile, minlength=tw * th))


@pytest.mark.parametrize("degree", [0, 1, 2, 3])
def test_sh_colors_twin(degree):
    """The compiled view-dependent colours against their torch twin: values and the gradients of means, sh0 and
    shN in float32, gradcheck in float64; the colour clamp at 0 is crossed."""
    g = torch.Generator().manual_seed(degree)
    for dtype in (torch.float32, torch.float64):
        means = torch.randn(300, 3, generator=g, dtype=dtype)
        means[0] = torch.tensor([1.0, 2.0, 3.0], dtype=dtype)  # at a camera centre: the 1e-12 clamp
        sh0 = torch.randn(300, 1, 3, generator=g, dtype=dtype)
        shN = torch.randn(300, 15, 3, generator=g, dtype=dtype)
        centers = torch.cat([torch.tensor([[1.0, 2.0, 3.0]], dtype=dtype), torch.randn(2, 3, generator=g, dtype=dtype)])
        leaves = [[t.clone().requires_grad_(True) for t in (means, sh0, shN)] for _ in range(2)]
        a = cuda_ext.sh_colors_cpu(*leaves[0], centers, degree)
        b = reference.sh_colors_reference(*leaves[1], centers, degree)
        assert (b == 0).any() and (b > 0).any()
        tol = 1e-5 if dtype == torch.float32 else 1e-12
        torch.testing.assert_close(a, b, rtol=tol, atol=tol)
        w = torch.randn(a.shape, generator=g, dtype=dtype)
        (a * w).sum().backward()
        (b * w).sum().backward()
        for x, y in zip(leaves[0], leaves[1]):
            expect = torch.zeros_like(x) if y.grad is None else y.grad  # degree 0: no direction, no means gradient
            torch.testing.assert_close(x.grad, expect, rtol=tol, atol=tol)
    small = [t[:6].double().requires_grad_(True) for t in (means, sh0, shN)]
    assert torch.autograd.gradcheck(lambda m, s0, sn: cuda_ext.sh_colors_cpu(m, s0, sn, centers[1:].double(), degree),
                                    small)


def test_render_uses_the_compiled_sh_on_the_cpu_backend(monkeypatch):
    """``render(backend="cpu")`` evaluates SH with the compiled kernel, ``torch`` with the twin; same images."""
    from dff_gs.core.cameras import Cameras
    from dff_gs.core.gaussians import GaussianModel
    from dff_gs.render import render

    g = torch.Generator().manual_seed(5)
    model = GaussianModel.from_points(torch.randn(500, 3, generator=g) * 0.5 + torch.tensor([0.0, 0.0, 3.0]),
                                      torch.rand(500, 3, generator=g), sh_degree=2, feature_dim=4)
    model.params["shN"].data.normal_(0, 0.2, generator=g)
    view = torch.eye(4)
    view[:3, 3] = torch.tensor([0.3, 0.2, 0.5])  # camera centre (-0.3, -0.2, -0.5), looking along +z
    cams = Cameras(view[None], torch.tensor([[[30.0, 0.0, 16.0], [0.0, 30.0, 12.0], [0.0, 0.0, 1.0]]]), 32, 24)
    calls = []
    real = cuda_ext.sh_colors_cpu
    monkeypatch.setattr(cuda_ext, "sh_colors_cpu", lambda *a: calls.append(1) or real(*a))
    a = render(model, cams, backend="cpu")
    assert calls
    b = render(model, cams, backend="torch")
    torch.testing.assert_close(a.rgb, b.rgb, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(a.features, b.features, rtol=1e-5, atol=1e-5)


def test_instruction_set_variants_agree(monkeypatch):
    """The baseline and the AVX2 + FMA builds of the same sources give the same images and gradients within the
    twin tolerances (``$DFF_GS_CPU_ISA`` picks one); an unknown variant is refused in one line."""
    import platform

    if "avx2" not in cuda_ext.build.cpu_variants(platform.machine()):
        pytest.skip(f"no AVX2 variant on {platform.machine()}")
    if torch.backends.cpu.get_cpu_capability() not in ("AVX2", "AVX512"):
        pytest.skip("this processor has no AVX2")
    out = {}
    for variant in ("baseline", "avx2"):
        try:
            importlib.import_module(cuda_ext.build.cpu_module_name(variant))
        except ImportError as err:
            pytest.skip(f"the {variant} variant is not prebuilt here ({err})")
        monkeypatch.setenv("DFF_GS_CPU_ISA", variant)
        assert cuda_ext.load_cpu().__name__ == cuda_ext.build.cpu_module_name(variant)
        p = {k: v for k, v in _small_problem().items()}
        leaves = [p[k].clone().requires_grad_(True) for k in ("means", "quats", "scales", "opacities", "colors")]
        img, _, alpha, _ = rasterize(*leaves, p["viewmats"], p["Ks"], W, H, backend="cpu")
        (img * p["w"]).sum().backward()
        out[variant] = (img.detach(), alpha.detach(), [t.grad for t in leaves])
    torch.testing.assert_close(out["avx2"][0], out["baseline"][0], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(out["avx2"][1], out["baseline"][1], rtol=0, atol=1e-5)
    for a, b in zip(out["avx2"][2], out["baseline"][2]):
        assert rel_err(a, b) < 1e-4
    monkeypatch.setenv("DFF_GS_CPU_ISA", "sse9")
    with pytest.raises(cuda_ext.CudaExtUnavailable, match="DFF_GS_CPU_ISA='sse9'"):
        cuda_ext.load_cpu()


def _small_problem():
    g = torch.Generator().manual_seed(11)
    n = 800
    z = 2.0 + 3.0 * torch.rand(n, generator=g)
    means = torch.stack([(torch.rand(n, generator=g) - 0.5) * z, (torch.rand(n, generator=g) - 0.5) * z, z], -1)
    Ks = torch.tensor([[[64.0, 0.0, W / 2], [0.0, 64.0, H / 2], [0.0, 0.0, 1.0]]])
    return dict(means=means, quats=torch.randn(n, 4, generator=g),
                scales=torch.exp(torch.empty(n, 3).uniform_(-4.0, -2.0, generator=g)),
                opacities=torch.empty(n).uniform_(0.05, 0.95, generator=g), colors=torch.rand(1, n, 6, generator=g),
                viewmats=torch.eye(4)[None], Ks=Ks, w=torch.randn(1, H, W, 6, generator=g))

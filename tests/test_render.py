"""The renderer against independent references.

* ``project_gaussians`` against hand-computed EWA projections;
* ``rasterize(backend="torch")`` and ``rasterize(backend="cpu")`` (the compiled twin) against a naive per-pixel
  compositor written with plain Python loops over depth-sorted Gaussians and gsplat's conventions (pixel
  centres +0.5, eps2d, alpha = min(0.999, o exp(-sigma)), skip alpha < 1/255, stop before T <= 1e-4), for
  several tile sizes, with and without backgrounds;
* their hand-written backward passes against central finite differences (float64 ``gradcheck``);
* the compiled CPU backend against the torch backend in float32 (``tests/test_render_cpu.py``);
* ``render()`` / ``eval_sh`` against an independent SH basis;
* the gsplat backend against the torch backend (CUDA only), classic and antialiased (``tests/test_antialias.py``
  tests the antialiased mode on the CPU backends).
"""

import math

import pytest
import torch

from dff_gs.core.cameras import Cameras
from dff_gs.core.errors import ConfigError
from dff_gs.core.gaussians import GaussianModel
from dff_gs.render import eval_sh, rasterize, render, resolve_backend
from dff_gs.render.projection import project_gaussians

ALPHA_MIN, ALPHA_MAX, T_MIN = 1.0 / 255.0, 0.999, 1e-4
EPS2D, NEAR = 0.3, 0.01
W, H = 20, 16
FX, FY, CX, CY = 20.0, 20.0, 10.0, 8.0
F64 = torch.float64


# ----------------------------------------------------------------------------------------------- helpers
def rot_y(angle: float) -> torch.Tensor:
    c, s = math.cos(angle), math.sin(angle)
    return torch.tensor([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]], dtype=F64)


def viewmat(R: torch.Tensor, t) -> torch.Tensor:
    m = torch.eye(4, dtype=F64)
    m[:3, :3] = R
    m[:3, 3] = torch.as_tensor(t, dtype=F64)
    return m


def intrinsics(fx=FX, fy=FY, cx=CX, cy=CY) -> torch.Tensor:
    return torch.tensor([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]], dtype=F64)


def two_cameras():
    viewmats = torch.stack([torch.eye(4, dtype=F64), viewmat(rot_y(0.12), [0.25, -0.1, 0.3])])
    Ks = torch.stack([intrinsics(), intrinsics(fx=22.0, fy=19.0, cx=9.5, cy=8.5)])
    return viewmats, Ks


def unproject(u: float, v: float, z: float) -> list[float]:
    """World point (= camera-0 point) that camera 0 sees at pixel coordinates (u, v), depth z."""
    return [(u - CX) * z / FX, (v - CY) * z / FY, z]


def iso_scale(sigma_px: float, z: float) -> float:
    """Linear 3D scale whose 2D standard deviation (before eps2d) at depth z on the axis is sigma_px pixels."""
    return sigma_px * z / FX


def make_scene(seed: int = 0, n_random: int = 16, D: int = 4):
    """A small scene seen by two cameras, with the cases the conventions are about:
    random Gaussians (some partly outside the image), one behind camera 0 whose mirrored projection lands
    inside the image (must be culled), one very transparent one in front of everything (opacity < 1/255),
    a stack of three opaque overlapping ones (alpha clamped to 0.999, the third stopped by T <= 1e-4) and
    one whose alpha >= 1/255 region reaches just into the next tile."""
    g = torch.Generator().manual_seed(seed)
    means, scales, opac = [], [], []
    for _ in range(n_random):
        u = -3.0 + (W + 6.0) * torch.rand((), generator=g).item()
        v = -3.0 + (H + 6.0) * torch.rand((), generator=g).item()
        z = 2.0 + 3.0 * torch.rand((), generator=g).item()
        s = iso_scale(0.6 + 2.4 * torch.rand((), generator=g).item(), z)
        aniso = (0.5 + torch.rand(3, generator=g)).tolist()
        means.append(unproject(u, v, z))
        scales.append([s * a for a in aniso])
        opac.append(0.05 + 0.9 * torch.rand((), generator=g).item())
    special = {}

    def add(mean, scale, o):
        means.append(mean)
        scales.append([scale] * 3)
        opac.append(o)
        return len(means) - 1

    special["behind"] = add([0.1, -0.05, -2.0], 0.6, 0.99)
    special["transparent"] = add(unproject(10.3, 7.7, 1.2), iso_scale(4.0, 1.2), 0.003)
    special["opaque"] = [add(unproject(14.5, 5.5, z), iso_scale(2.5, z), 0.9995) for z in (2.6, 2.9, 3.2)]
    # 2D sigma 1.1 px after eps2d; mean at x = 4.9, its alpha >= 1/255 support reaches pixel x = 8
    special["tile_edge"] = add(unproject(4.9, 12.5, 1.8), iso_scale(math.sqrt(1.21 - EPS2D), 1.8), 0.99)
    N = len(means)
    quats = torch.randn(N, 4, generator=g, dtype=F64)
    viewmats, Ks = two_cameras()
    colors = torch.rand(len(viewmats), N, D, generator=g, dtype=F64)
    return dict(means=torch.tensor(means, dtype=F64), quats=quats, scales=torch.tensor(scales, dtype=F64),
                opacities=torch.tensor(opac, dtype=F64), colors=colors, viewmats=viewmats, Ks=Ks,
                special=special)


def naive_composite(means, quats, scales, opacities, colors, viewmats, Ks, width, height, backgrounds=None,
                    stop=True, skip=True):
    """Per-pixel front-to-back compositing with explicit Python loops (float64 Python scalars).
    Culling is done here independently: only Gaussians in front of the near plane are considered (a
    Gaussian whose box misses the image has alpha < 1/255 on every pixel anyway).
    Returns colors [C, H, W, D], expected depth [C, H, W, 1], alpha [C, H, W, 1], stats."""
    means2d, conics, depths, _ = project_gaussians(means, quats, scales, viewmats, Ks, width, height, NEAR, 1e10,
                                                   EPS2D)
    C, N = depths.shape
    D = colors.shape[-1]
    m2, con, dep = means2d.tolist(), conics.tolist(), depths.tolist()
    op, col = opacities.tolist(), colors.tolist()
    bg = None if backgrounds is None else backgrounds.tolist()
    out = torch.zeros(C, height, width, D, dtype=F64)
    out_d = torch.zeros(C, height, width, 1, dtype=F64)
    out_a = torch.zeros(C, height, width, 1, dtype=F64)
    stats = {"stops": 0, "skips": 0}
    for c in range(C):
        order = sorted((i for i in range(N) if dep[c][i] > NEAR), key=lambda i: dep[c][i])
        for py in range(height):
            for px in range(width):
                x, y = px + 0.5, py + 0.5
                T, acc, acc_z = 1.0, [0.0] * D, 0.0
                for i in order:
                    dx, dy = x - m2[c][i][0], y - m2[c][i][1]
                    a, b, cc = con[c][i]
                    sigma = 0.5 * (a * dx * dx + cc * dy * dy) + b * dx * dy
                    alpha = min(ALPHA_MAX, op[i] * math.exp(-sigma))
                    if alpha < ALPHA_MIN:
                        stats["skips"] += 1
                        if skip:
                            continue
                    next_T = T * (1.0 - alpha)
                    if next_T <= T_MIN:
                        stats["stops"] += 1
                        if stop:
                            break
                    for k in range(D):
                        acc[k] += alpha * T * col[c][i][k]
                    acc_z += alpha * T * dep[c][i]
                    T = next_T
                a_pix = 1.0 - T
                for k in range(D):
                    out[c, py, px, k] = acc[k] + (T * bg[c][k] if bg is not None else 0.0)
                out_a[c, py, px, 0] = a_pix
                out_d[c, py, px, 0] = acc_z / max(a_pix, 1e-10)
    return out, out_d, out_a, stats


def scene_args(s):
    return (s["means"], s["quats"], s["scales"], s["opacities"], s["colors"], s["viewmats"], s["Ks"], W, H)


# ----------------------------------------------------------------------------------------------- projection
@pytest.mark.parametrize("fx,fy,z,s", [(20.0, 20.0, 3.0, 0.1), (50.0, 40.0, 2.0, 0.03), (30.0, 35.0, 7.5, 0.4)])
def test_projection_on_axis_isotropic(fx, fy, z, s):
    cx, cy = 10.0, 8.0
    # camera 0: identity; camera 1: turned and moved, the Gaussian placed on its optical axis at depth z
    R1, t1 = rot_y(0.7) @ torch.tensor([[1.0, 0, 0], [0, math.cos(0.3), -math.sin(0.3)],
                                        [0, math.sin(0.3), math.cos(0.3)]], dtype=F64), torch.tensor([0.3, -1.0, 2.0],
                                                                                                  dtype=F64)
    centre1 = -R1.T @ t1
    axis1 = R1.T @ torch.tensor([0.0, 0.0, 1.0], dtype=F64)
    means = torch.stack([torch.tensor([0.0, 0.0, z], dtype=F64), centre1 + z * axis1])
    viewmats = torch.stack([torch.eye(4, dtype=F64), viewmat(R1, t1)])
    Ks = intrinsics(fx, fy, cx, cy)[None].expand(2, 3, 3)
    quats = torch.randn(2, 4, dtype=F64, generator=torch.Generator().manual_seed(1))  # isotropic: irrelevant
    scales = torch.full((2, 3), s, dtype=F64)
    means2d, conics, depths, radii = project_gaussians(means, quats, scales, viewmats, Ks, W, H, NEAR, 1e10, EPS2D)
    for c, n in ((0, 0), (1, 1)):
        a, b, cc = conics[c, n]
        cov2d = torch.linalg.inv(torch.stack([torch.stack([a, b]), torch.stack([b, cc])]))
        expect = torch.tensor([[(fx * s / z) ** 2 + EPS2D, 0.0], [0.0, (fy * s / z) ** 2 + EPS2D]], dtype=F64)
        torch.testing.assert_close(cov2d, expect, rtol=1e-10, atol=1e-10)
        torch.testing.assert_close(means2d[c, n], torch.tensor([cx, cy], dtype=F64), rtol=0, atol=1e-9)
        assert depths[c, n].item() == pytest.approx(z, abs=1e-12)
        assert radii[c, n].tolist() == [math.ceil(3.33 * math.sqrt(expect[0, 0].item())),
                                        math.ceil(3.33 * math.sqrt(expect[1, 1].item()))]
    assert radii.dtype == torch.int32 and radii.shape == (2, 2, 2)


def test_projection_off_axis_jacobian_and_culling():
    """Off-axis along x: J = [[f/z, 0, -f x/z^2], [0, f/z, 0]] so cov2d_xx = (f s/z)^2 (1 + x^2/z^2) + eps2d,
    mean2d = (f x/z + cx, cy). Behind the camera, beyond far, or wholly outside the image: radius 0."""
    f, s, x, z = 20.0, 0.05, 0.6, 3.0
    means = torch.tensor([[x, 0.0, z], [0.0, 0.0, -3.0], [0.0, 0.0, 0.005], [50.0, 0.0, 3.0], [0.0, 0.0, 200.0]],
                         dtype=F64)
    quats = torch.tensor([[1.0, 0, 0, 0]] * 5, dtype=F64)
    scales = torch.full((5, 3), s, dtype=F64)
    means2d, conics, depths, radii = project_gaussians(means, quats, scales, torch.eye(4, dtype=F64)[None],
                                                       intrinsics(f, f)[None], W, H, NEAR, 100.0, EPS2D)
    a, b, c = conics[0, 0]
    cov2d = torch.linalg.inv(torch.stack([torch.stack([a, b]), torch.stack([b, c])]))
    expect = torch.tensor([[(f * s / z) ** 2 * (1 + x * x / (z * z)) + EPS2D, 0.0],
                           [0.0, (f * s / z) ** 2 + EPS2D]], dtype=F64)
    torch.testing.assert_close(cov2d, expect, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(means2d[0, 0], torch.tensor([f * x / z + CX, CY], dtype=F64))
    assert (radii[0, 0] > 0).all()
    assert (radii[0, 1:] == 0).all(), radii  # behind, nearer than near_plane, outside the image, beyond far
    assert torch.isfinite(means2d).all() and torch.isfinite(conics).all()


# ----------------------------------------------------------------------------------------------- forward
@pytest.fixture(scope="module")
def scene():
    return make_scene()


@pytest.fixture(scope="module")
def backgrounds(scene):
    C, _, D = scene["colors"].shape
    return torch.rand(C, D, dtype=F64, generator=torch.Generator().manual_seed(5))


@pytest.fixture(scope="module")
def naive_refs(scene, backgrounds):
    return {False: naive_composite(*scene_args(scene)), True: naive_composite(*scene_args(scene), backgrounds)}


def test_scene_exercises_the_conventions(scene, naive_refs):
    """The reference scene really contains what the comparison is meant to cover."""
    sp = scene["special"]
    means2d, _, depths, radii = project_gaussians(scene["means"], scene["quats"], scene["scales"],
                                                  scene["viewmats"], scene["Ks"], W, H, NEAR, 1e10, EPS2D)
    b = sp["behind"]
    assert depths[0, b] < 0 and (radii[0, b] == 0).all()
    mx, my = means2d[0, b].tolist()
    assert 0 < mx < W and 0 < my < H  # its mirrored projection lands in the image: culling matters
    vis = (radii > 0).all(-1)
    m = means2d
    partly_out = vis & ((m[..., 0] < 0) | (m[..., 0] > W) | (m[..., 1] < 0) | (m[..., 1] > H))
    assert partly_out.any()
    assert scene["opacities"][sp["transparent"]] < ALPHA_MIN
    img, _, alpha, stats = naive_refs[False]
    assert stats["stops"] > 0 and stats["skips"] > 0
    no_stop = naive_composite(*scene_args(scene), stop=False)
    no_skip = naive_composite(*scene_args(scene), skip=False)
    assert (no_stop[0] - img).abs().max() > 1e-5
    assert (no_skip[0] - img).abs().max() > 1e-4
    assert alpha.max() > 1 - 1e-3  # opaque pixels, alpha clamped


CPU_BACKENDS = ["torch", "cpu"]  # the reference and its compiled twin: every test below runs on both


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("tile_size", [4, 8, 16])
@pytest.mark.parametrize("with_bg", [False, True])
def test_backend_matches_naive(scene, backgrounds, naive_refs, tile_size, with_bg, backend):
    bg = backgrounds if with_bg else None
    img, depth, alpha, info = rasterize(*scene_args(scene), backgrounds=bg, backend=backend, tile_size=tile_size)
    ref_img, ref_depth, ref_alpha, _ = naive_refs[with_bg]
    C, N = scene["colors"].shape[:2]
    assert img.shape == (C, H, W, scene["colors"].shape[-1]) and img.dtype == F64
    assert alpha.shape == depth.shape == (C, H, W, 1)
    torch.testing.assert_close(img, ref_img, rtol=0, atol=1e-10)
    torch.testing.assert_close(alpha, ref_alpha, rtol=0, atol=1e-10)
    torch.testing.assert_close(depth, ref_depth, rtol=1e-9, atol=1e-9)
    assert info["radii"].shape == (C, N, 2) and info["means2d"].shape == (C, N, 2)
    assert (info["radii"][0, scene["special"]["behind"]] == 0).all()
    # render_depth=False: same colours, no depth
    img2, depth2, alpha2, _ = rasterize(*scene_args(scene), backgrounds=bg, backend=backend, tile_size=tile_size,
                                        render_depth=False)
    assert depth2 is None
    torch.testing.assert_close(img2, img, rtol=0, atol=1e-12)
    torch.testing.assert_close(alpha2, alpha, rtol=0, atol=1e-12)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("tile_size", [4, 8, 16])
def test_tile_bounds_cover_the_alpha_support(tile_size, backend):
    """Regression: a pixel in the tile after ``mean + radius`` whose alpha is >= 1/255 must be composited
    (gsplat's tile range ends at ceil((mean + radius) / tile), not floor((mean + radius + tile - 1) / tile)).
    2D sigma 1.1 px -> radius ceil(3.33 * 1.1) = 4; mean at x = tile - 3.1 so pixel x = tile (centre
    tile + 0.5) is 3.6 px away: alpha = 0.99 exp(-0.5 (3.6/1.1)^2) = 0.00468 > 1/255."""
    sigma, op = 1.1, 0.99
    mx = tile_size - 3.1
    z = 2.0
    K = intrinsics(cx=mx, cy=4.5)[None]  # the Gaussian on the optical axis: its 2D covariance is isotropic
    means = torch.tensor([[0.0, 0.0, z]], dtype=F64)
    scales = torch.full((1, 3), iso_scale(math.sqrt(sigma ** 2 - EPS2D), z), dtype=F64)
    quats = torch.tensor([[1.0, 0, 0, 0]], dtype=F64)
    width = 2 * tile_size + 8
    img, _, alpha, info = rasterize(means, quats, scales, torch.tensor([op], dtype=F64), torch.ones(1, 1, 1, dtype=F64),
                                    torch.eye(4, dtype=F64)[None], K, width, 8, backend=backend,
                                    tile_size=tile_size)
    assert info["radii"][0, 0].tolist() == [4, 4]
    expect = op * math.exp(-0.5 * ((tile_size + 0.5 - mx) / sigma) ** 2)
    assert expect > ALPHA_MIN
    assert alpha[0, 4, tile_size, 0].item() == pytest.approx(expect, rel=1e-9)
    ref = naive_composite(means, quats, scales, torch.tensor([op], dtype=F64), torch.ones(1, 1, 1, dtype=F64),
                          torch.eye(4, dtype=F64)[None], K, width, 8)
    torch.testing.assert_close(alpha, ref[2], rtol=0, atol=1e-12)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_empty_and_all_culled(backend):
    means = torch.tensor([[0.0, 0.0, -1.0]], dtype=F64, requires_grad=True)
    img, depth, alpha, info = rasterize(means, torch.tensor([[1.0, 0, 0, 0]], dtype=F64),
                                        torch.full((1, 3), 0.1, dtype=F64), torch.tensor([0.9], dtype=F64),
                                        torch.ones(1, 1, 3, dtype=F64), torch.eye(4, dtype=F64)[None],
                                        intrinsics()[None], W, H, backgrounds=torch.tensor([[0.2, 0.3, 0.4]],
                                                                                           dtype=F64),
                                        backend=backend)
    assert (alpha == 0).all() and (depth == 0).all()
    torch.testing.assert_close(img, torch.tensor([0.2, 0.3, 0.4], dtype=F64).expand(1, H, W, 3))
    img.sum().backward()
    assert means.grad is not None and (means.grad == 0).all()


# ----------------------------------------------------------------------------------------------- gradients
def _threshold_margins(means, quats, scales, opacities, viewmats, Ks):
    """Smallest distances (in log space) of any evaluated (pixel, Gaussian) pair to the skip threshold
    (1/255), the clamp (0.999) and the transmittance stop (1e-4), and the number of clamped pairs."""
    means2d, conics, depths, _ = project_gaussians(means, quats, scales, viewmats, Ks, W, H, NEAR, 1e10, EPS2D)
    ys, xs = torch.meshgrid(torch.arange(H, dtype=F64) + 0.5, torch.arange(W, dtype=F64) + 0.5, indexing="ij")
    skip = clamp = stop = float("inf")
    n_clamped = 0
    for c in range(len(viewmats)):
        front = (depths[c] > NEAR).nonzero()[:, 0]
        order = front[torch.argsort(depths[c, front])]
        T = torch.ones(H, W, dtype=F64)
        live = torch.ones(H, W, dtype=torch.bool)
        for i in order.tolist():
            dx, dy = xs - means2d[c, i, 0], ys - means2d[c, i, 1]
            a, b, cc = conics[c, i]
            log_alpha = torch.log(opacities[i]) - (0.5 * (a * dx * dx + cc * dy * dy) + b * dx * dy)
            skip = min(skip, (log_alpha - math.log(ALPHA_MIN)).abs().min().item())
            clamp = min(clamp, (log_alpha - math.log(ALPHA_MAX)).abs().min().item())
            n_clamped += int((live & (log_alpha > math.log(ALPHA_MAX))).sum())
            alpha = log_alpha.exp().clamp_max(ALPHA_MAX)
            used = live & (alpha >= ALPHA_MIN)
            nT = T * (1 - alpha)
            if used.any():
                stop = min(stop, (torch.log(nT[used]) - math.log(T_MIN)).abs().min().item())
            live = live & ~(used & (nT <= T_MIN))
            T = torch.where(used & live, nT, T)
    return skip, clamp, stop, n_clamped


def _grad_problem(seed: int, with_stop: bool):
    g = torch.Generator().manual_seed(seed)
    means, scales, opac = [], [], []
    n = 6
    for _ in range(n):
        u = -1.0 + (W + 2.0) * torch.rand((), generator=g).item()
        v = -1.0 + (H + 2.0) * torch.rand((), generator=g).item()
        z = 2.0 + 2.0 * torch.rand((), generator=g).item()
        s = iso_scale(1.0 + 2.0 * torch.rand((), generator=g).item(), z)
        means.append(unproject(u, v, z))
        scales.append((s * (0.6 + 0.8 * torch.rand(3, generator=g, dtype=F64))).tolist())
        opac.append(0.2 + 0.5 * torch.rand((), generator=g).item())  # <= 0.7: T >= 0.3^6 > 1e-4, no stop
    if with_stop:  # nearly opaque Gaussians on top of each other: the stop triggers behind them; the first
        # (opacity 1, centred near a pixel centre) is clamped to alpha = 0.999 on that pixel
        for z, o in ((1.6, 1.0), (1.8, 0.993), (2.0, 0.99)):
            means.append(unproject(9.52, 8.53, z))
            scales.append([iso_scale(3.0, z), iso_scale(2.5, z), iso_scale(2.8, z)])
            opac.append(o)
    N = len(means)
    viewmats, Ks = two_cameras()
    return dict(means=torch.tensor(means, dtype=F64), quats=torch.randn(N, 4, generator=g, dtype=F64),
                scales=torch.tensor(scales, dtype=F64), opacities=torch.tensor(opac, dtype=F64),
                colors=torch.rand(2, N, 3, generator=g, dtype=F64), viewmats=viewmats, Ks=Ks,
                bg=torch.rand(2, 3, generator=g, dtype=F64), w_img=torch.randn(2, H, W, 3, generator=g, dtype=F64),
                w_alpha=torch.randn(2, H, W, 1, generator=g, dtype=F64),
                w_depth=0.1 * torch.randn(2, H, W, 1, generator=g, dtype=F64))


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("with_stop", [False, True])
def test_backend_gradcheck(with_stop, backend):
    p = _grad_problem(seed=11 if with_stop else 3, with_stop=with_stop)
    skip, clamp, stop, n_clamped = _threshold_margins(p["means"], p["quats"], p["scales"], p["opacities"],
                                                      p["viewmats"], p["Ks"])
    # no pair sits at a threshold: an eps = 1e-6 step moves log(alpha) by < 1e-4 here
    assert skip > 1e-4 and clamp > 1e-4 and stop > 1e-4, (skip, clamp, stop)
    naive = naive_composite(p["means"], p["quats"], p["scales"], p["opacities"], p["colors"], p["viewmats"], p["Ks"],
                            W, H, p["bg"])
    assert (naive[3]["stops"] > 0) == with_stop and (n_clamped > 0) == with_stop

    def loss(means, quats, scales, opacities, colors):
        img, depth, alpha, _ = rasterize(means, quats, scales, opacities, colors, p["viewmats"], p["Ks"], W, H,
                                         backgrounds=p["bg"], backend=backend, tile_size=8)
        return (img * p["w_img"]).sum() + (alpha * p["w_alpha"]).sum() + (depth * p["w_depth"]).sum()

    inputs = tuple(p[k].clone().requires_grad_(True) for k in ("means", "quats", "scales", "opacities", "colors"))
    assert torch.autograd.gradcheck(loss, inputs, eps=1e-6, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_means2d_grad_and_radii_in_info(backend):
    p = _grad_problem(seed=3, with_stop=False)
    means = p["means"].clone().requires_grad_(True)
    means = torch.cat([means, torch.tensor([[0.0, 0.0, -2.0]], dtype=F64)])  # + one behind the cameras
    N = len(means)
    quats = torch.cat([p["quats"], torch.tensor([[1.0, 0, 0, 0]], dtype=F64)])
    scales = torch.cat([p["scales"], torch.full((1, 3), 0.3, dtype=F64)])
    opac = torch.cat([p["opacities"], torch.tensor([0.9], dtype=F64)])
    colors = torch.cat([p["colors"], torch.ones(2, 1, 3, dtype=F64)], 1)
    img, depth, alpha, info = rasterize(means, quats, scales, opac, colors, p["viewmats"], p["Ks"], W, H,
                                        backend=backend)
    (img.sum() + alpha.sum()).backward()
    g2d = info["means2d"].grad
    assert g2d is not None and g2d.shape == (2, N, 2)
    radii = info["radii"]
    assert radii.shape == (2, N, 2) and radii.dtype == torch.int32
    vis = (radii > 0).all(-1)
    assert not vis[:, -1].any() and (g2d[:, -1] == 0).all()
    assert (g2d[vis].norm(dim=-1) > 0).all()
    assert info["width"] == W and info["height"] == H and info["n_cameras"] == 2


# ----------------------------------------------------------------------------------------------- SH / render()
SQ_PI = math.sqrt(math.pi)


def sh_basis_reference(d: torch.Tensor) -> torch.Tensor:
    """The 16 real SH basis functions (3DGS order and signs, i.e. with the Condon-Shortley phase) for unit
    vectors, from their closed forms: [..., 16]."""
    d = d / d.norm(dim=-1, keepdim=True)
    x, y, z = d.unbind(-1)
    pi = math.pi
    k1 = math.sqrt(3 / (4 * pi))
    k2a, k2b = 0.5 * math.sqrt(15 / pi), 0.25 * math.sqrt(5 / pi)
    k3a, k3b, k3c = 0.25 * math.sqrt(35 / (2 * pi)), 0.5 * math.sqrt(105 / pi), 0.25 * math.sqrt(21 / (2 * pi))
    k3d, k3e = 0.25 * math.sqrt(7 / pi), 0.25 * math.sqrt(105 / pi)
    return torch.stack([
        torch.full_like(x, 0.5 / SQ_PI),
        -k1 * y, k1 * z, -k1 * x,
        k2a * x * y, -k2a * y * z, k2b * (3 * z * z - 1), -k2a * x * z, 0.5 * k2a * (x * x - y * y),
        -k3a * y * (3 * x * x - y * y), k3b * x * y * z, -k3c * y * (5 * z * z - 1), k3d * z * (5 * z * z - 3),
        -k3c * x * (5 * z * z - 1), k3e * z * (x * x - y * y), -k3a * x * (x * x - 3 * y * y),
    ], -1)


def test_sh_reference_constants():
    """The closed forms above agree with the 3DGS constants quoted in its code (C1 = 0.4886025119029199...)."""
    assert 0.5 / SQ_PI == pytest.approx(0.28209479177387814, abs=1e-15)
    assert math.sqrt(3 / (4 * math.pi)) == pytest.approx(0.4886025119029199, abs=1e-15)
    assert 0.5 * math.sqrt(15 / math.pi) == pytest.approx(1.0925484305920792, abs=1e-15)
    assert 0.25 * math.sqrt(35 / (2 * math.pi)) == pytest.approx(0.5900435899266435, abs=1e-15)
    assert 0.25 * math.sqrt(7 / math.pi) == pytest.approx(0.3731763325901154, abs=1e-15)


@pytest.mark.parametrize("degree", [0, 1, 2, 3])
def test_eval_sh_matches_basis(degree):
    dirs = torch.tensor([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.0, -1.0, 0.0], [1.0, 2.0, 3.0], [-0.3, 0.5, -0.8],
                         [2.0, -1.0, 0.5]], dtype=F64)
    dirs = torch.cat([dirs, torch.randn(10, 3, dtype=F64, generator=torch.Generator().manual_seed(0))])
    coeffs = torch.randn(len(dirs), 16, 3, dtype=F64, generator=torch.Generator().manual_seed(1))
    K = (degree + 1) ** 2
    expect = torch.einsum("nk,nkc->nc", sh_basis_reference(dirs)[:, :K], coeffs[:, :K])
    torch.testing.assert_close(eval_sh(degree, coeffs, dirs), expect, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(eval_sh(degree, coeffs[:, :K], 3.7 * dirs), expect, rtol=1e-12, atol=1e-12)
    # a few explicit values: along +z only the m = 0 bands are non-zero
    one_hot = torch.zeros(1, 16, 3, dtype=F64)
    if degree >= 1:
        one_hot[0, 2, 0] = 1.0
        assert eval_sh(degree, one_hot, torch.tensor([[0.0, 0.0, 2.0]], dtype=F64))[0, 0].item() == \
            pytest.approx(0.4886025119029199, abs=1e-14)
    with pytest.raises(ValueError):
        eval_sh(4, torch.zeros(1, 25, 3), torch.ones(1, 3))


def _model_and_cameras(sh_degree=3, D=5, N=12, seed=0):
    g = torch.Generator().manual_seed(seed)
    pts = torch.tensor([unproject(u, v, z) for u, v, z in
                        zip((torch.rand(N, generator=g) * (W + 4) - 2).tolist(),
                            (torch.rand(N, generator=g) * (H + 4) - 2).tolist(),
                            (2 + 2 * torch.rand(N, generator=g)).tolist())])
    K = (sh_degree + 1) ** 2
    params = {
        "means": pts,
        "quats": torch.randn(N, 4, generator=g),
        "scales": torch.log(0.05 + 0.15 * torch.rand(N, 3, generator=g)),
        "opacities": torch.randn(N, generator=g),
        "sh0": 0.8 * torch.randn(N, 1, 3, generator=g),
        "shN": 0.3 * torch.randn(N, K - 1, 3, generator=g),
        "features": torch.randn(N, D, generator=g),
    }
    model = GaussianModel(params, sh_degree)
    viewmats, Ks = two_cameras()
    return model, Cameras(viewmats.float(), Ks.float(), W, H)


def _rasterize_model(model, cams, colors, bg=None):
    return rasterize(model.get_means(), model.get_quats(), model.get_scales(), model.get_opacities(), colors,
                     cams.viewmats, cams.Ks, cams.width, cams.height, backgrounds=bg, backend="torch")


def test_render_features_and_rgb():
    model, cams = _model_and_cameras()
    C = len(cams)
    bg = torch.tensor([0.1, 0.7, 0.3])
    with torch.no_grad():
        out = render(model, cams, backgrounds=bg, backend="torch")
        assert out.rgb.shape == (C, H, W, 3) and out.features.shape == (C, H, W, model.feature_dim)
        feats = model.params["features"][None].expand(C, -1, -1)
        f_img, f_depth, f_alpha, _ = _rasterize_model(model, cams, feats)  # features composite over 0
        torch.testing.assert_close(out.features, f_img, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(out.alpha, f_alpha, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(out.depth, f_depth, rtol=1e-4, atol=1e-4)
        # RGB from the independent SH basis, directions from the camera centres to the means
        dirs = model.get_means()[None] - cams.centers[:, None]
        basis = sh_basis_reference(dirs.double())  # [C, N, 16]
        rgb = (torch.einsum("cnk,nkd->cnd", basis, model.get_sh().double()) + 0.5).clamp_min(0).float()
        c_img, _, _, _ = _rasterize_model(model, cams, rgb, bg.expand(C, 3))
        torch.testing.assert_close(out.rgb, c_img, rtol=1e-5, atol=1e-5)
        # without features: same RGB, features None
        out2 = render(model, cams, backgrounds=bg, backend="torch", with_features=False)
        assert out2.features is None
        torch.testing.assert_close(out2.rgb, out.rgb, rtol=1e-5, atol=1e-6)


def test_render_sh_degree0_colour():
    model, cams = _model_and_cameras(sh_degree=3, D=0)
    C = len(cams)
    with torch.no_grad():
        out = render(model, cams, backend="torch", sh_degree=0)  # higher bands ignored
        assert out.features is None
        rgb0 = (model.params["sh0"][:, 0] * 0.28209479177387814 + 0.5).clamp_min(0)
        ref, _, _, _ = _rasterize_model(model, cams, rgb0[None].expand(C, -1, -1))
        torch.testing.assert_close(out.rgb, ref, rtol=1e-5, atol=1e-6)
    # one Gaussian centred on a pixel centre: the pixel's colour is opacity * (sh0 C0 + 0.5)
    sh0 = torch.tensor([[[0.4, -0.9, 1.2]]])
    params = {"means": torch.tensor([unproject(10.5, 8.5, 3.0)]), "quats": torch.tensor([[1.0, 0, 0, 0]]),
              "scales": torch.log(torch.full((1, 3), 0.2)), "opacities": torch.logit(torch.tensor([0.8])),
              "sh0": sh0, "shN": torch.zeros(1, 0, 3), "features": torch.zeros(1, 0)}
    one = GaussianModel(params, 0)
    cam = Cameras(torch.eye(4), intrinsics().float(), W, H)
    with torch.no_grad():
        out = render(one, cam, backend="torch")
    expect = 0.8 * (sh0[0, 0] * 0.28209479177387814 + 0.5)
    assert (expect > 0).all()
    torch.testing.assert_close(out.rgb[0, 8, 10], expect, rtol=1e-5, atol=1e-6)
    assert out.alpha[0, 8, 10, 0].item() == pytest.approx(0.8, rel=1e-5)
    assert out.depth[0, 8, 10, 0].item() == pytest.approx(3.0, rel=1e-5)


def test_unknown_backend_is_config_error():
    model, cams = _model_and_cameras(D=0, N=3)
    with pytest.raises(ConfigError, match="nope"):
        render(model, cams, backend="nope")
    s = make_scene(n_random=2)
    with pytest.raises(ConfigError, match="nope"):
        rasterize(*scene_args(s), backend="nope")
    with pytest.raises(ConfigError):
        resolve_backend("nope", torch.device("cpu"))
    assert resolve_backend("auto", torch.device("cpu")) == "cpu"  # the compiled rasterizer is built here
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="gsplat.*unavailable"):
            resolve_backend("gsplat", torch.device("cpu"))


# ----------------------------------------------------------------------------------------------- gsplat (CUDA)
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA: gsplat's rasterizer is CUDA-only")
@pytest.mark.parametrize("antialiased", [False, True])
def test_gsplat_matches_torch_backend_cuda(antialiased):
    dev = torch.device("cuda")
    g = torch.Generator().manual_seed(0)
    N, C, w, h, D = 2000, 2, 64, 48, 13
    fx = fy = 60.0
    Ks = torch.tensor([[fx, 0.0, w / 2], [0.0, fy, h / 2], [0.0, 0.0, 1.0]]).expand(C, 3, 3).contiguous()
    viewmats = torch.stack([torch.eye(4, dtype=F64), viewmat(rot_y(0.1), [0.2, 0.05, 0.3])]).float()
    z = 2.0 + 4.0 * torch.rand(N, generator=g)
    u = (torch.rand(N, generator=g) * 1.2 - 0.1) * w
    v = (torch.rand(N, generator=g) * 1.2 - 0.1) * h
    means = torch.stack([(u - w / 2) * z / fx, (v - h / 2) * z / fy, z], -1)
    quats = torch.randn(N, 4, generator=g)
    scales = torch.exp(torch.empty(N, 3).uniform_(math.log(0.01), math.log(0.08), generator=g))
    opacities = torch.empty(N).uniform_(0.02, 0.98, generator=g)
    colors = torch.cat([torch.rand(C, N, 3, generator=g), torch.randn(C, N, D, generator=g)], -1)  # 16 channels
    bg = torch.cat([torch.rand(C, 3, generator=g), torch.zeros(C, D)], -1)
    w_img = torch.randn(C, h, w, 3 + D, generator=g)
    w_alpha = torch.randn(C, h, w, 1, generator=g)
    w_depth = 0.1 * torch.randn(C, h, w, 1, generator=g)
    to = lambda t: t.to(dev)  # noqa: E731
    inputs = [to(t) for t in (means, quats, scales, opacities, colors)]
    viewmats, Ks, bg, w_img, w_alpha, w_depth = map(to, (viewmats, Ks, bg, w_img, w_alpha, w_depth))
    with torch.no_grad():  # depth is compared (and weighted) where the pixel is well covered
        ref_alpha = rasterize(*inputs, viewmats, Ks, w, h, backgrounds=bg, backend="torch", antialiased=antialiased)[2]
    covered = (ref_alpha > 0.5).to(ref_alpha.dtype)

    def run(backend):
        leaves = [t.clone().requires_grad_(True) for t in inputs]
        img, depth, alpha, info = rasterize(*leaves, viewmats, Ks, w, h, backgrounds=bg, backend=backend,
                                            tile_size=16, antialiased=antialiased)
        info["means2d"].retain_grad()  # as gsplat's DefaultStrategy.step_pre_backward does
        loss = (img * w_img).sum() + (alpha * w_alpha).sum() + (depth * covered * w_depth).sum()
        loss.backward()
        grads = dict(zip(("means", "quats", "scales", "opacities", "colors"), (t.grad for t in leaves)))
        grads["means2d"] = info["means2d"].grad
        return img.detach(), depth.detach(), alpha.detach(), info, grads

    img_g, depth_g, alpha_g, info_g, grads_g = run("gsplat")
    img_t, depth_t, alpha_t, info_t, grads_t = run("torch")
    assert img_g.shape == img_t.shape == (C, h, w, 3 + D)
    assert alpha_g.shape == depth_g.shape == (C, h, w, 1)
    assert info_g["means2d"].shape == (C, N, 2) and info_g["radii"].shape == (C, N, 2)
    # gsplat's opacity-aware boxes are never larger than ours: what it sees, we see
    assert not ((info_g["radii"] > 0).all(-1) & ~(info_t["radii"] > 0).all(-1)).any()
    # float32 sums (and gsplat's __expf) may flip a rare pair sitting right at alpha = 1/255: that changes a
    # pixel by at most ~0.004 T |colour|, so all but a handful of values must be within atol, none far off
    def assert_mostly_close(a, b, atol, max_err):
        err = (a - b).abs()
        assert (err > atol).float().mean().item() < 1e-3 and err.max().item() < max_err, err.max().item()

    assert_mostly_close(img_g[..., :3], img_t[..., :3], 1e-3, 5e-3)
    assert_mostly_close(img_g[..., 3:], img_t[..., 3:], 1e-3, 5e-2)  # features ~ N(0, 1)
    assert_mostly_close(alpha_g, alpha_t, 1e-3, 5e-3)
    m = covered.bool()
    assert_mostly_close(depth_g[m], depth_t[m], 1e-3 * 6, 0.1)  # depths 2..6
    for k in ("means", "quats", "scales", "opacities", "colors", "means2d"):
        a, b = grads_g[k], grads_t[k]
        assert a is not None and b is not None, k
        rel = ((a - b).norm() / b.norm().clamp_min(1e-12)).item()
        assert rel < 1e-2, (k, rel)

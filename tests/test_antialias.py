"""Antialiased rendering (Mip-Splatting's 2D filter, gsplat's ``rasterize_mode="antialiased"``) on the CPU backends.

* :func:`opacity_compensation` against ``sqrt(det(S) / det(S + eps2d I))`` of the projected covariances, each
  read from an independent projection without the low-pass;
* ``rasterize(antialiased=True)`` on the torch reference and its compiled twin against the naive compositor of
  ``tests/test_render.py`` fed those compensated opacities, and their gradients against finite differences;
* a Gaussian far smaller than a pixel fades instead of growing to a pixel-sized blob; a large one is unchanged;
* the model's flag is how it renders and travels with it: PLY sidecar, edits, lifts, training;
* (CUDA) gsplat's antialiased mode in ``tests/test_render.py``'s gsplat comparison.
"""

import json
import math

import pytest
import torch

from dff_gs.core.gaussians import GaussianModel
from dff_gs.edit.ops import take
from dff_gs.engine.pipeline import run
from dff_gs.io.ply import load_ply, save_ply
from dff_gs.lift.model import with_features
from dff_gs.render import rasterize, render
from dff_gs.render.projection import opacity_compensation, project_gaussians
from tests.test_render import (
    EPS2D,
    NEAR,
    F64,
    H,
    W,
    _grad_problem,
    intrinsics,
    iso_scale,
    make_scene,
    naive_composite,
    scene_args,
)
from tests.test_train import tiny_cfg

CPU_BACKENDS = ["torch", "cpu"]


def expected_compensation(means, quats, scales, viewmats, Ks, width, height):
    """``sqrt(det S / det(S + eps2d I))`` per camera and Gaussian: ``[C, N]``, from two projections."""
    plain = project_gaussians(means, quats, scales, viewmats, Ks, width, height, NEAR, 1e10, 0.0)[1]
    blurred = project_gaussians(means, quats, scales, viewmats, Ks, width, height, NEAR, 1e10, EPS2D)[1]
    det_inv = lambda q: q[..., 0] * q[..., 2] - q[..., 1] ** 2  # noqa: E731  det of a conic = 1 / det S
    return (det_inv(blurred) / det_inv(plain)).sqrt()


def test_compensation_is_the_covariance_ratio():
    s = make_scene(seed=4)
    means2d, conics, depths, radii = project_gaussians(s["means"], s["quats"], s["scales"], s["viewmats"], s["Ks"],
                                                       W, H, NEAR, 1e10, EPS2D)
    visible = (radii > 0).all(-1)
    got = opacity_compensation(conics, EPS2D)
    want = expected_compensation(s["means"], s["quats"], s["scales"], s["viewmats"], s["Ks"], W, H)
    assert visible.sum() > 10
    torch.testing.assert_close(got[visible], want[visible], rtol=1e-9, atol=1e-12)
    assert ((got > 0) & (got <= 1)).all()


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_antialiased_matches_naive_with_compensated_opacities(backend):
    s = make_scene(seed=1)
    args = scene_args(s)
    means, quats, scales, opacities, colors, viewmats, Ks = args[:7]
    comp = expected_compensation(means, quats, scales, viewmats, Ks, W, H)
    img, depth, alpha, _ = rasterize(*args, backend=backend, antialiased=True)
    for c in range(len(viewmats)):
        ref = naive_composite(means, quats, scales, opacities * comp[c], colors[c:c + 1], viewmats[c:c + 1],
                              Ks[c:c + 1], W, H)
        torch.testing.assert_close(img[c:c + 1], ref[0], rtol=0, atol=1e-10)
        torch.testing.assert_close(alpha[c:c + 1], ref[2], rtol=0, atol=1e-10)
    classic = rasterize(*args, backend=backend)[2]
    assert (classic - alpha).abs().max() > 1e-3  # the filter changes what is drawn


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_antialiased_gradcheck(backend):
    p = _grad_problem(seed=3, with_stop=False)

    def loss(means, quats, scales, opacities, colors):
        img, depth, alpha, _ = rasterize(means, quats, scales, opacities, colors, p["viewmats"], p["Ks"], W, H,
                                         backgrounds=p["bg"], backend=backend, tile_size=8, antialiased=True)
        return (img * p["w_img"]).sum() + (alpha * p["w_alpha"]).sum() + (depth * p["w_depth"]).sum()

    inputs = tuple(p[k].clone().requires_grad_(True) for k in ("means", "quats", "scales", "opacities", "colors"))
    assert torch.autograd.gradcheck(loss, inputs, eps=1e-6, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_subpixel_gaussian_fades_large_one_unchanged(backend):
    """2D sigma 0.05 px: classic draws it as a 0.55 px blob at its full opacity; antialiased at 0.05^2 / 0.3
    (the ratio of the determinants' square roots) of it. 2D sigma 4 px: 16 / 16.3 = 0.98 of its classic alpha."""
    z, op = 2.0, 0.9
    K = intrinsics(cx=4.5, cy=4.5)[None]
    quats = torch.tensor([[1.0, 0, 0, 0]], dtype=F64)
    for sigma in (0.05, 4.0):
        scales = torch.full((1, 3), iso_scale(sigma, z), dtype=F64)
        args = (torch.tensor([[0.0, 0.0, z]], dtype=F64), quats, scales, torch.tensor([op], dtype=F64),
                torch.ones(1, 1, 1, dtype=F64), torch.eye(4, dtype=F64)[None], K, 9, 9)
        classic = rasterize(*args, backend=backend)[2][0, 4, 4, 0].item()
        aa = rasterize(*args, backend=backend, antialiased=True)[2][0, 4, 4, 0].item()
        assert classic == pytest.approx(op, rel=1e-9)  # the pixel centre is the Gaussian's centre
        assert aa == pytest.approx(op * sigma ** 2 / (sigma ** 2 + EPS2D), rel=1e-6)
    assert 0.98 * classic < aa < classic


def tiny_model(antialiased: bool) -> GaussianModel:
    model = GaussianModel.random(torch.tensor([[-1.0, -1.0, 2.0], [1.0, 1.0, 4.0]]), 200, sh_degree=1,
                                 feature_dim=4, decoder_dim=6)
    model.antialiased = antialiased
    return model


def test_flag_is_how_the_model_renders_and_travels(tmp_path):
    from dff_gs.core.cameras import Cameras

    model = tiny_model(True)
    cams = Cameras(torch.eye(4)[None], intrinsics(fx=30.0, fy=30.0, cx=16.0, cy=12.0).float()[None], 32, 24)
    out = render(model, cams, backend="torch")
    direct = rasterize(model.get_means(), model.get_quats(), model.get_scales(), model.get_opacities(),
                       out.rgb.new_zeros(1, model.num_gaussians, 1), cams.viewmats, cams.Ks, 32, 24,
                       backend="torch", antialiased=True)[2]
    torch.testing.assert_close(out.alpha, direct)
    model.antialiased = False
    assert (render(model, cams, backend="torch").alpha - out.alpha).abs().max() > 1e-4
    model.antialiased = True
    path = save_ply(model, tmp_path / "m.ply")
    assert json.loads((tmp_path / "m.dff.json").read_text())["antialiased"] is True
    loaded, _ = load_ply(path)
    assert loaded.antialiased and not load_ply(save_ply(tiny_model(False), tmp_path / "c.ply"))[0].antialiased
    assert take(loaded, torch.arange(10)).antialiased
    assert with_features(loaded, torch.zeros(loaded.num_gaussians, 4)).antialiased


def test_training_with_the_filter_keeps_it(tiny_scene, tmp_path):
    metrics = run(tiny_cfg(tiny_scene, tmp_path / "run", "model.antialiased=true"), progress=False)
    assert math.isfinite(metrics["psnr"])
    model, meta = load_ply(tmp_path / "run" / "point_cloud.ply")
    assert model.antialiased and meta["antialiased"] is True


def test_lifting_weights_follow_the_filter():
    """The compositing weights a lift sums (``alpha T`` per pixel and Gaussian) add up to the pixel's alpha of the
    model's own render, antialiased or not."""
    from dff_gs.core.cameras import Cameras
    from dff_gs.lift import compositing_weights

    cams = Cameras(torch.eye(4)[None], intrinsics(fx=30.0, fy=30.0, cx=16.0, cy=12.0).float()[None], 32, 24)
    sums = {}
    for aa in (False, True):
        model = tiny_model(aa)
        w = compositing_weights(model, cams, min_weight=0.0)
        per_pixel = torch.zeros(32 * 24).index_add_(0, w.pixel, w.weight).reshape(1, 24, 32, 1)
        torch.testing.assert_close(per_pixel, render(model, cams, backend="torch").alpha, rtol=1e-4, atol=1e-5)
        sums[aa] = per_pixel
    assert (sums[True] - sums[False]).abs().max() > 1e-3


def test_resume_keeps_the_mode_it_was_trained_with(tiny_scene, tmp_path):
    """A checkpoint trained classic (or written before the option) continues classic under the new default."""
    run(tiny_cfg(tiny_scene, tmp_path / "run", "model.antialiased=false", "train.steps=12"), progress=False)
    payload = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=False)
    assert payload["antialiased"] is False
    del payload["antialiased"]  # as a checkpoint of the code before the option
    torch.save(payload, tmp_path / "run" / "checkpoint.pt")
    run(tiny_cfg(tiny_scene, tmp_path / "run", f"resume={tmp_path / 'run'}", "train.steps=24"), progress=False)
    assert not load_ply(tmp_path / "run" / "point_cloud.ply")[0].antialiased
    assert torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=False)["step"] == 24

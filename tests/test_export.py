"""Viewer exports through gsplat's exporter (``.splat``, plain and compressed PLY, Y-up) and recolours that 8-bit
viewers show as our renderer does."""

import math
import os

import numpy as np
import pytest
import torch
from plyfile import PlyData

from dff_gs.core.cameras import Cameras
from dff_gs.edit import ops
from dff_gs.edit.color import apply_color_matrix, color_matrix, dc_colors
from dff_gs.core.errors import ConfigError
from dff_gs.eval.metrics import psnr
from dff_gs.core.gaussians import GaussianModel
from dff_gs.io.export import export_model, export_paths, parse_exports, read_splat, render_as_viewer
from dff_gs.render import eval_sh, render


def scene_model(n=600, seed=0, sh_degree=1):
    """A 'sofa' of dark Gaussians with varied shading (left) and a light 'wall' (behind), in front of camera 0;
    small random view dependence."""
    g = torch.Generator().manual_seed(seed)
    half = n // 2
    means = torch.cat([torch.tensor([-0.3, 0.0, 3.0]) + 0.25 * torch.randn(half, 3, generator=g),
                       torch.tensor([0.0, 0.0, 5.0]) + torch.tensor([1.5, 1.2, 0.05]) * torch.randn(half, 3,
                                                                                                  generator=g)])
    shade = 0.04 + 0.4 * torch.rand(half, 1, generator=g)
    colours = torch.cat([shade * torch.tensor([1.0, 0.8, 0.6]), 0.6 + 0.3 * torch.rand(half, 3, generator=g)])
    model = GaussianModel.from_points(means, colours, sh_degree=sh_degree, init_opacity=0.8)
    with torch.no_grad():
        model.params["scales"].fill_(math.log(0.08))
        model.params["shN"].copy_(0.02 * torch.randn(model.params["shN"].shape, generator=g))
    return model, torch.arange(n) < half


def cameras(n=3, w=64, h=48):
    views = []
    for i in range(n):
        v = torch.eye(4)
        v[0, 3] = 0.2 * (i - 1)
        views.append(v)
    K = torch.tensor([[60.0, 0.0, w / 2], [0.0, 60.0, h / 2], [0.0, 0.0, 1.0]])
    return Cameras(torch.stack(views), K[None].expand(n, 3, 3), w, h)


@torch.no_grad()
def ours(model):
    return render(model, cameras(), backgrounds=torch.ones(3), with_features=False, backend="torch").rgb.clamp(0, 1)


def viewer_psnr(model, tmp_path, name):
    """Our render of ``model`` against the plain PLY export read back and drawn as an 8-bit viewer draws it
    (:func:`render_as_viewer`): the PSNR between them."""
    from dff_gs.io.ply import load_ply

    exported, _ = load_ply(export_model(model, tmp_path / f"{name}.ply", ["ply"])[0])
    return psnr(render_as_viewer(exported, cameras(), torch.ones(3), backend="torch"), ours(model))


def lexsorted(x: torch.Tensor) -> torch.Tensor:
    return x[np.lexsort(x.numpy().T[::-1].copy())]


@pytest.mark.parametrize("up", ["z", "y"])
def test_splat_export_decodes_to_the_same_means(tmp_path, up):
    model, _ = scene_model()
    paths = export_model(model, tmp_path / "point_cloud.ply", ["splat", "ply", "ply_compressed"], up=up)
    assert [p.name for p in paths] == ["point_cloud.splat", "point_cloud.plain.ply", "point_cloud.compressed.ply"]
    means = model.params["means"].detach()
    if up == "y":  # world +Z becomes +Y: (x, y, z) -> (x, z, -y)
        means = torch.stack([means[:, 0], means[:, 2], -means[:, 1]], 1)
    decoded = read_splat(paths[0])
    assert len(decoded["means"]) == model.num_gaussians
    assert (lexsorted(decoded["means"]) - lexsorted(means)).abs().max() <= 1e-6
    plain = PlyData.read(str(paths[1]))["vertex"]
    assert not any(p.name.startswith("semantic_") for p in plain.properties)
    xyz = torch.from_numpy(np.stack([plain["x"], plain["y"], plain["z"]], 1).astype(np.float32))
    assert (xyz - means).abs().max() <= 1e-6  # the plain PLY keeps the order
    assert PlyData.read(str(paths[2]))["vertex"].count == model.num_gaussians
    if up == "y":  # the quaternions and SH bands turned with the means: the same picture from a turned camera
        cams = cameras()
        R = torch.eye(4)
        R[:3, :3] = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]])  # y-up world -> z-up world
        turned = Cameras(cams.viewmats @ R, cams.Ks, cams.width, cams.height)
        from dff_gs.io.export import viewer_params
        rotated = GaussianModel({**viewer_params(model, "y"), "features": torch.zeros(model.num_gaussians, 0)}, 1)
        a = render(rotated, turned, backgrounds=torch.ones(3), with_features=False, backend="torch").rgb
        torch.testing.assert_close(a, ours(model), atol=1e-4, rtol=0)


def test_export_files_are_0644_and_atomic(tmp_path):
    model, _ = scene_model(n=50)
    old = os.umask(0o022)
    try:
        paths = export_model(model, tmp_path / "m.ply", parse_exports("splat,ply_compressed,splat"))
    finally:
        os.umask(old)
    assert [oct(p.stat().st_mode & 0o777) for p in paths] == ["0o644", "0o644"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.compressed.ply", "m.splat"]  # no temporary left
    assert export_paths(tmp_path / "edited.ply", ["ply"])["ply"].name == "edited.plain.ply"
    with pytest.raises(ConfigError, match="--export='spz': not an export format"):
        parse_exports("splat,spz")
    with pytest.raises(ConfigError, match="--up='x'"):
        export_model(model, tmp_path / "m.ply", ["splat"], up="x")


def test_recolor_dc_in_range_and_viewers_match_as_unedited(tmp_path):
    """A dark object tinted light: its DC colours are clamped to [0, 1] (some would be up to ~2.4), and the
    ``.splat`` export decoded as an 8-bit viewer does matches our render as closely as the unedited scene's does;
    the unclamped colour map does not."""
    model, sofa = scene_model()
    res = ops.recolor(model, sofa, color=[0.95, 0.9, 0.85])
    dc = dc_colors(res.model.params["sh0"].detach())
    assert dc.min() >= 0 and dc.max() <= 1 and res.info["clamped_to_displayable"] > 0
    assert torch.equal(res.model.params["sh0"][~sofa], model.params["sh0"][~sofa])
    M = color_matrix([0.95, 0.9, 0.85], reference_luma=float((dc_colors(model.params["sh0"].detach()[sofa]).clamp(
        0, 1) @ torch.tensor([0.2126, 0.7152, 0.0722])).mean()))
    raw0, rawN = apply_color_matrix(model.params["sh0"].detach()[sofa], model.params["shN"].detach()[sofa], M)
    assert dc_colors(raw0).max() > 1.5  # what the clamp prevents
    unclamped = GaussianModel({k: v.detach().clone() for k, v in model.params.items()}, model.sh_degree)
    with torch.no_grad():
        unclamped.params["sh0"][sofa], unclamped.params["shN"][sofa] = raw0, rawN
    before = viewer_psnr(model, tmp_path, "before")
    after = viewer_psnr(res.model, tmp_path, "after")
    worse = viewer_psnr(unclamped, tmp_path, "unclamped")
    assert after >= before - 1.0, (before, after)
    assert worse < after - 3.0, (worse, after)
    flat = ops.recolor(model, sofa, color=[1.0, 1.0, 1.0], shading=False, brightness=1.5)
    for edited in (res.model, flat.model):  # the colour in every direction, not only the DC, is displayable
        dirs = torch.nn.functional.normalize(torch.randn(200, 1, 3, generator=torch.Generator().manual_seed(1)), dim=-1)
        sh = edited.get_sh().detach()[sofa]
        c = eval_sh(1, sh[None].expand(200, *sh.shape), dirs.expand(200, len(sh), 3)) + 0.5
        assert c.min() >= -1e-6 and c.max() <= 1 + 1e-6
    hues = ops.recolor(model, ~sofa, hue=40.0)  # light colours turned in hue: within range, left exactly as mapped
    M = color_matrix(hue=40.0)
    exact0, _ = apply_color_matrix(model.params["sh0"].detach()[~sofa], model.params["shN"].detach()[~sofa], M)
    inside = hues.info["clamped_to_displayable"]
    assert inside < int((~sofa).sum()) and (hues.model.params["sh0"].detach()[~sofa] == exact0).all(-1).sum() >= \
        int((~sofa).sum()) - inside

"""Click grouping (dff_gs.grouping): widest paths, the sharpest group, and objects that Eq. 5 cannot tell apart."""

import math

import pytest
import torch

from dff_gs import query as Q
from dff_gs.cameras import Cameras, intrinsics_from_fov
from dff_gs.errors import ConfigError
from dff_gs.gaussians import GaussianModel
from dff_gs.grouping import (ClickGrouper, click_seeds, front_seeds, pixel_camera, sharpest_group,
                             smoothed_features, widest_path)


def test_widest_path_is_the_bottleneck_of_the_best_path():
    # 0 -0.9- 1 -0.5- 2 -0.8- 3, and 0 -0.6- 3: node 3 is best reached directly (0.6), node 2 through 3 (0.6)
    src, dst = torch.tensor([0, 1, 2, 0]), torch.tensor([1, 2, 3, 3])
    reach = widest_path(5, src, dst, torch.tensor([0.9, 0.5, 0.8, 0.6]), torch.tensor([0]))
    assert reach[0] == math.inf and reach[4] == -math.inf  # the seed; node 4 is not connected
    torch.testing.assert_close(reach[1:4], torch.tensor([0.9, 0.6, 0.6]))
    both = widest_path(5, src, dst, torch.tensor([0.9, 0.5, 0.8, 0.6]), torch.tensor([0, 2]))
    torch.testing.assert_close(both[1:4], torch.tensor([0.9, math.inf, 0.8]))


def test_sharpest_group_cuts_at_the_largest_drop_within_the_size_range():
    # 30 nodes join at ~0.95 (an object), 100 at 0.5 (what it touches), 5 at 0.99 (a small first piece)
    reach = torch.cat([torch.tensor([math.inf]), torch.full((5,), 0.99), 0.95 - 0.001 * torch.arange(30),
                       torch.full((100,), 0.5), torch.tensor([-math.inf])])
    group = sharpest_group(reach, min_size=20, max_size=60)
    assert int(group.sum()) == 36 and not group[-101:].any()
    # with min_size above the object, the cut falls after the next plateau
    assert int(sharpest_group(reach, min_size=40, max_size=200).sum()) == 136


def test_front_seeds_are_the_surface_clicked():
    ids, weights = torch.tensor([7, 3, 9, 4]), torch.tensor([0.05, 0.5, 0.15, 0.3])
    assert front_seeds(ids, weights).tolist() == [3, 4]  # 0.5 + 0.3 make up 80% of the pixel
    assert front_seeds(ids, weights, share=0.95).tolist() == [3, 4, 9]
    assert front_seeds(ids, weights, share=0.1).tolist() == [3]  # at least the strongest
    assert len(front_seeds(ids[:0], weights[:0])) == 0


def scene_with_two_lookalikes():
    """A backdrop of Gaussians at z = 4 and two blobs touching it, at x = -0.7 and x = +0.7: the blobs carry almost
    the same feature (two objects of one kind) and the backdrop another, with noise."""
    g = torch.Generator().manual_seed(0)
    xs = torch.linspace(-2.0, 2.0, 21)
    back = torch.stack(torch.meshgrid(xs, xs, indexing="ij"), -1).reshape(-1, 2)
    back = torch.cat([back, torch.full((len(back), 1), 4.0)], 1)
    blobs = [torch.tensor([x, 0.0, 3.75]) + 0.12 * torch.randn(60, 3, generator=g) for x in (-0.7, 0.7)]
    means = torch.cat([back, *blobs])
    labels = torch.cat([torch.zeros(len(back)), torch.ones(60), torch.full((60,), 2.0)]).long()
    model = GaussianModel.from_points(means, torch.rand(len(means), 3, generator=g), sh_degree=0, feature_dim=4,
                                      init_opacity=0.95)
    base = torch.tensor([[0.0, 0.0, 1.0, 0.0], [1.0, 0.3, 0.0, 0.0], [1.0, 0.35, 0.0, 0.05]])
    with torch.no_grad():
        model.params["features"].copy_(base[labels] + 0.03 * torch.randn(len(means), 4, generator=g))
        model.params["scales"].fill_(math.log(0.09))
    return model, labels


def cameras():
    K = intrinsics_from_fov(1.0, 48, 36)
    views = []
    for dx in (-0.3, 0.0, 0.3):
        v = torch.eye(4)
        v[0, 3] = dx
        views.append(v)
    return Cameras(torch.stack(views), K[None].expand(3, 3, 3), 48, 36)


def test_a_click_selects_its_object_where_eq5_takes_both_lookalikes():
    model, labels = scene_with_two_lookalikes()
    cams = cameras()
    uv, _ = cams.project(torch.tensor([[-0.7, 0.0, 3.75]]))
    x, y = (int(v) for v in uv[1, 0])
    # Eq. 5 on the click's feature: both blobs are "the same thing"
    eq5 = Q.select(Q.reference_probabilities(model, Q.click_feature(model, cams, 1, x, y, backend="torch"), k=3))
    assert eq5.mask[labels == 2].float().mean() > 0.5
    # grouping: the left blob only
    seeds, weights = click_seeds(model, cams, 1, x, y)
    assert len(seeds) and (labels[seeds] == 1).any() and float(weights.sum()) <= 1.0 + 1e-5
    grouper = ClickGrouper(model, smoothed_features(model, *Q.render_views(model, cams, "torch")), knn=8)
    mask, info = grouper.group(seeds, min_share=0.02, max_share=0.3)
    assert mask[labels == 1].all() and not mask[labels == 2].any()
    # of the backdrop, at most a few Gaussians hidden right behind the clicked blob (they take its feature)
    back = model.get_means().detach()[mask & (labels == 0)]
    assert len(back) <= 20 and ((back[:, 0] + 0.7).abs() < 0.6).all() and (back[:, 1].abs() < 0.6).all()
    assert info["grouped"] == int(mask.sum())


def test_pixel_camera_sees_exactly_that_pixel():
    model, _ = scene_with_two_lookalikes()
    cams = cameras()
    full = Q.render_values(model, cams[[1]], model.get_means().detach()[:, :1], backend="torch")[0]
    one = pixel_camera(cams, 1, 17, 11)
    assert (one.width, one.height) == (1, 1)
    pix = Q.render_values(model, one, model.get_means().detach()[:, :1], backend="torch")[0]
    # (the composited x coordinate: the neighbouring pixels differ by ~0.1)
    torch.testing.assert_close(pix[0, 0, 0], full[0, 11, 17], atol=5e-3, rtol=0)
    assert abs(float(pix[0, 0, 0] - full[0, 11, 18])) > 0.02 and abs(float(pix[0, 0, 0] - full[0, 11, 16])) > 0.02


def test_grouping_settings_are_validated():
    from dff_gs.edit import SelectionConfig

    SelectionConfig().validate()
    for bad in ({"group_knn": 0}, {"group_min_share": 0.5, "group_max_share": 0.1}, {"group_views": -1}):
        with pytest.raises(ConfigError, match="group"):
            SelectionConfig(**bad).validate()


def test_feature_less_model_cannot_be_grouped():
    bare = GaussianModel.from_points(torch.rand(30, 3) + torch.tensor([0.0, 0.0, 3.0]), sh_degree=0)
    with pytest.raises(ConfigError, match="features"):
        ClickGrouper(bare, smoothed_features(bare, *Q.render_views(bare, cameras(), "torch")))


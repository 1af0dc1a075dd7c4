"""Click grouping (dff_gs.query.grouping): the piece of Eq. 5 joined to the clicked surface, and objects that Eq. 5
cannot tell apart."""

import math

import pytest
import torch

from dff_gs import query as Q
from dff_gs.core.cameras import Cameras, intrinsics_from_fov
from dff_gs.core.errors import ConfigError
from dff_gs.core.gaussians import GaussianModel
from dff_gs.query.grouping import ClickGrouper, click_seeds, front_seeds, joined_piece, pixel_camera, smoothed_features


def test_joined_piece_keeps_what_a_path_of_kept_nodes_joins_to_the_seeds():
    # a chain 0-1-2-3-4 and an edge 5-6: keep all but node 2 and node 6
    src, dst = torch.tensor([0, 1, 2, 3, 5]), torch.tensor([1, 2, 3, 4, 6])
    keep = torch.tensor([True, True, False, True, True, True, False])
    assert joined_piece(7, src, dst, keep, torch.tensor([0])).tolist() == [True, True] + [False] * 5
    assert joined_piece(7, src, dst, keep, torch.tensor([4])).tolist() == [False] * 3 + [True, True, False, False]
    # a seed below the threshold still counts and joins its kept neighbours
    assert joined_piece(7, src, dst, keep, torch.tensor([2])).tolist() == [True] * 5 + [False, False]
    assert joined_piece(7, src, dst, keep, torch.tensor([6])).tolist() == [False] * 5 + [True, True]
    assert joined_piece(7, src, dst, keep, torch.tensor([0, 5])).tolist() == [True, True] + [False] * 3 + [True, False]


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
    grouper = ClickGrouper(model, smoothed_features(model, *Q.render_views(model, cams, "torch")), knn=8, k=3)
    mask, info = grouper.group(seeds, Q.click_feature(model, cams, 1, x, y, backend="torch"))
    assert mask[labels == 1].all() and not mask[labels == 2].any()
    # of the backdrop, at most a few Gaussians hidden right behind the clicked blob (they take its feature)
    back = model.get_means().detach()[mask & (labels == 0)]
    assert len(back) <= 20 and ((back[:, 0] + 0.7).abs() < 0.6).all() and (back[:, 1].abs() < 0.6).all()
    assert info["grouped"] == int(mask.sum())


def test_a_click_grows_by_a_rule_from_the_clicked_piece():
    """With the scene's up, the grouper has pieces, and a rule joins to the clicked one what it accepts: here
    (by hand) what looks like the selection, so the left blob and not the backdrop nor, apart, the right blob."""
    from dff_gs.query.merge_rule import TreeEnsemble
    from dff_gs.query.pieces import FEATURES

    model, labels = scene_with_two_lookalikes()
    cams = cameras()
    uv, _ = cams.project(torch.tensor([[-0.7, 0.0, 3.75]]))
    x, y = (int(v) for v in uv[1, 0])
    seeds, weights = click_seeds(model, cams, 1, x, y)
    feats = smoothed_features(model, *Q.render_views(model, cams, "torch"))
    grouper = ClickGrouper(model, feats, knn=8, k=3, up=cams.up, pieces=3)
    looks_alike = TreeEnsemble.from_dict({"features": list(FEATURES), "baseline": 0.0, "trees": [{
        "feature": [FEATURES.index("cos_selection"), 0, 0], "threshold": [0.9, 0, 0], "left": [1, 0, 0],
        "right": [2, 0, 0], "leaf": [False, True, True], "value": [0, -5.0, 5.0], "nan_left": [True] * 3}]})
    mask, info = grouper.group(seeds, Q.click_feature(model, cams, 1, x, y, backend="torch"), rule=looks_alike,
                               weights=weights)  # from the piece that draws most of the pixel
    assert mask[labels == 1].all() and not mask[labels == 2].any() and info["pieces"] == grouper.pieces.num
    assert int((mask & (labels == 0)).sum()) <= 20  # the backdrop hidden right behind the blob takes its look
    with pytest.raises(ValueError, match="up"):
        ClickGrouper(model, feats, knn=8, k=3).group(seeds, feats[0], rule=looks_alike)
    torch.testing.assert_close(cams.up, torch.tensor([0.0, -1.0, 0.0]))  # OpenCV: y down


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
    for bad in ({"group_knn": 0}, {"group_threshold": 1.0}, {"group_threshold": -0.1}, {"group_views": -1},
                {"group_rule_threshold": 1.0}):
        with pytest.raises(ConfigError, match="group"):
            SelectionConfig(**bad).validate()


def test_feature_less_model_cannot_be_grouped():
    bare = GaussianModel.from_points(torch.rand(30, 3) + torch.tensor([0.0, 0.0, 3.0]), sh_degree=0)
    with pytest.raises(ConfigError, match="features"):
        ClickGrouper(bare, smoothed_features(bare, *Q.render_views(bare, cameras(), "torch")), torch.zeros(1, 4))


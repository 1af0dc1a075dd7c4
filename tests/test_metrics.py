"""Metrics against hand-computed values."""

import math

import torch

from dff_gs.eval.metrics import confusion_matrix, depth_metrics, psnr, segmentation_metrics, ssim
from dff_gs.core.utils import as_rgb


def test_psnr_known_value():
    a = torch.zeros(4, 4, 3)
    b = torch.full((4, 4, 3), 0.1)
    assert math.isclose(psnr(a, b), 20.0, rel_tol=1e-6)


def test_ssim_identity_and_drop():
    torch.manual_seed(0)
    img = torch.rand(1, 32, 32, 3)
    assert abs(ssim(img, img) - 1.0) < 1e-5
    assert ssim(img, (img + 0.3 * torch.randn_like(img)).clamp(0, 1)) < 0.8


def test_miou_and_accuracy_ignore_label():
    gt = torch.tensor([[0, 0, 1, 1], [2, 2, -1, -1]])
    pred = torch.tensor([[0, 1, 1, 1], [2, 0, 2, 2]])
    m = segmentation_metrics(confusion_matrix(pred, gt, 3))
    # class 0: tp1 fp1 fn1 -> 1/3; class 1: tp2 fp1 -> 2/3; class 2: tp1 fn1 -> 1/2
    assert math.isclose(m["miou"], (1 / 3 + 2 / 3 + 1 / 2) / 3, rel_tol=1e-6)
    assert math.isclose(m["accuracy"], 4 / 6, rel_tol=1e-6)


def test_depth_metrics():
    gt = torch.tensor([1.0, 2.0, 0.0, 4.0])
    pred = torch.tensor([1.0, 3.0, 5.0, 4.4])
    d = depth_metrics(pred, gt)
    assert math.isclose(d["depth_delta1"], 2 / 3, rel_tol=1e-6)
    assert math.isclose(d["depth_absrel"], (0 + 0.5 + 0.1) / 3, rel_tol=1e-6)


def _torchmetrics_ssim(preds: list, targets: list) -> float:
    """torchmetrics' module as nerfstudio / gsplat use it: one update per image [H, W, 3], then compute."""
    from torchmetrics.image import StructuralSimilarityIndexMeasure

    m = StructuralSimilarityIndexMeasure(data_range=1.0)
    for p, t in zip(preds, targets):
        m.update(p.clamp(0, 1).permute(2, 0, 1)[None], t.permute(2, 0, 1)[None])
    return float(m.compute())


def test_ssim_equals_torchmetrics_on_random_images():
    g = torch.Generator().manual_seed(1)
    for shape in ((3, 40, 52, 3), (1, 17, 23, 3)):
        a = torch.rand(shape, generator=g)
        b = (a + 0.2 * torch.randn(shape, generator=g)).clamp(0, 1)
        assert abs(ssim(a, b) - _torchmetrics_ssim(list(a), list(b))) < 1e-4


def test_reported_ssim_equals_torchmetrics_on_rendered_images(tiny_scene):
    """``evaluate``'s SSIM (metrics.json, eval rows) over the renders of a scene equals torchmetrics' mean."""
    from dff_gs.data import load_scene
    from dff_gs.eval.lpips import LPIPS_UNAVAILABLE
    from dff_gs.core.gaussians import GaussianModel
    from dff_gs.engine.evaluate import as_backbone, evaluate, render_view

    scene = load_scene(tiny_scene).split("test")
    model = GaussianModel.from_depth(scene, max_points=3000, sh_degree=1, init_opacity=0.8)
    bg = torch.ones(3)
    metrics = evaluate(model, scene, device=torch.device("cpu"), backend="torch", background=bg, progress=False)
    backbone = as_backbone(model, backend="torch", background=bg)
    renders = [render_view(backbone, scene.cameras[[i]], with_features=False).rgb for i in range(scene.num_views)]
    assert 0.2 < metrics["ssim"] < 0.999
    assert abs(metrics["ssim"] - _torchmetrics_ssim(renders, list(as_rgb(scene.images)))) < 1e-4
    assert metrics["lpips"] == LPIPS_UNAVAILABLE


def test_lpips_from_a_weights_file(tiny_scene, tmp_path):
    """LPIPS is torchmetrics' network with the given backbone weights (a seeded AlexNet here: no download), or a
    one-line ConfigError naming the key."""
    import pytest
    import torchvision
    from torchmetrics.image.lpip import LearnedPerceptualImagePatchSimilarity

    import torchmetrics.functional.image.lpips as tm_lpips
    from dff_gs.core.errors import ConfigError
    from dff_gs.eval.lpips import load_lpips, lpips_distance

    torch.manual_seed(0)
    alex = torchvision.models.alexnet(weights=None)
    path = tmp_path / "alexnet.pth"
    torch.save(alex.state_dict(), path)
    g = torch.Generator().manual_seed(2)
    a = torch.rand(64, 64, 3, generator=g)
    b = (a + 0.1 * torch.randn(64, 64, 3, generator=g)).clamp(0, 1)
    ours = lpips_distance(load_lpips(str(path)), a, b)
    original = tm_lpips._get_tv_model_features
    tm_lpips._get_tv_model_features = lambda net, pretrained=False: alex.features
    try:
        ref = LearnedPerceptualImagePatchSimilarity(net_type="alex", normalize=True)
        expected = float(ref(a.permute(2, 0, 1)[None], b.permute(2, 0, 1)[None]))
    finally:
        tm_lpips._get_tv_model_features = original
    assert ours > 0 and abs(ours - expected) < 1e-6
    assert lpips_distance(load_lpips(str(path)), a, a) == 0
    for bad, why in ((tmp_path / "missing.pth", "no such file"), (tmp_path / "junk.pth", "not a torch checkpoint")):
        if bad.name == "junk.pth":
            bad.write_bytes(b"not a checkpoint")
        with pytest.raises(ConfigError, match=f"train.lpips_weights=.*{why}"):
            load_lpips(str(bad))

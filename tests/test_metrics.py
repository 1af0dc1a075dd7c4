"""Metrics against hand-computed values."""

import math

import torch

from dff_gs.eval.metrics import confusion_matrix, depth_metrics, psnr, segmentation_metrics, ssim


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

"""The comparison image a run logs every ``train.image_every`` steps: render | ground truth | feature PCA.

Rendered off the training clock, in eval mode and inside a forked RNG, so logging images never changes what a
run trains.
"""

from __future__ import annotations

import torch
from torch import Tensor


def feature_pca(features: Tensor) -> Tensor:
    """The three principal components of ``features  # [H, W, D]`` as colours ``[H, W, 3]`` in [0, 1]
    (deterministic: an eigendecomposition of the covariance, each component's sign fixed, 1st-99th percentile
    stretched); fewer than three channels are zero-padded."""
    H, W, D = features.shape
    x = features.reshape(-1, D).double()
    x = x - x.mean(0)
    _, vecs = torch.linalg.eigh(x.T @ x / max(len(x), 1))
    basis = vecs.flip(-1)[:, :3]
    basis = basis * torch.where(basis.sum(0) < 0, -1.0, 1.0).to(basis)  # an eigenvector's sign is arbitrary
    proj = x @ basis
    if proj.shape[1] < 3:
        proj = torch.cat([proj, proj.new_zeros(len(proj), 3 - proj.shape[1])], 1)
    lo, hi = torch.quantile(proj, 0.01, dim=0), torch.quantile(proj, 0.99, dim=0)
    rgb = ((proj - lo) / (hi - lo).clamp_min(1e-12)).clamp(0, 1)
    return rgb.reshape(H, W, 3).float()


@torch.no_grad()
def comparison_image(backbone, camera, gt: Tensor) -> Tensor:
    """``backbone``'s render of the one camera in ``camera`` beside ``gt  # [H, W, 3]``, and the PCA of its
    rendered features when it carries any.  Returns Tensor  # [H, 2W or 3W, 3] in [0, 1], on the CPU."""
    out = backbone.render(camera, with_features=backbone.has_features)
    panels = [out.rgb[0].clamp(0, 1).cpu(), gt.cpu().float()]
    if backbone.has_features and out.features is not None:
        panels.append(feature_pca(out.features[0].cpu()))
    return torch.cat(panels, dim=1)


def logged_preview(trainer, backbone, camera, gt: Tensor) -> Tensor:
    """:func:`comparison_image` with ``trainer.model`` in eval mode and the random state left untouched."""
    devices = [trainer.device] if getattr(trainer.device, "type", "cpu") == "cuda" else []
    was_training = trainer.model.training
    with torch.random.fork_rng(devices=devices):
        trainer.model.eval()
        try:
            return comparison_image(backbone, camera, gt)
        finally:
            trainer.model.train(was_training)

"""Edge-aware teacher maps: a coarse feature map averaged within classical image segments.

A network teacher's map is coarse (EfficientNet's stride 8: a 128 px view is 16 cells high), so every object
boundary is a blur of both sides, and the distilled field inherits it: Gaussians at the boundary of an object
carry a mixture of its feature and its surroundings', and a click or a threshold leaks across. Averaging the
(bilinearly upsampled) map within the segments of a graph-based segmentation of the image itself (Felzenszwalb
and Huttenlocher 2004, scikit-image; no learned weights) keeps the teacher's features but puts their edges where
the image has edges. Segments are fine (over-segmentation is harmless: a segment only averages pixels of one
region), so the map keeps the teacher's own variation inside objects.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from dff_gs.core.errors import ConfigError
from dff_gs.core.features import resample_maps
from dff_gs.core.utils import fit_side

SEGMENTERS = ("felzenszwalb", "none")


def image_segments(image: np.ndarray, scale: float, min_size: int) -> np.ndarray:
    """Felzenszwalb-Huttenlocher segments of ``image  # [H, W, 3] float in [0, 1]``.  Returns int64 ``[H, W]``."""
    from skimage.segmentation import felzenszwalb

    return felzenszwalb(image, scale=float(scale), sigma=0.5, min_size=int(min_size)).astype(np.int64)


def segment_pool(feats: Tensor, image: Tensor, side: int, scale: float = 25.0, min_size: int = 10) -> Tensor:
    """The map ``feats`` upsampled to the image's aspect at most ``side`` pixels on the longer side and averaged
    within the image's segments there, each pixel L2-normalised.

    feats: Tensor  # [h, w, C] teacher map (any resolution)
    image: Tensor  # [H, W, 3] in [0, 1], the image the map was computed from
    Returns Tensor  # [H', W', C], (H', W') = ``fit_side(H, W, side)``
    """
    if image.ndim != 3 or image.shape[-1] != 3:
        raise ConfigError(f"segment_pool: expected an image [H, W, 3], got {tuple(image.shape)}")
    h, w = fit_side(int(image.shape[0]), int(image.shape[1]), side)
    flat = resample_maps(feats[None].float(), h, w)[0].reshape(h * w, -1)
    small = F.interpolate(image.permute(2, 0, 1)[None].float().cpu(), size=(h, w), mode="area")[0]
    labels = torch.from_numpy(image_segments(small.permute(1, 2, 0).numpy(), scale, min_size)).reshape(-1)
    labels = labels.to(flat.device)
    sums = torch.zeros(int(labels.max()) + 1, flat.shape[1], device=flat.device).index_add_(0, labels, flat)
    return F.normalize(sums[labels], dim=-1).reshape(h, w, -1)

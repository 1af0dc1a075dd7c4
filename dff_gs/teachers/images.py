"""Image preparation shared by the network teachers (efficientnet, clip, dino)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from dff_gs.core.errors import DataError


def check_image(image: Tensor, teacher: str) -> tuple[int, int]:
    """Validate an ``[H, W, 3]`` image tensor; returns ``(H, W)``."""
    if not isinstance(image, Tensor) or image.ndim != 3 or image.shape[-1] != 3 or min(image.shape[:2]) < 1:
        shape = tuple(image.shape) if isinstance(image, Tensor) else type(image).__name__
        raise DataError(f"teacher {teacher!r}: expected an image [H, W, 3] in [0, 1], got {shape}")
    return int(image.shape[0]), int(image.shape[1])


def fit_short_side(height: int, width: int, short: int, multiple: int) -> tuple[int, int]:
    """``(h, w)`` with the aspect of ``height x width``, short side ~``short``, both multiples of ``multiple``."""
    scale = short / min(height, width)
    return (max(multiple, multiple * round(height * scale / multiple)),
            max(multiple, multiple * round(width * scale / multiple)))


def image_to_batch(image: Tensor, size: tuple[int, int], mean, std, device) -> Tensor:
    """Resize (bilinear, antialiased) and normalise: ``[H, W, 3]`` in [0, 1] -> ``[1, 3, h, w]`` float32."""
    x = image.to(device=device, dtype=torch.float32).permute(2, 0, 1)[None]
    if tuple(x.shape[-2:]) != tuple(size):
        x = F.interpolate(x, size=size, mode="bilinear", antialias=True, align_corners=False)
    mean = torch.tensor(mean, dtype=x.dtype, device=x.device)[:, None, None]
    std = torch.tensor(std, dtype=x.dtype, device=x.device)[:, None, None]
    return (x - mean) / std

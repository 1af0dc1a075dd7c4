"""PNG output: images, side-by-side panels and semantic palettes (written atomically)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from dff_gs.core.utils import atomic_write_path


def to_uint8(image: Tensor | np.ndarray) -> np.ndarray:
    """[H, W, 3] float in [0, 1] (tensor or array; a uint8 one as it is) -> uint8 array."""
    if isinstance(image, Tensor) and image.dtype == torch.uint8:
        return image.detach().cpu().numpy()
    if isinstance(image, Tensor):
        image = image.detach().float().cpu().numpy()
    return (np.clip(image, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def save_png(path: str | Path, image: Tensor | np.ndarray) -> Path:
    """Write an RGB image ``[H, W, 3]`` in [0, 1] (or uint8) as PNG, atomically."""
    arr = image if isinstance(image, np.ndarray) and image.dtype == np.uint8 else to_uint8(image)
    with atomic_write_path(path) as tmp:
        Image.fromarray(arr).save(tmp, format="PNG")
    return Path(path)


def palette(num_classes: int) -> np.ndarray:
    """A fixed, well-separated colour per class id: [num_classes + 1, 3] uint8; the last row is 'ignore'."""
    rng = np.random.default_rng(12345)
    base = np.array(
        [[0.55, 0.45, 0.35], [0.85, 0.85, 0.8], [0.6, 0.7, 0.9], [0.9, 0.6, 0.1], [0.2, 0.5, 0.9], [0.8, 0.2, 0.3],
         [1.0, 0.9, 0.2], [0.2, 0.7, 0.3], [0.6, 0.3, 0.8], [0.1, 0.8, 0.8], [0.9, 0.4, 0.7], [0.4, 0.4, 0.1]]
    )
    if num_classes > len(base):
        base = np.concatenate([base, rng.uniform(0.1, 1.0, (num_classes - len(base), 3))])
    return (np.concatenate([base[:num_classes], [[0, 0, 0]]]) * 255).astype(np.uint8)


def colorize_labels(labels: Tensor | np.ndarray, num_classes: int) -> np.ndarray:
    """Class ids ``[H, W]`` (negative = ignore, black) -> uint8 RGB ``[H, W, 3]``."""
    if isinstance(labels, Tensor):
        labels = labels.detach().cpu().numpy()
    lab = np.where((labels < 0) | (labels >= num_classes), num_classes, labels)
    return palette(num_classes)[lab]


def side_by_side(*images: np.ndarray | Tensor, gap: int = 2) -> np.ndarray:
    """Concatenate ``[H, W, 3]`` panels horizontally (uint8) with a white gap."""
    panels = [img if isinstance(img, np.ndarray) and img.dtype == np.uint8 else to_uint8(img) for img in images]
    h = max(p.shape[0] for p in panels)
    sep = np.full((h, gap, 3), 255, np.uint8)
    out = []
    for i, p in enumerate(panels):
        if i:
            out.append(sep)
        out.append(p)
    return np.concatenate(out, axis=1)


def depth_to_rgb(depth: Tensor, max_depth: float | None = None) -> np.ndarray:
    """Depth ``[H, W]`` -> grey-scale uint8 RGB (near = bright)."""
    d = depth.detach().float().cpu()
    m = float(max_depth if max_depth is not None else d[d > 0].max() if (d > 0).any() else 1.0)
    g = (1.0 - (d / max(m, 1e-6)).clamp(0, 1)).numpy()
    return to_uint8(np.repeat(g[..., None], 3, axis=-1))

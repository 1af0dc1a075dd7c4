"""Training batches of the NeRF: square image patches of rays (so the photometric loss keeps its D-SSIM term)
with their ground-truth colours and teacher features sampled at the same pixels."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
from torch import Tensor

from dff_gs.core.cameras import Cameras
from dff_gs.core.errors import ConfigError
from dff_gs.core.utils import as_rgb


@dataclass
class PatchBatch:
    """P patches of s x s pixels.

    rays_o, rays_d: Tensor  # [P * s * s, 3]
    rgb: Tensor  # [P, s, s, 3] ground truth
    teacher: Optional[Tensor]  # [P, s, s, C] teacher features at the same pixels (bilinear), or None
    """

    rays_o: Tensor
    rays_d: Tensor
    rgb: Tensor
    teacher: Optional[Tensor]


def sample_maps(maps: Tensor, views: Tensor, px: Tensor, py: Tensor, height: int, width: int) -> Tensor:
    """Bilinear lookup of low-resolution maps at full-resolution pixels, exactly as
    ``F.interpolate(mode="bilinear", align_corners=False)`` upsampling would give (what the Gaussians use).

    maps: Tensor  # [V, h, w, C]
    views, px, py: Tensor  # [N] int64 view index and pixel column / row at the render resolution
    Returns Tensor  # [N, C] float32
    """
    V, h, w, C = maps.shape
    sx = ((px.float() + 0.5) * (w / width) - 0.5).clamp_min(0.0)
    sy = ((py.float() + 0.5) * (h / height) - 0.5).clamp_min(0.0)
    x0, y0 = sx.floor().long().clamp_max(w - 1), sy.floor().long().clamp_max(h - 1)
    x1, y1 = (x0 + 1).clamp_max(w - 1), (y0 + 1).clamp_max(h - 1)
    fx, fy = (sx - x0.float()).clamp(0, 1)[:, None], (sy - y0.float()).clamp(0, 1)[:, None]
    flat = maps.reshape(V * h * w, C)
    base = views * (h * w)

    def at(yy: Tensor, xx: Tensor) -> Tensor:
        return flat[base + yy * w + xx].float()

    top = at(y0, x0) * (1 - fx) + at(y0, x1) * fx
    bottom = at(y1, x0) * (1 - fx) + at(y1, x1) * fx
    return top * (1 - fy) + bottom * fy


class PatchSampler:
    """Draws random patches from the training views.

    images: Tensor  # [V, H, W, 3] uint8 (or float in [0, 1])
    cameras: Cameras  # V cameras
    teacher_maps: Tensor  # [V, h, w, C] or None
    """

    def __init__(self, images: Tensor, cameras: Cameras, teacher_maps: Optional[Tensor], batch_rays: int,
                 patch_size: int):
        V, H, W, _ = images.shape
        s = int(patch_size)
        if s < 1 or s > min(H, W):
            raise ConfigError(f"nerf.patch_size={patch_size} must be between 1 and the image size ({W}x{H})")
        self.patches = max(1, int(batch_rays) // (s * s))
        self.s, self.V, self.H, self.W = s, V, H, W
        self.images = images
        self.teacher_maps = teacher_maps
        o, d = cameras.generate_rays()
        self.rays_o, self.rays_d = o, d  # [V, H, W, 3]

    def sample(self, generator: Optional[torch.Generator] = None) -> PatchBatch:
        s, P, dev = self.s, self.patches, self.images.device
        g = dict(generator=generator) if generator is not None else {}
        v = torch.randint(self.V, (P,), **g).to(dev)
        y0 = torch.randint(self.H - s + 1, (P,), **g).to(dev)
        x0 = torch.randint(self.W - s + 1, (P,), **g).to(dev)
        ar = torch.arange(s, device=dev)
        yy = (y0[:, None, None] + ar[None, :, None]).expand(P, s, s)
        xx = (x0[:, None, None] + ar[None, None, :]).expand(P, s, s)
        vv = v[:, None, None].expand(P, s, s)
        teacher = None
        if self.teacher_maps is not None:
            t = sample_maps(self.teacher_maps, vv.reshape(-1), xx.reshape(-1), yy.reshape(-1), self.H, self.W)
            teacher = t.reshape(P, s, s, -1)
        return PatchBatch(rays_o=self.rays_o[vv, yy, xx].reshape(-1, 3), rays_d=self.rays_d[vv, yy, xx].reshape(-1, 3),
                          rgb=as_rgb(self.images[vv, yy, xx]), teacher=teacher)

"""``lift_features()``: per-Gaussian features as the compositing-weighted mean of 2D feature maps, in one pass.

    f_g = sum_v sum_p w_gvp F_v(p) / sum_v sum_p w_gvp,    w_gvp = alpha_gvp T_gvp

where ``w`` is Gaussian ``g``'s alpha-compositing weight at pixel ``p`` of view ``v`` (the weight the rasterizer
gives its colour there). It is the per-Gaussian minimiser of ``sum w ||f_g - F||^2``, i.e. distillation with
the Gaussians decoupled, solved in closed form instead of by gradient descent.

Resolution: the maps ``[V, h, w, C]`` may be coarser than the images. ``resolution="image"`` (default) walks
the pixels of the cameras' own resolution and samples the maps bilinearly at each pixel centre (exactly the
``resample_maps`` target that distillation trains against); ``resolution="map"`` rasterizes at the maps'
resolution instead (intrinsics scaled), which is cheaper and reads each map texel once.

Backends, one interface:

- ``torch``: the reference tile lists (``dff_gs.render``'s projection and ``tile_intersections``) accumulated by
  the kernel's pure-PyTorch twin ``dff_gs.render.reference.lift_accumulate_reference`` (any device; the CPU path);
- ``gsplat``: the gradient of ``<F, render(colours)>`` with respect to per-Gaussian colours, through gsplat's
  rasterizer (CUDA; no ``top_k``);
- ``cuda_ext``: our CUDA kernel over gsplat's (or the reference) tile lists, no image materialised;
- ``auto``: ``cuda_ext`` on CUDA where it loads, else ``gsplat``, else ``torch``.
"""

from __future__ import annotations

from typing import Optional, get_args

import torch
from torch import Tensor
from tqdm import tqdm

import cuda_ext
from dff_gs.core.cameras import Cameras
from dff_gs.core.errors import ConfigError
from dff_gs.core.features import resample_maps
from dff_gs.lift.gsplat_grad import accumulate_gsplat
from dff_gs.lift.tiles import tile_lists
from dff_gs.render import reference
from dff_gs.render.backend_gsplat import gsplat_available
from dff_gs.train.config import LiftBackend, LiftResolution

LIFT_BACKENDS = get_args(LiftBackend)
RESOLUTIONS = get_args(LiftResolution)


def resolve_lift_backend(backend: str, device: torch.device) -> str:
    """The backend that will run for ``backend`` on ``device``; a ``ConfigError`` saying why when it cannot."""
    if backend == "auto":
        if device.type == "cuda":
            if cuda_ext.available()[0]:
                return "cuda_ext"
            if gsplat_available()[0]:
                return "gsplat"
        return "torch"
    if backend not in LIFT_BACKENDS:
        raise ConfigError(f"unknown lift backend {backend!r} (known: {', '.join(LIFT_BACKENDS)})")
    if backend in ("gsplat", "cuda_ext") and device.type != "cuda":
        raise ConfigError(f"lift backend {backend!r} needs the model on a CUDA device (it is on {device}); "
                          f"use backend='torch'")
    if backend == "cuda_ext":
        ok, why = cuda_ext.available()
        if not ok:
            raise ConfigError(why)
    if backend == "gsplat":
        ok, why = gsplat_available()
        if not ok:
            raise ConfigError(f"lift backend 'gsplat' is unavailable: {why}")
    return backend


def pixel_weights(valid: Tensor, height: int, width: int) -> Optional[Tensor]:
    """Render-resolution pixel weights from a map-resolution mask of pixels that carry a teacher feature:
    1 where the bilinearly resampled map touches a valid texel (as the distillation loss counts pixels), else 0.
    None when every pixel is valid.

    valid: Tensor  # [B, h, w] bool
    returns Tensor # [B, height, width] float32, or None
    """
    if bool(valid.all()):
        return None
    v = valid.float()
    if v.shape[-2:] != (height, width):
        v = resample_maps(v[..., None], height, width)[..., 0]
    return (v > 0).float()


def lift_features(model, cameras: Cameras, maps: Tensor, backend: str = "auto", top_k: Optional[int] = None, *,
                  valid: Optional[Tensor] = None, resolution: str = "image", tile_size: Optional[int] = None,
                  tile_source: str = "auto", camera_batch: int = 4, eps: float = 1e-8,
                  progress: bool = False) -> tuple[Tensor, Tensor]:
    """Lift 2D feature maps onto the Gaussians of ``model`` (geometry and opacity as they are).

    model: GaussianModel  # N Gaussians (its stored features are ignored)
    cameras: Cameras      # V cameras the maps were seen from
    maps: Tensor          # [V, h, w, C] feature maps (any float dtype, any device; moved per camera batch)
    top_k: only each pixel's k largest contributors count (None / 0 = all)
    valid: Tensor         # [V, h, w] bool, pixels that carry a feature (default: non-zero feature vectors,
                          # the teacher's "unlabeled" convention)
    resolution: "image" (maps resampled to the cameras' pixels) | "map" (rasterize at the maps' resolution)
    tile_size: 8 | 16 (default 8 for torch, 16 otherwise; the result does not depend on it)
    tile_source: where the cuda_ext backend takes its tile lists: "auto" (gsplat where it imports) | "torch" | "gsplat"
    returns features: Tensor  # [N, C] float32 weighted means (0 for Gaussians no weighted pixel saw)
            weight_sum: Tensor  # [N] float32 sum of their weights
    """
    if maps.dim() != 4:
        raise ConfigError(f"lift: maps must be [V, h, w, C], got shape {list(maps.shape)}")
    V, h, w, C = maps.shape
    if V != len(cameras):
        raise ConfigError(f"lift: {V} feature maps for {len(cameras)} cameras")
    if valid is not None and tuple(valid.shape) != (V, h, w):
        raise ConfigError(f"lift: valid mask {list(valid.shape)} does not match maps [V, h, w] = {[V, h, w]}")
    if resolution not in RESOLUTIONS:
        raise ConfigError(f"lift: resolution={resolution!r} (image | map)")
    k = int(top_k or 0)
    if k < 0:
        raise ConfigError(f"lift: top_k must be >= 0, got {k}")
    device = model.device
    name = resolve_lift_backend(backend, device)
    if backend == "auto" and name == "cuda_ext" and k > cuda_ext.MAX_TOP_K:
        name = "torch"  # the kernel keeps at most MAX_TOP_K weights a pixel; the reference has no limit
    if k and name == "gsplat":
        raise ConfigError("lift: top_k needs the torch or cuda_ext backend (gsplat's gradient sums every contributor)")
    if k > cuda_ext.MAX_TOP_K and name == "cuda_ext":
        raise ConfigError(f"lift: the cuda_ext kernel supports top_k <= {cuda_ext.MAX_TOP_K}, got {k}")
    ts = int(tile_size or (8 if name == "torch" else 16))
    if ts not in (8, 16):
        raise ConfigError(f"lift: tile_size must be 8 or 16, got {ts}")
    source = tile_source
    if source == "auto":
        source = "gsplat" if name == "cuda_ext" and gsplat_available()[0] else "torch"

    cams = cameras.to(device)
    if resolution == "map":
        cams = cams.resized(w, h)
    N = model.num_gaussians
    with torch.no_grad():
        means, quats = model.get_means().detach(), model.get_quats().detach()
        scales, opacities = model.get_scales().detach(), model.get_opacities().detach()
    feat_sum = torch.zeros(N, C, device=device)
    weight_sum = torch.zeros(N, device=device)
    for s in tqdm(range(0, V, camera_batch), desc=f"lift ({name})", disable=not progress, leave=False):
        ids = list(range(s, min(s + camera_batch, V)))
        sub = cams[ids]
        maps_b = maps[s:s + len(ids)].to(device)
        valid_b = (maps_b.abs().sum(-1) > 0) if valid is None else valid[s:s + len(ids)].to(device)
        pw = pixel_weights(valid_b, sub.height, sub.width)
        if name == "gsplat":
            accumulate_gsplat(means, quats, scales, opacities, sub, maps_b, pw, feat_sum, weight_sum,
                              model.antialiased)
            continue
        lists = tile_lists(means, quats, scales, opacities, sub.viewmats, sub.Ks, sub.width, sub.height, ts, source,
                           model.antialiased)
        accumulate = cuda_ext.lift_accumulate if name == "cuda_ext" else reference.lift_accumulate_reference
        accumulate(lists.means2d, lists.conics, lists.opacities, maps_b, lists.tile_offsets, lists.flatten_ids,
                   sub.width, sub.height, ts, pix_weights=pw, top_k=k, feat_sum=feat_sum, weight_sum=weight_sum)
    normalize = cuda_ext.lift_normalize if name == "cuda_ext" else reference.lift_normalize_reference
    return normalize(feat_sum, weight_sum, eps), weight_sum


class CompositingWeights:
    """The sparse alpha-compositing weights ``w = alpha T`` of a model's Gaussians over the pixels of some views
    (those at least ``min_weight``): computed once, they lift any number of per-pixel maps by a scatter-add.

    pixel: Tensor     # [M] flat index view * height * width + y * width + x
    gaussian: Tensor  # [M]
    weight: Tensor    # [M]
    """

    def __init__(self, pixel: Tensor, gaussian: Tensor, weight: Tensor, num_gaussians: int):
        self.pixel, self.gaussian, self.weight, self.num_gaussians = pixel, gaussian, weight, num_gaussians
        self.weight_sum = torch.zeros(num_gaussians, device=weight.device).index_add_(0, gaussian, weight)

    def lift(self, values: Tensor, eps: float = 1e-8) -> Tensor:
        """Weighted mean per Gaussian of ``values  # [V, H, W, K]`` (at the views' pixels); 0 where no weight.
        Returns Tensor  # [N, K]"""
        flat = values.reshape(-1, values.shape[-1]).to(self.weight.device)
        out = torch.zeros(self.num_gaussians, flat.shape[1], device=self.weight.device)
        out.index_add_(0, self.gaussian, flat[self.pixel] * self.weight[:, None])
        return out / self.weight_sum[:, None].clamp_min(eps)


@torch.no_grad()
def compositing_weights(model, cameras: Cameras, min_weight: float = 1e-3, camera_batch: int = 4,
                        progress: bool = False) -> CompositingWeights:
    """The weights :func:`lift_features` sums (torch backend, every pixel weight 1), kept sparse: lifting a map
    through them equals :func:`lift_features` up to the dropped weights below ``min_weight``."""
    device = model.device
    cams = cameras.to(device)
    means, quats = model.get_means().detach(), model.get_quats().detach()
    scales, opacities = model.get_scales().detach(), model.get_opacities().detach()
    parts = []
    for s in tqdm(range(0, len(cams), camera_batch), desc="compositing weights", disable=not progress, leave=False):
        ids = list(range(s, min(s + camera_batch, len(cams))))
        sub = cams[ids]
        lists = tile_lists(means, quats, scales, opacities, sub.viewmats, sub.Ks, sub.width, sub.height, 8, "torch",
                           model.antialiased)
        pix, gid, w = reference.compositing_weights_reference(lists.means2d, lists.conics, lists.opacities,
                                                             lists.tile_offsets, lists.flatten_ids, sub.width,
                                                             sub.height, 8, min_weight=min_weight)
        parts.append((pix + s * sub.height * sub.width, gid, w))
    pix, gid, w = (torch.cat([p[i] for p in parts]) for i in range(3))
    return CompositingWeights(pix, gid, w, model.num_gaussians)

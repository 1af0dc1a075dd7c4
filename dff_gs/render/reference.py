"""Pure-PyTorch twins of the ``cuda_ext`` kernels: same inputs, same outputs, any device (``cuda_ext`` itself
imports nothing from ``dff_gs``; the parity tests import both).

They are the reference the CUDA tests compare against, and the CPU implementation of feature lifting.
The tile lists are walked the kernel's way, but vectorised: the tiles of a camera are grouped in buckets of
similar list lengths and each bucket is one dense ``[tiles, pixels, Gaussians]`` block (padded), capped at
``max_block`` elements.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from dff_gs.core.features import resample_maps
from dff_gs.render.backend_torch import T_MIN, alpha_from_logits, gaussian_table, pixel_monomials, tile_logits
from dff_gs.render.backend_torch import rasterize_torch as rasterize_reference  # noqa: F401  (twin of cuda_ext.rasterize_cpu)
from dff_gs.render.projection import project_gaussians as project_reference  # noqa: F401  (twin of cuda_ext.project_cpu)
from dff_gs.render.sh import sh_colors as sh_colors_reference  # noqa: F401  (twin of cuda_ext.sh_colors_cpu)


def resample_map(feature_map: Tensor, height: int, width: int) -> Tensor:
    """Bilinear resize (``align_corners=False``, as the kernel samples) of ``feature_map  # [h, w, C]`` to
    ``[height, width, C]`` float32; the identity when the sizes already match."""
    return resample_maps(feature_map.float()[None], height, width)[0]


def _tile_pixels(image: Tensor, tiles_y: int, tiles_x: int, tile_size: int) -> Tensor:
    """``image  # [H, W, K]`` zero-padded to whole tiles -> ``[tiles_y * tiles_x, P, K]`` (pixels row-major)."""
    H, W, K = image.shape
    pad = image.new_zeros(tiles_y * tile_size, tiles_x * tile_size, K)
    pad[:H, :W] = image
    pad = pad.reshape(tiles_y, tile_size, tiles_x, tile_size, K).permute(0, 2, 1, 3, 4)
    return pad.reshape(tiles_y * tiles_x, tile_size * tile_size, K)


def _walk(tiles: Tensor, starts: Tensor, counts: Tensor, ids: Tensor, table: Tensor, origins: Tensor, mono: Tensor,
          T0: Tensor, chunk: int, max_block: int):
    """Composite the depth-sorted lists of ``tiles`` front to back, ``chunk`` Gaussians at a time, carrying each
    pixel's transmittance; tiles whose pixels are all done drop out (the kernel's early exit).

    Yields ``(t, fid, valid, w)`` per chunk: tiles ``t  # [A]``, flat ids ``fid  # [A, K]``, ``valid  # [A, K]``
    and weights ``w = alpha T  # [A, P, K]`` (0 where skipped or after the pixel stopped).
    T0: Tensor  # [tiles, P] 1, or 0 for pixels that never contribute (outside the image, zero pixel weight)
    """
    P = mono.shape[0]
    M = ids.numel()
    pad_id = table.shape[0] - 1
    T = T0[tiles].clone()  # 0 = done: every later weight is 0 and every later T_after <= T_MIN
    cnt = counts[tiles]
    act = torch.arange(len(tiles), device=T.device)
    pos = 0
    while True:
        act = act[(cnt[act] > pos) & (T[act] > 0).any(1)]
        if len(act) == 0:
            return
        for grp in torch.split(act, max(1, max_block // (P * chunk))):
            t = tiles[grp]
            K = min(chunk, int(cnt[grp].max()) - pos)
            ar = pos + torch.arange(K, device=T.device)
            valid = ar[None] < cnt[grp][:, None]  # [A, K]
            fid = torch.where(valid, ids[(starts[t][:, None] + ar[None]).clamp_max(M - 1)], pad_id)
            alpha = alpha_from_logits(tile_logits(table[fid], origins[t, 0], origins[t, 1], mono))
            # transmittance before / after each Gaussian, multiplied in the kernel's order from the carried T
            tt = torch.cumprod(torch.cat([T[grp][..., None], torch.rsub(alpha, 1.0)], -1), -1)
            stop = tt[..., 1:] <= T_MIN  # the Gaussian that brings T to <= 1e-4 and all after it are excluded
            w = alpha.mul_(tt[..., :-1]).masked_fill_(stop, 0.0)
            T[grp] = tt[..., -1].masked_fill_(stop[..., -1], 0.0)
            yield t, fid, valid, w
        pos += chunk


def _walk_args(means2d: Tensor, conics: Tensor, opacities: Tensor, tile_offsets: Tensor, flatten_ids: Tensor,
               tile_size: int, pw: Tensor, chunk: int, max_block: int) -> tuple:
    """The arguments of :func:`_walk` for the tile lists of ``I`` cameras; ``pw  # [tiles, P]`` tile-pixel weights
    (0 = the pixel never contributes: outside the image or weightless)."""
    I, N = means2d.shape[:2]
    dev = means2d.device
    tiles_y, tiles_x = tile_offsets.shape[1:]
    n_tiles = I * tiles_y * tiles_x
    M = flatten_ids.numel()
    starts = tile_offsets.reshape(-1).long()
    counts = torch.cat([starts[1:], starts.new_tensor([M])]) - starts
    opa = opacities if opacities.dim() == 2 else opacities[None].expand(I, N)
    table = gaussian_table(means2d.reshape(-1, 2).float(), conics.reshape(-1, 3).float(), opa.reshape(-1).float())
    local = torch.arange(n_tiles, device=dev) % (tiles_y * tiles_x)
    origins = torch.stack([local % tiles_x, local // tiles_x], -1).float() * tile_size  # [tiles, 2]
    mono = pixel_monomials(tile_size, dev, torch.float32)  # [P, 6]
    T0 = (pw > 0).float()  # pixels that can never contribute are done from the start
    tiles = ((counts > 0) & (T0 > 0).any(1)).nonzero()[:, 0]
    return tiles, starts, counts, flatten_ids.long(), table, origins, mono, T0, chunk, max_block


@torch.no_grad()
def compositing_weights_reference(means2d: Tensor, conics: Tensor, opacities: Tensor, tile_offsets: Tensor,
                                  flatten_ids: Tensor, width: int, height: int, tile_size: int,
                                  min_weight: float = 1e-3, chunk: int = 64, max_block: int = 4_000_000
                                  ) -> tuple[Tensor, Tensor, Tensor]:
    """Every (pixel, Gaussian) compositing weight ``w = alpha T`` of ``I`` cameras at least ``min_weight``, as a
    sparse list: what :func:`lift_accumulate_reference` sums, kept so that many maps can be lifted cheaply.

    Inputs as :func:`lift_accumulate_reference`.
    returns pixel: Tensor  # [M] flat index camera * height * width + y * width + x
            gaussian: Tensor  # [M]
            weight: Tensor  # [M] float32
    """
    I, N = means2d.shape[:2]
    dev = means2d.device
    empty = (torch.zeros(0, dtype=torch.long, device=dev),) * 2 + (torch.zeros(0, device=dev),)
    if flatten_ids.numel() == 0 or N == 0:
        return empty
    tiles_y, tiles_x = tile_offsets.shape[1:]
    ones = torch.ones(height, width, 1, device=dev)
    pw = torch.cat([_tile_pixels(ones, tiles_y, tiles_x, tile_size)[..., 0]] * I)
    # flat image pixel of each (tile, tile pixel)
    P = tile_size * tile_size
    local = torch.arange(tiles_y * tiles_x, device=dev)
    py = (local // tiles_x)[:, None] * tile_size + torch.arange(P, device=dev)[None] // tile_size
    px = (local % tiles_x)[:, None] * tile_size + torch.arange(P, device=dev)[None] % tile_size
    flat = torch.cat([c * height * width + py * width + px for c in range(I)])  # [tiles, P]
    pix, gid, wts = [], [], []
    for t, fid, valid, w in _walk(*_walk_args(means2d, conics, opacities, tile_offsets, flatten_ids, tile_size, pw,
                                              chunk, max_block)):
        keep = (w > 0) & (w >= min_weight) & valid[:, None, :]  # [A, P, K]
        a, p, k = keep.nonzero(as_tuple=True)
        pix.append(flat[t[a], p])
        gid.append(fid[a, k] % N)
        wts.append(w[a, p, k])
    if not pix:
        return empty
    return torch.cat(pix), torch.cat(gid), torch.cat(wts)


def _top_k_thresholds(walk, n_tiles: int, P: int, k: int, device) -> tuple[Tensor, Tensor]:
    """Pass 1 of top-k: each pixel's k-th largest weight ``thr`` (0 when it has fewer than k contributors) and
    how many weights equal to ``thr`` to keep (front-most first)."""
    top = torch.zeros(n_tiles, P, k, device=device)
    for t, _, _, w in walk:
        top[t] = torch.cat([top[t], w], -1).topk(k, dim=-1).values
    full = (top > 0).sum(-1) == k
    thr = torch.where(full, top[..., k - 1], torch.zeros_like(top[..., 0]))
    n_gt = (top > thr[..., None]).sum(-1)
    n_eq = torch.where(full, k - n_gt, torch.full_like(n_gt, torch.iinfo(torch.int64).max // 2))
    return thr, n_eq


@torch.no_grad()
def lift_accumulate_reference(means2d: Tensor, conics: Tensor, opacities: Tensor, maps: Tensor, tile_offsets: Tensor,
                              flatten_ids: Tensor, width: int, height: int, tile_size: int, *,
                              pix_weights: Optional[Tensor] = None, top_k: int = 0,
                              feat_sum: Optional[Tensor] = None, weight_sum: Optional[Tensor] = None,
                              chunk: int = 64, max_block: int = 4_000_000) -> tuple[Tensor, Tensor]:
    """Twin of ``cuda_ext.lift_accumulate``: add ``sum_p w_gp pw_p F(p)`` to ``feat_sum[g]`` and ``sum_p w_gp pw_p``
    to ``weight_sum[g]`` for every Gaussian ``g``.

    means2d: Tensor       # [I, N, 2] projected centres (pixels)
    conics: Tensor        # [I, N, 3] inverse 2D covariances (a, b, c)
    opacities: Tensor     # [N] or [I, N]
    maps: Tensor          # [I, h, w, C] feature maps, any resolution (bilinearly resampled to height x width)
    tile_offsets: Tensor  # [I, tiles_y, tiles_x] int32, start of each tile's list in flatten_ids
    flatten_ids: Tensor   # [M] int32, camera * N + gaussian, sorted by (camera, tile, depth)
    pix_weights: Tensor   # [I, height, width] >= 0, or None (= 1); pixels of weight 0 are skipped
    top_k: 0 = every contributor; k > 0 = only each pixel's k largest weights (ties: front-most first)
    feat_sum: Tensor      # [N, C] float32, accumulated in place (new zeros if None)
    weight_sum: Tensor    # [N] float32, accumulated in place (new zeros if None)
    chunk, max_block: Gaussians composited per step, and the cap on a step's [tiles, pixels, chunk] block
    returns (feat_sum, weight_sum)
    """
    I, N = means2d.shape[:2]
    C = maps.shape[-1]
    dev = means2d.device
    feat_sum = torch.zeros(N, C, device=dev) if feat_sum is None else feat_sum
    weight_sum = torch.zeros(N, device=dev) if weight_sum is None else weight_sum
    if flatten_ids.numel() == 0 or N == 0:
        return feat_sum, weight_sum
    tiles_y, tiles_x = tile_offsets.shape[1:]
    n_tiles, P = I * tiles_y * tiles_x, tile_size * tile_size
    pw = pix_weights.float() if pix_weights is not None else torch.ones(I, height, width, device=dev)
    pw = torch.cat([_tile_pixels(pw[i][..., None], tiles_y, tiles_x, tile_size)[..., 0] for i in range(I)])  # 0 outside
    # per tile pixel: the resampled features times the pixel weight, and the pixel weight (-> weight_sum)
    feats = torch.cat([_tile_pixels(resample_map(maps[i].to(dev), height, width), tiles_y, tiles_x, tile_size)
                       for i in range(I)])  # [tiles, P, C]
    feats = torch.cat([feats * pw[..., None], pw[..., None]], -1)  # [tiles, P, C + 1]
    args = _walk_args(means2d, conics, opacities, tile_offsets, flatten_ids, tile_size, pw, chunk, max_block)
    if top_k > 0:
        thr, n_eq = _top_k_thresholds(_walk(*args), n_tiles, P, top_k, dev)
    for t, fid, valid, w in _walk(*args):
        if top_k > 0:
            th = thr[t][..., None]
            eq = (w == th) & (w > 0)
            keep = (w > th) | (eq & (torch.cumsum(eq, -1) <= n_eq[t][..., None]))
            n_eq[t] = (n_eq[t] - eq.sum(-1)).clamp_min(0)
            w = w * keep
        gid = (fid % N)[valid]
        acc = torch.bmm(w.transpose(1, 2), feats[t])[valid]  # [pairs, C + 1]
        feat_sum.index_add_(0, gid, acc[:, :C])
        weight_sum.index_add_(0, gid, acc[:, C])
    return feat_sum, weight_sum


@torch.no_grad()
def lift_normalize_reference(feat_sum: Tensor, weight_sum: Tensor, eps: float = 1e-8,
                             out: Optional[Tensor] = None) -> Tensor:
    """Twin of ``cuda_ext.lift_normalize``: ``feat_sum / weight_sum`` where ``weight_sum > eps``, else 0.

    feat_sum: Tensor    # [N, C]
    weight_sum: Tensor  # [N]
    returns Tensor      # [N, C] (written into ``out`` when given)
    """
    w = weight_sum[:, None]
    res = torch.where(w > eps, feat_sum / w.clamp_min(eps), torch.zeros_like(feat_sum))
    if out is None:
        return res
    return out.copy_(res)

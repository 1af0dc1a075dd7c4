"""The reference rasterizer in pure PyTorch (any device, differentiable by autograd).

Front-to-back alpha compositing with gsplat's conventions: pixel centres at ``+0.5``,
``alpha = min(0.999, opacity * exp(-sigma))``, contributions with ``alpha < 1/255`` skipped, and a pixel
stops before the Gaussian that would bring its transmittance to ``<= 1e-4``.

It works like a tile rasterizer without writing a kernel: every (tile, Gaussian) intersection is listed,
sorted by tile then depth, and tiles are composited in buckets of similar Gaussian counts, each bucket a
dense ``[tiles, pixels, Gaussians]`` block (padded to the bucket's longest list) reduced by a batched
matmul. The block size is capped (``max_block``) so memory stays bounded.
"""

from __future__ import annotations

import torch
from torch import Tensor

ALPHA_MIN = 1.0 / 255.0
ALPHA_MAX = 0.999
T_MIN = 1e-4


def tile_intersections(means2d: Tensor, radii: Tensor, depths: Tensor, width: int, height: int,
                       tile_size: int, opacities: Tensor | None = None) -> tuple[Tensor, Tensor, int, int]:
    """List the (tile, Gaussian) pairs of one camera, sorted by tile then depth.

    means2d: Tensor    # [N, 2]
    radii: Tensor      # [N, 2] int, ceil(3.33 sigma) per axis (0 = culled)
    depths: Tensor     # [N]
    opacities: Tensor  # [N] optional: shrink each box to where alpha can reach 1/255, i.e.
                       # sigma <= log(255 opacity); outside it every pixel is skipped anyway, so the
                       # result is unchanged and the blocks are smaller
    returns tile_ids [M], gaussian_ids [M], tiles_x, tiles_y
    """
    tw, th = (width + tile_size - 1) // tile_size, (height + tile_size - 1) // tile_size
    dev = means2d.device
    vis = (radii > 0).all(-1).nonzero()[:, 0]
    if len(vis) == 0:
        empty = torch.zeros(0, dtype=torch.long, device=dev)
        return empty, empty, tw, th
    m = means2d[vis].detach()
    r = radii[vis].to(m.dtype)
    if opacities is not None:
        o = opacities[vis].detach().to(m.dtype)
        ext = torch.sqrt(2.0 * torch.log((255.0 * o).clamp_min(1.0))).clamp_max(3.33)
        r = torch.ceil(r * (ext / 3.33)[:, None])
        r[ext <= 0] = -tile_size  # can never reach alpha 1/255: no tiles
    # gsplat's tile bounds: [floor((m - r) / t), ceil((m + r) / t)) in tiles, clamped to the grid
    x0 = ((m[:, 0] - r[:, 0]) / tile_size).clamp(0, tw).long()
    x1 = torch.ceil((m[:, 0] + r[:, 0]) / tile_size).clamp(0, tw).long()
    y0 = ((m[:, 1] - r[:, 1]) / tile_size).clamp(0, th).long()
    y1 = torch.ceil((m[:, 1] + r[:, 1]) / tile_size).clamp(0, th).long()
    nx, ny = (x1 - x0).clamp_min(0), (y1 - y0).clamp_min(0)
    counts = nx * ny
    keep = counts > 0
    vis, x0, y0, nx, counts = vis[keep], x0[keep], y0[keep], nx[keep], counts[keep]
    if len(vis) == 0:
        empty = torch.zeros(0, dtype=torch.long, device=dev)
        return empty, empty, tw, th
    owner = torch.repeat_interleave(torch.arange(len(vis), device=dev), counts)
    start = torch.cumsum(counts, 0) - counts
    local = torch.arange(len(owner), device=dev) - start[owner]
    tx = x0[owner] + local % nx[owner]
    ty = y0[owner] + local // nx[owner]
    tile = ty * tw + tx
    gid = vis[owner]
    # sort by (tile, depth): stable sort by depth first, then by tile
    order = torch.argsort(depths[gid].detach(), stable=True)
    order = order[torch.argsort(tile[order], stable=True)]
    return tile[order], gid[order], tw, th


def rasterize_torch(means2d: Tensor, conics: Tensor, opacities: Tensor, colors: Tensor, depths: Tensor,
                    radii: Tensor, width: int, height: int, tile_size: int = 8,
                    backgrounds: Tensor | None = None, max_block: int = 6_000_000) -> tuple[Tensor, Tensor]:
    """Composite projected Gaussians.

    means2d: Tensor    # [C, N, 2]
    conics: Tensor     # [C, N, 3]
    opacities: Tensor  # [N] or [C, N], in [0, 1]
    colors: Tensor     # [C, N, D]
    depths: Tensor     # [C, N]
    radii: Tensor      # [C, N, 2]
    backgrounds: Tensor | None  # [C, D]
    returns render [C, H, W, D], alpha [C, H, W, 1]
    """
    C, N, D = colors.shape
    if opacities.dim() == 1:
        opacities = opacities[None].expand(C, N)
    outs, alphas = [], []
    for c in range(C):
        img, alpha = _rasterize_one(means2d[c], conics[c], opacities[c], colors[c], depths[c], radii[c], width,
                                    height, tile_size, max_block)
        if backgrounds is not None:
            img = img + (1.0 - alpha) * backgrounds[c]
        outs.append(img)
        alphas.append(alpha)
    return torch.stack(outs), torch.stack(alphas)


def _rasterize_one(means2d, conics, opacities, colors, depths, radii, width, height, tile_size, max_block):
    dev, dtype = colors.device, colors.dtype
    D = colors.shape[-1]
    tile, gid, tw, th = tile_intersections(means2d, radii, depths, width, height, tile_size, opacities)
    n_tiles = tw * th
    P = tile_size * tile_size
    if len(tile) == 0:
        img = colors.new_zeros(height, width, D) + 0.0 * colors.sum()
        return img, img.new_zeros(height, width, 1)
    counts = torch.bincount(tile, minlength=n_tiles)
    offsets = torch.cumsum(counts, 0) - counts
    mono = pixel_monomials(tile_size, dev, dtype)
    # per-Gaussian data packed in one table (one gather per block), padding row at index N
    table = gaussian_table(means2d, conics, opacities, colors)
    pad_id = means2d.shape[0]

    active = counts.nonzero()[:, 0]
    cnt_sorted, perm = torch.sort(counts[active])
    active = active[perm]
    cnt_list = cnt_sorted.tolist()
    tile_out, tile_alpha, tile_index = [], [], []
    i = 0
    while i < len(cnt_list):
        # grow the bucket while the padded block stays under max_block (counts ascending: last is largest)
        j = i + 1
        while j < len(cnt_list) and (j + 1 - i) * P * cnt_list[j] <= max_block and cnt_list[j] <= 2 * cnt_list[i] + 64:
            j += 1
        tiles_b = active[i:j]
        G = cnt_list[j - 1]
        ar = torch.arange(G, device=dev)
        idx = offsets[tiles_b][:, None] + ar[None]  # [B, G]
        valid = ar[None] < counts[tiles_b][:, None]
        g = torch.where(valid, gid[idx.clamp_max(len(gid) - 1)], torch.full_like(idx, pad_id))
        out, a = _composite_block(tiles_b, g, mono, tw, tile_size, table)
        tile_out.append(out)
        tile_alpha.append(a)
        tile_index.append(tiles_b)
        i = j
    idx_all = torch.cat(tile_index)
    full = colors.new_zeros(n_tiles, P, D).index_copy(0, idx_all, torch.cat(tile_out))
    full_a = colors.new_zeros(n_tiles, P, 1).index_copy(0, idx_all, torch.cat(tile_alpha))

    def to_image(t: Tensor) -> Tensor:
        k = t.shape[-1]
        t = t.reshape(th, tw, tile_size, tile_size, k).permute(0, 2, 1, 3, 4)
        return t.reshape(th * tile_size, tw * tile_size, k)[:height, :width]

    return to_image(full), to_image(full_a)


def gaussian_table(means2d: Tensor, conics: Tensor, opacities: Tensor, colors: Tensor | None = None) -> Tensor:
    """Per Gaussian ``x, y, a, b, c, log(opacity)`` (then ``colors``), plus a padding row at index ``N`` that
    no pixel can see: what the tile blocks gather from.

    means2d: Tensor  # [N, 2];  conics: Tensor  # [N, 3];  opacities: Tensor  # [N];  colors: Tensor  # [N, D]
    returns Tensor   # [N + 1, 6 + D]
    """
    cols = [means2d, conics, torch.log(opacities.clamp_min(1e-30))[:, None]] + ([colors] if colors is not None else [])
    table = torch.cat(cols, 1)
    pad = torch.zeros(1, table.shape[1], dtype=table.dtype, device=table.device)
    pad[0, 5] = -1e3
    return torch.cat([table, pad])


def pixel_monomials(tile_size: int, device: torch.device, dtype: torch.dtype) -> Tensor:
    """``px^2, px py, py^2, px, py, 1`` of the pixel centres (+0.5) of a tile, row-major.  Returns Tensor  # [P, 6]"""
    ly, lx = torch.meshgrid(torch.arange(tile_size, device=device), torch.arange(tile_size, device=device),
                            indexing="ij")
    px, py = lx.reshape(-1).to(dtype) + 0.5, ly.reshape(-1).to(dtype) + 0.5
    return torch.stack([px * px, px * py, py * py, px, py, torch.ones_like(px)], -1)


def tile_logits(rows: Tensor, ox: Tensor, oy: Tensor, mono: Tensor) -> Tensor:
    """``log(opacity) - sigma`` of each listed Gaussian at each pixel of its tile.

    The exponent is a quadratic form in the pixel position, so it is one batched matmul of per-pixel monomials
    with per-Gaussian coefficients (centres taken relative to the tile origin to keep the terms small).
    rows: Tensor  # [B, G, >= 6] gathered from :func:`gaussian_table`;  ox, oy: Tensor  # [B] tile origins (pixels)
    mono: Tensor  # [P, 6] :func:`pixel_monomials`
    returns Tensor  # [B, P, G]
    """
    x = rows[..., 0] - ox[:, None]  # [B, G] Gaussian centre relative to the tile origin
    y = rows[..., 1] - oy[:, None]
    a, b, c, log_op = rows[..., 2], rows[..., 3], rows[..., 4], rows[..., 5]
    coef = torch.stack([-0.5 * a, -b, -0.5 * c, a * x + b * y, b * x + c * y,
                        log_op - (0.5 * a * x * x + b * x * y + 0.5 * c * y * y)], 1)  # [B, 6, G]
    return torch.bmm(mono.expand(len(rows), -1, -1), coef)


def alpha_from_logits(logits: Tensor) -> Tensor:
    """``alpha = min(0.999, exp(logits))``, 0 below 1/255 (a new tensor; ``logits`` is left as it is)."""
    # exp() of inputs below float's range takes a slow path on CPU: clamp first (exp(-80) ~ 0 anyway)
    alpha = logits.clamp_min(-80.0).exp_()
    return alpha.masked_fill_(alpha < ALPHA_MIN, 0.0).clamp_max_(ALPHA_MAX)


def _composite_block(tiles, g, mono, tw, tile_size, table):
    """Composite ``B`` tiles, each with its depth-sorted Gaussian list ``g  # [B, G]`` (padded)."""
    B, G = g.shape
    rows = torch.index_select(table, 0, g.reshape(-1)).reshape(B, G, -1)  # backward: one index_add
    ox = (tiles % tw).to(mono.dtype) * tile_size
    oy = (tiles // tw).to(mono.dtype) * tile_size
    return _Composite.apply(tile_logits(rows, ox, oy, mono), rows[..., 6:])


class _Composite(torch.autograd.Function):
    """Front-to-back compositing of ``alpha = min(0.999, exp(logits))`` with a hand-written backward
    (a few passes over the ``[B, P, G]`` block instead of autograd's dozens).

    forward(logits [B, P, G], colors [B, G, D]) -> out [B, P, D], accumulated alpha [B, P, 1]
    """

    @staticmethod
    def forward(ctx, logits: Tensor, colors: Tensor):
        alpha = alpha_from_logits(logits)
        one_minus = torch.rsub(alpha, 1.0)
        T = torch.cumprod(one_minus, -1)  # transmittance after each Gaussian
        stop = T <= T_MIN  # gsplat stops before the Gaussian that brings T to <= 1e-4
        T = T.div_(one_minus)  # transmittance before each Gaussian
        w = (alpha * T).masked_fill_(stop, 0.0)
        out = torch.bmm(w, colors)
        ctx.save_for_backward(alpha, T, w, colors)
        return out, w.sum(-1, keepdim=True)

    @staticmethod
    def backward(ctx, g_out: Tensor, g_acc: Tensor):
        alpha, T, w, colors = ctx.saved_tensors
        g_w = torch.bmm(g_out, colors.transpose(1, 2)).add_(g_acc)  # dL/dw  [B, P, G]
        g_colors = torch.bmm(w.transpose(1, 2), g_out)
        gw_w = g_w * w
        # S_i = sum_{j > i} g_w_j w_j  (reverse exclusive cumsum); dw_j/dalpha_i = -w_j / (1 - alpha_i), j > i
        later = gw_w.sum(-1, keepdim=True) - torch.cumsum(gw_w, -1)
        g_alpha = g_w.mul_(T).sub_(later.div_(torch.rsub(alpha, 1.0)))
        # d alpha / d logits = alpha where alpha was neither skipped (< 1/255), clamped (0.999) nor stopped
        dead = (w <= 0).logical_or_(alpha >= ALPHA_MAX)
        return g_alpha.mul_(alpha).masked_fill_(dead, 0.0), g_colors

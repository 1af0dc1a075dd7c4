"""Teacher feature maps: their principal subspace, the basis features are stored in (a decoder started at it,
the lifted coordinates of :mod:`dff_gs.lift`), and their bilinear resampling to any grid. One place for each."""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor


@torch.no_grad()
def init_decoder_pca(decoder: torch.nn.Linear, maps: Tensor, max_samples: int = 200_000, seed: int = 0) -> None:
    """Start the D -> C decoder at the teacher's top-D principal directions (weight) and mean (bias), so
    per-Gaussian features begin as PCA coefficients (zero = the mean feature) and distillation starts
    convex in them instead of fitting a random bilinear product.

    maps: Tensor  # [V, h, w, C] teacher maps (pixels with an all-zero feature are unlabeled and skipped)
    """
    pca = pca_directions(maps, decoder.in_features, max_samples, seed)
    if pca is None:
        return
    mu, V = pca
    weight = torch.zeros(decoder.out_features, decoder.in_features)
    weight[:, :V.shape[1]] = V
    decoder.weight.copy_(weight.to(decoder.weight))
    decoder.bias.copy_(mu.to(decoder.bias))


def pca_directions(maps: Tensor, q: int, max_samples: int = 200_000, seed: int = 0) -> Optional[tuple[Tensor, Tensor]]:
    """Mean and top principal directions of the labeled texels of teacher maps (all-zero features are unlabeled
    and left out; at most ``max_samples`` of them, a seeded subset), on the CPU.

    Exact and deterministic: the mean, then the centred scatter matrix [C, C], are accumulated over blocks of
    texels (float64 sums), and its top eigenvectors taken, each signed so its largest entry is positive; no copy
    of the texels is made (it was the peak of start-up memory).

    maps: Tensor  # [V, h, w, C]
    Returns (mean: Tensor  # [C], directions: Tensor  # [C, q'], q' = min(q, C, samples)), float32, or None when
    no texel is labeled
    """
    flat = maps.reshape(-1, maps.shape[-1])
    rows = (torch.linalg.vector_norm(flat, ord=1, dim=-1) > 0).nonzero()[:, 0]  # labeled: some feature nonzero
    if len(rows) == 0:
        return None
    if len(rows) > max_samples:
        keep = torch.randperm(len(rows), generator=torch.Generator().manual_seed(seed))[:max_samples]
        rows = rows[keep.to(rows.device)]
    blocks = [rows[s:s + 8192] for s in range(0, len(rows), 8192)]
    C = flat.shape[1]
    total = torch.zeros(C, dtype=torch.float64)
    for b in blocks:
        total += flat[b].to("cpu", torch.float64).sum(0)
    mu = total / len(rows)
    scatter = torch.zeros(C, C, dtype=torch.float64)
    for b in blocks:
        x = flat[b].to("cpu", torch.float64) - mu
        scatter += x.T @ x
    q = min(q, C, len(rows))
    if q <= 0:
        return mu.float(), torch.zeros(C, 0)
    directions = torch.linalg.eigh(scatter)[1].flip(1)[:, :q]  # eigenvalues ascending: the last are the top
    top = directions.abs().argmax(0)
    directions = directions * torch.sign(directions[top, torch.arange(q)])[None]
    return mu.float(), directions.float()


def affine_map(x: Tensor, weight: Tensor, bias: Tensor) -> Tensor:
    """``x @ weight.T + bias`` as one matrix product, the bias a row of the weight against a column of ones: one
    pass over the (large) output instead of a product and then an addition (a decoded 128x96 feature image is 19
    MB; 1.5 -> 1.0 ms here). Not for autograd (the decoder trains through ``nn.Linear``).

    x: Tensor       # [..., D]
    weight: Tensor  # [C, D]
    bias: Tensor    # [C]
    returns Tensor  # [..., C]
    """
    flat = x.reshape(-1, x.shape[-1])
    ones = flat.new_ones(len(flat), 1)
    out = torch.cat([flat, ones], 1) @ torch.cat([weight.T, bias[None]], 0).to(flat)
    return out.reshape(*x.shape[:-1], weight.shape[0])


def resample_maps(maps: Tensor, height: int, width: int) -> Tensor:
    """Bilinearly resize teacher maps to the render resolution.

    Args:
        maps: Tensor  # [B, h, w, C]
    Returns:
        Tensor  # [B, height, width, C]
    """
    if maps.shape[1] == height and maps.shape[2] == width:
        return maps
    x = F.interpolate(maps.permute(0, 3, 1, 2).float(), size=(height, width), mode="bilinear", align_corners=False)
    return x.permute(0, 2, 3, 1)

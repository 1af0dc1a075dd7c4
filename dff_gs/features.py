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
    and left out; at most ``max_samples`` of them, a seeded subset), on the CPU in float32.

    maps: Tensor  # [V, h, w, C]
    Returns (mean: Tensor  # [C], directions: Tensor  # [C, q'], q' = min(q, C, samples)), or None when no
    texel is labeled
    """
    flat = maps.reshape(-1, maps.shape[-1])
    rows = (torch.linalg.vector_norm(flat, ord=1, dim=-1) > 0).nonzero()[:, 0]  # labeled: some feature nonzero
    if len(rows) == 0:
        return None
    if len(rows) > max_samples:
        keep = torch.randperm(len(rows), generator=torch.Generator().manual_seed(seed))[:max_samples]
        rows = rows[keep.to(rows.device)]
    X = torch.empty(len(rows), flat.shape[1])  # float32 on the CPU, gathered in blocks: no full-size temporaries
    for s in range(0, len(rows), 16384):
        X[s:s + 16384] = flat[rows[s:s + 16384]]
    mu = X.mean(0)
    q = min(q, X.shape[1], len(X))
    if q <= 0:
        return mu, X.new_zeros(X.shape[1], 0)
    torch.manual_seed(seed)  # pca_lowrank is randomised
    return mu, torch.pca_lowrank(X.sub_(mu), q=q, center=False)[2]  # centred in place: X is our own copy


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

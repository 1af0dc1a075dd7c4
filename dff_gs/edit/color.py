"""Recolouring as linear maps of RGB, applied to the SH coefficients.

A Gaussian's colour in direction ``d`` is ``c(d) = 0.5 + C0 * sh0 + sum_k Y_k(d) shN_k`` (before the
renderer's clamp). A linear colour map ``M  # [3, 3]`` applied as ``sh0' = (M (C0 sh0 + 0.5) - 0.5) / C0`` and
``shN'_k = M shN_k`` turns ``c(d)`` into ``M c(d)`` for *every* direction: the view dependence survives.

- hue rotation: rotation of RGB about the grey axis by an angle;
- saturation: ``lum + s (c - lum)`` with Rec. 709 luma ``lum = w . c``;
- brightness: ``b c``;
- tint to a target colour: ``target * (w . c) / ref`` (keeps each Gaussian's shading relative to the
  selection's mean luma ``ref``; the selection's mean colour becomes ``target``).
"""

from __future__ import annotations

import math
from typing import Optional, Sequence

import torch
from torch import Tensor

from dff_gs.core.errors import ConfigError
from dff_gs.core.gaussians import rgb_to_sh0, sh0_to_rgb

LUMA = torch.tensor([0.2126, 0.7152, 0.0722])


def parse_color(value) -> list[float]:
    """``[r, g, b]`` in [0, 1], from a list of three numbers (0..1, or 0..255 if any exceeds 1), a string
    ``"r,g,b"`` or ``"#rrggbb"``."""
    orig = value
    if isinstance(value, str):
        s = value.strip()
        if s.startswith("#") and len(s) == 7:
            try:
                return [int(s[i:i + 2], 16) / 255.0 for i in (1, 3, 5)]
            except ValueError:
                raise ConfigError(f"colour {orig!r}: not a #rrggbb hex colour") from None
        value = [v for v in s.replace(",", " ").split() if v]
    try:
        rgb = [float(v) for v in value]
    except (TypeError, ValueError):
        raise ConfigError(f"colour {orig!r}: expected r,g,b numbers or #rrggbb") from None
    if len(rgb) != 3 or not all(math.isfinite(v) and v >= 0 for v in rgb):
        raise ConfigError(f"colour {orig!r}: expected three finite, non-negative numbers")
    if max(rgb) > 1.0:
        if max(rgb) > 255:
            raise ConfigError(f"colour {orig!r}: values must be in 0..1 (or 0..255)")
        rgb = [v / 255.0 for v in rgb]
    return rgb


def hue_matrix(degrees: float) -> Tensor:
    """Rotation of RGB about the grey axis (1, 1, 1) by ``degrees``.  Returns Tensor  # [3, 3]"""
    t = math.radians(degrees)
    c, s = math.cos(t), math.sin(t)
    k = 1.0 / 3.0
    r = math.sqrt(k)
    return torch.tensor([[c + (1 - c) * k, (1 - c) * k - r * s, (1 - c) * k + r * s],
                         [(1 - c) * k + r * s, c + (1 - c) * k, (1 - c) * k - r * s],
                         [(1 - c) * k - r * s, (1 - c) * k + r * s, c + (1 - c) * k]])


def saturation_matrix(s: float) -> Tensor:
    """``lum + s (c - lum)``.  Returns Tensor  # [3, 3]"""
    return s * torch.eye(3) + (1 - s) * torch.ones(3, 1) @ LUMA[None]


def tint_matrix(target: Sequence[float], reference_luma: float) -> Tensor:
    """``target * (w . c) / reference_luma``.  Returns Tensor  # [3, 3]"""
    return torch.tensor(list(target))[:, None] @ LUMA[None] / max(reference_luma, 1e-4)


def color_matrix(color: Optional[Sequence[float]] = None, hue: float = 0.0, saturation: float = 1.0,
                 brightness: float = 1.0, reference_luma: float = 0.5) -> Tensor:
    """Tint to ``color`` (if given), then rotate hue, scale saturation and brightness.  Returns Tensor  # [3, 3]"""
    for name, v, lo in (("hue", hue, None), ("saturation", saturation, 0.0), ("brightness", brightness, 0.0)):
        if not math.isfinite(float(v)) or (lo is not None and float(v) < lo):
            raise ConfigError(f"recolor: {name}={v!r} must be finite" + (" and >= 0" if lo is not None else ""))
    M = torch.eye(3)
    if color is not None:
        M = tint_matrix(color, reference_luma)
    return float(brightness) * saturation_matrix(float(saturation)) @ hue_matrix(float(hue)) @ M


def dc_colors(sh0: Tensor) -> Tensor:
    """Base (DC) colours of ``sh0  # [N, 1, 3]``.  Returns Tensor  # [N, 3]"""
    return sh0_to_rgb(sh0[:, 0])


def apply_color_matrix(sh0: Tensor, shN: Tensor, M: Tensor) -> tuple[Tensor, Tensor]:
    """``c(d) -> M c(d)`` for every direction (module docstring).

    sh0: Tensor  # [N, 1, 3]
    shN: Tensor  # [N, K-1, 3]
    Returns new (sh0, shN) tensors
    """
    M = M.to(sh0)
    c = dc_colors(sh0) @ M.T
    return rgb_to_sh0(c)[:, None], shN @ M.T


def sh_bound(shN: Tensor) -> Tensor:
    """The largest ``|sum_k Y_k(d) shN_k|`` over all directions ``d``, bounded per channel: band ``l`` adds at most
    ``sqrt((2l + 1) / 4 pi) |c_l|`` (the addition theorem: ``sum_m Y_lm(d)^2 = (2l + 1) / 4 pi`` for the orthonormal
    real SH; exact for one band).  shN: Tensor  # [N, K-1, 3]; returns Tensor  # [N, 3]"""
    bound = shN.new_zeros(shN.shape[0], 3)
    l, start = 1, 0
    while start < shN.shape[1]:
        band = shN[:, start:start + 2 * l + 1]
        bound = bound + math.sqrt((2 * l + 1) / (4 * math.pi)) * band.norm(dim=1)
        start, l = start + 2 * l + 1, l + 1
    return bound


def clamp_displayable(sh0: Tensor, shN: Tensor) -> tuple[Tensor, Tensor, int]:
    """``(sh0, shN)`` changed as little as possible so that each Gaussian's colour ``c(d)`` lies in [0, 1] in every
    direction: a view-dependent part larger than 0.5 (:func:`sh_bound`) is scaled down to 0.5, then the DC colour
    is clamped to ``[bound, 1 - bound]`` (so within [0, 1]). Gaussians already inside keep their exact
    coefficients. Returns the new tensors and how many Gaussians changed.

    A colour map can push colours above 1 (a dark object tinted light: DC up to 2.7 on the sofa). Our renderer
    composites such values and clips only the pixel, but 8-bit viewers and exports (``.splat``, compressed PLY,
    SPZ) clip each Gaussian's colour first: the two would show different pictures.

    sh0: Tensor  # [N, 1, 3]; shN: Tensor  # [N, K-1, 3]
    """
    bound = sh_bound(shN)
    scale = (0.5 / bound.clamp_min(1e-12)).clamp(max=1.0)  # [N, 3]
    bound = bound * scale
    rgb = dc_colors(sh0)
    outside = ((rgb < bound) | (rgb > 1 - bound) | (scale < 1)).any(-1)  # [N]
    new0 = torch.where(outside[:, None], rgb_to_sh0(torch.minimum(torch.maximum(rgb, bound), 1 - bound)), sh0[:, 0])
    newN = torch.where(outside[:, None, None], shN * scale[:, None, :], shN)
    return new0[:, None], newN, int(outside.sum())

"""The radiance + feature field of NeRF-DFF: density ``sigma(x)``, view-dependent colour ``c(x, d)`` and a
distilled feature ``f(x)`` (Kobayashi et al. 2022, on the Instant-NGP architecture of their code).

- geometry: position encoding (hash grid, or frequency encoding for the ``mlp`` variant) -> MLP ->
  ``1 + geo_features`` values; ``sigma = trunc_exp(first)``;
- colour: ``[geo features, SH(d)]`` -> MLP -> sigmoid RGB;
- feature: its own coarser encoding of ``x`` (features are low-frequency) -> MLP -> ``D`` values, plus (as
  the paper's code) a small MLP of the *detached* geometry features (``nerf.feature_geo``: ``sum``; or
  ``concat`` them to the encoding, or ``none``): distillation does not reshape the geometry through them.

Positions enter normalised to ``[0, 1]^3`` (see :meth:`dff_gs.nerf.model.NerfModel.normalize`).
"""

from __future__ import annotations

import math
from typing import Optional, get_args

import torch
from torch import Tensor, nn

from dff_gs.core.errors import ConfigError
from dff_gs.nerf.config import FieldKind, NerfConfig
from dff_gs.nerf.encodings import FrequencyEncoding, HashEncoding, SHEncoding

FIELDS = get_args(FieldKind)
FEATURE_GEO = ("sum", "concat", "none")


class _TruncExp(torch.autograd.Function):
    """``exp(x)`` whose gradient is clamped at ``exp(15)`` (Instant-NGP's density activation)."""

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:
        ctx.save_for_backward(x)
        return torch.exp(x)

    @staticmethod
    def backward(ctx, g: Tensor) -> Tensor:
        (x,) = ctx.saved_tensors
        return g * torch.exp(x.clamp(max=15.0))


def trunc_exp(x: Tensor) -> Tensor:
    return _TruncExp.apply(x)


class MLP(nn.Sequential):
    """``in_dim -> [width, ReLU] x depth -> out_dim`` (no output activation)."""

    def __init__(self, in_dim: int, width: int, depth: int, out_dim: int):
        layers: list[nn.Module] = []
        d = in_dim
        for _ in range(depth):
            layers += [nn.Linear(d, width), nn.ReLU(inplace=True)]
            d = width
        layers.append(nn.Linear(d, out_dim))
        super().__init__(*layers)


def position_encoding(cfg: NerfConfig, for_features: bool = False) -> nn.Module:
    """The encoding of positions for the geometry (or, ``for_features``, the feature branch)."""
    if cfg.field == "hash":
        if for_features:
            return HashEncoding(cfg.feature_levels, cfg.hash_features, cfg.feature_log2_size, cfg.hash_base_res,
                                max(cfg.feature_max_res, cfg.hash_base_res))
        return HashEncoding(cfg.hash_levels, cfg.hash_features, cfg.hash_log2_size, cfg.hash_base_res, cfg.hash_max_res)
    if cfg.field == "mlp":
        return FrequencyEncoding(3, max(cfg.pe_frequencies - 2, 1) if for_features else cfg.pe_frequencies)
    raise ConfigError(f"nerf.field={cfg.field!r}: expected one of {', '.join(FIELDS)}")


class NerfField(nn.Module):
    """sigma, rgb and features at normalised positions.

    feature_dim: rendered feature dimension D (0 = no feature branch)
    """

    def __init__(self, cfg: NerfConfig, feature_dim: int):
        super().__init__()
        self.feature_dim = int(feature_dim)
        self.geo_features = cfg.geo_features
        self.encoding = position_encoding(cfg)
        width, depth = (cfg.hidden, 1) if cfg.field == "hash" else (cfg.mlp_width, cfg.mlp_depth)
        self.density_mlp = MLP(self.encoding.out_dim, width, depth, 1 + cfg.geo_features)
        with torch.no_grad():  # start nearly empty: sigma = init_density everywhere
            self.density_mlp[-1].bias[0] = math.log(max(cfg.init_density, 1e-6))
        self.dir_encoding = SHEncoding(cfg.dir_sh_bands)
        self.color_mlp = MLP(cfg.geo_features + self.dir_encoding.out_dim, cfg.hidden, 2, 3)
        self.feature_geo = cfg.feature_geo
        if cfg.feature_geo not in FEATURE_GEO:
            raise ConfigError(f"nerf.feature_geo={cfg.feature_geo!r}: expected one of {', '.join(FEATURE_GEO)}")
        self.feature_encoding = self.feature_mlp = self.geo_to_feature = None
        if self.feature_dim:
            self.feature_encoding = position_encoding(cfg, for_features=True)
            extra = cfg.geo_features if cfg.feature_geo == "concat" else 0
            self.feature_mlp = MLP(self.feature_encoding.out_dim + extra, cfg.hidden, 2, self.feature_dim)
            if cfg.feature_geo == "sum":  # the paper's code: a small branch from the (detached) geometry, added
                self.geo_to_feature = MLP(cfg.geo_features, max(cfg.hidden // 2, 8), 1, self.feature_dim)

    def density(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """x: Tensor  # [N, 3] in [0, 1]  ->  (sigma  # [N], geo  # [N, geo_features])"""
        h = self.density_mlp(self.encoding(x))
        return trunc_exp(h[:, 0]), h[:, 1:]

    def color(self, geo: Tensor, dirs: Tensor) -> Tensor:
        """geo: Tensor  # [N, G], dirs: Tensor  # [N, 3] unit  ->  rgb  # [N, 3] in (0, 1)"""
        return torch.sigmoid(self.color_mlp(torch.cat([geo, self.dir_encoding(dirs)], -1)))

    def features(self, x: Tensor, geo: Tensor) -> Tensor:
        """x: Tensor  # [N, 3] in [0, 1], geo: Tensor  # [N, G]  ->  Tensor  # [N, D]"""
        if self.feature_mlp is None:
            raise ConfigError("this NeRF has no feature branch (trained without a teacher)")
        h = self.feature_encoding(x)
        if self.feature_geo == "concat":
            return self.feature_mlp(torch.cat([h, geo.detach()], -1))
        f = self.feature_mlp(h)
        return f + self.geo_to_feature(geo.detach()) if self.geo_to_feature is not None else f

    def forward(self, x: Tensor, dirs: Tensor, with_features: bool = True) -> tuple[Tensor, Tensor, Optional[Tensor]]:
        """x: Tensor  # [N, 3] in [0, 1]; dirs: Tensor  # [N, 3] unit
        Returns (sigma  # [N], rgb  # [N, 3], features  # [N, D] or None)."""
        sigma, geo = self.density(x)
        rgb = self.color(geo, dirs)
        feats = self.features(x, geo) if with_features and self.feature_dim else None
        return sigma, rgb, feats

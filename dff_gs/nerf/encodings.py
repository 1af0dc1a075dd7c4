"""Input encodings of the field, in pure PyTorch (any device):

- :class:`HashEncoding`: Instant-NGP's multi-resolution hash grid (trilinear interpolation of learned
  per-level tables; coarse levels indexed densely, fine levels through a spatial hash).
- :class:`FrequencyEncoding`: vanilla NeRF's positional encoding ``[x, sin(2^k pi x), cos(2^k pi x)]``.
- :class:`SHEncoding`: real spherical harmonics of view directions (the basis of :mod:`dff_gs.render.sh`).

Positions come in normalised to the unit cube ``[0, 1]^3`` (the field does that from its AABB).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from dff_gs.core.sh import C0, C1, C2, C3

# Instant-NGP's hash primes (the first is 1), as int32 with wrap-around: the low bits of a wrapped int32
# product equal those of the uint32 product, and the table size is a power of two.
_PRIMES = (1, 2654435761 - 2**32, 805459861)


class _GridInterp(torch.autograd.Function):
    """Trilinear interpolation of table rows: ``out[g, n, f] = sum_c w[c, g, n] * table[f, idx[c, g, n]]``.

    Corner-major layouts (``[8, G, N]``) keep the long point dimension innermost, so every elementwise op
    is vectorised; the table is stored feature-major (``[F, rows]``) and gathered with ``take``; the backward
    accumulates with ``bincount`` (several times faster on CPU than autograd's ``index`` backward or
    ``index_add_``). Positions get no gradient.
    """

    @staticmethod
    def forward(ctx, table: Tensor, idx: Tensor, w: Tensor) -> Tensor:  # table [F, T], idx/w [8, G, N] -> [G, N, F]
        idx = idx.long()
        ctx.save_for_backward(idx, w)
        ctx.rows = table.shape[1]
        return torch.stack([(torch.take(table[f], idx) * w).sum(0) for f in range(table.shape[0])], -1)

    @staticmethod
    def backward(ctx, grad: Tensor):
        idx, w = ctx.saved_tensors
        flat = idx.reshape(-1)
        g = torch.stack([torch.bincount(flat, weights=(w * grad[None, ..., f]).reshape(-1), minlength=ctx.rows)
                         for f in range(grad.shape[-1])])
        return g.to(grad.dtype), None, None


class HashEncoding(nn.Module):
    """Multi-resolution hash encoding (Müller et al. 2022).

    Level ``l`` has resolution ``floor(base_res * b^l)`` with ``b`` spanning ``base_res..max_res`` over
    ``levels``; its table has ``min(2^log2_size, (res + 1)^3)`` rows of ``features`` values. The tables of
    all levels are concatenated in one parameter ``table  # [features, rows]``.

    forward(x: Tensor  # [N, 3] in [0, 1]) -> Tensor  # [N, levels * features]
    """

    def __init__(self, levels: int = 16, features: int = 2, log2_size: int = 17, base_res: int = 16,
                 max_res: int = 512):
        super().__init__()
        if levels < 1 or features < 1 or not 4 <= log2_size <= 30 or base_res < 1 or max_res < base_res:
            raise ValueError(f"HashEncoding: bad sizes (levels={levels}, features={features}, log2_size={log2_size}, "
                             f"base_res={base_res}, max_res={max_res})")
        self.levels, self.features, self.log2_size = levels, features, log2_size
        self.base_res, self.max_res = base_res, max_res
        T = 2**log2_size
        b = math.exp((math.log(max_res) - math.log(base_res)) / max(levels - 1, 1))
        res = [int(math.floor(base_res * b**lv)) for lv in range(levels)]
        rows = [min(T, (r + 1) ** 3) for r in res]
        offsets = [0]
        for n in rows[:-1]:
            offsets.append(offsets[-1] + n)
        self.resolutions = res
        self.table = nn.Parameter(torch.empty(features, sum(rows)).uniform_(-1e-4, 1e-4))
        # levels are processed in two groups: dense (exact index) and hashed
        dense = [lv for lv in range(levels) if (res[lv] + 1) ** 3 <= T]
        hashed = [lv for lv in range(levels) if (res[lv] + 1) ** 3 > T]
        self._groups = []
        for name, ids in (("dense", dense), ("hashed", hashed)):
            if not ids:
                continue
            self.register_buffer(f"{name}_res", torch.tensor([res[i] for i in ids], dtype=torch.float32)[:, None],
                                 persistent=False)
            self.register_buffer(f"{name}_stride", torch.tensor([res[i] + 1 for i in ids], dtype=torch.int32)[:, None],
                                 persistent=False)
            self.register_buffer(f"{name}_offset", torch.tensor([offsets[i] for i in ids], dtype=torch.int32)[:, None],
                                 persistent=False)
            self._groups.append((name, ids))
        self._order = [lv for _, ids in self._groups for lv in ids]  # group order -> level order
        self._inverse = None if self._order == list(range(levels)) else torch.argsort(torch.tensor(self._order))

    @property
    def out_dim(self) -> int:
        return self.levels * self.features

    def _corners(self, name: str, x: Tensor) -> tuple[Tensor, Tensor]:
        """Table rows and trilinear weights of the 8 cell corners of every point at the group's levels.

        x: Tensor  # [3, N] in [0, 1)
        Returns (idx  # [8, G, N] int32, w  # [8, G, N])
        """
        res = getattr(self, f"{name}_res")  # [G, 1]
        xs = x[:, None, :] * res  # [3, G, N]
        p0 = xs.floor()
        frac = xs - p0
        p = p0.to(torch.int32)
        corner = [torch.stack([p[a], p[a] + 1]) for a in range(3)]  # 3 x [2, G, N]
        if name == "dense":
            stride = getattr(self, f"{name}_stride")  # [G, 1]
            ax, ay, az = corner[0], corner[1] * stride, corner[2] * (stride * stride)
            idx = ax[:, None, None] + ay[None, :, None] + az[None, None, :]
        else:  # int32 products wrap around: the low bits are the uint32 hash's
            ax, ay, az = corner[0], corner[1] * _PRIMES[1], corner[2] * _PRIMES[2]
            idx = (ax[:, None, None] ^ ay[None, :, None] ^ az[None, None, :]) & (2**self.log2_size - 1)
        idx = idx + getattr(self, f"{name}_offset")  # [2, 2, 2, G, N]
        wa = [torch.stack([1.0 - frac[a], frac[a]]) for a in range(3)]
        w = wa[0][:, None, None] * wa[1][None, :, None] * wa[2][None, None, :]
        G = res.shape[0]
        return idx.reshape(8, G, -1), w.reshape(8, G, -1)

    def forward(self, x: Tensor) -> Tensor:
        """x: Tensor  # [N, 3] in [0, 1] (clamped)  ->  Tensor  # [N, levels * features]"""
        N = x.shape[0]
        xt = x.float().clamp(0.0, 1.0 - 1e-6).t().contiguous()  # [3, N]
        outs = []
        for name, _ in self._groups:
            idx, w = self._corners(name, xt)
            outs.append(_GridInterp.apply(self.table, idx, w.to(self.table.dtype)))  # [G, N, F]
        out = torch.cat(outs, 0) if len(outs) > 1 else outs[0]  # [L, N, F] in group order
        if self._inverse is not None:
            out = out[self._inverse.to(out.device)]
        return out.permute(1, 0, 2).reshape(N, self.out_dim)

    def extra_repr(self) -> str:
        return (f"levels={self.levels}, features={self.features}, T=2^{self.log2_size}, "
                f"res={self.base_res}..{self.max_res}, params={self.table.numel()}")


class FrequencyEncoding(nn.Module):
    """NeRF positional encoding of ``x  # [N, d]`` in [0, 1]: ``[x', sin(2^k pi x'), cos(2^k pi x')]`` for
    ``k < frequencies`` with ``x' = 2x - 1``.  Returns Tensor  # [N, d * (1 + 2 * frequencies)]"""

    def __init__(self, in_dim: int = 3, frequencies: int = 8):
        super().__init__()
        if frequencies < 0:
            raise ValueError(f"FrequencyEncoding: frequencies={frequencies} must be >= 0")
        self.in_dim, self.frequencies = in_dim, frequencies
        self.register_buffer("_scales", (2.0 ** torch.arange(frequencies)) * math.pi, persistent=False)

    @property
    def out_dim(self) -> int:
        return self.in_dim * (1 + 2 * self.frequencies)

    def forward(self, x: Tensor) -> Tensor:
        x = 2.0 * x.float() - 1.0
        xs = (x[:, :, None] * self._scales).reshape(x.shape[0], -1)  # [N, d * K]
        return torch.cat([x, torch.sin(xs), torch.cos(xs)], -1)


class SHEncoding(nn.Module):
    """Real spherical harmonics of unit directions ``d  # [N, 3]`` up to ``bands`` bands (1..4) -> ``[N, bands^2]``,
    with the constants and signs of :mod:`dff_gs.render.sh` (the Gaussians' colour basis)."""

    def __init__(self, bands: int = 4):
        super().__init__()
        if not 1 <= bands <= 4:
            raise ValueError(f"SHEncoding: bands={bands} must be 1..4")
        self.bands = bands

    @property
    def out_dim(self) -> int:
        return self.bands**2

    def forward(self, d: Tensor) -> Tensor:
        d = d.float()
        x, y, z = d[:, 0], d[:, 1], d[:, 2]
        out = [torch.full_like(x, C0)]
        if self.bands > 1:
            out += [-C1 * y, C1 * z, -C1 * x]
        if self.bands > 2:
            xx, yy, zz = x * x, y * y, z * z
            out += [C2[0] * x * y, C2[1] * y * z, C2[2] * (2.0 * zz - xx - yy), C2[3] * x * z, C2[4] * (xx - yy)]
        if self.bands > 3:
            out += [C3[0] * y * (3.0 * xx - yy), C3[1] * x * y * z, C3[2] * y * (4.0 * zz - xx - yy),
                    C3[3] * z * (2.0 * zz - 3.0 * xx - 3.0 * yy), C3[4] * x * (4.0 * zz - xx - yy),
                    C3[5] * z * (xx - yy), C3[6] * x * (xx - 3.0 * yy)]
        return torch.stack(out, -1)

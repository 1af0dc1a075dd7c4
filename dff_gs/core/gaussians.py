"""``GaussianModel``: 3D Gaussians with SH colour and a per-Gaussian feature vector.

Parameters are kept as gsplat's trainers keep them, in one ``ParameterDict`` of per-Gaussian tensors
(so gsplat's densification strategies split, clone and prune every key, ``features`` included):

    means      [N, 3]       world positions
    quats      [N, 4]       rotations, w x y z, unnormalised
    scales     [N, 3]       log scales
    opacities  [N]          logit opacities
    sh0        [N, 1, 3]    SH DC coefficients
    shN        [N, K-1, 3]  higher SH coefficients, K = (sh_degree + 1) ** 2
    features   [N, D]       distilled feature vectors (D may be 0)

An optional linear ``decoder`` maps the stored D-dimensional features to the teacher's dimension
(Feature 3DGS's speed-up module); queries compare in the teacher's space. ``antialiased`` says how the model is
rendered (Mip-Splatting's 2D filter, ``model.antialiased`` of the config): every render of it follows it, and it
travels with the model (its PLY's sidecar, edits, lifts).
"""

from __future__ import annotations

import math
from typing import Optional

import torch
from torch import Tensor, nn

from dff_gs.core.errors import CheckpointError
from dff_gs.core.features import affine_map
from dff_gs.core.neighbors import knn, tree_query
from dff_gs.core.utils import as_rgb, has_depth

SH_C0 = 0.28209479177387814
PARAM_KEYS = ("means", "quats", "scales", "opacities", "sh0", "shN", "features")
FAR_SPREAD = 4.0
"""Gaussians started past depth maps' content (their background pixels, scattered at random distances) are this many
times as wide as a depth point at the same distance, so that they close over the sky between them (1x left the
fallback colour showing through in specks: held-out 37.45 / 39.16 / 33.97 dB on gen-3 / gen-5 / toys with depth,
2x 38.34 / 39.24 / 33.99, 4x 38.95 / 39.26 / 33.96; benchmarks/RESULTS.md)."""


def num_sh_bases(degree: int) -> int:
    return (degree + 1) ** 2


def rgb_to_sh0(rgb: Tensor) -> Tensor:
    """DC coefficient ``[..., 3]`` whose colour (gsplat convention: SH value + 0.5) is ``rgb``."""
    return (rgb - 0.5) / SH_C0


def sh0_to_rgb(sh0: Tensor) -> Tensor:
    return sh0 * SH_C0 + 0.5


EXACT_TORCH_MAX = 20000  # clouds up to this size: the chunked torch cdist (float32), as before


def knn_mean_distance(points: Tensor, k: int = 3, chunk: int = 512) -> Tensor:
    """Mean distance ``[P]`` of each of ``points  # [P, 3]`` to its ``k`` nearest other points, exact.

    Up to ``EXACT_TORCH_MAX`` points: chunked float32 ``torch.cdist`` over every point, the point itself dropped
    (as before, so small initial clouds train bit for bit as they did). Bigger clouds: scipy's ``cKDTree`` on
    the CPU, :func:`knn_mean_distance_torch64` on CUDA; both in float64, cast back to the points' dtype. A cloud
    of one point gets 0 (no other point)."""
    P = len(points)
    if P <= 1:
        return torch.zeros(P, device=points.device, dtype=points.dtype)
    if P <= EXACT_TORCH_MAX:
        return knn(points, points, k, chunk=chunk, exclude_self=True)[0].mean(1)
    if points.is_cuda:
        return knn_mean_distance_torch64(points, k, chunk=chunk)
    dist, _ = tree_query(points, points, min(k + 1, P))  # [P, k+1] ascending, the point itself (0) first
    return torch.from_numpy(dist[:, 1:].mean(1)).to(device=points.device, dtype=points.dtype)


def knn_mean_distance_torch64(points: Tensor, k: int = 3, chunk: int = 2048) -> Tensor:
    """``knn_mean_distance`` on any device by brute force in float64 (differences, not the matrix-product
    expansion that float32 ``cdist`` uses on large inputs and that cancels for close points far from the
    origin). points: Tensor  # [P, 3] (P >= 2); returns Tensor  # [P] in the points' dtype."""
    xyz = points.detach().double()
    kk = min(k + 1, len(xyz))
    out = []
    for s in range(0, len(xyz), chunk):
        d = torch.cdist(xyz[s:s + chunk], xyz, compute_mode="donot_use_mm_for_euclid_dist")
        out.append(d.topk(kk, dim=1, largest=False).values[:, 1:].mean(1))
    return torch.cat(out).to(points.dtype)


class GaussianModel(nn.Module):
    """3D Gaussians with SH colour and per-Gaussian features (see the module docstring for shapes)."""

    def __init__(self, params: dict[str, Tensor], sh_degree: int, decoder_dim: Optional[int] = None,
                 antialiased: bool = False):
        super().__init__()
        missing = [k for k in PARAM_KEYS if k not in params]
        if missing:
            raise ValueError(f"GaussianModel: missing parameters {missing}")
        n = params["means"].shape[0]
        for k in PARAM_KEYS:
            if params[k].shape[0] != n:
                raise ValueError(f"GaussianModel: {k} has {params[k].shape[0]} rows, means has {n}")
        if params["shN"].shape[1] != num_sh_bases(sh_degree) - 1:
            raise ValueError(f"GaussianModel: shN has {params['shN'].shape[1]} coefficients, degree {sh_degree} "
                             f"needs {num_sh_bases(sh_degree) - 1}")
        self.sh_degree = int(sh_degree)
        self.antialiased = bool(antialiased)
        self.params = nn.ParameterDict({k: nn.Parameter(params[k].detach().clone().float()) for k in PARAM_KEYS})
        D = params["features"].shape[1]
        self.decoder = nn.Linear(D, int(decoder_dim)) if decoder_dim and D else None

    # ------------------------------------------------------------------------------------ properties
    @property
    def num_gaussians(self) -> int:
        return self.params["means"].shape[0]

    @property
    def feature_dim(self) -> int:
        """Stored feature dimension D."""
        return self.params["features"].shape[1]

    @property
    def output_dim(self) -> int:
        """Feature dimension after the decoder (the teacher's space)."""
        return self.decoder.out_features if self.decoder is not None else self.feature_dim

    @property
    def device(self) -> torch.device:
        return self.params["means"].device

    # ------------------------------------------------------------------------------------ activations
    def get_means(self) -> Tensor:
        return self.params["means"]

    def get_scales(self) -> Tensor:
        """Linear scales ``[N, 3]``."""
        return torch.exp(self.params["scales"])

    def get_opacities(self) -> Tensor:
        """Opacities in (0, 1) ``[N]``."""
        return torch.sigmoid(self.params["opacities"])

    def get_quats(self) -> Tensor:
        """Unit quaternions ``[N, 4]`` (w x y z)."""
        return nn.functional.normalize(self.params["quats"], dim=-1)

    def get_sh(self) -> Tensor:
        """SH coefficients ``[N, K, 3]``."""
        return torch.cat([self.params["sh0"], self.params["shN"]], dim=1)

    def decode(self, features: Tensor) -> Tensor:
        """Map stored features ``[..., D]`` to the teacher's space ``[..., C]`` (identity without a decoder).
        Without autograd, the bias rides in the matrix product (:func:`~dff_gs.core.features.affine_map`)."""
        if self.decoder is None:
            return features
        if torch.is_grad_enabled():
            return self.decoder(features)
        return affine_map(features, self.decoder.weight, self.decoder.bias)

    # ------------------------------------------------------------------------------------ construction
    @classmethod
    def from_points(cls, points: Tensor, colors: Optional[Tensor] = None, sh_degree: int = 3, feature_dim: int = 0,
                    decoder_dim: Optional[int] = None, init_opacity: float = 0.1, init_scale: float = 1.0,
                    scales: Optional[Tensor] = None, seed: int = 0) -> "GaussianModel":
        """Isotropic Gaussians at ``points  # [P, 3]`` coloured ``colors  # [P, 3]`` (grey if None), scale =
        ``init_scale`` x mean distance to the 3 nearest neighbours (or the given linear ``scales  # [P]``)."""
        points = points.detach().float()
        P = len(points)
        if P == 0:
            raise ValueError("GaussianModel.from_points: no points")
        if colors is None:
            colors = torch.full((P, 3), 0.5, device=points.device)
        if scales is None:
            scales = knn_mean_distance(points).clamp_min(1e-7) * init_scale
        K = num_sh_bases(sh_degree)
        params = {
            "means": points,
            "quats": torch.cat([torch.ones(P, 1), torch.zeros(P, 3)], 1).to(points),
            "scales": torch.log(scales.clamp_min(1e-7))[:, None].expand(P, 3).clone().to(points),
            "opacities": torch.full((P,), math.log(init_opacity / (1 - init_opacity))).to(points),
            "sh0": rgb_to_sh0(colors.float().clamp(0, 1))[:, None, :].to(points),
            "shN": torch.zeros(P, K - 1, 3).to(points),
            "features": torch.zeros(P, feature_dim).to(points),  # the decoder's bias (teacher mean) at start
        }
        return cls(params, sh_degree, decoder_dim)

    @classmethod
    def from_depth(cls, scene, max_points: int = 100_000, view_ids: Optional[list[int]] = None, seed: int = 0,
                   beyond: Optional[tuple[Tensor, Tensor]] = None, **kwargs) -> "GaussianModel":
        """Back-project the depth maps of ``view_ids`` (default: the training views) into a coloured cloud,
        subsampled to ``max_points``; each point's scale is the size of its pixel footprint at its depth.
        ``beyond``: more points and colours ``([B, 3], [B, 3])`` for what the depth maps leave out (their background
        pixels: :func:`dff_gs.data.region.beyond_points`), each scaled as the depth points are, the background
        pixels shared among them, at its distance from the nearest camera, ``FAR_SPREAD`` times as wide.
        ``kwargs`` go to :meth:`from_points`."""
        if scene.depths is None:
            raise ValueError(f"{scene.source}: the scene has no depth maps to initialise from")
        ids = list(scene.train_ids if view_ids is None else view_ids)
        cams = scene.cameras[ids]
        depth = scene.depths[ids]
        valid = has_depth(depth)
        pts = cams.backproject(depth)[valid]
        cols = as_rgb(scene.images[ids][valid])
        focal = cams.Ks[:, 0, 0][:, None, None].expand_as(depth)[valid]
        footprint = depth[valid] / focal  # metres per pixel
        g = torch.Generator().manual_seed(seed)
        if len(pts) > max_points:
            keep = torch.randperm(len(pts), generator=g)[:max_points]
            pts, cols, footprint = pts[keep], cols[keep], footprint[keep]
        # points are spread over all views: each covers about (#valid pixels / #points) pixels
        cover = math.sqrt(max(valid.sum().item() / max(len(pts), 1), 1.0))
        init_scale = kwargs.pop("init_scale", 1.0)
        scales = footprint * cover * init_scale * 0.5
        if beyond is not None and len(beyond[0]):  # the same rule at their distance, FAR_SPREAD times as wide
            far = beyond[0].to(pts)
            reach = torch.cdist(far, cams.centers.to(far)).amin(1)
            far_cover = math.sqrt(max((~valid).sum().item() / len(far), 1.0))
            far_scales = reach / cams.Ks[:, 0, 0].mean() * far_cover * init_scale * 0.5 * FAR_SPREAD
            pts, cols = torch.cat([pts, far]), torch.cat([cols, beyond[1].to(cols)])
            scales = torch.cat([scales, far_scales])
        return cls.from_points(pts, cols, scales=scales, seed=seed, **kwargs)

    @classmethod
    def random(cls, bounds: Tensor, n: int, seed: int = 0, **kwargs) -> "GaussianModel":
        """``n`` Gaussians uniformly in the AABB ``bounds  # [2, 3]`` with random colours."""
        g = torch.Generator().manual_seed(seed)
        lo, hi = bounds[0].float().cpu(), bounds[1].float().cpu()
        pts = lo + (hi - lo) * torch.rand(n, 3, generator=g)
        return cls.from_points(pts, torch.rand(n, 3, generator=g), seed=seed, **kwargs)

    # ------------------------------------------------------------------------------------ state
    def state_dict(self, *args, **kwargs):  # noqa: D102  plain dict of tensors + sh degree
        out = {f"params.{k}": v.detach().clone() for k, v in self.params.items()}
        if self.decoder is not None:
            out["decoder.weight"] = self.decoder.weight.detach().clone()
            out["decoder.bias"] = self.decoder.bias.detach().clone()
        return out

    def load_state_dict(self, state: dict, strict: bool = True, assign: bool = False):  # noqa: D102
        """Load parameters whose shapes may differ from the current ones (the number of Gaussians changes
        during training): the parameters are re-created."""
        try:
            for k in PARAM_KEYS:
                self.params[k] = nn.Parameter(state[f"params.{k}"].detach().clone().float().to(self.device))
        except KeyError as err:
            raise CheckpointError(f"model state lacks parameter {err}") from None
        if "decoder.weight" in state:
            w, b = state["decoder.weight"], state["decoder.bias"]
            self.decoder = nn.Linear(w.shape[1], w.shape[0]).to(self.device)
            with torch.no_grad():
                self.decoder.weight.copy_(w)
                self.decoder.bias.copy_(b)
        elif strict:
            self.decoder = None
        self.sh_degree = int(math.isqrt(self.params["shN"].shape[1] + 1) - 1)

    @classmethod
    def from_parts(cls, params: dict[str, Tensor], sh_degree: int, decoder: Optional[nn.Linear] = None,
                   antialiased: bool = False) -> "GaussianModel":
        """A model of ``params`` with a copy of ``decoder`` (D -> C), or none when it is None or the params carry no
        features: the one way every edit and lift builds a new model from another's parts."""
        D = params["features"].shape[1]
        model = cls(params, sh_degree, decoder_dim=decoder.out_features if decoder is not None and D else None,
                    antialiased=antialiased)
        if model.decoder is not None:
            with torch.no_grad():
                model.decoder.weight.copy_(decoder.weight)
                model.decoder.bias.copy_(decoder.bias)
        return model

    @classmethod
    def from_state_dict(cls, state: dict) -> "GaussianModel":
        params = {k: state[f"params.{k}"] for k in PARAM_KEYS}
        sh_degree = int(math.isqrt(params["shN"].shape[1] + 1) - 1)
        dec = state.get("decoder.weight")
        model = cls(params, sh_degree, None if dec is None else dec.shape[0])
        model.load_state_dict(state)
        return model

    def check_finite(self, source: str = "model") -> None:
        """Raise ``CheckpointError`` naming ``source`` and the parameter if any value is NaN or infinite."""
        tensors = {k: v for k, v in self.params.items()}
        if self.decoder is not None:
            tensors["decoder.weight"] = self.decoder.weight
            tensors["decoder.bias"] = self.decoder.bias
        for k, v in tensors.items():
            bad = ~torch.isfinite(v.detach())
            if bad.any():
                raise CheckpointError(f"{source}: parameter {k!r} has {int(bad.sum())} non-finite values (NaN/inf)")

    def extra_repr(self) -> str:
        return (f"N={self.num_gaussians}, sh_degree={self.sh_degree}, feature_dim={self.feature_dim}"
                + (", antialiased" if self.antialiased else ""))

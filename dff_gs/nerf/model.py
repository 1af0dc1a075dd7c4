"""``NerfModel``: the NeRF-DFF backbone — field, occupancy grid, feature decoder — and its ray renderer.

It is a :class:`dff_gs.backbone.Backbone`, as the Gaussians are: ``render(cameras)`` returns RGB, stored
features, depth and alpha per pixel; ``decode`` maps features to the teacher's space; ``pixel_feature`` and
``content_features`` serve click and patch queries; its primitives are the occupied cells of its occupancy grid
(``primitive_points`` / ``primitive_features``); ``save`` writes it as a model file (``nerf_model.pt``, read back by
:func:`dff_gs.nerf.io.load_nerf`). Nothing is tied to a device: the model lives wherever ``.to()`` puts it.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Optional

import torch
from torch import Tensor, nn

from dff_gs.core.cameras import Cameras
from dff_gs.core.errors import ConfigError
from dff_gs.nerf.config import NerfConfig
from dff_gs.nerf.field import NerfField
from dff_gs.nerf.occupancy import OccupancyGrid
from dff_gs.nerf.renderer import RayOutput, composite, render_weights
from dff_gs.core.geometry import ray_aabb
from dff_gs.nerf.sampler import sample_pdf, stratified_edges
from dff_gs.render import RenderOutput
from dff_gs.train.checkpoint import write_torch

NERF_FORMAT = "dff_gs-nerf"
NERF_VERSION = 1
"""The tag and version of a model file (:meth:`NerfModel.payload`); :func:`dff_gs.nerf.io.load_nerf` checks both."""


def camera_rays(cameras: Cameras) -> tuple[Tensor, Tensor, Tensor]:
    """Rays through every pixel centre: origins, unit directions ``[C, H, W, 3]`` and the z-depth factor
    ``[C, H, W]`` (camera-axis component of each direction)."""
    o, d = cameras.generate_rays()
    z = torch.einsum("chwj,cj->chw", d, cameras.viewmats[:, 2, :3])
    return o, d, z


class NerfModel(nn.Module):
    """A radiance field with a feature branch over the scene box ``aabb``; a :class:`~dff_gs.backbone.Backbone`.

    aabb: Tensor  # [2, 3] world box the field lives in (rays are clipped to it)
    teacher_dim: C, the teacher's feature dimension (0 = colour only)
    background: Tensor  # [3] colour behind the field
    """

    kind = "nerf"

    def __init__(self, cfg: NerfConfig, aabb: Tensor, teacher_dim: int = 0, background: Optional[Tensor] = None):
        super().__init__()
        self.cfg = dataclasses.replace(cfg)
        aabb = torch.as_tensor(aabb, dtype=torch.float32).reshape(2, 3)
        if not (aabb[1] > aabb[0]).all():
            raise ConfigError(f"NeRF: the scene box {aabb.tolist()} is empty")
        self.teacher_dim = int(teacher_dim)
        if self.teacher_dim == 0:
            fdim, dec = 0, False
        elif cfg.feature_dim == 0 or not cfg.decoder:
            if cfg.feature_dim not in (0, self.teacher_dim):
                raise ConfigError(f"nerf.decoder=false needs nerf.feature_dim == the teacher's dimension "
                                  f"({self.teacher_dim}) or 0, got {cfg.feature_dim}")
            fdim, dec = self.teacher_dim, False
        else:
            fdim, dec = cfg.feature_dim, True
        self.field = NerfField(cfg, fdim)
        self.decoder = nn.Linear(fdim, self.teacher_dim) if dec else None
        self.occupancy = OccupancyGrid(aabb, cfg.occ_resolution)
        self.register_buffer("aabb", aabb.clone())
        side = float((aabb[1] - aabb[0]).max())
        self.register_buffer("cube_min", (aabb[0] + aabb[1]) / 2 - side / 2)  # isotropic unit cube for encodings
        self.register_buffer("cube_size", torch.tensor(side))
        bg = torch.ones(3) if background is None else torch.as_tensor(background, dtype=torch.float32).reshape(3)
        self.register_buffer("background", bg.clone())

    # ------------------------------------------------------------------ properties
    @property
    def device(self) -> torch.device:
        return self.aabb.device

    @property
    def feature_dim(self) -> int:
        """Rendered (stored) feature dimension D."""
        return self.field.feature_dim

    @property
    def output_dim(self) -> int:
        """Feature dimension after the decoder (the teacher's space)."""
        return self.decoder.out_features if self.decoder is not None else self.feature_dim

    @property
    def has_features(self) -> bool:
        return self.feature_dim > 0

    @property
    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def decode(self, features: Tensor) -> Tensor:
        """Map stored features ``[..., D]`` to the teacher's space ``[..., C]`` (identity without a decoder)."""
        return self.decoder(features) if self.decoder is not None else features

    def normalize(self, x: Tensor) -> Tensor:
        """World positions ``[N, 3]`` -> the encodings' unit cube ``[N, 3]``."""
        return (x - self.cube_min) / self.cube_size

    def occupancy_threshold(self) -> float:
        """Density whose opacity over one occupancy cell is ``cfg.occ_alpha``."""
        a = min(max(self.cfg.occ_alpha, 1e-6), 0.999)
        return -float(torch.log1p(torch.tensor(-a))) / float(self.occupancy.cell)

    # ------------------------------------------------------------------ field queries
    def density(self, x: Tensor) -> Tensor:
        """sigma at world points ``x  # [N, 3]`` (0 outside the box).  Returns Tensor  # [N]"""
        inside = ((x >= self.aabb[0]) & (x <= self.aabb[1])).all(-1)
        sigma, _ = self.field.density(self.normalize(x))
        return torch.where(inside, sigma, torch.zeros_like(sigma))

    def point_features(self, x: Tensor, decode: bool = True) -> Tensor:
        """Features at world points ``x  # [N, 3]``: ``[N, C]`` decoded (teacher space) or ``[N, D]`` stored."""
        xn = self.normalize(x)
        _, geo = self.field.density(xn)
        f = self.field.features(xn, geo)
        return self.decode(f) if decode else f

    def _evaluate(self, x: Tensor, dirs: Tensor, with_rgb: bool, with_features: bool, edit) -> tuple:
        """Field values at world points, with an optional render-time edit applied.
        Returns (sigma [N], rgb [N, 3] or None, features [N, D] or None)."""
        xn = self.normalize(x)
        sigma, geo = self.field.density(xn)
        need_feats = (with_features or edit is not None) and self.has_features
        feats = self.field.features(xn, geo) if need_feats else None
        rgb = self.field.color(geo, dirs) if with_rgb else None
        if edit is not None:
            if feats is None:
                raise ConfigError("render-time edits need a NeRF trained with a teacher (no feature branch)")
            sigma, rgb = edit.apply(x, sigma, rgb, self.decode(feats))
        return sigma, rgb, feats if with_features else None

    # ------------------------------------------------------------------ rendering
    def render_rays(self, rays_o: Tensor, rays_d: Tensor, z_scale: Optional[Tensor] = None, *,
                    with_features: bool = True, jitter: bool = False, edit=None,
                    background: Optional[Tensor] = None) -> RayOutput:
        """Render rays: coarse pass on occupied cells (no grad) -> importance-sampled fine edges -> the union of
        coarse and fine intervals rendered with gradients, skipping those in empty cells.

        rays_o: Tensor  # [R, 3]
        rays_d: Tensor  # [R, 3] unit directions
        z_scale: Tensor  # [R] distance -> z-depth factor (default 1: depth along the ray)
        jitter: random coarse edges and resampling offsets (training) instead of fixed ones
        edit: an object with ``apply(x, sigma, rgb, decoded) -> (sigma, rgb)`` (see :mod:`dff_gs.edit.nerf`)
        Returns RayOutput (weights / edges over the N = coarse + fine + 1 rendered intervals).
        """
        cfg = self.cfg
        R = rays_o.shape[0]
        bg = self.background if background is None else background
        t_near, t_far, hit = ray_aabb(rays_o, rays_d, self.aabb, cfg.near)
        with torch.no_grad():
            # ---- coarse: density only, at bin midpoints inside occupied cells
            edges = stratified_edges(t_near, t_far, cfg.coarse_samples, jitter)  # [R, Nc + 1]
            x_c = rays_o[:, None] + rays_d[:, None] * (0.5 * (edges[:, 1:] + edges[:, :-1]))[..., None]
            occ = self.occupancy.query(x_c) & hit[:, None]
            sigma_c = torch.zeros(occ.shape, device=rays_o.device)
            if occ.any():
                d_c = rays_d[:, None].expand_as(x_c)[occ]
                sigma_c[occ] = self._evaluate(x_c[occ], d_c, False, False, edit)[0].float()
            w_c, _ = render_weights(sigma_c, edges[:, 1:] - edges[:, :-1])
            fine = sample_pdf(edges, w_c, cfg.fine_samples, jitter)  # [R, Nf + 1]
            # ---- rendered intervals: coarse and fine edges together
            union = torch.sort(torch.cat([edges, fine], -1), dim=-1).values  # [R, N + 1]
            t_s = 0.5 * (union[:, 1:] + union[:, :-1])  # [R, N]
            delta = union[:, 1:] - union[:, :-1]
            x_s = rays_o[:, None] + rays_d[:, None] * t_s[..., None]  # [R, N, 3]
            live = self.occupancy.query(x_s) & hit[:, None] & (delta > 0)  # [R, N]
        N = t_s.shape[1]
        feats_on = with_features and self.has_features
        sigma = torch.zeros(R, N, device=rays_o.device)
        rgb = torch.zeros(R, N, 3, device=rays_o.device)
        feats = torch.zeros(R, N, self.feature_dim, device=rays_o.device) if feats_on else None
        if live.any():
            s_, c_, f_ = self._evaluate(x_s[live], rays_d[:, None].expand(R, N, 3)[live], True, feats_on, edit)
            sigma = sigma.index_put((live,), s_.float())
            rgb = rgb.index_put((live,), c_.float())
            if feats_on:
                feats = feats.index_put((live,), f_.float())
        w, _ = render_weights(sigma, delta)
        z = torch.ones(R, device=rays_o.device) if z_scale is None else z_scale
        out = composite(w, rgb, t_s, z, bg, feats)
        out.edges, out.t_near, out.t_far = union, t_near, t_far
        out.stats = {"coarse_per_ray": float(occ.sum()) / max(R, 1), "samples_per_ray": float(live.sum()) / max(R, 1)}
        return out

    def render(self, cameras: Cameras, *, with_features: bool = True, edit=None, chunk: Optional[int] = None,
               background: Optional[Tensor] = None) -> RenderOutput:
        """Render every pixel of ``cameras`` in chunks of rays (call under ``torch.no_grad()`` for speed).

        Returns the Gaussians' :class:`~dff_gs.render.RenderOutput`: rgb [C, H, W, 3], features [C, H, W, D] stored
        (not decoded, or None), depth and alpha [C, H, W, 1], info {}.
        """
        cams = cameras.to(self.device)
        o, d, z = camera_rays(cams)
        shape = o.shape[:-1]
        o, d, z = o.reshape(-1, 3), d.reshape(-1, 3), z.reshape(-1)
        n = chunk or self.cfg.chunk
        outs = [self.render_rays(o[s:s + n], d[s:s + n], z[s:s + n], with_features=with_features, edit=edit,
                                 background=background) for s in range(0, len(o), n)]
        feats = torch.cat([r.features for r in outs]).reshape(*shape, -1) if outs[0].features is not None else None
        return RenderOutput(rgb=torch.cat([r.rgb for r in outs]).reshape(*shape, 3), features=feats,
                                depth=torch.cat([r.depth for r in outs]).reshape(*shape, 1),
                                alpha=torch.cat([r.alpha for r in outs]).reshape(*shape, 1), info={})

    @torch.no_grad()
    def pixel_feature(self, cameras: Cameras, view: int, x: int, y: int) -> Tensor:
        """:class:`~dff_gs.backbone.Backbone`: the decoded feature ``[C]`` of the one ray through pixel (x, y)."""
        o, d, z = camera_rays(cameras[[view]].to(self.device))
        out = self.render_rays(o[0, y, x][None], d[0, y, x][None], z[0, y, x][None], with_features=True)
        return self.decode(out.features[0])

    @torch.no_grad()
    def content_features(self, max_points: int = 50000, seed: int = 0) -> Tensor:
        """:class:`~dff_gs.backbone.Backbone`: decoded features ``[M, C]`` at the centres of the occupied cells (a
        seeded subset of at most ``max_points``)."""
        return self.decoded_at(self.occupied_points(max_points, seed))

    def primitive_points(self) -> Tensor:
        """:class:`~dff_gs.backbone.Backbone`: the centres ``[M, 3]`` of every occupied cell."""
        return self.occupied_points(None)

    def primitive_features(self) -> Tensor:
        """:class:`~dff_gs.backbone.Backbone`: decoded features ``[M, C]`` at every occupied cell's centre."""
        return self.decoded_at(self.primitive_points())

    @torch.no_grad()
    def occupied_points(self, max_points: Optional[int] = 50000, seed: int = 0) -> Tensor:
        """Points that hold the field's content: centres of occupied cells (at most ``max_points``, a seeded
        subset; None: all of them).  Returns Tensor  # [M, 3] world"""
        pts = self.occupancy.occupied_centers()
        if len(pts) == 0:
            raise ConfigError("the NeRF's occupancy grid is empty (an untrained model?)")
        if max_points is not None and len(pts) > max_points:
            g = torch.Generator().manual_seed(seed)
            pts = pts[torch.randperm(len(pts), generator=g)[:max_points].to(pts.device)]
        return pts

    @torch.no_grad()
    def decoded_at(self, points: Tensor, chunk: int = 65536) -> Tensor:
        """Decoded features ``f(x)`` at world ``points  # [P, 3]`` (teacher space), in chunks.  Returns [P, C]"""
        if not self.has_features:
            raise ConfigError("this NeRF carries no feature branch: train it with a teacher (--teacher NAME)")
        pts = points.to(self.device).float()
        if len(pts) == 0:
            return torch.zeros(0, self.output_dim, device=self.device)
        return torch.cat([self.point_features(pts[s:s + chunk]) for s in range(0, len(pts), chunk)])

    # ------------------------------------------------------------------ saving
    def payload(self, metadata: Optional[dict] = None) -> dict:
        """What a model file holds: the tag and version, the config, the scene box, the teacher dimension, the weights
        (occupancy grid included) and ``metadata`` (teacher, scene): enough to rebuild it without the training
        config (:func:`dff_gs.nerf.io.model_from_payload`)."""
        return {
            "format": NERF_FORMAT,
            "version": NERF_VERSION,
            "config": dataclasses.asdict(self.cfg),
            "aabb": self.aabb.detach().cpu(),
            "teacher_dim": self.teacher_dim,
            "state": {k: v.detach().cpu() for k, v in self.state_dict().items()},
            "metadata": dict(metadata or {}),
        }

    def save(self, path: str | Path, metadata: Optional[dict] = None) -> Path:
        """:class:`~dff_gs.backbone.Backbone`: write :meth:`payload` to ``path`` atomically; returns the path."""
        path = Path(path)
        write_torch(self.payload(metadata), path)
        return path

    # ------------------------------------------------------------------ occupancy
    @torch.no_grad()
    def update_occupancy(self, warmup: bool = False) -> None:
        """Refresh the occupancy grid from the field (Instant-NGP's mean rule only for a grid started full)."""
        self.occupancy.update(self.density, self.occupancy_threshold(), decay=self.cfg.occ_decay, warmup=warmup,
                              mean_rule=self.cfg.occ_init == "full")

    def extra_repr(self) -> str:
        return (f"field={self.cfg.field}, feature_dim={self.feature_dim}, teacher_dim={self.teacher_dim}, "
                f"params={self.num_parameters}, occupancy={self.occupancy.shape}")

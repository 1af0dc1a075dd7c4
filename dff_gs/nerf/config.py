"""``NerfConfig``: the settings of the NeRF-DFF baseline (``nerf.*`` keys of the training config).

Everything the NeRF shares with the Gaussians (scene, teacher, steps, loss weights, seed, device) stays in
the common sections (``data``, ``teacher``, ``train``); only what is NeRF-specific lives here.
"""

from __future__ import annotations

from dataclasses import dataclass

from dff_gs.core.config import option


@dataclass
class NerfConfig:
    # ---------------------------------------------------------------- field
    field: str = option("hash", "position encoding of the field: hash (Instant-NGP grid) | mlp (frequency encoding, "
                                "vanilla NeRF)")
    hash_levels: int = option(16, "hash grid: number of resolution levels L")
    hash_features: int = option(2, "hash grid: features per level F")
    hash_log2_size: int = option(17, "hash grid: log2 of the table size T per level")
    hash_base_res: int = option(16, "hash grid: coarsest resolution (cells along the longest AABB side)")
    hash_max_res: int = option(512, "hash grid: finest resolution (cells along the longest AABB side)")
    pe_frequencies: int = option(8, "mlp field: octaves of the frequency encoding of positions")
    mlp_width: int = option(128, "mlp field: width of the position MLP")
    mlp_depth: int = option(4, "mlp field: hidden layers of the position MLP")
    hidden: int = option(64, "width of the small MLPs (density head, colour, feature)")
    geo_features: int = option(15, "geometry features passed from the density MLP to the colour / feature heads")
    dir_sh_bands: int = option(4, "view-direction encoding: spherical-harmonic bands 1..4 (1, 4, 9, 16 values), as "
                                  "Instant-NGP")
    # ---------------------------------------------------------------- feature branch
    feature_dim: int = option(16, "rendered feature dimension D (0 = the teacher's dimension, no decoder)")
    decoder: bool = option(True, "learn a linear decoder D -> teacher dim (as the Gaussians); else D = teacher dim")
    feature_geo: str = option("sum", "geometry features in the feature branch: sum (the paper's code: a small MLP of "
                                     "the detached geometry features added) | concat (fed with the encoding) | none")
    feature_levels: int = option(8, "feature hash grid: levels (the paper gives features their own, coarser grid)")
    feature_log2_size: int = option(15, "feature hash grid: log2 table size")
    feature_max_res: int = option(128, "feature hash grid: finest resolution (features are low-frequency)")
    # ---------------------------------------------------------------- sampling
    batch_rays: int = option(1024, "rays per training step (square patches of patch_size^2 rays)")
    patch_size: int = option(8, "side of the image patches rays are drawn in (SSIM needs patches)")
    coarse_samples: int = option(48, "stratified samples per ray of the coarse pass (occupied cells only, no grad)")
    fine_samples: int = option(16, "importance samples per ray of the fine pass (rendered, with grad)")
    near: float = option(0.05, "near plane in scene units")
    occ_resolution: int = option(96, "occupancy grid cells along the longest AABB side")
    occ_init: str = option("auto", "occupancy grid start: auto (the Gaussians' prior: depth > points > full) | depth "
                                   "(back-projected depth maps) | points (sparse points) | full (every cell, "
                                   "Instant-NGP)")
    occ_init_dilation: int = option(1, "cells the depth / point prior is grown by")
    occ_update_every: int = option(16, "refresh the occupancy grid every N steps")
    occ_warmup: int = option(128, "steps during which every cell is re-evaluated at each refresh")
    occ_decay: float = option(0.95, "EMA decay of the occupancy grid's densities")
    occ_alpha: float = option(0.05, "a cell is occupied if its own opacity (1 - exp(-density x cell size)) exceeds "
                                    "this")
    init_density: float = option(2.0, "initial density of the field per scene unit (below the occupancy threshold: "
                                      "training starts with cheap uniform sampling and the grid fills from surfaces)")
    aabb_padding: float = option(0.02, "relative padding of the scene AABB the field lives in")
    # ---------------------------------------------------------------- optimisation
    lr: float = option(1e-2, "Adam learning rate of the hash grids and MLPs")
    lr_final: float = option(0.05, "final learning rate as a fraction of lr (cosine decay)")
    lr_warmup: int = option(50, "linear learning-rate warm-up steps")
    decoder_lr: float = option(1e-3, "learning rate of the feature decoder")
    weight_decay: float = option(1e-6, "L2 weight decay of the MLPs")
    distortion_lambda: float = option(0.01, "weight of mip-NeRF 360's distortion loss (compact weights, empty free "
                                            "space for the occupancy grid; 0 = off)")
    # ---------------------------------------------------------------- rendering
    chunk: int = option(8192, "rays per chunk when rendering full images")

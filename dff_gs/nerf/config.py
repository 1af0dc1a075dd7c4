"""``NerfConfig``: the settings of the NeRF-DFF baseline (``nerf.*`` keys of the training config).

Everything the NeRF shares with the Gaussians (scene, teacher, steps, loss weights, seed, device) stays in
the common sections (``data``, ``teacher``, ``train``); only what is NeRF-specific lives here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from dff_gs.core.config import Section, option
from dff_gs.core.rules import LEARNING_RATE, MAX_FEATURE_DIM, at_least, count, within

# Bounds of the values whose memory grows with them (see dff_gs.core.rules.MAX_FEATURE_DIM): generous, far above any
# run this code makes sense for, yet below what no machine holds.
MAX_HASH_LOG2 = 26  # hash-grid table entries per level: Instant-NGP uses 2^19..2^24
MAX_RAYS = 1 << 22  # rays a step / a rendering chunk (4M; the presets use 1024 / 8192)
MAX_SAMPLES = 4096  # samples along a ray (the presets use 48 + 16)
MAX_OCC_RESOLUTION = 1024  # occupancy-grid cells along the longest side: 1024^3 = 1G cells
MAX_WIDTH = 4096  # hidden widths of the NeRF's MLPs (presets: 64 / 128)

FieldKind = Literal["hash", "mlp"]
OccInit = Literal["auto", "depth", "points", "full"]
FeatureGeo = Literal["sum", "concat", "none"]


@dataclass
class NerfConfig(Section):
    # ---------------------------------------------------------------- field
    field: FieldKind = option("hash", "position encoding of the field: hash (Instant-NGP grid) | mlp (frequency "
                                      "encoding, vanilla NeRF)")
    hash_levels: int = option(16, "hash grid: number of resolution levels L")
    hash_features: int = option(2, "hash grid: features per level F")
    hash_log2_size: int = option(17, "hash grid: log2 of the table size T per level", rule=within(1, MAX_HASH_LOG2))
    hash_base_res: int = option(16, "hash grid: coarsest resolution (cells along the longest AABB side)")
    hash_max_res: int = option(512, "hash grid: finest resolution (cells along the longest AABB side)")
    pe_frequencies: int = option(8, "mlp field: octaves of the frequency encoding of positions")
    mlp_width: int = option(128, "mlp field: width of the position MLP", rule=within(1, MAX_WIDTH))
    mlp_depth: int = option(4, "mlp field: hidden layers of the position MLP")
    hidden: int = option(64, "width of the small MLPs (density head, colour, feature)", rule=within(1, MAX_WIDTH))
    geo_features: int = option(15, "geometry features passed from the density MLP to the colour / feature heads")
    dir_sh_bands: int = option(4, "view-direction encoding: spherical-harmonic bands 1..4 (1, 4, 9, 16 values), as "
                                  "Instant-NGP")
    # ---------------------------------------------------------------- feature branch
    feature_dim: int = option(16, "rendered feature dimension D (0 = the teacher's dimension, no decoder)",
                              rule=within(0, MAX_FEATURE_DIM))
    decoder: bool = option(True, "learn a linear decoder D -> teacher dim (as the Gaussians); else D = teacher dim")
    feature_geo: FeatureGeo = option("sum", "geometry features in the feature branch: sum (the paper's code: a small "
                                            "MLP of the detached geometry features added) | concat (fed with the "
                                            "encoding) | none")
    feature_levels: int = option(8, "feature hash grid: levels (the paper gives features their own, coarser grid)")
    feature_log2_size: int = option(15, "feature hash grid: log2 table size", rule=within(1, MAX_HASH_LOG2))
    feature_max_res: int = option(128, "feature hash grid: finest resolution (features are low-frequency)")
    # ---------------------------------------------------------------- sampling
    batch_rays: int = option(1024, "rays per training step (square patches of patch_size^2 rays)",
                             rule=within(1, MAX_RAYS))
    patch_size: int = option(8, "side of the image patches rays are drawn in (SSIM needs patches)", rule=count(1))
    coarse_samples: int = option(48, "stratified samples per ray of the coarse pass (occupied cells only, no grad)",
                                 rule=within(1, MAX_SAMPLES))
    fine_samples: int = option(16, "importance samples per ray of the fine pass (rendered, with grad)",
                               rule=within(1, MAX_SAMPLES))
    near: float = option(0.05, "near plane in scene units", rule=at_least(0))
    occ_resolution: int = option(96, "occupancy grid cells along the longest AABB side",
                                 rule=within(2, MAX_OCC_RESOLUTION))
    occ_init: OccInit = option("auto", "occupancy grid start: auto (the Gaussians' prior: depth > points > full) | "
                                       "depth (back-projected depth maps) | points (sparse points) | full (every "
                                       "cell, Instant-NGP)")
    occ_init_dilation: int = option(1, "cells the depth / point prior is grown by")
    occ_update_every: int = option(16, "refresh the occupancy grid every N steps", rule=count(1))
    occ_warmup: int = option(128, "steps during which every cell is re-evaluated at each refresh", rule=count(0))
    occ_decay: float = option(0.95, "EMA decay of the occupancy grid's densities")
    occ_alpha: float = option(0.05, "a cell is occupied if its own opacity (1 - exp(-density x cell size)) exceeds "
                                    "this")
    init_density: float = option(2.0, "initial density of the field per scene unit (below the occupancy threshold: "
                                      "training starts with cheap uniform sampling and the grid fills from surfaces)")
    aabb_padding: float = option(0.02, "relative padding of the scene AABB the field lives in")
    # ---------------------------------------------------------------- optimisation
    lr: float = option(1e-2, "Adam learning rate of the hash grids and MLPs", rule=LEARNING_RATE)
    lr_final: float = option(0.05, "final learning rate as a fraction of lr (cosine decay)", rule=LEARNING_RATE)
    lr_warmup: int = option(50, "linear learning-rate warm-up steps", rule=count(0))
    decoder_lr: float = option(1e-3, "learning rate of the feature decoder", rule=LEARNING_RATE)
    weight_decay: float = option(1e-6, "L2 weight decay of the MLPs")
    distortion_lambda: float = option(0.01, "weight of mip-NeRF 360's distortion loss (compact weights, empty free "
                                            "space for the occupancy grid; 0 = off)")
    # ---------------------------------------------------------------- rendering
    chunk: int = option(8192, "rays per chunk when rendering full images", rule=within(1, MAX_RAYS))

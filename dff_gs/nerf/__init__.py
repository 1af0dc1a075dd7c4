"""NeRF-DFF baseline (Kobayashi et al. 2022): a radiance field with a feature branch, trained on the same
scene, teacher maps and losses as the Gaussians, answering the same queries.

Modules: ``config`` (NerfConfig), ``encodings`` (hash grid, frequency, SH), ``field``, ``occupancy``,
``sampler``, ``renderer`` (volume rendering), ``model`` (NerfModel), ``batches``, ``trainer``, ``io``
(save / load), ``run`` (one training run), ``query`` and ``edit`` (queries and render-time edits).
"""

from dff_gs.nerf.config import NerfConfig
from dff_gs.nerf.io import NERF_MODEL_NAME, load_nerf, save_nerf
from dff_gs.nerf.model import NerfModel

__all__ = ["NerfConfig", "NerfModel", "load_nerf", "save_nerf", "NERF_MODEL_NAME"]

"""NeRF-DFF baseline (Kobayashi et al. 2022): a radiance field with a feature branch, trained on the same
scene, teacher maps and losses as the Gaussians, answering the same queries.

Modules: ``config`` (NerfConfig), ``encodings`` (hash grid, frequency, SH), ``field``, ``occupancy``,
``sampler``, ``renderer`` (volume rendering), ``model`` (NerfModel), ``batches``, ``trainer``, ``io``
(save / load), ``method`` (the training method). Its queries are :mod:`dff_gs.query.nerf` and its render-time
edits :mod:`dff_gs.edit.nerf`, each in the layer it belongs to.
"""

from dff_gs.nerf.config import NerfConfig
from dff_gs.nerf.io import NERF_MODEL_NAME, load_nerf, save_nerf
from dff_gs.nerf.model import NerfModel

__all__ = ["NerfConfig", "NerfModel", "load_nerf", "save_nerf", "NERF_MODEL_NAME"]

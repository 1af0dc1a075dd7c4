"""NeRF-DFF baseline (Kobayashi et al. 2022): a radiance field with a feature branch, trained on the same
scene, teacher maps and losses as the Gaussians, answering the same queries.

Modules: ``config`` (NerfConfig), ``encodings`` (hash grid, frequency, SH), ``field``, ``occupancy``,
``sampler``, ``renderer`` (volume rendering), ``model`` (NerfModel), ``batches``, ``trainer``, ``io``
(save / load), ``run`` (one training run), ``query`` and ``edit`` (queries and render-time edits).
"""

from importlib import import_module

_EXPORTS = {"NerfConfig": "config", "NerfModel": "model", "load_nerf": "io", "save_nerf": "io", "NERF_MODEL_NAME": "io"}
__all__ = list(_EXPORTS)


def __getattr__(name: str):
    """Import on first use: the Gaussian trainer's config imports ``dff_gs.nerf.config`` and should not pay for
    the NeRF model, renderer and I/O modules."""
    if name in _EXPORTS:
        return getattr(import_module(f"dff_gs.nerf.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'dff_gs.nerf' has no attribute {name!r}")

"""Feature lifting: per-Gaussian features as the alpha-compositing-weighted mean of 2D teacher features over
all views, in one pass (seconds) instead of distillation by gradient descent (minutes).

- :func:`lift_features` (``core``): the operation, backends ``torch`` | ``gsplat`` | ``cuda_ext`` | ``auto``;
- :func:`lift_model` / :func:`finetune_features` (``model``): a teacher lifted onto a trained model in PCA
  space with a decoder, and an optional short feature-only distillation;
- :class:`~dff_gs.lift.method.LiftMethod` (``method``): ``train.py --init-ply PLY --lift`` as a training method, a
  run folder like a training run's.
"""

from dff_gs.lift.core import (
                              LIFT_BACKENDS,
                              RESOLUTIONS,
                              CompositingWeights,
                              compositing_weights,
                              lift_features,
                              resolve_lift_backend,
)
from dff_gs.lift.model import LiftResult, lift_model, with_features
from dff_gs.lift.tuner import FeatureTuner, finetune_features

__all__ = ["LIFT_BACKENDS", "RESOLUTIONS", "CompositingWeights", "compositing_weights", "lift_features",
           "resolve_lift_backend", "LiftResult", "finetune_features", "FeatureTuner", "lift_model", "with_features"]

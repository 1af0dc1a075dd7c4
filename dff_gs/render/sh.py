"""SH colours of Gaussians seen from camera centres (the maths: :mod:`dff_gs.core.sh`)."""

from __future__ import annotations

import torch
from torch import Tensor

from dff_gs.core.sh import eval_sh


def sh_colors(means: Tensor, sh0: Tensor, shN: Tensor, centers: Tensor, degree: int) -> Tensor:
    """The colour of every Gaussian seen from each camera centre: SH up to ``degree`` along mean - centre, + 0.5 and
    clamped at 0 (gsplat's convention). Twin of ``cuda_ext.sh_colors_cpu``.

    means: Tensor    # [N, 3]
    sh0: Tensor      # [N, 1, 3]
    shN: Tensor      # [N, M, 3] with M >= (degree + 1) ** 2 - 1
    centers: Tensor  # [C, 3]
    returns: Tensor  # [C, N, 3]
    """
    sh = torch.cat([sh0, shN[:, : (degree + 1) ** 2 - 1]], 1)
    dirs = means[None] - centers[:, None]  # [C, N, 3]
    return torch.clamp_min(eval_sh(degree, sh[None].expand(len(centers), *sh.shape), dirs) + 0.5, 0.0)

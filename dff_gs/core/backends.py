"""The renderers' names, which ``train.backend`` and every ``--backend`` accept (light: the command lines read them
before torch loads)."""

from typing import Literal, get_args

Backend = Literal["auto", "cpu", "torch", "gsplat"]
"""auto (gsplat on CUDA, else the compiled CPU rasterizer, else torch), cpu (our compiled kernels), torch (the
pure-PyTorch twin), gsplat (CUDA)."""
BACKENDS = get_args(Backend)

"""Our own CUDA kernels, with a pure-PyTorch twin of each (``cuda_ext.reference``) that tests compare against.

Loading follows gsplat: the extension ``setup.py`` prebuilt (``cuda_ext._C``), else a JIT build through
``torch.utils.cpp_extension.load`` (cached under ``$TORCH_EXTENSIONS_DIR`` or ``~/.cache/torch_extensions``),
else :class:`CudaExtUnavailable` saying why. Both builds take their sources and flags from
:mod:`cuda_ext.build`.

Kernels:

- :func:`lift_accumulate`: per-Gaussian sums of alpha-compositing-weighted features over the rasterizer's
  tiles, without rendering (twin: :func:`lift_accumulate_reference`);
- :func:`lift_normalize`: the weighted mean from those sums (twin: :func:`lift_normalize_reference`).
"""

from __future__ import annotations

import os
import threading
from typing import Optional

import torch
from torch import Tensor

from cuda_ext import build
from cuda_ext.reference import compositing_weights_reference, lift_accumulate_reference, lift_normalize_reference

__all__ = ["load", "available", "CudaExtUnavailable", "lift_accumulate", "lift_normalize",
           "lift_accumulate_reference", "lift_normalize_reference", "compositing_weights_reference", "MAX_TOP_K"]

MAX_TOP_K = 32
"""Largest ``top_k`` the lifting kernel supports (``kMaxTopK`` in csrc/lift.h)."""

_lock = threading.Lock()
_module = None
_error: Optional[str] = None


class CudaExtUnavailable(RuntimeError):
    """The kernels can neither be imported prebuilt nor built just in time; the message says why."""


def load(verbose: bool = False, build_dir: Optional[str] = None):
    """The compiled extension module: prebuilt ``cuda_ext._C``, else a JIT build (minutes the first time, then
    cached). Needs a CUDA toolkit (``CUDA_HOME``) to build, not a GPU. Raises :class:`CudaExtUnavailable`.

    build_dir: JIT build folder (default ``$DFF_GS_CUDA_BUILD_DIR``, else torch's extension cache).
    """
    global _module, _error
    with _lock:
        if _module is not None:
            return _module
        if _error is not None:
            raise CudaExtUnavailable(_error)
        reasons = []
        try:
            from cuda_ext import _C  # type: ignore[attr-defined]  # built by setup.py where CUDA was present

            _module = _C
            return _module
        except ImportError as err:
            reasons.append(f"no prebuilt extension ({err})")
        try:
            _module = _jit_build(verbose, build_dir)
            return _module
        except Exception as err:  # noqa: BLE001  compiler / toolkit errors come in many types: report them all
            tail = " | ".join(str(err).strip().splitlines()[-3:])
            reasons.append(f"JIT build failed ({type(err).__name__}: {tail}; cuda_ext.load(verbose=True) shows the "
                           "compiler output)")
        _error = ("cuda_ext kernels are not available: " + "; ".join(reasons)
                  + ". Install with a CUDA toolkit present (FORCE_CUDA=1 pip install --no-build-isolation -e .) "
                  "or set CUDA_HOME for the JIT build; meanwhile use backend='torch' or 'gsplat'")
        raise CudaExtUnavailable(_error)


def _jit_build(verbose: bool, build_dir: Optional[str]):
    from torch.utils.cpp_extension import CUDA_HOME
    from torch.utils.cpp_extension import load as jit_load

    if CUDA_HOME is None:
        raise RuntimeError("no CUDA toolkit found (set CUDA_HOME to the folder holding bin/nvcc)")
    build_dir = build_dir or os.environ.get("DFF_GS_CUDA_BUILD_DIR") or None
    if build_dir:
        os.makedirs(build_dir, exist_ok=True)
    return jit_load(name=build.JIT_NAME, sources=build.source_paths(), extra_cflags=build.CXX_FLAGS,
                    extra_cuda_cflags=build.NVCC_FLAGS, extra_include_paths=build.include_dirs(),
                    build_directory=build_dir, verbose=verbose)


def available() -> tuple[bool, str]:
    """(usable, reason): a CUDA device is visible and the extension loads (this may JIT-build it once)."""
    if not torch.cuda.is_available():
        return False, "cuda_ext kernels need a CUDA device and none is visible"
    try:
        load()
    except CudaExtUnavailable as err:
        return False, str(err)
    return True, ""


def _need_cuda(t: Tensor, what: str) -> None:
    if not t.is_cuda:
        raise CudaExtUnavailable(f"cuda_ext {what} runs on CUDA tensors; got a tensor on {t.device} "
                                 f"(use cuda_ext.{what}_reference on other devices)")


def lift_accumulate(means2d: Tensor, conics: Tensor, opacities: Tensor, maps: Tensor, tile_offsets: Tensor,
                    flatten_ids: Tensor, width: int, height: int, tile_size: int, *,
                    pix_weights: Optional[Tensor] = None, top_k: int = 0, feat_sum: Optional[Tensor] = None,
                    weight_sum: Optional[Tensor] = None) -> tuple[Tensor, Tensor]:
    """Add ``sum_p w_gp pw_p F(p)`` to ``feat_sum[g]`` and ``sum_p w_gp pw_p`` to ``weight_sum[g]`` for every
    Gaussian, walking the rasterizer's tiles and depth order (no image is rendered).

    means2d: Tensor       # [I, N, 2] projected centres (pixels), float32
    conics: Tensor        # [I, N, 3] inverse 2D covariances (a, b, c), float32
    opacities: Tensor     # [N] or [I, N] float32
    maps: Tensor          # [I, h, w, C] float32 or float16, any resolution (sampled bilinearly at each pixel
                          # centre of the width x height render, as interpolate(align_corners=False))
    tile_offsets: Tensor  # [I, tiles_y, tiles_x] int32 (gsplat's isect_offsets)
    flatten_ids: Tensor   # [M] int32, camera * N + gaussian, sorted by (camera, tile, depth) (gsplat's)
    pix_weights: Tensor   # [I, height, width] float32 or None
    top_k: 0 = every contributor; 1..MAX_TOP_K = only each pixel's k largest weights (ties: front-most first)
    feat_sum: Tensor      # [N, C] float32, accumulated in place (new zeros if None)
    weight_sum: Tensor    # [N] float32, accumulated in place (new zeros if None)
    returns (feat_sum, weight_sum)
    """
    _need_cuda(means2d, "lift_accumulate")
    if not 0 <= top_k <= MAX_TOP_K:
        raise ValueError(f"cuda_ext lift_accumulate: top_k must be 0..{MAX_TOP_K}, got {top_k}")
    ext = load()
    N, C = means2d.shape[1], maps.shape[-1]
    dev = means2d.device
    feat_sum = torch.zeros(N, C, device=dev) if feat_sum is None else feat_sum
    weight_sum = torch.zeros(N, device=dev) if weight_sum is None else weight_sum
    if pix_weights is not None:
        pix_weights = pix_weights.float().contiguous()
    ext.lift_accumulate(means2d.float().contiguous(), conics.float().contiguous(), opacities.float().contiguous(),
                        maps.contiguous() if maps.dtype in (torch.float32, torch.float16) else maps.float().contiguous(),
                        pix_weights, tile_offsets.int().contiguous(), flatten_ids.int().contiguous(), int(width),
                        int(height), int(tile_size), int(top_k), feat_sum, weight_sum)
    return feat_sum, weight_sum


def lift_normalize(feat_sum: Tensor, weight_sum: Tensor, eps: float = 1e-8, out: Optional[Tensor] = None) -> Tensor:
    """``feat_sum / weight_sum`` where ``weight_sum > eps``, else 0, written to every element of ``out``.

    feat_sum: Tensor    # [N, C] float32
    weight_sum: Tensor  # [N] float32
    returns Tensor      # [N, C] float32 (``out`` when given)
    """
    _need_cuda(feat_sum, "lift_normalize")
    ext = load()
    out = torch.empty_like(feat_sum, memory_format=torch.contiguous_format) if out is None else out
    ext.lift_normalize(feat_sum.contiguous(), weight_sum.contiguous(), float(eps), out)
    return out

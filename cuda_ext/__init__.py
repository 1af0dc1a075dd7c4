"""Our own compiled kernels (CUDA, and C++ with OpenMP for the CPU). The package imports nothing from ``dff_gs``:
each kernel's pure-PyTorch twin lives with its user, in ``dff_gs.render.reference``, and the parity tests import
both.

Loading follows gsplat: the extension ``setup.py`` prebuilt (``cuda_ext._C`` for CUDA where a toolkit is present,
``cuda_ext._cpu`` everywhere a C++ compiler is, with ``cuda_ext._cpu_avx2`` beside it on x86-64, loaded where the
processor has AVX2 and FMA), else a JIT build through ``torch.utils.cpp_extension.load`` (cached under
``$TORCH_EXTENSIONS_DIR`` or ``~/.cache/torch_extensions``), else :class:`CudaExtUnavailable` saying why. Both
builds take their sources and flags from :mod:`cuda_ext.build`.

Kernels:

- :func:`lift_accumulate` (CUDA): per-Gaussian sums of alpha-compositing-weighted features over the rasterizer's
  tiles, without rendering (twin: :func:`lift_accumulate_reference`);
- :func:`lift_normalize` (CUDA): the weighted mean from those sums (twin: :func:`lift_normalize_reference`);
- :func:`project_cpu` (CPU): EWA projection of 3D Gaussians, and its backward pass (twin:
  :func:`project_reference`);
- :func:`sh_colors_cpu` (CPU): view-dependent colours of the Gaussians' spherical harmonics, and their backward pass
  (twin: :func:`sh_colors_reference`);
- :func:`rasterize_cpu` (CPU): tile binning, depth sort and front-to-back compositing of projected Gaussians
  with any number of channels, and its backward pass (twin: :func:`rasterize_reference`, the torch backend).
"""

from __future__ import annotations

import functools
import importlib
import os
import threading
from typing import Any, Callable, Optional

import torch
from torch import Tensor

from cuda_ext import build

__all__ = ["load", "load_cpu", "cpu_isa", "available", "cpu_available", "CudaExtUnavailable", "lift_accumulate",
           "lift_normalize", "project_cpu", "sh_colors_cpu", "rasterize_cpu", "MAX_TOP_K"]

MAX_TOP_K = 32
"""Largest ``top_k`` the lifting kernel supports (``kMaxTopK`` in csrc/lift.h)."""

class CudaExtUnavailable(RuntimeError):
    """The kernels can neither be imported prebuilt nor built just in time; the message says why."""


class _Extension:
    """One compiled module: imported prebuilt (``setup.py``), else JIT-built once, else the reason, kept."""

    def __init__(self, prebuilt: str, jit: Callable[[bool, Optional[str]], Any], advice: str,
                 source_hash: Optional[Callable[[], str]] = None, what: str = ""):
        self.prebuilt, self.jit, self.advice, self.source_hash = prebuilt, jit, advice, source_hash
        self.what = what or prebuilt
        self.lock = threading.Lock()
        self.module = None
        self.error: Optional[str] = None

    def load(self, verbose: bool = False, build_dir: Optional[str] = None):
        with self.lock:
            if self.module is not None:
                return self.module
            if self.error is not None:
                raise CudaExtUnavailable(self.error)
            reasons = []
            try:
                module = importlib.import_module(self.prebuilt)
                if self.source_hash is None or getattr(module, "source_hash", None) == self.source_hash():
                    self.module = module
                    return module
                reasons.append("the prebuilt extension is stale (its sources changed since it was built)")
            except ImportError as err:
                reasons.append(f"no prebuilt extension ({err})")
            try:
                self.module = self.jit(verbose, build_dir)
                return self.module
            except Exception as err:  # noqa: BLE001  compiler / toolkit errors come in many types: report them all
                tail = " | ".join(str(err).strip().splitlines()[-3:])
                reasons.append(f"JIT build failed ({type(err).__name__}: {tail}; load(verbose=True) shows the "
                               "compiler output)")
            self.error = f"{self.what} ({self.prebuilt}) not available: " + "; ".join(reasons) + ". " + self.advice
            raise CudaExtUnavailable(self.error)


def _build_folder(build_dir: Optional[str], env: str) -> Optional[str]:
    build_dir = build_dir or os.environ.get(env) or None
    if build_dir:
        os.makedirs(build_dir, exist_ok=True)
    return build_dir


def _jit_build(verbose: bool, build_dir: Optional[str]):
    from torch.utils.cpp_extension import CUDA_HOME
    from torch.utils.cpp_extension import load as jit_load

    if CUDA_HOME is None:
        raise RuntimeError("no CUDA toolkit found (set CUDA_HOME to the folder holding bin/nvcc)")
    return jit_load(name=build.JIT_NAME, sources=build.source_paths(), extra_cflags=build.CXX_FLAGS,
                    extra_cuda_cflags=build.NVCC_FLAGS, extra_include_paths=build.include_dirs(),
                    build_directory=_build_folder(build_dir, "DFF_GS_CUDA_BUILD_DIR"), verbose=verbose)


def _jit_build_cpu(variant: str) -> Callable[[bool, Optional[str]], Any]:
    def jit(verbose: bool, build_dir: Optional[str]):
        import sys

        from torch.utils.cpp_extension import load as jit_load

        print(f"dff_gs: building the compiled CPU rasterizer ({variant}) just in time (about a minute the first "
              "time, then cached)", file=sys.stderr)
        folder = _build_folder(build_dir, "DFF_GS_CPU_BUILD_DIR")
        if folder and variant != "baseline":  # one build folder per module
            folder = os.path.join(folder, variant)
            os.makedirs(folder, exist_ok=True)
        return jit_load(name=build.cpu_jit_name(variant), sources=build.source_paths(sources=build.CPU_SOURCES),
                        extra_cflags=build.cpu_cxx_flags(variant), extra_ldflags=build.CPU_LINK_FLAGS,
                        build_directory=folder, verbose=verbose)

    return jit


def cpu_isa() -> str:
    """The CPU rasterizer's variant for this machine: ``avx2`` on an x86-64 processor with AVX2 and FMA (as torch's
    own kernels detect it), else ``baseline``; ``$DFF_GS_CPU_ISA`` (``baseline`` or ``avx2``) overrides."""
    return _isa(os.environ.get("DFF_GS_CPU_ISA", "").strip().lower())


@functools.lru_cache(maxsize=None)
def _isa(forced: str) -> str:
    """:func:`cpu_isa` for one value of the override, decided once (``load_cpu`` runs on every render)."""
    import platform

    variants = build.cpu_variants(platform.machine())
    if forced:
        if forced not in variants:
            raise CudaExtUnavailable(f"DFF_GS_CPU_ISA={forced!r}: this machine ({platform.machine()}) has the "
                                     f"variants {variants}")
        return forced
    if "avx2" in variants and torch.backends.cpu.get_cpu_capability() in ("AVX2", "AVX512"):
        return "avx2"
    return "baseline"


_CUDA = _Extension(build.PREBUILT_NAME, _jit_build,
                   "Install with a CUDA toolkit present (FORCE_CUDA=1 pip install --no-build-isolation -e .) or set "
                   "CUDA_HOME for the JIT build; meanwhile use backend='torch' or 'gsplat'",
                   what="the cuda_ext CUDA kernels")
_CPU = {variant: _Extension(build.cpu_module_name(variant), _jit_build_cpu(variant),
                            "It needs a C++ compiler with OpenMP (pip install --no-build-isolation -e . builds it); "
                            "meanwhile the torch backend renders the same images", build.cpu_source_hash,
                            what=f"the compiled CPU rasterizer ({variant})")
        for variant in build.CPU_VARIANTS}


def load(verbose: bool = False, build_dir: Optional[str] = None):
    """The compiled CUDA extension module: prebuilt ``cuda_ext._C``, else a JIT build (minutes the first time, then
    cached). Needs a CUDA toolkit (``CUDA_HOME``) to build, not a GPU. Raises :class:`CudaExtUnavailable`.

    build_dir: JIT build folder (default ``$DFF_GS_CUDA_BUILD_DIR``, else torch's extension cache).
    """
    return _CUDA.load(verbose, build_dir)


def load_cpu(verbose: bool = False, build_dir: Optional[str] = None):
    """The compiled CPU rasterizer in this machine's variant (:func:`cpu_isa`): prebuilt ``cuda_ext._cpu`` or
    ``cuda_ext._cpu_avx2``, else a JIT build (about a minute the first time, then cached); an ``avx2`` variant that
    cannot be had falls back to the baseline one. Needs a C++ compiler with OpenMP. Raises
    :class:`CudaExtUnavailable`.

    build_dir: JIT build folder (default ``$DFF_GS_CPU_BUILD_DIR``, else torch's extension cache).
    """
    variant = cpu_isa()
    try:
        return _CPU[variant].load(verbose, build_dir)
    except CudaExtUnavailable as err:
        if variant == "baseline" or os.environ.get("DFF_GS_CPU_ISA"):
            raise
        try:
            return _CPU["baseline"].load(verbose, build_dir)
        except CudaExtUnavailable as base_err:
            raise CudaExtUnavailable(f"{err}; {base_err}") from base_err


def available() -> tuple[bool, str]:
    """(usable, reason): a CUDA device is visible and the extension loads (this may JIT-build it once)."""
    if not torch.cuda.is_available():
        return False, "cuda_ext kernels need a CUDA device and none is visible"
    try:
        load()
    except CudaExtUnavailable as err:
        return False, str(err)
    return True, ""


def cpu_available() -> tuple[bool, str]:
    """(usable, reason) for the compiled CPU rasterizer (this may JIT-build it once)."""
    try:
        load_cpu()
    except CudaExtUnavailable as err:
        return False, str(err)
    return True, ""


def _need_cuda(t: Tensor, what: str) -> None:
    if not t.is_cuda:
        raise CudaExtUnavailable(f"cuda_ext {what} runs on CUDA tensors; got a tensor on {t.device} "
                                 f"(use dff_gs.render.reference.{what}_reference on other devices)")


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
    maps = maps.contiguous() if maps.dtype in (torch.float32, torch.float16) else maps.float().contiguous()
    ext.lift_accumulate(means2d.float().contiguous(), conics.float().contiguous(), opacities.float().contiguous(), maps,
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


class _ProjectCPU(torch.autograd.Function):
    """The compiled CPU projection as an autograd function (gradients for means, quats and scales)."""

    @staticmethod
    def forward(ctx, means, quats, scales, viewmats, Ks, width, height, near_plane, far_plane, eps2d):
        means2d, conics, depths, radii = load_cpu().project_forward(means, quats, scales, viewmats, Ks, width, height,
                                                                    near_plane, far_plane, eps2d)
        ctx.save_for_backward(means, quats, scales, viewmats, Ks)
        ctx.args = (width, height, eps2d)
        ctx.mark_non_differentiable(radii)
        return means2d, conics, depths, radii

    @staticmethod
    def backward(ctx, g_means2d, g_conics, g_depths, _g_radii):
        means, quats, scales, viewmats, Ks = ctx.saved_tensors
        width, height, eps2d = ctx.args
        C, N = viewmats.shape[0], means.shape[0]  # outputs unused downstream arrive as None
        g_means2d = means.new_zeros(C, N, 2) if g_means2d is None else g_means2d
        g_conics = means.new_zeros(C, N, 3) if g_conics is None else g_conics
        g_depths = means.new_zeros(C, N) if g_depths is None else g_depths
        gm, gq, gs = load_cpu().project_backward(means, quats, scales, viewmats, Ks, width, height, eps2d,
                                                 g_means2d.contiguous(), g_conics.contiguous(), g_depths.contiguous())
        return gm, gq, gs, None, None, None, None, None, None, None


def project_cpu(means: Tensor, quats: Tensor, scales: Tensor, viewmats: Tensor, Ks: Tensor, width: int, height: int,
                near_plane: float = 0.01, far_plane: float = 1e10,
                eps2d: float = 0.3) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Project Gaussians into each camera on the CPU (compiled, multi-threaded, differentiable in means, quats
    and scales): the same contract and results as its twin :func:`project_reference`.

    means: Tensor     # [N, 3]
    quats: Tensor     # [N, 4] w x y z
    scales: Tensor    # [N, 3] linear
    viewmats: Tensor  # [C, 4, 4] world-to-camera, OpenCV (no gradient: use the twin to optimise cameras)
    Ks: Tensor        # [C, 3, 3]
    returns means2d [C, N, 2], conics [C, N, 3], depths [C, N], radii [C, N, 2] int32 (0 = culled)
    """
    dtype = means.dtype
    args = [t.to(dtype).contiguous() for t in (means, quats, scales)]
    cams = [t.detach().to(dtype).contiguous() for t in (viewmats, Ks)]
    return _ProjectCPU.apply(*args, *cams, int(width), int(height), float(near_plane), float(far_plane), float(eps2d))


class _ShCPU(torch.autograd.Function):
    """The compiled view-dependent SH colours as an autograd function (gradients for means, sh0 and shN)."""

    @staticmethod
    def forward(ctx, means, sh0, shN, centers, degree):
        ctx.save_for_backward(means, sh0, shN, centers)
        ctx.degree = degree
        return load_cpu().sh_forward(means, sh0, shN, centers, degree)

    @staticmethod
    def backward(ctx, g_colors):
        means, sh0, shN, centers = ctx.saved_tensors
        gm, g0, gn = load_cpu().sh_backward(means, sh0, shN, centers, ctx.degree, g_colors.contiguous())
        return gm, g0, gn, None, None


def sh_colors_cpu(means: Tensor, sh0: Tensor, shN: Tensor, centers: Tensor, degree: int) -> Tensor:
    """The colour of every Gaussian seen from each camera centre on the CPU (compiled, multi-threaded,
    differentiable in means, sh0 and shN): SH up to ``degree`` along mean - centre, + 0.5, clamped at 0; the same
    contract and results as its twin :func:`sh_colors_reference`.

    means: Tensor    # [N, 3]
    sh0: Tensor      # [N, 1, 3]
    shN: Tensor      # [N, M, 3], M >= (degree + 1) ** 2 - 1
    centers: Tensor  # [C, 3] (no gradient: use the twin to optimise cameras)
    returns Tensor   # [C, N, 3]
    """
    dtype = means.dtype
    args = [t.to(dtype).contiguous() for t in (means, sh0, shN)]
    return _ShCPU.apply(*args, centers.detach().to(dtype).contiguous(), int(degree))


class _RasterizeCPU(torch.autograd.Function):
    """The compiled CPU compositor as an autograd function (the backward pass is the extension's own)."""

    @staticmethod
    def forward(ctx, means2d, conics, opacities, colors, depths, radii, width, height, tile_size):
        ext = load_cpu()
        out, alpha, offsets, ids, trace = ext.rasterize_forward(means2d, conics, opacities, colors, depths, radii,
                                                                width, height, tile_size, any(ctx.needs_input_grad))
        ctx.save_for_backward(means2d, conics, opacities, colors, offsets, ids)
        ctx.size = (width, height, tile_size)
        ctx.trace = trace  # the contributions, so the backward pass need not composite again
        return out, alpha

    @staticmethod
    def backward(ctx, g_out, g_alpha):
        means2d, conics, opacities, colors, offsets, ids = ctx.saved_tensors
        width, height, tile_size = ctx.size
        g = load_cpu().rasterize_backward(means2d, conics, opacities, colors, offsets, ids, width, height, tile_size,
                                          g_out.contiguous(), g_alpha.contiguous(), ctx.trace)
        ctx.trace = None
        return (*g, None, None, None, None, None)


def rasterize_cpu(means2d: Tensor, conics: Tensor, opacities: Tensor, colors: Tensor, depths: Tensor, radii: Tensor,
                  width: int, height: int, tile_size: int = 8,
                  backgrounds: Optional[Tensor] = None) -> tuple[Tensor, Tensor]:
    """Composite projected Gaussians on the CPU (compiled, multi-threaded, differentiable): the same contract and
    results as its twin :func:`rasterize_reference`.

    means2d: Tensor    # [C, N, 2]
    conics: Tensor     # [C, N, 3]
    opacities: Tensor  # [N] or [C, N], in [0, 1]
    colors: Tensor     # [C, N, D] float32 or float64
    depths: Tensor     # [C, N]
    radii: Tensor      # [C, N, 2]
    backgrounds: Tensor | None  # [C, D]
    returns render [C, H, W, D], alpha [C, H, W, 1]
    """
    C, N, D = colors.shape
    if opacities.dim() == 1:
        opacities = opacities[None].expand(C, N)
    dtype = colors.dtype
    args = [t.to(dtype).contiguous() for t in (means2d, conics, opacities, colors)]
    img, alpha = _RasterizeCPU.apply(*args, depths.detach().to(dtype).contiguous(),
                                     radii.to(torch.int32).contiguous(), int(width), int(height), int(tile_size))
    if backgrounds is not None:
        img = img + (1.0 - alpha) * backgrounds[:, None, None, :]
    return img, alpha

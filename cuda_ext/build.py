"""The one list of sources and compiler flags of the ``cuda_ext`` kernels (CUDA) and of the compiled CPU
rasterizer.

``setup.py`` (prebuilt ``CUDAExtension``) and :func:`cuda_ext.load` (JIT through
``torch.utils.cpp_extension.load``) both read it, so the two builds cannot drift apart. This module imports
nothing but the standard library: ``setup.py`` loads it by file path, before torch may be installed.
"""

from __future__ import annotations

from pathlib import Path

HERE = Path(__file__).resolve().parent

PREBUILT_NAME = "cuda_ext._C"
"""Module name of the extension ``setup.py`` builds (lands beside this file as ``_C*.so``)."""

JIT_NAME = "dff_gs_cuda_ext"
"""Module name of the JIT build (cached under ``$TORCH_EXTENSIONS_DIR`` or ``~/.cache/torch_extensions``)."""

SOURCES = ["csrc/ext.cpp", "csrc/lift.cu"]
"""Kernel sources, relative to this folder."""

HEADERS = ["csrc/lift.h"]

CXX_FLAGS = ["-O3"]
NVCC_FLAGS = ["-O3", "-lineinfo"]  # no --use_fast_math: the kernels must match their PyTorch twins closely


CPU_PREBUILT_NAME = "cuda_ext._cpu"
"""Module name of the compiled CPU rasterizer ``setup.py`` builds everywhere a C++ compiler is found (the baseline
instruction set of the platform)."""

CPU_JIT_NAME = "dff_gs_cpu_raster"
"""Module name of its JIT build."""

CPU_SOURCES = ["csrc/raster_cpu.cpp", "csrc/project_cpu.cpp", "csrc/sh_cpu.cpp"]
CPU_HEADERS = ["csrc/cpu.h"]

CPU_CXX_FLAGS = ["-O3", "-fopenmp", "-fno-trapping-math"]
"""No -ffast-math: the rasterizer must match its PyTorch twin closely. -fno-trapping-math changes no result (no
floating-point trap is ever enabled here); it lets GCC turn the alpha clamps into selects and vectorise them."""
CPU_LINK_FLAGS = ["-fopenmp"]

CPU_AVX2_FLAGS = ["-mavx2", "-mfma"]
"""The second build of the same sources on x86-64 (``cuda_ext._cpu_avx2``): 8-wide vectors and fused multiply-adds
(GCC contracts ``a * b + c`` into one rounding, so its results differ from the baseline build's in the last bits).
It is loaded only where the processor has AVX2 and FMA (:func:`cuda_ext.cpu_isa`); a module built with
``-march=native`` instead could not run on an older machine sharing the same installation."""


CPU_VARIANTS = ("baseline", "avx2")
"""Every instruction-set variant of the CPU rasterizer."""


def cpu_variants(machine: str) -> list[str]:
    """The instruction-set variants of the CPU rasterizer built for a ``platform.machine()``: ``baseline``
    everywhere, and ``avx2`` on x86-64."""
    return list(CPU_VARIANTS) if machine.lower() in ("x86_64", "amd64") else ["baseline"]


def cpu_module_name(variant: str) -> str:
    """Prebuilt module name of a variant: ``cuda_ext._cpu`` (baseline) or ``cuda_ext._cpu_avx2``."""
    return CPU_PREBUILT_NAME if variant == "baseline" else f"{CPU_PREBUILT_NAME}_{variant}"


def cpu_jit_name(variant: str) -> str:
    """JIT module name of a variant."""
    return CPU_JIT_NAME if variant == "baseline" else f"{CPU_JIT_NAME}_{variant}"


def cpu_cxx_flags(variant: str) -> list[str]:
    """Compiler flags of a variant."""
    return CPU_CXX_FLAGS + (CPU_AVX2_FLAGS if variant == "avx2" else [])


def cpu_source_hash() -> str:
    """SHA-256 (16 hex digits) of the CPU rasterizer's sources: compiled into the prebuilt module so a stale build
    (sources edited since ``pip install``) is noticed and JIT-rebuilt instead of loaded."""
    import hashlib

    h = hashlib.sha256()
    for s in CPU_SOURCES + CPU_HEADERS:
        h.update((HERE / s).read_bytes())
    return h.hexdigest()[:16]


def include_dirs() -> list[str]:
    """Header folders of the kernels (absolute)."""
    return [str(HERE / "csrc")]


def source_paths(relative_to: Path | None = None, sources: list[str] | None = None) -> list[str]:
    """Absolute paths of ``sources`` (default: the CUDA kernels' :data:`SOURCES`), or paths relative to
    ``relative_to`` (setup.py wants them relative to its root)."""
    paths = [HERE / s for s in (SOURCES if sources is None else sources)]
    if relative_to is None:
        return [str(p) for p in paths]
    return [str(p.relative_to(Path(relative_to).resolve())) for p in paths]

"""The one list of sources and compiler flags of the ``cuda_ext`` kernels.

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


def include_dirs() -> list[str]:
    """Header folders of the kernels (absolute)."""
    return [str(HERE / "csrc")]


def source_paths(relative_to: Path | None = None) -> list[str]:
    """Absolute source paths, or paths relative to ``relative_to`` (setup.py wants them relative to its root)."""
    paths = [HERE / s for s in SOURCES]
    if relative_to is None:
        return [str(p) for p in paths]
    return [str(p.relative_to(Path(relative_to).resolve())) for p in paths]

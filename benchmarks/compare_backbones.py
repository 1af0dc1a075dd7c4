"""Gaussians vs the NeRF-DFF baseline on one scene, one teacher, one machine: the same as ``python -m dff_gs.bench``.

Usage: ``python benchmarks/compare_backbones.py [--gs-steps N] [--nerf-steps N] [--out DIR] [key=value ...]``
(``--help`` lists every option). Prints the Markdown table and writes bench.json, bench.md and the PSNR / mIoU
vs wall-time plots to ``--out``.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dff_gs.cli.bench import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())

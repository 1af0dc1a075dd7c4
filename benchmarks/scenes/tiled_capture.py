"""A capture at the size people shoot, for memory benchmarks: a real capture's views enlarged and repeated.

    python benchmarks/scenes/tiled_capture.py [--source ../shared/data/thermos_pinhole] [--views 300]
        [--width 1920] [--out ~/.cache/dff_gs/scenes/tiled-<source>-<views>v<width>]

Reads the source scene at its full size (any format ``train.py --data`` reads), and writes a transforms.json scene
of ``--views`` views: view ``k`` is source view ``k mod V`` with its image enlarged to ``--width`` pixels wide
(bicubic, JPEG quality 95, what a phone writes) and its intrinsics scaled with it, the same pose. Repeated views
hold nothing new: the scene measures memory and time against the number and size of views, not quality (its
held-out views repeat training views). Prints the folder; an existing complete one is kept.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
from dff_gs.core.utils import atomic_write_path, cache_dir  # noqa: E402
from dff_gs.data import load_scene  # noqa: E402

FLIP = np.diag([1.0, -1.0, -1.0, 1.0])  # OpenCV <-> OpenGL camera axes


def write_tiled(source: Path, views: int, width: int, out: Path) -> Path:
    """Write the tiled scene into ``out`` (see the module docstring) unless it is there.  Returns ``out``."""
    if (out / "transforms.json").is_file():
        return out
    scene = load_scene(source, downscale=1, max_side=0, test_every=0)
    f = width / scene.width
    height = round(scene.height * f)
    (out / "images").mkdir(parents=True, exist_ok=True)
    c2w = scene.cameras.camtoworlds.double().numpy()
    K = scene.cameras.Ks[0].double().numpy()
    frames = []
    for k in range(views):
        i = k % scene.num_views
        name = f"images/{k:04d}.jpg"
        big = Image.fromarray(scene.images[i].numpy()).resize((width, height), Image.Resampling.BICUBIC)
        big.save(out / name, quality=95)
        frames.append({"file_path": name, "transform_matrix": (c2w[i] @ FLIP).tolist()})
    meta = {"fl_x": K[0, 0] * f, "fl_y": K[1, 1] * f, "cx": K[0, 2] * f, "cy": K[1, 2] * f, "w": width, "h": height,
            "frames": frames, "generator": {"source": str(source), "views": views, "width": width}}
    with atomic_write_path(out / "transforms.json") as tmp:  # written last: its presence means complete
        tmp.write_text(json.dumps(meta, indent=1))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--source", default=str(ROOT.parent / "shared" / "data" / "thermos_pinhole"))
    ap.add_argument("--views", type=int, default=300)
    ap.add_argument("--width", type=int, default=1920)
    ap.add_argument("--out", default="")
    args = ap.parse_args()
    source = Path(args.source).expanduser()
    out = Path(args.out).expanduser() if args.out else \
        cache_dir("scenes") / f"tiled-{source.name}-{args.views}v{args.width}"
    print(write_tiled(source, args.views, args.width, out))
    return 0


if __name__ == "__main__":
    sys.exit(main())

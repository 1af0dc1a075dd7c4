"""Renderer speed: RGB + D-dim features, forward and forward+backward, per backend available here.

Usage: ``python benchmarks/bench_render.py [--sizes 128x96,256x192] [--gaussians 10000,50000] [--dim 16]``.
Prints a Markdown table (ms per frame, frames per second). On a CUDA machine it also times gsplat and
reports the largest difference between the two backends' images.
"""

from __future__ import annotations

import argparse
import platform
import time

import torch

from dff_gs.cameras import Cameras, intrinsics_from_fov
from dff_gs.gaussians import GaussianModel
from dff_gs.render import render


def scene(n: int, device: torch.device, dim: int, seed: int = 0) -> GaussianModel:
    """``n`` Gaussians in a slab 2-6 m in front of the camera, sized like a trained model's."""
    g = torch.Generator().manual_seed(seed)
    pts = torch.rand(n, 3, generator=g) * torch.tensor([6.0, 4.5, 4.0]) - torch.tensor([3.0, 2.25, -2.0])
    m = GaussianModel.from_points(pts, torch.rand(n, 3, generator=g), sh_degree=1, feature_dim=dim, init_opacity=0.6)
    with torch.no_grad():
        m.params["features"].normal_(generator=g)
    return m.to(device)


def timed(fn, repeats: int) -> float:
    fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(repeats):
        fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return (time.perf_counter() - t) / repeats


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--sizes", default="128x96,256x192")
    ap.add_argument("--gaussians", default="10000,50000")
    ap.add_argument("--dim", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    backends = [("torch", torch.device("cpu"))]
    if torch.cuda.is_available():
        backends = [("torch", torch.device("cuda")), ("gsplat", torch.device("cuda"))]
    print(f"machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, "
          f"{torch.cuda.get_device_name() if torch.cuda.is_available() else 'no GPU'}, torch {torch.__version__}")
    print("| backend | device | size | Gaussians | forward ms | fps | forward+backward ms |")
    print("| --- | --- | --- | ---: | ---: | ---: | ---: |")
    for size in args.sizes.split(","):
        w, h = (int(v) for v in size.split("x"))
        for n in (int(v) for v in args.gaussians.split(",")):
            for name, dev in backends:
                model = scene(n, dev, args.dim)
                cams = Cameras(torch.eye(4)[None], intrinsics_from_fov(1.3, w, h)[None], w, h).to(dev)

                def fwd():
                    with torch.no_grad():
                        render(model, cams, backend=name)

                def fwd_bwd():
                    out = render(model, cams, backend=name)
                    (out.rgb.sum() + out.features.sum()).backward()

                f, fb = timed(fwd, args.repeats), timed(fwd_bwd, args.repeats)
                print(f"| {name} | {dev.type} | {w}x{h} | {n} | {1e3 * f:.1f} | {1 / f:.1f} | {1e3 * fb:.1f} |")


if __name__ == "__main__":
    main()

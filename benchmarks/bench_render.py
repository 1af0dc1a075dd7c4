"""Renderer speed: RGB + D-dim features, forward and forward+backward, per backend available here.

Usage: ``python benchmarks/bench_render.py [--sizes 128x96,256x192] [--gaussians 10000,50000] [--dim 16]
[--backends cpu,torch] [--device cpu|cuda]``.
Prints a Markdown table (ms per frame, frames per second, the speed-up over the torch backend and the peak memory
of the process). Each (backend, size, count) runs in its own child process so that its peak memory is its own.
Defaults: on the CPU the compiled ``cpu`` backend beside the ``torch`` reference; with ``--device cuda``,
``gsplat`` beside ``torch``.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import time

import torch

from dff_gs.core.cameras import Cameras, intrinsics_from_fov
from dff_gs.core.gaussians import GaussianModel
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


def measure(backend: str, device: str, w: int, h: int, n: int, dim: int, repeats: int) -> dict:
    """Forward and forward+backward seconds per frame of one backend, in this process."""
    dev = torch.device(device)
    model = scene(n, dev, dim)
    cams = Cameras(torch.eye(4)[None], intrinsics_from_fov(1.3, w, h)[None], w, h).to(dev)

    def fwd():
        with torch.no_grad():
            render(model, cams, backend=backend)

    def fwd_bwd():
        out = render(model, cams, backend=backend)
        (out.rgb.sum() + out.features.sum()).backward()

    return {"forward": timed(fwd, repeats), "forward_backward": timed(fwd_bwd, repeats)}


def run_child(args, backend: str, w: int, h: int, n: int) -> dict:
    cmd = [sys.executable, __file__, "--child", f"{backend},{w}x{h},{n}", "--dim", str(args.dim), "--repeats",
           str(args.repeats), "--device", args.device]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--sizes", default="128x96,256x192")
    ap.add_argument("--gaussians", default="10000,50000")
    ap.add_argument("--dim", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--backends", help="comma-separated (default: cpu,torch on the CPU, gsplat,torch on CUDA)")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:  # one measurement; its peak memory is this process's
        backend, size, n = args.child.split(",")
        w, h = (int(v) for v in size.split("x"))
        res = measure(backend, args.device, w, h, int(n), args.dim, args.repeats)
        res["peak_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        if args.device == "cuda":
            res["peak_mb"] = torch.cuda.max_memory_allocated() / 2**20
        print(json.dumps(res))
        return
    backends = (args.backends or ("gsplat,torch" if args.device == "cuda" else "cpu,torch")).split(",")
    print(f"machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, "
          f"{torch.cuda.get_device_name() if args.device == 'cuda' else 'no GPU'}, torch {torch.__version__}")
    mem = "peak GPU MB" if args.device == "cuda" else "peak RSS MB"
    print(f"| backend | device | size | Gaussians | forward ms | fps | forward+backward ms | speed-up fwd+bwd "
          f"vs torch | {mem} |")
    print("| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for size in args.sizes.split(","):
        w, h = (int(v) for v in size.split("x"))
        for n in (int(v) for v in args.gaussians.split(",")):
            rows = {b: run_child(args, b, w, h, n) for b in backends}
            base = rows.get("torch")
            for b, r in rows.items():
                f, fb = r["forward"], r["forward_backward"]
                speed = f"{base['forward_backward'] / fb:.1f}x" if base else "-"
                print(f"| {b} | {args.device} | {w}x{h} | {n} | {1e3 * f:.1f} | {1 / f:.1f} | {1e3 * fb:.1f} | "
                      f"{speed} | {r['peak_mb']:.0f} |", flush=True)


if __name__ == "__main__":
    main()

#!/usr/bin/env python
"""Lifting vs distillation, and the lifting kernels on a GPU. Prints Markdown tables.

CPU mode (default): the embedded default's distilled run ``RUN`` (``python train.py --out RUN``) is stripped
to a plain 3DGS PLY (standard properties only, no sidecar), features are lifted onto it with the run's own
teacher (``train.py --init-ply PLY --lift``, same data, split and teacher settings), optionally followed by a
short feature-only fine-tune, and the held-out mIoU / accuracy are compared with the distilled run's.

    python benchmarks/bench_lift.py runs/default [--finetune 100,300] [--top-k 1] [--resolution image,map]

GPU mode: a synthetic scene of ~500k Gaussians seen by 80 cameras at 640x480 with D=512 teacher maps:
``cuda_ext`` vs ``gsplat`` lifting vs a distillation fine-tune of the same features, and the kernel's achieved
memory bandwidth against the device's peak.

    python benchmarks/bench_lift.py --gpu [--gaussians 500000 --views 80 --dim 512 --map-size 160x120]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


# ------------------------------------------------------------------------------------------------ CPU mode
def strip_ply(src: Path, dst: Path) -> int:
    """Write ``src``'s Gaussians to ``dst`` with the standard 3DGS vertex properties only (no features, no
    sidecar), as another 3DGS trainer would. Returns the number of Gaussians."""
    from plyfile import PlyData, PlyElement

    from dff_gs.io.ply import property_names

    ply = PlyData.read(str(src))
    data = ply["vertex"].data
    n_rest = len([n for n in data.dtype.names if n.startswith("f_rest_")])
    names = property_names(math.isqrt(n_rest // 3 + 1) - 1, 0)
    arr = np.empty(len(data), dtype=[(n, "<f4") for n in names])
    for n in names:
        arr[n] = data[n]
    PlyData([PlyElement.describe(arr, "vertex")], text=False, byte_order="<").write(str(dst))
    return len(arr)


def lift_run(run_dir: Path, ply: Path, out: Path, *, steps: int = 0, top_k: int = 0, resolution: str = "image",
             backend: str = "auto") -> dict:
    """``train.py --init-ply PLY --lift`` with the distilled run's own config (data, split, teacher)."""
    from dff_gs.core.config import apply_dict, apply_overrides, load_yaml
    from dff_gs.train.config import Config
    from dff_gs.engine.pipeline import run

    cfg = Config()
    saved = load_yaml(run_dir / "config.yaml")
    saved.pop("lift", None)
    saved["model"].pop("init_ply", None)
    apply_dict(cfg, saved)
    apply_overrides(cfg, [f"out={out}", "resume=", f"model.init_ply={ply}", "lift.enabled=true",
                          f"lift.steps={steps}", f"lift.top_k={top_k}", f"lift.resolution={resolution}",
                          f"lift.backend={backend}"])
    return run(cfg, progress=False)


def distill_seconds_now(run_dir: Path, steps: int) -> float:
    """Seconds the distilled run's training would take under the machine's current load, extrapolated from
    ``steps`` of its first training steps (fewer Gaussians than later: an underestimate)."""
    from dff_gs.core.config import apply_dict, apply_overrides, load_yaml
    from dff_gs.data import load_scene
    from dff_gs.train.config import Config
    from dff_gs.teachers.prepare import prepare_teacher
    from dff_gs.core.features import init_decoder_pca
    from dff_gs.train.gaussians import init_model
    from dff_gs.engine.common import resolve_device, resolve_scene_path
    from dff_gs.train.trainer import Trainer, TrainData, scene_scale_of

    cfg = Config()
    saved = load_yaml(run_dir / "config.yaml")
    saved.pop("lift", None)
    saved["model"].pop("init_ply", None)
    apply_dict(cfg, saved)
    apply_overrides(cfg, ["resume="])
    device = resolve_device(cfg.train.device)
    scene = load_scene(resolve_scene_path(cfg), downscale=cfg.data.downscale, test_every=cfg.data.test_every,
                       format=cfg.data.format)
    train = scene.split("train")
    teacher = prepare_teacher(cfg.teacher, scene, device, progress=False)
    model = init_model(cfg, train, teacher)
    if model.decoder is not None:
        init_decoder_pca(model.decoder, teacher.train_maps, seed=cfg.train.seed)
    data = TrainData(images=train.images.to(device), cameras=train.cameras.to(device),
                     teacher_maps=teacher.train_maps, background=torch.ones(3, device=device),
                     scene_scale=scene_scale_of(train))
    trainer = Trainer(cfg, model, data, device)
    for _ in range(2):  # warm-up (lazy imports, allocator)
        trainer.train_step()
    t0 = time.perf_counter()
    for _ in range(steps):
        trainer.train_step()
    return (time.perf_counter() - t0) / steps * cfg.train.steps


def cpu_table(args) -> None:
    run_dir = Path(args.run)
    metrics_path = run_dir / "metrics.json"
    if not metrics_path.is_file():
        sys.exit(f"error: {metrics_path} not found: train the embedded default first (python train.py --out {run_dir})")
    distilled = json.loads(metrics_path.read_text())
    torch.set_num_threads(args.threads)
    rows = [("distilled (850 steps)", distilled["train_seconds"], distilled, 0)]
    now = distill_seconds_now(run_dir, args.distill_steps) if args.distill_steps else float("nan")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        ply = tmp / "plain.ply"
        n = strip_ply(run_dir / "point_cloud.ply", ply)
        print(f"stripped {run_dir / 'point_cloud.ply'} -> plain 3DGS PLY, {n} Gaussians", file=sys.stderr)
        variants = [(f"lifted ({r} res)", dict(resolution=r)) for r in args.resolution.split(",")]
        variants += [(f"lifted + {s}-step fine-tune", dict(steps=s)) for s in _ints(args.finetune)]
        variants += [(f"lifted, top-{k}", dict(top_k=k)) for k in _ints(args.top_k)]
        for i, (name, kw) in enumerate(variants):
            t0 = time.perf_counter()
            m = lift_run(run_dir, ply, tmp / f"run{i}", backend=args.backend, **kw)
            print(f"{name}: {time.perf_counter() - t0:.1f} s end to end (teacher, lift, eval)", file=sys.stderr)
            rows.append((name, m["train_seconds"], m, m.get("lift_seconds", 0.0)))
    base = distilled["miou"]
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"\nEmbedded default, {n} Gaussians, teacher `labels` (degraded), CPU ({args.threads} torch threads, "
          f"load average {load}), held-out views\n")
    print("| features | seconds (lift / train) | x faster | mIoU | Δ mIoU vs distilled | accuracy | teacher mIoU |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name, sec, m, _ in rows:
        print(f"| {name} | {sec:.1f} | {distilled['train_seconds'] / max(sec, 1e-9):.1f} | {m['miou']:.3f} | "
              f"{m['miou'] - base:+.3f} | {m['accuracy']:.3f} | {m.get('teacher_miou', float('nan')):.3f} |")
    if args.distill_steps:
        print(f"\nThe distilled run's {distilled['train_seconds']:.0f} s were measured when it trained; under the load "
              f"of this benchmark its training extrapolates to {now:.0f} s ({args.distill_steps} steps timed), i.e. "
              f"lifting is {now / max(rows[1][1], 1e-9):.1f}x faster at equal load.")


def _ints(s: str) -> list[int]:
    return [int(x) for x in s.split(",") if x.strip()]


# ------------------------------------------------------------------------------------------------ GPU mode
def synthetic_scene(n: int, views: int, width: int, height: int, seed: int = 0):
    """~n Gaussians on the surfaces of a room-sized box (so views occlude like a real scene) and ``views``
    cameras inside it looking around."""
    from dff_gs.core.cameras import Cameras, intrinsics_from_fov
    from dff_gs.core.gaussians import GaussianModel

    g = torch.Generator().manual_seed(seed)
    face = torch.randint(0, 6, (n,), generator=g)
    pts = torch.rand(n, 3, generator=g) * 8 - 4
    axis, side = face // 2, (face % 2).float() * 8 - 4
    pts[torch.arange(n), axis] = side + 0.05 * torch.randn(n, generator=g)
    model = GaussianModel.from_points(pts, torch.rand(n, 3, generator=g), sh_degree=0, init_opacity=0.8,
                                      scales=torch.full((n,), 0.03))
    c2w = []
    for v in range(views):
        yaw = 2 * math.pi * v / views
        pitch = 0.3 * math.sin(3 * yaw)
        fwd = torch.tensor([math.cos(pitch) * math.sin(yaw), math.sin(pitch), math.cos(pitch) * math.cos(yaw)])
        right = torch.linalg.cross(torch.tensor([0.0, 1.0, 0.0]), fwd)
        right = right / right.norm()
        down = torch.linalg.cross(fwd, right)
        m = torch.eye(4)
        m[:3, 0], m[:3, 1], m[:3, 2] = right, down, fwd
        m[:3, 3] = 0.5 * torch.randn(3, generator=g)
        c2w.append(m)
    K = intrinsics_from_fov(math.radians(70), width, height)
    return model, Cameras.from_camtoworlds(torch.stack(c2w), K, width, height)


def peak_bandwidth_gbs(dev: torch.device) -> float:
    p = torch.cuda.get_device_properties(dev)
    clock_khz, bus_bits = getattr(p, "memory_clock_rate", 0), getattr(p, "memory_bus_width", 0)
    return 2 * clock_khz * 1e3 * bus_bits / 8 / 1e9 if clock_khz and bus_bits else float("nan")  # DDR: 2 per clock


def cuda_time(fn, repeats: int = 3) -> float:
    fn()  # warm-up (and JIT build / autotune)
    torch.cuda.synchronize()
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t0)
    return best


def gpu_table(args) -> None:
    import cuda_ext
    from dff_gs.lift import lift_features
    from dff_gs.lift.model import with_features
    from dff_gs.lift.tuner import finetune_features
    from dff_gs.lift.tiles import tile_lists

    if not torch.cuda.is_available():
        sys.exit("error: --gpu needs a CUDA device (none is visible)")
    dev = torch.device("cuda")
    W, H = (int(x) for x in args.size.split("x"))
    mw, mh = (int(x) for x in args.map_size.split("x"))
    model, cams = synthetic_scene(args.gaussians, args.views, W, H)
    model, cams = model.to(dev), cams.to(dev)
    g = torch.Generator(device=dev).manual_seed(0)
    maps = torch.randn(args.views, mh, mw, args.dim, generator=g, device=dev).half()  # teacher maps, fp16
    print(f"{model.num_gaussians} Gaussians, {args.views} views {W}x{H}, maps {mw}x{mh}x{args.dim} fp16, "
          f"{torch.cuda.get_device_name(dev)}", file=sys.stderr)
    rows = []
    res = {}
    for name in ("cuda_ext", "gsplat"):
        t = cuda_time(lambda: res.__setitem__(name, lift_features(model, cams, maps, name,
                                                                   camera_batch=args.camera_batch)))
        rows.append((f"lift, {name} (projection + tiles + accumulate)", t))
    diff = float((res["cuda_ext"][0] - res["gsplat"][0]).abs().max())

    # the kernel alone, on precomputed tile lists, and the bytes it must move at least once
    with torch.no_grad():
        geo = (model.get_means(), model.get_quats(), model.get_scales(), model.get_opacities())
    kernel_s, compulsory = 0.0, 0
    N, C = model.num_gaussians, args.dim
    for s in range(0, args.views, args.camera_batch):
        sub = cams[list(range(s, min(s + args.camera_batch, args.views)))]
        L = tile_lists(*geo, sub.viewmats, sub.Ks, W, H, 16, "gsplat")
        mb = maps[s:s + len(sub)].contiguous()
        fs, ws = torch.zeros(N, C, device=dev), torch.zeros(N, device=dev)
        kernel_s += cuda_time(lambda: cuda_ext.lift_accumulate(L.means2d, L.conics, L.opacities, mb, L.tile_offsets,
                                                               L.flatten_ids, W, H, 16, feat_sum=fs.zero_(),
                                                               weight_sum=ws.zero_()), repeats=2)
        compulsory += (mb.numel() * mb.element_size() + L.num_intersections * 4 * 7  # ids + xy, conic, opacity
                       + L.tile_offsets.numel() * 4)
    compulsory += 2 * N * C * 4 + 2 * N * 4  # feat_sum / weight_sum read-modify-write
    rows.append(("cuda_ext kernel alone (accumulate, all views)", kernel_s))

    ft = {}
    tuned = with_features(model, res["cuda_ext"][0])  # D = 512 features, no decoder
    t = cuda_time(lambda: ft.__setitem__("r", finetune_features(tuned, cams, maps, steps=args.finetune_steps,
                                                                backend="gsplat")), repeats=1)
    rows.append((f"distillation fine-tune, {args.finetune_steps} steps (features only, D={C})", t))

    peak = peak_bandwidth_gbs(dev)
    achieved = compulsory / kernel_s / 1e9
    print(f"\n{model.num_gaussians} Gaussians, {args.views} views at {W}x{H}, D={C} (maps {mw}x{mh} fp16), "
          f"{torch.cuda.get_device_name(dev)}\n")
    print("| what | seconds |")
    print("| --- | ---: |")
    for name, t in rows:
        print(f"| {name} | {t:.3f} |")
    print(f"\ncuda_ext vs gsplat lifted features: max |diff| = {diff:.2e}")
    print(f"kernel: {compulsory / 1e9:.2f} GB compulsory traffic (maps once, tile lists, outputs) in {kernel_s:.3f} s "
          f"= {achieved:.0f} GB/s, {100 * achieved / peak:.0f}% of the device's {peak:.0f} GB/s peak")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run", nargs="?", default="runs/default", help="distilled run folder of the embedded default")
    p.add_argument("--resolution", default="image", help="comma list of lift resolutions: image, map")
    p.add_argument("--finetune", default="", help="comma list of fine-tune step counts after lifting (e.g. 100,300)")
    p.add_argument("--top-k", default="", help="comma list of top-k variants (e.g. 1)")
    p.add_argument("--backend", default="auto", help="lifting backend for the CPU table")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    p.add_argument("--distill-steps", type=int, default=30,
                   help="time this many distillation steps now, for a same-load comparison (0 = skip)")
    p.add_argument("--gpu", action="store_true", help="GPU timing mode (synthetic ~500k-Gaussian scene)")
    p.add_argument("--gaussians", type=int, default=500_000)
    p.add_argument("--views", type=int, default=80)
    p.add_argument("--size", default="640x480", help="render size WxH")
    p.add_argument("--map-size", default="160x120", help="teacher map size WxH (a ViT teacher's patch grid is coarser)")
    p.add_argument("--dim", type=int, default=512, help="teacher feature dimension D")
    p.add_argument("--camera-batch", type=int, default=8)
    p.add_argument("--finetune-steps", type=int, default=300)
    args = p.parse_args()
    gpu_table(args) if args.gpu else cpu_table(args)


if __name__ == "__main__":
    main()

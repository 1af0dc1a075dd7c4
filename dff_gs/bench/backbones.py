"""``python -m dff_gs.bench``: Gaussians vs the NeRF-DFF backbone on one scene, one teacher, one machine.

Trains both backbones (each in its own process, so peak memory is its own) with periodic held-out
evaluation, then measures, side by side: test PSNR / SSIM, mIoU / accuracy, depth delta<1.25 / AbsRel,
training wall time, the Gaussians' time to reach the NeRF's final PSNR, render FPS of RGB + features at
the test resolution, text-query latency, peak memory and model size. Writes to ``--out``:

``bench.json`` (per backbone: psnr, ssim, miou, accuracy, depth_delta1, depth_absrel, train_seconds,
render_fps, query_ms, peak_mem_mb, model_mb, eval history; Gaussians also time_to_nerf_psnr; the machine),
``bench.md`` (the table), ``psnr_vs_time.png`` and ``miou_vs_time.png``, and the two run folders.

Defaults: the embedded scene with the degraded ``labels`` teacher of ``configs/default.yaml`` (Gaussians)
and ``configs/nerf.yaml`` (NeRF). ``key=value`` overrides apply to both runs.
"""

from __future__ import annotations

import json
import math
import os
import platform
import resource
import statistics
import sys
import time
from pathlib import Path
from typing import Optional

import torch

from dff_gs import query as Q
from dff_gs.core.config import apply_dict, apply_overrides, load_yaml
from dff_gs.engine.common import load_run_scene, resolve_device
from dff_gs.engine.evaluate import render_view
from dff_gs.engine.pipeline import run
from dff_gs.engine.runs import load_backbone, teacher_from_meta
from dff_gs.io.run_dir import RunFolder
from dff_gs.query import nerf as NQ
from dff_gs.train.config import Config

ROOT = Path(__file__).resolve().parents[2]
PRESETS = {"gs": ROOT / "configs" / "default.yaml", "nerf": ROOT / "configs" / "nerf.yaml"}
NAMES = {"gs": "Gaussians", "nerf": "NeRF-DFF"}
GOALS = {"time_ratio": 0.2, "render_speedup": 50.0}
"""The Gaussians should reach the NeRF's final PSNR within 1/5 of its training time, render >= 50x faster and
match or beat its mIoU."""


# ----------------------------------------------------------------------------------------------- machine
def machine_info(device: str) -> dict:
    """CPU model, cores, torch version, device and load, for the record."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info = {"cpu": cpu, "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
            "python": platform.python_version(), "platform": platform.platform(), "device": device,
            "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None}
    try:
        info["load_average"] = [round(v, 2) for v in os.getloadavg()]
    except OSError:
        pass
    return info


def peak_rss_mb() -> float:
    """Peak resident memory of this process in MB (ru_maxrss is KB on Linux, bytes on macOS)."""
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return r / (1024 * 1024) if sys.platform == "darwin" else r / 1024


# ----------------------------------------------------------------------------------------------- one backbone
def make_config(backbone: str, args) -> "object":
    """The run config of one backbone: its preset, the shared scene / teacher, steps, eval cadence, overrides."""
    cfg = Config()
    apply_dict(cfg, load_yaml(PRESETS[backbone]))
    steps = args.gs_steps if backbone == "gs" else args.nerf_steps
    every = args.gs_eval_every if backbone == "gs" else args.nerf_eval_every
    flags = {"train.backbone": backbone, "out": str(Path(args.out) / backbone), "train.device": args.device,
             "data.path": args.data, "teacher.name": args.teacher, "train.steps": steps,
             "train.eval_every": every, "train.seed": args.seed}
    apply_overrides(cfg, [f"{k}={v}" for k, v in flags.items() if v is not None])
    apply_overrides(cfg, list(args.overrides))
    if cfg.train.eval_every <= 0:
        cfg.train.eval_every = max(cfg.train.steps // 10, 1)
    return cfg


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_renders(backbone, cameras, device: torch.device, views: int, min_seconds: float = 1.0) -> float:
    """Frames per second of RGB + decoded features of a :class:`~dff_gs.backbone.Backbone` at the cameras'
    resolution (one warm-up frame first)."""
    ids = list(range(min(views, len(cameras))))
    render_view(backbone, cameras[[ids[0]]], with_features=backbone.has_features)
    _sync(device)
    frames, t0 = 0, time.perf_counter()
    while True:
        for i in ids:
            render_view(backbone, cameras[[i]], with_features=backbone.has_features)
            frames += 1
        _sync(device)
        elapsed = time.perf_counter() - t0
        if elapsed >= min_seconds:
            return frames / elapsed


def query_text(class_names: Optional[list]) -> str:
    """The benchmark's text query: an object class of the scene (``sofa`` on the embedded default)."""
    names = list(class_names or [])
    for preferred in ("sofa", "chair", "table"):
        if preferred in names:
            return preferred
    return names[-1] if names else "object"


@torch.no_grad()
def time_query(backbone: str, model, meta: dict, camera, device: torch.device, repeats: int = 3) -> dict:
    """Latency of a text query (text already embedded; that cost is the same for both backbones and is
    reported apart): ``query_ms`` = query -> 2D segmentation of one test view at test resolution;
    ``query_3d_ms`` = query -> p(l|x) over the model's 3D content (every Gaussian / the NeRF's occupied cells)."""
    teacher = teacher_from_meta(meta)
    if teacher is None or not getattr(teacher, "supports_text", False):
        return {}
    names = (meta.get("teacher") or {}).get("class_names")
    text = query_text(names)
    negs = Q.text_negatives(teacher.encode_text, text, names)
    t0 = time.perf_counter()
    emb = teacher.encode_text([text] + negs).float().to(device)
    encode_ms = 1e3 * (time.perf_counter() - t0)
    queries = Q.query_embeddings(emb[0], emb[1:])

    if backbone == "gs":
        def q2d():
            probs = Q.label_probabilities(Q.gaussian_features(model), queries)[:, 0]
            img, alpha = Q.render_values(model, camera, torch.stack([probs, 1 - probs], -1))
            return img[0, ..., 0] > 0.5 * alpha[0, ..., 0]

        def q3d():
            return Q.label_probabilities(Q.gaussian_features(model), queries)[:, 0] > 0.5
    else:
        points = NQ.field_points(model, max_points=10**9)

        def q2d():
            return Q.render_probabilities(model, camera, queries)[0, ..., 0] > 0.5

        def q3d():
            return NQ.point_probabilities(model, points, queries)[:, 0] > 0.5

    out = {"query": text, "text_encode_ms": encode_ms}
    for key, fn in (("query_ms", q2d), ("query_3d_ms", q3d)):
        fn()  # warm-up
        times = []
        for _ in range(repeats):
            _sync(device)
            t0 = time.perf_counter()
            fn()
            _sync(device)
            times.append(1e3 * (time.perf_counter() - t0))
        out[key] = statistics.median(times)
    if backbone == "nerf":
        out["query_3d_points"] = len(points)
    return out


def bench_one(backbone: str, args) -> dict:
    """Train one backbone and measure it (run inside its own process by :func:`main`)."""
    cfg = make_config(backbone, args)
    device = resolve_device(cfg.train.device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    t0 = time.perf_counter()
    metrics = run(cfg, progress=not args.quiet)
    wall = time.perf_counter() - t0
    folder = RunFolder(Path(cfg.out))
    history = json.loads(folder.history.read_text())
    timed, meta = load_backbone(folder.path, backend=cfg.train.backend, device=device,
                                background=torch.tensor(cfg.data.background))
    model = timed.model if timed.kind == "gs" else timed
    files = [folder.ply, folder.sidecar] if timed.kind == "gs" else [folder.nerf_model]
    _, scene, _, test = load_run_scene(cfg, device)
    test = test if test is not None else scene
    cams = test.cameras.to(device)
    with torch.no_grad():
        fps = time_renders(timed, cams, device, args.fps_views)
        query = time_query(backbone, model, meta, cams[[0]], device)
    result = {k: metrics[k] for k in ("psnr", "ssim", "lpips", "miou", "accuracy", "depth_delta1", "depth_absrel",
                                      "teacher_miou", "train_seconds", "num_gaussians", "num_parameters")
              if k in metrics}
    result.update(render_fps=fps, **query, model_mb=sum(f.stat().st_size for f in files if f.is_file()) / 2**20,
                  rss_peak_mb=peak_rss_mb(), run_wall_seconds=wall, steps=cfg.train.steps,
                  eval_every=cfg.train.eval_every, resolution=[test.width, test.height], run_dir=str(folder.path),
                  eval_history=history.get("eval", []))
    result["peak_mem_mb"] = (torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda"
                             else result["rss_peak_mb"])
    result["peak_mem_kind"] = "cuda max_memory_allocated" if device.type == "cuda" else "process peak RSS"
    return result


# ----------------------------------------------------------------------------------------------- comparison
def time_to_reach(history: list[dict], target: float, key: str = "psnr") -> Optional[float]:
    """Training seconds at the first evaluation whose ``key`` is at least ``target`` (None if never)."""
    for row in history:
        if row.get(key) is not None and row[key] >= target:
            return float(row["seconds"])
    return None


def compare(gs: dict, nerf: dict) -> dict:
    """Ratios against the goals (see ``GOALS``)."""
    t = time_to_reach(gs.get("eval_history", []), nerf["psnr"])
    gs["time_to_nerf_psnr"] = t
    ratio = None if t is None or not nerf.get("train_seconds") else t / nerf["train_seconds"]
    speedup = gs["render_fps"] / nerf["render_fps"] if nerf.get("render_fps") else None
    miou_delta = (gs["miou"] - nerf["miou"]) if "miou" in gs and "miou" in nerf else None
    return {
        "time_ratio": ratio, "render_speedup": speedup, "miou_delta": miou_delta,
        "met": {"time_to_nerf_psnr": ratio is not None and ratio <= GOALS["time_ratio"],
                "render_speedup": speedup is not None and speedup >= GOALS["render_speedup"],
                "miou": miou_delta is not None and miou_delta >= 0},
    }


def _fmt(v, digits: int = 3) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def markdown(report: dict) -> str:
    """The side-by-side table, the goals and the machine, as Markdown."""
    gs, nerf, cmp_, m = report["gs"], report["nerf"], report["comparison"], report["machine"]
    rows = [("test PSNR (dB)", "psnr", 2), ("SSIM", "ssim", 3), ("LPIPS", "lpips", 3), ("mIoU", "miou", 3),
            ("accuracy", "accuracy", 3),
            ("2D teacher mIoU", "teacher_miou", 3), ("depth δ<1.25", "depth_delta1", 3),
            ("depth AbsRel", "depth_absrel", 3), ("train steps", "steps", 0),
            ("train wall time (s)", "train_seconds", 1), ("time to the NeRF's final PSNR (s)", "time_to_nerf_psnr", 1),
            ("render FPS (RGB + features)", "render_fps", 2),
            ("text query → 2D mask (ms)", "query_ms", 1), ("text query → 3D p(l|x) (ms)", "query_3d_ms", 1),
            ("peak memory (MB)", "peak_mem_mb", 0), ("model size (MB)", "model_mb", 2)]
    w, h = gs.get("resolution", ["?", "?"])
    lines = [f"| {w}x{h}, {report['settings']['scene']}, teacher {report['settings']['teacher']} | "
             f"{NAMES['gs']} | {NAMES['nerf']} |", "| --- | ---: | ---: |"]
    for label, key, d in rows:
        g = _fmt(gs.get(key), d)
        if key == "time_to_nerf_psnr" and gs.get(key) is None:
            g = f"not reached in {gs.get('steps')} steps"
        lines.append(f"| {label} | {g} | {_fmt(nerf.get(key), d) if key != 'time_to_nerf_psnr' else '-'} |")
    size = f"{gs.get('num_gaussians', '-')} Gaussians | {nerf.get('num_parameters', '-')} parameters"
    lines.append(f"| model | {size} |")
    ok = cmp_["met"]
    lines += ["", "Goals (Gaussians vs NeRF):",
              f"- time to the NeRF's final PSNR / NeRF training time: {_fmt(cmp_['time_ratio'])} "
              f"(goal <= {GOALS['time_ratio']}) {'met' if ok['time_to_nerf_psnr'] else 'NOT met'}",
              f"- render speed-up: {_fmt(cmp_['render_speedup'], 1)}x (goal >= {GOALS['render_speedup']:.0f}x) "
              f"{'met' if ok['render_speedup'] else 'NOT met'}",
              f"- mIoU difference: {_fmt(cmp_['miou_delta'])} (goal >= 0) {'met' if ok['miou'] else 'NOT met'}",
              "", f"Machine: {m['cpu']}, {m['cores']} cores ({m['torch_threads']} torch threads), "
                  f"{m.get('gpu') or 'no GPU'}, device {m['device']}, torch {m['torch']}, Python {m['python']}; "
                  f"load average at start {m.get('load_average', '-')}.",
              f"Peak memory: {gs.get('peak_mem_kind', '')}; query: {gs.get('query', '-')!r} against the scene's "
              f"other labels; eval every {gs.get('eval_every')} (GS) / {nerf.get('eval_every')} (NeRF) steps, "
              f"evaluation time excluded from the training clocks."]
    return "\n".join(lines) + "\n"

"""``python -m dff_gs.bench`` / ``dff-bench``: the backbone benchmark's command line (:mod:`dff_gs.bench`).

Each backbone is trained and measured in a child process of its own (``--child``) unless ``--in-process``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Optional

import torch

from dff_gs.bench import backbones
from dff_gs.bench.backbones import NAMES, ROOT, bench_one, compare, machine_info, make_config, markdown
from dff_gs.core.errors import DffError
from dff_gs.core.utils import atomic_write_path, write_json
from dff_gs.engine.plots import plot_curves
from dff_gs.io.run_dir import check_not_inputs


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m dff_gs.bench", description=backbones.__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", help="scene folder (default: the embedded default scene)")
    p.add_argument("--teacher", help="teacher for both backbones (default: the presets' degraded labels)")
    p.add_argument("--gs-steps", type=int, help="Gaussian training steps (default: configs/default.yaml)")
    p.add_argument("--nerf-steps", type=int, help="NeRF training steps (default: configs/nerf.yaml)")
    p.add_argument("--gs-eval-every", type=int, default=50, help="held-out evaluation every N Gaussian steps")
    p.add_argument("--nerf-eval-every", type=int, default=0, help="held-out evaluation every N NeRF steps "
                                                                  "(0 = a tenth of the steps)")
    p.add_argument("--device", help="auto | cpu | cuda for both (default: the presets' auto)")
    p.add_argument("--seed", type=int, help="random seed of both runs")
    p.add_argument("--fps-views", type=int, default=3, help="test views rendered for the FPS measurement")
    p.add_argument("--out", help="output folder (default: runs/bench-<time>)")
    p.add_argument("--only", choices=("gs", "nerf"), help="train and measure one backbone only (no comparison)")
    p.add_argument("--in-process", action="store_true",
                   help="run both backbones in this process (peak memory is then the larger of the two)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--child", choices=("gs", "nerf"), help=argparse.SUPPRESS)
    p.add_argument("overrides", nargs="*", help="key=value config overrides applied to both runs")
    return p


BENCH_FILES = ("bench.json", "bench.md", "psnr_vs_time.png", "miou_vs_time.png", "result_gs.json",
               "result_nerf.json")
"""What the benchmark writes into ``--out`` beside the two run folders (``gs/``, ``nerf/``: claimed as runs)."""


def _child_argv(backbone: str, args) -> list[str]:
    argv = [sys.executable, "-m", "dff_gs.bench", "--child", backbone, "--out", str(args.out),
            "--gs-eval-every", str(args.gs_eval_every), "--nerf-eval-every", str(args.nerf_eval_every),
            "--fps-views", str(args.fps_views)]
    for flag, v in (("--data", args.data), ("--teacher", args.teacher), ("--gs-steps", args.gs_steps),
                    ("--nerf-steps", args.nerf_steps), ("--device", args.device), ("--seed", args.seed)):
        if v is not None:
            argv += [flag, str(v)]
    if args.quiet:
        argv.append("--quiet")
    return argv + list(args.overrides)


def bench_backbone(backbone: str, args) -> dict:
    """Bench one backbone, in a fresh process unless ``--in-process`` (or already in the child); writes
    ``result_<backbone>.json`` and returns the result dict."""
    result_path = Path(args.out) / f"result_{backbone}.json"
    if args.in_process or args.child:
        result = bench_one(backbone, args)
    else:
        path = os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)
        env = dict(os.environ, PYTHONPATH=path)
        proc = subprocess.run(_child_argv(backbone, args), env=env)
        if proc.returncode != 0 or not result_path.is_file():
            raise DffError(f"the {NAMES[backbone]} run of the benchmark failed (exit {proc.returncode}); "
                           f"see its output above and {Path(args.out) / backbone}")
        return json.loads(result_path.read_text())
    write_json(result_path, result)
    return result


def main(argv: Optional[list[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    if not args.out:
        args.out = str(Path("runs") / f"bench-{time.strftime('%Y%m%d-%H%M%S')}")
    out = Path(args.out)
    try:
        check_not_inputs([out / n for n in BENCH_FILES], input_folders=[args.data])  # the scene's files, ever
        out.mkdir(parents=True, exist_ok=True)
        if args.child:  # inside the child process: train + measure one backbone, write its result
            bench_backbone(args.child, args)
            return 0
        device = args.device or "auto"
        machine = machine_info(str(torch.device("cuda" if torch.cuda.is_available() and device != "cpu" else "cpu")))
        backbones = [args.only] if args.only else ["nerf", "gs"]
        results = {b: bench_backbone(b, args) for b in backbones}
    except DffError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    cfg = make_config(backbones[0], args)
    report = {"machine": machine,
              "settings": {"scene": cfg.data.path or "embedded default", "teacher": cfg.teacher.name,
                           "degraded_teacher": cfg.teacher.degrade, "gs_steps": args.gs_steps,
                           "nerf_steps": args.nerf_steps, "device": device,
                           "command": " ".join(["python -m dff_gs.bench",
                                                *(argv if argv is not None else sys.argv[1:])])},
              **results}
    if len(results) == 2:
        report["comparison"] = compare(results["gs"], results["nerf"])
        histories = {NAMES[b]: r.get("eval_history", []) for b, r in results.items()}
        nerf = results["nerf"]
        colours = {NAMES["gs"]: "tab:blue", NAMES["nerf"]: "tab:red"}
        plot_curves(histories, "psnr", "test PSNR (dB)", out / "psnr_vs_time.png", "Held-out PSNR vs training time",
                    nerf.get("psnr"), "NeRF final PSNR", colours)
        plot_curves(histories, "miou", "test mIoU", out / "miou_vs_time.png", "Held-out mIoU vs training time",
                    nerf.get("miou"), "NeRF final mIoU", colours)
        text = markdown(report)
        with atomic_write_path(out / "bench.md") as tmp:
            tmp.write_text(text)
        print(text)
    write_json(out / "bench.json", report)
    print(f"results: {out / 'bench.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

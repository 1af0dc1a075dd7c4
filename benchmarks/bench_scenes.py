"""Every scene of a list trained with the default command, one table: do the scenes people bring work?

Each scene is trained by ``python train.py [--data SCENE]`` with nothing else (the preset picked for the
scene's format, the teacher picked for a scene without labels, the CPU resolution budget), in its own process,
one after the other. The table (scene, format, resolution used, views, init, Gaussians, train seconds, wall
seconds, held-out PSNR / SSIM, mIoU and teacher mIoU where ground-truth semantics exist, peak memory) is printed
and written to ``OUT/bench_scenes.md`` and ``.json``; each run folder (renders as PNG) stays in ``OUT/NAME``.

Scenes (``--scenes`` picks some by name): ``embedded`` (the default room), ``mic``, ``thermos_pinhole`` and
``thermos_opencv`` from ``../shared/data`` (skipped, said so, when absent), and ``toys`` / ``garden``: scenes
with ground-truth semantics that ``benchmarks/scenes/pybullet_scene.py`` renders here (pybullet's TinyRenderer,
objects bundled with pybullet) and that no code was tuned on.

    python benchmarks/bench_scenes.py [--out runs/bench_scenes] [--scenes mic,toys] [-- key=value ...]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
SCENES = ("embedded", "mic", "thermos_pinhole", "thermos_opencv", "toys", "garden")
PYBULLET_LAYOUTS = ("toys", "garden")


def scene_path(name: str, cache: Path) -> Path | None:
    """The folder of scene ``name`` (rendered first for the pybullet layouts, fixed or generated ``gen-<seed>``);
    None for the embedded room."""
    if name == "embedded":
        return None
    if name in PYBULLET_LAYOUTS or name.startswith("gen-"):  # a fixed layout, or the generator's (gen-<seed>)
        spec = importlib.util.spec_from_file_location("pybullet_scene", ROOT / "benchmarks/scenes/pybullet_scene.py")
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        return mod.make_scene(name, cache / name)
    return SHARED / name


def child(argv: list[str]) -> int:
    """Run ``train.py argv`` in this process, then write its peak memory beside the run's metrics."""
    from dff_gs.cli.train import main

    t0 = time.perf_counter()
    rc = main(argv)
    out = Path(argv[argv.index("--out") + 1])
    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    (out / "bench_child.json").write_text(json.dumps({"rc": rc, "wall_seconds": time.perf_counter() - t0,
                                                      "peak_memory_gb": peak_gb}))
    return rc


def row(name: str, out: Path) -> dict:
    """One table row from a finished run folder."""
    import yaml

    m = json.loads((out / "metrics.json").read_text())
    c = json.loads((out / "bench_child.json").read_text())
    cfg = yaml.safe_load((out / "config.yaml").read_text())
    s = m.get("scene", {})
    return {"scene": name, "format": s.get("format", "?"), "resolution": f"{s.get('width')}x{s.get('height')}",
            "downscale": s.get("downscale"), "views": f"{s.get('train_views')}/{s.get('test_views')}",
            "init": s.get("init", "?"), "teacher": cfg["teacher"]["name"], "gaussians": m.get("num_gaussians"),
            "train_s": m.get("train_seconds"), "wall_s": c["wall_seconds"], "psnr": m.get("psnr"),
            "ssim": m.get("ssim"), "miou": m.get("miou"), "teacher_miou": m.get("teacher_miou"),
            "peak_gb": c["peak_memory_gb"]}


def fmt(v, spec: str) -> str:
    return "-" if v is None else format(v, spec)


def table(rows: list[dict]) -> str:
    head = ("| scene | format | resolution (downscale) | train/test views | init | teacher | #Gaussians | train s | "
            "wall s | test PSNR | SSIM | mIoU | teacher mIoU | peak GB |")
    lines = [head, "|" + " --- |" * 4 + " --- |" * 2 + " ---: |" * 8]
    for r in rows:
        lines.append(f"| {r['scene']} | {r['format']} | {r['resolution']} ({r['downscale']}x) | {r['views']} | "
                     f"{r['init']} | {r['teacher']} | {fmt(r['gaussians'], ',')} | {fmt(r['train_s'], '.0f')} | "
                     f"{fmt(r['wall_s'], '.0f')} | {fmt(r['psnr'], '.2f')} | {fmt(r['ssim'], '.3f')} | "
                     f"{fmt(r['miou'], '.3f')} | {fmt(r['teacher_miou'], '.3f')} | {fmt(r['peak_gb'], '.1f')} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--child"]:
        return child(argv[1:])
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="runs/bench_scenes", help="folder for the run folders and the table")
    p.add_argument("--scenes", default=",".join(SCENES), help=f"comma-separated subset of {', '.join(SCENES)}")
    p.add_argument("--cache", default="", help="where the pybullet scenes are rendered (default $DFF_GS_CACHE/scenes)")
    p.add_argument("overrides", nargs="*", help="key=value passed to every train.py (default: none)")
    args = p.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    from dff_gs.core.utils import cache_dir  # here: the parent process that starts the runs stays torch-free

    cache = Path(args.cache) if args.cache else cache_dir("scenes")
    rows = []
    for name in [s for s in args.scenes.split(",") if s]:
        if name not in SCENES:
            p.error(f"unknown scene {name!r} (known: {', '.join(SCENES)})")
        path = scene_path(name, cache)
        if path is not None and not path.exists():
            print(f"{name}: {path} not found, skipped")
            continue
        run_dir = out / name
        cmd = [sys.executable, str(Path(__file__).resolve()), "--child", "--out", str(run_dir), "--quiet"]
        cmd += (["--data", str(path)] if path is not None else []) + list(args.overrides)
        print(f"{name}: python train.py {'--data ' + str(path) if path is not None else ''} (run folder {run_dir})",
              flush=True)
        rc = subprocess.run(cmd, cwd=ROOT).returncode
        if rc != 0:
            print(f"{name}: train.py failed (exit {rc})")
            continue
        rows.append(row(name, run_dir))
        print(table(rows[-1:]), flush=True)
    text = table(rows)
    print("\n" + text)
    (out / "bench_scenes.md").write_text(text + "\n")
    (out / "bench_scenes.json").write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

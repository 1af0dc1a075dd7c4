"""One process vs torchrun's N processes on this machine, one table: steps per second and final held-out PSNR.

Rows, each trained by ``train.py`` in its own process(es), one after the other, on the same scene and config:

- ``1 proc, 1 view``: the default command (``train.batch_views=1``), the reference;
- ``1 proc, B views``: ``train.batch_views=B``, the step's views in one batched render;
- ``1 proc, B views, one at a time``: the same with ``train.batch_render=false`` (what N ranks equal bit for bit);
- ``N procs, B views``: ``torchrun --standalone --nproc_per_node N`` with ``train.batch_views=B`` (B / N views a
  rank a step), gloo on the CPU, NCCL on CUDA.

The CPU threads are shared out fairly: a single process gets ``--threads`` (default: every core), each of N ranks
``--threads / N`` (``OMP_NUM_THREADS``). Steps per second are ``train.steps / train_seconds`` (the training
clock of rank 0, which includes waiting on the all-reduce; start-up, teacher maps and evaluation excluded), views
per second that times ``batch_views``; ``load`` is the machine's 1-minute load average when the row ended (other
work on the machine skews a row). Printed and written to ``OUT/bench_distributed.md`` and ``.json``; each
run folder stays in ``OUT/NAME``.

    python benchmarks/bench_distributed.py [--steps 850] [--procs 2] [--views 2] [--out runs/bench_distributed]
                                           [--data SCENE] [-- key=value ...]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def launch(name: str, out: Path, procs: int, threads: int, argv: list[str]) -> dict:
    """Train one row (``procs`` > 1: under torchrun) and read its metrics."""
    run_dir = out / name.replace(" ", "_").replace(",", "")
    head = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(procs)] \
        if procs > 1 else [sys.executable]
    cmd = head + [str(ROOT / "train.py"), "--out", str(run_dir), "--force", "--quiet", *argv]
    env = dict(os.environ, OMP_NUM_THREADS=str(max(threads // procs, 1)))
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    print(f"[{name}] {' '.join(cmd[1:])}  (OMP_NUM_THREADS={env['OMP_NUM_THREADS']})", flush=True)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:  # the ranks' own one-line errors, else the end of what torchrun printed
        lines = proc.stderr.strip().splitlines()
        said = [ln for ln in lines if ln.startswith(("error:", "interrupted"))] or lines[-15:]
        raise SystemExit(f"error: {name}: exit {proc.returncode}:\n" + "\n".join(said))
    m = json.loads((run_dir / "metrics.json").read_text())
    cfg_steps = json.loads((run_dir / "history.json").read_text())["history"][-1]["step"]
    return {"name": name, "procs": procs, "threads_per_proc": int(env["OMP_NUM_THREADS"]), "steps": cfg_steps,
            "train_seconds": m["train_seconds"], "steps_per_s": cfg_steps / m["train_seconds"],
            "psnr": m.get("psnr"), "miou": m.get("miou"), "num_gaussians": m["num_gaussians"], "wall_seconds": wall,
            "load": os.getloadavg()[0]}


def table(rows: list[dict], views: int) -> str:
    lines = ["| run | processes x threads | views / step | steps | train s | steps / s | views / s | PSNR | mIoU | "
             "Gaussians | wall s | load |", "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        v = 1 if r["name"].startswith("1 proc, 1 view") else views
        miou = "" if r["miou"] is None else f"{r['miou']:.4f}"
        psnr = "" if r["psnr"] is None else f"{r['psnr']:.3f}"
        lines.append(f"| {r['name']} | {r['procs']} x {r['threads_per_proc']} | {v} | {r['steps']} | "
                     f"{r['train_seconds']:.1f} | {r['steps_per_s']:.2f} | {r['steps_per_s'] * v:.2f} | {psnr} | "
                     f"{miou} | {r['num_gaussians']} | {r['wall_seconds']:.0f} | {r['load']:.1f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, help="train.steps of every row (default: the config's)")
    ap.add_argument("--procs", type=int, default=2, help="torchrun processes (default 2)")
    ap.add_argument("--views", type=int, default=0, help="views a step of the batched rows (default: --procs)")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="CPU threads shared by each row")
    ap.add_argument("--data", help="scene folder (default: the embedded room)")
    ap.add_argument("--out", default="runs/bench_distributed")
    ap.add_argument("overrides", nargs="*", help="key=value for every row")
    args = ap.parse_args(argv)
    views = args.views or args.procs
    if views % args.procs:
        raise SystemExit(f"error: --views {views}: must be a multiple of --procs {args.procs}")
    out = Path(args.out)
    common = ([f"--steps={args.steps}"] if args.steps else []) + ([f"--data={args.data}"] if args.data else [])
    common += list(args.overrides)
    rows = [launch("1 proc, 1 view", out, 1, args.threads, common),
            launch(f"1 proc, {views} views", out, 1, args.threads, common + [f"train.batch_views={views}"]),
            launch(f"1 proc, {views} views, one at a time", out, 1, args.threads,
                   common + [f"train.batch_views={views}", "train.batch_render=false"]),
            launch(f"{args.procs} procs, {views} views", out, args.procs, args.threads,
                   common + [f"train.batch_views={views}"])]
    machine = f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}"
    text = f"{table(rows, views)}\n\nmachine: {machine}; command: python benchmarks/bench_distributed.py " \
           f"{' '.join(argv if argv is not None else sys.argv[1:])}"
    print(text)
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench_distributed.md").write_text(text + "\n")
    (out / "bench_distributed.json").write_text(json.dumps({"rows": rows, "machine": machine}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

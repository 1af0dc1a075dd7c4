"""Peak memory of ``train.py`` with each CPU backend, sampled from outside the process.

    python benchmarks/bench_memory.py [--backends cpu torch] [--out runs/bench_memory] [-- TRAIN ARGS ...]

Runs ``python train.py TRAIN ARGS --backend B --out OUT/B --force`` once per backend, one after another, and samples
``/proc/PID/status`` every 5 ms: private memory (RssAnon), mapped files (RssFile) and the kernel's peak RSS
(VmHWM, what ``/usr/bin/time`` reports as maximum resident set size). Prints one table row per backend and writes
``OUT/memory.png`` (private memory against time, matplotlib) and ``OUT/memory.json``. Linux only.

Example (the toys scene, train.steps=300 for a quicker torch run):
``python benchmarks/bench_memory.py -- --data ~/.cache/dff_gs/scenes/toys train.steps=300``
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from dff_gs.core.utils import atomic_write_path  # noqa: E402
FIELDS = ("RssAnon", "RssFile", "VmHWM")


def sample(cmd: list[str], period: float = 0.005) -> tuple[list[tuple[float, dict]], int]:
    """Run ``cmd`` and sample its memory fields (GB) until it exits: ([(seconds, {field: GB})], exit code)."""
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    t0, series = time.time(), []
    while proc.poll() is None:
        try:
            with open(f"/proc/{proc.pid}/status") as f:
                vals = {ln.split(":")[0]: int(ln.split()[1]) / 1e6 for ln in f if ln.startswith(FIELDS)}
        except (OSError, ValueError, IndexError):
            break
        series.append((time.time() - t0, vals))
        time.sleep(period)
    err = proc.communicate()[1]
    if proc.returncode:
        print(err[-2000:], file=sys.stderr)
    return series, proc.returncode


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    train_args = argv[argv.index("--") + 1:] if "--" in argv else []
    argv = argv[:argv.index("--")] if "--" in argv else argv
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--backends", nargs="+", default=["cpu", "torch"])
    ap.add_argument("--out", default="runs/bench_memory")
    args = ap.parse_args(argv)
    if not Path("/proc/self/status").is_file():
        print("bench_memory: needs Linux's /proc", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = {}
    for backend in args.backends:
        cmd = [sys.executable, "train.py", *train_args, "--backend", backend, "--out", str(out / backend), "--force"]
        series, rc = sample(cmd)
        if rc:
            print(f"bench_memory: {' '.join(cmd)} exited with {rc}", file=sys.stderr)
            return 1
        peak = {k: max((v.get(k, 0.0) for _, v in series), default=0.0) for k in FIELDS}
        rows[backend] = {"peak_gb": peak, "seconds": series[-1][0] if series else 0.0,
                         "series": [(round(t, 3), round(v.get("RssAnon", 0.0), 4)) for t, v in series]}
    print("| backend | peak private (RssAnon) GB | peak mapped files (RssFile) GB | peak RSS (VmHWM) GB | seconds |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for backend, r in rows.items():
        p = r["peak_gb"]
        print(f"| {backend} | {p['RssAnon']:.3f} | {p['RssFile']:.3f} | {p['VmHWM']:.3f} | {r['seconds']:.0f} |")
    with atomic_write_path(out / "memory.json") as tmp:
        tmp.write_text(json.dumps({"train_args": train_args, "backends": rows}))
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("bench_memory: no matplotlib, so no memory.png (pip install matplotlib)", file=sys.stderr)
        return 0
    fig, ax = plt.subplots(figsize=(7, 3.5))
    for backend, r in rows.items():
        ax.plot([t for t, _ in r["series"]], [a for _, a in r["series"]], label=backend)
    ax.set_xlabel("seconds")
    ax.set_ylabel("private memory (RssAnon), GB")
    ax.set_title("train.py " + " ".join(train_args))
    ax.legend()
    fig.tight_layout()
    with atomic_write_path(out / "memory.png") as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    print(f"bench_memory: {out / 'memory.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Does a change retrain bit for bit? Every scene of the suite, the NeRF and the lift trained with the default
command from two checkouts (an older commit, in a git worktree, and this one), then one table of held-out PSNR,
mIoU and model size to the last digit.

    python benchmarks/retrain_same.py --before REV [--out runs/retrain_same]

Per checkout, one after the other: ``benchmarks/bench_scenes.py`` (every scene it knows), ``train.py --backbone
nerf`` and ``train.py --init-ply <embedded run>/point_cloud.ply --lift --lift-steps 50``, with ``PYTHONPATH`` set
to that checkout (its compiled kernels copied from this one).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCENES = ("embedded", "mic", "thermos_pinhole", "thermos_opencv", "toys", "garden")
KEYS = ("psnr", "ssim", "miou", "accuracy", "depth_delta1", "depth_absrel")


def train_all(repo: Path, out: Path) -> None:
    env = dict(os.environ, PYTHONPATH=str(repo))
    runs = [["benchmarks/bench_scenes.py", "--out", str(out / "scenes")],
            ["train.py", "--backbone", "nerf", "--out", str(out / "nerf"), "--quiet"],
            ["train.py", "--init-ply", str(out / "scenes" / "embedded" / "point_cloud.ply"), "--lift",
             "--lift-steps", "50", "--out", str(out / "lift"), "--quiet"]]
    for args in runs:
        subprocess.run([sys.executable, *args], cwd=repo, env=env, check=True)


def metrics(out: Path) -> dict:
    found = {name: out / "scenes" / name / "metrics.json" for name in SCENES}
    found.update({"embedded, NeRF": out / "nerf" / "metrics.json", "embedded, lift": out / "lift" / "metrics.json"})
    return {k: json.loads(p.read_text()) for k, p in found.items() if p.is_file()}


def table(before: dict, after: dict) -> str:
    lines = ["| run | PSNR before | PSNR after | mIoU before | mIoU after | size before | size after | same |",
             "| --- | --- | --- | --- | --- | ---: | ---: | --- |"]
    for name in before.keys() & after.keys():
        b, a = before[name], after[name]
        size = "num_gaussians" if "num_gaussians" in b else "num_parameters"
        same = all(b.get(k) == a.get(k) for k in (*KEYS, size))
        lines.append(f"| {name} | {b['psnr']!r} | {a['psnr']!r} | {b.get('miou', '-')!r} | {a.get('miou', '-')!r} | "
                     f"{b[size]:,} | {a[size]:,} | {'yes' if same else 'NO'} |")
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--before", required=True, help="the commit to compare against")
    p.add_argument("--out", default="runs/retrain_same")
    args = p.parse_args()
    out = Path(args.out).resolve()
    old = out / "before_checkout"
    if not old.exists():
        subprocess.run(["git", "worktree", "add", "-f", str(old), args.before], cwd=ROOT, check=True)
        for so in (ROOT / "cuda_ext").glob("*.so"):
            shutil.copy(so, old / "cuda_ext" / so.name)
        if not (old.parent / "shared").exists():  # the suite's scenes, where bench_scenes.py looks for them
            (old.parent / "shared").symlink_to(ROOT.parent / "shared")
    for repo, where in ((old, out / "before"), (ROOT, out / "after")):
        train_all(repo, where)
    text = table(metrics(out / "before"), metrics(out / "after"))
    print(text)
    (out / "retrain_same.md").write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

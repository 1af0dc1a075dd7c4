"""Antialiasing as a choice: a scene trained with and without Mip-Splatting's 2D filter, viewed at the training
distance and from farther away.

Each scene is trained twice with the default command, ``python train.py [--data SCENE]`` and the same with
``model.antialiased=true``, each in its own process. The held-out views are then rendered at their own size and
at 1/2, 1/4 and 1/8 of it (the same cameras with their intrinsics scaled: what a view from 2-8x farther, or a
small window, shows) against the held-out images area-averaged to that size, and PSNR is pooled over the views.
The gap the filter closes is the classic renderer's aliasing: Gaussians smaller than a pixel at the smaller size
drawn as pixel-sized blobs (too bright, too thick). Table printed and in ``OUT/bench_antialias.md`` / ``.json``;
``OUT/NAME_1-8.png``: the truth | classic | antialiased at 1/8 size, enlarged, for one held-out view.

    python benchmarks/bench_antialias.py [--out runs/bench_antialias] [--scenes embedded,mic]

Scenes: ``embedded`` (the default room) and any scene folder by path (``../shared/data/mic``).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without installing

from dff_gs.core.utils import as_rgb  # noqa: E402
from dff_gs.eval.metrics import psnr  # noqa: E402
from dff_gs.io.images import save_png, side_by_side  # noqa: E402
from dff_gs.query import QueryContext  # noqa: E402
from dff_gs.render import render  # noqa: E402

FACTORS = (1, 2, 4, 8)
MODES = {"classic": [], "antialiased": ["model.antialiased=true"]}


def train(scene: str, run: Path, extra: list[str]) -> None:
    if (run / "metrics.json").is_file():
        print(f"{run}: finished run found, not trained again")
        return
    cmd = [sys.executable, str(ROOT / "train.py"), "--out", str(run), "--quiet", "--force", *extra]
    cmd += [] if scene == "embedded" else ["--data", scene]
    subprocess.run(cmd, cwd=ROOT, check=True)


@torch.no_grad()
def zoomed_out(ctx: QueryContext, test, factor: int) -> tuple[float, torch.Tensor, torch.Tensor]:
    """Pooled held-out PSNR of ``ctx``'s model on its ``test`` views rendered at ``1 / factor`` of their size, and
    view 0's render and truth there."""
    w, h = max(1, test.width // factor), max(1, test.height // factor)
    cams = test.cameras.resized(w, h).to(ctx.model.device)
    truth = F.interpolate(as_rgb(test.images).permute(0, 3, 1, 2), size=(h, w), mode="area").permute(0, 2, 3, 1)
    bg = torch.tensor(test.background, dtype=torch.float32)
    rgb = torch.cat([render(ctx.model, cams[[i]], backgrounds=bg, with_features=False).rgb.clamp(0, 1)
                     for i in range(len(cams))])
    return psnr(rgb, truth), rgb[0], truth[0]


def enlarge(img: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    return F.interpolate(img.permute(2, 0, 1)[None], size=size, mode="nearest")[0].permute(1, 2, 0)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="runs/bench_antialias")
    p.add_argument("--scenes", default="embedded")
    args = p.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for scene in [s for s in args.scenes.split(",") if s]:
        name = "embedded" if scene == "embedded" else Path(scene).name
        shots = {}
        for mode, extra in MODES.items():
            run = out / f"{name}_{mode}"
            train(scene, run, extra)
            metrics = json.loads((run / "metrics.json").read_text())
            row = {"scene": name, "mode": mode, "gaussians": metrics["num_gaussians"],
                   "train_s": metrics["train_seconds"]}
            ctx = QueryContext.open(run)
            test = ctx.scene().split("test")
            for f in FACTORS:
                row[f"psnr_1/{f}"], rgb, truth = zoomed_out(ctx, test, f)
                if f == FACTORS[-1]:
                    shots[mode], shots["truth"] = rgb, truth
            rows.append(row)
            print(row, flush=True)
        size = (shots["truth"].shape[0] * FACTORS[-1], shots["truth"].shape[1] * FACTORS[-1])
        save_png(out / f"{name}_1-{FACTORS[-1]}.png",
                 side_by_side(*(enlarge(shots[k], size) for k in ("truth", "classic", "antialiased"))))
    head = ["scene", "mode", "Gaussians", "train s"] + [f"PSNR at 1/{f}" if f > 1 else "PSNR at size"
                                                          for f in FACTORS]
    lines = ["| " + " | ".join(head) + " |", "| " + " | ".join(["---"] * 2 + ["---:"] * (len(head) - 2)) + " |"]
    for r in rows:
        lines.append(f"| {r['scene']} | {r['mode']} | {r['gaussians']} | {r['train_s']:.0f} | "
                     + " | ".join(f"{r[f'psnr_1/{f}']:.2f}" for f in FACTORS) + " |")
    text = "\n".join(lines)
    print("\n" + text)
    (out / "bench_antialias.md").write_text(text + "\n")
    (out / "bench_antialias.json").write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

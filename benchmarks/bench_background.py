"""What a background colour could still give a trained run (issue 31, part 1): the most any constant colour
(learned in training or estimated from the images) could add to its held-out PSNR.

A run renders its held-out views over ``data.background`` (its ``config.yaml``). Rendered over black, a view is
``rgb0 + (1 - alpha) * c`` over a colour ``c``; the ``c`` that minimises the squared error over every held-out
pixel has a closed form (per channel, ``sum((1 - alpha) * (truth - rgb0)) / sum((1 - alpha)^2)``, clamped to
[0, 1]), so the column "best colour" is an upper bound at evaluation for any constant background a run could
learn or estimate (a background learned in training also changes the Gaussians; this bounds what the colour
itself shows). "borders" is the colour such an estimate takes: the median of the training views' border
pixels. "clear" is the mean ``1 - alpha`` of the held-out renders (how much background shows at all) and the share
of pixels more than half clear.

    python benchmarks/bench_background.py RUN [RUN ...] [--out runs/bench_background]

Prints a table; writes ``OUT/<run>_clear.png`` (held-out view 0: truth | render | ``1 - alpha`` in grey).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dff_gs.core.utils import as_rgb  # noqa: E402
from dff_gs.eval.metrics import psnr  # noqa: E402
from dff_gs.io.images import save_png, side_by_side  # noqa: E402
from dff_gs.query import QueryContext  # noqa: E402
from dff_gs.render import render  # noqa: E402


def border_colour(images: torch.Tensor) -> torch.Tensor:
    """The median colour of the outermost pixel rows and columns of ``images  # [V, H, W, 3]`` (float or uint8).
    Returns Tensor  # [3] in [0, 1]"""
    rgb = as_rgb(images)
    edges = torch.cat([rgb[:, 0].reshape(-1, 3), rgb[:, -1].reshape(-1, 3), rgb[:, :, 0].reshape(-1, 3),
                       rgb[:, :, -1].reshape(-1, 3)])
    return edges.float().median(0).values


def best_colour(rgb0: torch.Tensor, clear: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """The constant colour ``c`` minimising ``||rgb0 + clear * c - truth||^2`` over every pixel, per channel,
    clamped to [0, 1].

    rgb0, truth: Tensor  # [V, H, W, 3] (rendered over black; the held-out images);  clear: Tensor  # [V, H, W, 1]
    Returns Tensor  # [3]"""
    num = (clear * (truth - rgb0)).sum((0, 1, 2))
    return (num / (clear ** 2).sum().clamp_min(1e-12)).clamp(0, 1)


@torch.no_grad()
def measure(run: Path) -> tuple[dict, list]:
    """The row of ``run``'s table and its held-out view 0 (truth, render over its background, clear map)."""
    ctx = QueryContext.open(run)
    scene = ctx.scene()
    test, train = scene.split("test"), scene.split("train")
    cams = test.cameras.to(ctx.model.device)
    outs = [render(ctx.model, cams[[i]], backgrounds=torch.zeros(3), with_features=False, render_depth=False)
            for i in range(len(cams))]
    rgb0 = torch.cat([o.rgb for o in outs]).cpu()
    clear = 1.0 - torch.cat([o.alpha for o in outs]).cpu().reshape(rgb0.shape[:-1] + (1,))
    truth = as_rgb(test.images).float()
    over = {"run's": torch.tensor(scene.background, dtype=torch.float32), "borders": border_colour(train.images),
            "best colour": best_colour(rgb0, clear, truth)}
    row = {"run": str(run), "clear": float(clear.mean()), "half_clear": float((clear > 0.5).float().mean())}
    for name, colour in over.items():
        row[name] = (colour.tolist(), psnr((rgb0 + clear * colour).clamp(0, 1), truth))
    shot = [truth[0], (rgb0[0] + clear[0] * over["run's"]).clamp(0, 1), clear[0].expand(-1, -1, 3)]
    return row, shot


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="+", type=Path)
    p.add_argument("--out", type=Path, default=Path("runs/bench_background"))
    args = p.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    fmt = lambda c: "[" + ", ".join(f"{x:.2f}" for x in c) + "]"  # noqa: E731
    print("| run | clear (mean 1 - alpha) | pixels > half clear | PSNR over its background | borders' median | "
          "best constant colour (upper bound) | best - its own |")
    print("| --- | ---: | ---: | --- | --- | --- | ---: |")
    for run in args.runs:
        row, shot = measure(run)
        own, border, best = row["run's"], row["borders"], row["best colour"]
        print(f"| {run.name} | {row['clear']:.4f} | {row['half_clear']:.4f} | {fmt(own[0])} {own[1]:.3f} | "
              f"{fmt(border[0])} {border[1]:.3f} | {fmt(best[0])} {best[1]:.3f} | {best[1] - own[1]:+.3f} |",
              flush=True)
        save_png(args.out / f"{run.name}_clear.png", side_by_side(*shot))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Re-evaluate saved run folders with the current metrics (issue 18: SSIM as torchmetrics computes it).

For each run folder (Gaussians: ``point_cloud.ply``; NeRF: ``nerf_model.pt``) the held-out views are loaded as the
run loaded them (its ``config.yaml``: scene, downscale, split, background) and rendered as ``train.py``'s final
evaluation renders them; PSNR and SSIM are printed beside the values in its ``metrics.json``. The PSNR column
checks that the re-evaluation sees what the run's own evaluation saw. Nothing is written.

    python benchmarks/reeval_metrics.py RUN [RUN ...] [--root DIR]   # --root: where relative scene paths start
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import torch

from dff_gs.core.config import apply_dict, load_yaml
from dff_gs.engine.common import load_run_scene
from dff_gs.train.config import Config
from dff_gs.engine.evaluate import evaluate


def reevaluate(run: Path, root: Path) -> dict:
    """(saved psnr, ssim) and (new psnr, ssim) of one run folder."""
    cfg = apply_dict(Config(), load_yaml(run / "config.yaml"))
    if cfg.data.path and not Path(cfg.data.path).is_absolute():
        cfg.data.path = str((root / cfg.data.path).resolve())
    device = torch.device("cpu")
    _, scene, _, test = load_run_scene(cfg, device, progress=False)
    test = test if test is not None else scene
    if (run / "nerf_model.pt").is_file():
        from dff_gs.nerf import load_nerf

        model, _ = load_nerf(run, map_location=device)
        metrics = evaluate(model.eval(), test, device=device, progress=False)
    else:
        from dff_gs.io.ply import load_ply

        model, _ = load_ply(run / "point_cloud.ply")
        metrics = evaluate(model, test, device=device, backend=cfg.train.backend, progress=False,
                           background=torch.tensor(scene.background, dtype=torch.float32))
    saved = json.loads((run / "metrics.json").read_text())
    return {"run": str(run), "saved_psnr": saved["psnr"], "saved_ssim": saved["ssim"], "psnr": metrics["psnr"],
            "ssim": metrics["ssim"]}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="+")
    p.add_argument("--root", default=os.getcwd(), help="folder that relative scene paths in config.yaml start from")
    args = p.parse_args(argv)
    print("| run | PSNR saved | PSNR now | SSIM saved (reflection-padded) | SSIM now (torchmetrics) |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for run in args.runs:
        r = reevaluate(Path(run), Path(args.root))
        print(f"| {r['run']} | {r['saved_psnr']:.4f} | {r['psnr']:.4f} | {r['saved_ssim']:.4f} | {r['ssim']:.4f} |",
              flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

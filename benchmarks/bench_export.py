"""Does an 8-bit viewer show a recoloured scene as our renderer does? (issue 18: the recoloured sofa)

Selects ``--text`` in a run (the edit API: Eq. 5 + the 3D cleanup, as ``edit.py --text``), recolours it to
``--color`` (keeping the shading, as ``edit.py --op recolor --color``), and exports the unedited and the edited
model as plain PLYs through gsplat's exporter (``--export ply``). Each export is read back and drawn as an 8-bit
viewer draws a 3DGS PLY (:func:`dff_gs.io.export.render_as_viewer`: DC colour and opacity in bytes, each
Gaussian's colour clipped to [0, 1] before compositing) and compared with our render of the same model on the
scene's test views (PSNR, mean over views). Also: the colour map without the clamp to displayable colours (the
recolour before this change). One table.

    python benchmarks/bench_export.py runs/<run> --text sofa --color 0.95,0.9,0.8
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import torch

from dff_gs.edit import SelectionConfig, ops, select_gaussians
from dff_gs.edit.color import LUMA, apply_color_matrix, color_matrix, dc_colors, parse_color
from dff_gs.eval.metrics import psnr
from dff_gs.core.gaussians import GaussianModel
from dff_gs.io.export import export_model, render_as_viewer
from dff_gs.io.ply import load_ply
from dff_gs.query import QueryContext, QuerySpec
from dff_gs.render import render


def unclamped_recolor(model: GaussianModel, mask: torch.Tensor, rgb: list[float]) -> GaussianModel:
    """The recolour as it was before the clamp: the colour map alone."""
    p = {k: v.detach().clone() for k, v in model.params.items()}
    ref = float((dc_colors(p["sh0"][mask]).clamp(0, 1) @ LUMA.to(p["sh0"])).mean())
    p["sh0"][mask], p["shN"][mask] = apply_color_matrix(p["sh0"][mask], p["shN"][mask],
                                                        color_matrix(rgb, reference_luma=ref))
    return GaussianModel.from_parts(p, model.sh_degree, model.decoder)


@torch.no_grad()
def compare(model: GaussianModel, cams, background: torch.Tensor, folder: Path, name: str, backend: str) -> dict:
    """Our render vs the exported plain PLY drawn as an 8-bit viewer, per test view."""
    exported, _ = load_ply(export_model(model, folder / f"{name}.ply", ["ply"])[0])
    psnrs, worst = [], 0.0
    for i in range(len(cams)):
        ours = render(model, cams[[i]], backgrounds=background, with_features=False, backend=backend).rgb.clamp(0, 1)
        viewer = render_as_viewer(exported, cams[[i]], background, backend=backend)
        psnrs.append(psnr(viewer, ours))
        worst = max(worst, float((viewer - ours).abs().max()))
    rgb = dc_colors(model.params["sh0"].detach())
    return {"model": name, "dc_max": float(rgb.max()), "dc_out": int(((rgb < 0) | (rgb > 1)).any(-1).sum()),
            "psnr": sum(psnrs) / len(psnrs), "min_psnr": min(psnrs), "max_abs": worst}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run")
    p.add_argument("--text", default="sofa")
    p.add_argument("--color", default="0.95,0.9,0.8")
    p.add_argument("--backend", default="auto")
    args = p.parse_args(argv)
    ctx = QueryContext.open(args.run, backend=args.backend)
    scene = ctx.scene()
    test = scene.split("test") if scene.test_ids else scene
    cams = test.cameras.to(ctx.model.device)
    bg = torch.tensor(scene.background, dtype=torch.float32)
    mask = select_gaussians(ctx, [QuerySpec(kind="text", value=args.text)], SelectionConfig()).mask
    rgb = parse_color(args.color)
    edited = ops.recolor(ctx.model, mask, color=rgb)
    models = {"unedited": ctx.model, "recoloured": edited.model,
              "recoloured, no clamp (before)": unclamped_recolor(ctx.model, mask, rgb)}
    with tempfile.TemporaryDirectory() as tmp:
        rows = [compare(m, cams, bg, Path(tmp), f"m{i}", args.backend) for i, m in enumerate(models.values())]
    print(f"{args.run}: --text {args.text} selects {int(mask.sum())} Gaussians; recolour --color {args.color} "
          f"clamps {edited.info['clamped_to_displayable']}; {len(cams)} test views")
    print("| model | DC max | Gaussians with DC outside [0, 1] | PSNR viewer vs ours (mean) | worst view | max abs |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for name, r in zip(models, rows):
        print(f"| {name} | {r['dc_max']:.2f} | {r['dc_out']} | {r['psnr']:.2f} | {r['min_psnr']:.2f} | "
              f"{r['max_abs']:.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Viewer exports beside our PLY, written by gsplat's exporter (``gsplat.export_splats``; CPU is enough).

Our ``.ply`` (standard 3DGS layout + ``semantic_*`` features, with its sidecar) stays the primary output; these
are for viewers and carry colour and geometry only:

| format | file | what |
| --- | --- | --- |
| ``ply`` | ``<stem>.plain.ply`` | the standard 3DGS PLY without the feature properties |
| ``splat`` | ``<stem>.splat`` | antimatter15's format: 32 bytes a Gaussian, DC colour and opacity in 8 bits |
| ``ply_compressed`` | ``<stem>.compressed.ply`` | SuperSplat / PlayCanvas compressed PLY (chunks of 256) |

Our world is Z-up (the embedded room, Blender scenes; a COLMAP capture keeps COLMAP's axes). ``up="y"`` rotates
the exports by -90 degrees about X, ``(x, y, z) -> (x, z, -y)`` (means, quaternions and SH bands), so that Y-up
viewers such as SuperSplat show the scene upright; our PLY is never rotated.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import Tensor

from dff_gs.core.errors import ConfigError
from dff_gs.core.gaussians import GaussianModel, rgb_to_sh0, sh0_to_rgb
from dff_gs.core.geometry import Similarity
from dff_gs.core.sh import eval_sh
from dff_gs.core.utils import atomic_write_path
from dff_gs.io.run_dir import EXPORT_SUFFIXES as EXPORT_FORMATS
from dff_gs.render import rasterize

UP_AXES = ("z", "y")
Z_TO_Y_UP = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]])
"""(x, y, z) -> (x, z, -y): -90 degrees about X; world +Z becomes +Y."""
SPLAT_DTYPE = np.dtype([("means", "<f4", 3), ("scales", "<f4", 3), ("rgba", "u1", 4), ("rot", "u1", 4)])
"""One Gaussian of a ``.splat`` file (32 bytes): position, linear scales, colour + opacity, quaternion w x y z."""


def parse_exports(value: str | Sequence[str], key: str = "--export") -> list[str]:
    """The formats named in ``value`` (``"ply,splat"`` or a list), checked, in order, without repeats."""
    names = [v.strip() for v in (value.split(",") if isinstance(value, str) else value) if v and v.strip()]
    bad = [n for n in names if n not in EXPORT_FORMATS]
    if bad:
        raise ConfigError(f"{key}={bad[0]!r}: not an export format; expected a comma list of "
                          f"{' | '.join(EXPORT_FORMATS)}")
    return list(dict.fromkeys(names))


def check_up(up: str, key: str = "--up") -> str:
    if up not in UP_AXES:
        raise ConfigError(f"{key}={up!r}: must be one of {' | '.join(UP_AXES)}")
    return up


def export_paths(ply: Path, formats: Sequence[str]) -> dict[str, Path]:
    """Where each export of the PLY ``ply`` goes (``point_cloud.ply`` -> ``point_cloud.splat``, ...)."""
    ply = Path(ply)
    stem = ply.name[: -len(ply.suffix)] if ply.suffix else ply.name
    return {f: ply.with_name(stem + EXPORT_FORMATS[f]) for f in formats}


def viewer_params(model: GaussianModel, up: str = "z") -> dict[str, Tensor]:
    """The model's parameters on the CPU, rotated to Y-up when ``up == "y"``.

    Returns means [N, 3], scales [N, 3] (log), quats [N, 4], opacities [N] (logit), sh0 [N, 1, 3], shN [N, K-1, 3]
    """
    params = {k: model.params[k].detach().float().cpu() for k in ("means", "scales", "quats", "opacities", "sh0",
                                                                   "shN")}
    if check_up(up) == "y":
        sim = Similarity(Z_TO_Y_UP.clone(), 1.0, torch.zeros(3), torch.zeros(3))
        params = sim.apply(params, torch.ones(len(params["means"]), dtype=torch.bool), model.sh_degree)
    return params


def export_model(model: GaussianModel, ply: Path, formats: Sequence[str], up: str = "z") -> list[Path]:
    """Write each of ``formats`` for ``model`` beside ``ply`` (:func:`export_paths`), each atomically (a temporary
    name renamed on success, the usual permissions). Returns the files written."""
    from gsplat import export_splats

    params = viewer_params(model, up)
    written = []
    for fmt, path in export_paths(ply, formats).items():
        try:
            data = export_splats(params["means"], params["scales"], params["quats"], params["opacities"],
                                 params["sh0"], params["shN"], format=fmt)
        except RuntimeError as err:  # gsplat 1.5.3 runs every format on the CPU; say so if one ever needs CUDA
            if "cuda" in str(err).lower():
                raise ConfigError(f"--export {fmt}: gsplat's exporter needs CUDA for this format here "
                                  f"({str(err).splitlines()[0]})") from None
            raise
        with atomic_write_path(path) as tmp:
            tmp.write_bytes(data)
        written.append(path)
    return written


def read_splat(path: Path) -> dict[str, Tensor]:
    """A ``.splat`` file decoded as a viewer decodes it: means [N, 3], linear scales [N, 3], rgba [N, 4] in
    [0, 1] (8-bit), unit quats [N, 4] (w x y z, 8-bit)."""
    raw = Path(path).read_bytes()
    if len(raw) % SPLAT_DTYPE.itemsize:
        raise ConfigError(f"{path}: {len(raw)} bytes is not a whole number of 32-byte Gaussians")
    rec = np.frombuffer(raw, dtype=SPLAT_DTYPE)
    quats = (torch.from_numpy(rec["rot"].astype(np.float32)) - 128.0) / 128.0
    return {"means": torch.from_numpy(rec["means"].copy()), "scales": torch.from_numpy(rec["scales"].copy()),
            "rgba": torch.from_numpy(rec["rgba"].astype(np.float32)) / 255.0,
            "quats": torch.nn.functional.normalize(quats, dim=-1)}


def render_as_viewer(model: GaussianModel, cameras, background: Tensor, backend: str = "auto") -> Tensor:
    """``model`` drawn as an 8-bit viewer draws a 3DGS PLY (GaussianSplats3D, SuperSplat): DC colour and opacity
    stored in bytes (clipped to [0, 1], rounded to 1/255), SH evaluated per view and each Gaussian's colour
    clipped to [0, 1] before compositing (our renderer clips only the pixel). For checks of what viewers show.

    background: Tensor  # [3]; returns Tensor  # [C, H, W, 3]
    """
    p = {k: v.detach() for k, v in model.params.items()}
    dc8 = torch.round(sh0_to_rgb(p["sh0"]).clamp(0, 1) * 255) / 255
    opacity8 = torch.round(torch.sigmoid(p["opacities"]) * 255) / 255
    sh = torch.cat([rgb_to_sh0(dc8), p["shN"]], 1)
    dirs = p["means"][None] - cameras.centers[:, None]  # [C, N, 3]
    colours = (eval_sh(model.sh_degree, sh[None].expand(len(cameras), *sh.shape), dirs) + 0.5).clamp(0, 1)
    img = rasterize(p["means"], model.get_quats().detach(), model.get_scales().detach(), opacity8, colours,
                    cameras.viewmats, cameras.Ks, cameras.width, cameras.height,
                    backgrounds=background.to(colours)[None].expand(len(cameras), 3), render_depth=False,
                    backend=backend, antialiased=model.antialiased)[0]
    return img.clamp(0, 1)

"""3DGS PLY files with feature properties.

Vertex layout (binary little endian, pre-activation values, the order 3DGS writes and viewers read):
``x y z nx ny nz f_dc_0..2 f_rest_0..(3(K-1)-1) opacity scale_0..2 rot_0..3`` then our
``semantic_0..semantic_{D-1}`` (Feature 3DGS's name for per-Gaussian features). ``f_rest`` is
channel-major: all K-1 coefficients of red, then green, then blue. The decoder and teacher metadata go
to a JSON sidecar beside the PLY (``point_cloud.ply`` -> ``point_cloud.dff.json``).
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from dff_gs.errors import DataError
from dff_gs.gaussians import GaussianModel
from dff_gs.utils import atomic_write_path

SIDECAR_SUFFIX = ".dff.json"
BASE_PROPS = ["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2"]
TAIL_PROPS = ["opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"]


def sidecar_path(path: str | Path) -> Path:
    p = Path(path)
    return p.with_name(p.stem + SIDECAR_SUFFIX)


def property_names(sh_degree: int, feature_dim: int) -> list[str]:
    n_rest = 3 * ((sh_degree + 1) ** 2 - 1)
    return (BASE_PROPS + [f"f_rest_{i}" for i in range(n_rest)] + TAIL_PROPS
            + [f"semantic_{i}" for i in range(feature_dim)])


def model_to_array(model: GaussianModel) -> np.ndarray:
    """One structured array (one row per Gaussian) in the 3DGS vertex layout + features."""
    p = {k: v.detach().float().cpu() for k, v in model.params.items()}
    N = model.num_gaussians
    cols = [p["means"], torch.zeros(N, 3), p["sh0"].reshape(N, 3),
            p["shN"].transpose(1, 2).reshape(N, -1),  # channel-major, as 3DGS
            p["opacities"][:, None], p["scales"], p["quats"], p["features"]]
    data = torch.cat(cols, 1).numpy().astype("<f4")
    names = property_names(model.sh_degree, model.feature_dim)
    arr = np.empty(N, dtype=[(n, "<f4") for n in names])
    for i, n in enumerate(names):
        arr[n] = data[:, i]
    return arr


def save_ply(model: GaussianModel, path: str | Path, metadata: Optional[dict] = None) -> Path:
    """Write ``model`` as a 3DGS PLY (+ sidecar JSON), atomically. Returns the PLY path."""
    from plyfile import PlyData, PlyElement

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model.check_finite(f"{path} (model to save)")
    arr = model_to_array(model)
    with atomic_write_path(path) as tmp:
        PlyData([PlyElement.describe(arr, "vertex")], text=False, byte_order="<").write(str(tmp))
    dec = None
    if model.decoder is not None:
        dec = {"in": model.decoder.in_features, "out": model.decoder.out_features,
               "weight": model.decoder.weight.detach().cpu().tolist(),
               "bias": model.decoder.bias.detach().cpu().tolist()}
    side = {"format": "dff_gs", "version": 1, "sh_degree": model.sh_degree, "feature_dim": model.feature_dim,
            "num_gaussians": model.num_gaussians, "decoder": dec, **(metadata or {})}
    with atomic_write_path(sidecar_path(path)) as tmp:
        tmp.write_text(json.dumps(side, default=str))
    return path


def _read_vertices(path: Path) -> tuple[np.ndarray, list[str]]:
    from plyfile import PlyData

    if not path.is_file():
        raise DataError(f"{path}: PLY file not found")
    try:
        ply = PlyData.read(str(path))
        vert = ply["vertex"]
        data = vert.data
        names = [p.name for p in vert.properties]
    except KeyError:
        raise DataError(f"{path}: the PLY has no 'vertex' element") from None
    except Exception as err:  # noqa: BLE001  plyfile raises many kinds for truncated/corrupt files
        raise DataError(f"{path}: not a readable PLY file ({type(err).__name__}: {err})") from None
    return data, names


def load_ply(path: str | Path) -> tuple[GaussianModel, dict]:
    """Read one of our PLYs or any plain 3DGS PLY. Returns the model and the sidecar metadata ({} if none)."""
    path = Path(path)
    data, names = _read_vertices(path)
    missing = [n for n in ["x", "y", "z", "f_dc_0", "f_dc_1", "f_dc_2"] + TAIL_PROPS if n not in names]
    if missing:
        raise DataError(f"{path}: not a 3D Gaussian Splatting PLY: missing vertex properties {missing}")
    n_rest = len([n for n in names if re.fullmatch(r"f_rest_\d+", n)])
    K = n_rest // 3 + 1
    degree = math.isqrt(K) - 1
    if n_rest % 3 or (degree + 1) ** 2 != K or degree > 3:
        raise DataError(f"{path}: {n_rest} f_rest properties do not match an SH degree 0..3")
    D = len([n for n in names if re.fullmatch(r"semantic_\d+", n)])

    def cols(keys: list[str]) -> torch.Tensor:
        return torch.from_numpy(np.stack([np.asarray(data[k], dtype=np.float32) for k in keys], 1)) if keys \
            else torch.zeros(len(data), 0)

    N = len(data)
    params = {
        "means": cols(["x", "y", "z"]),
        "sh0": cols(["f_dc_0", "f_dc_1", "f_dc_2"]).reshape(N, 1, 3),
        "shN": cols([f"f_rest_{i}" for i in range(n_rest)]).reshape(N, 3, K - 1).transpose(1, 2).contiguous(),
        "opacities": cols(["opacity"])[:, 0],
        "scales": cols(["scale_0", "scale_1", "scale_2"]),
        "quats": cols(["rot_0", "rot_1", "rot_2", "rot_3"]),
        "features": cols([f"semantic_{i}" for i in range(D)]),
    }
    meta: dict = {}
    side = sidecar_path(path)
    if side.is_file():
        try:
            meta = json.loads(side.read_text())
        except json.JSONDecodeError as err:
            raise DataError(f"{side}: malformed sidecar JSON ({err})") from None
    dec = meta.get("decoder")
    if dec and D and dec.get("in") != D:
        raise DataError(f"{side}: decoder expects {dec.get('in')} features but {path} has {D}")
    model = GaussianModel(params, degree, decoder_dim=dec["out"] if dec and D else None)
    if model.decoder is not None:
        with torch.no_grad():
            model.decoder.weight.copy_(torch.tensor(dec["weight"]))
            model.decoder.bias.copy_(torch.tensor(dec["bias"]))
    model.check_finite(str(path))
    return model, meta

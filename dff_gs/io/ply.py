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

from dff_gs.core.errors import DataError, check_version
from dff_gs.core.gaussians import GaussianModel
from dff_gs.core.utils import atomic_write_path
from dff_gs.data.validate import real_array

SIDECAR_SUFFIX = ".dff.json"
SIDECAR_FORMAT = "dff_gs"
SIDECAR_VERSION = 1  # the newest sidecar version this code reads (and the one it writes)
SIDECAR_OWN_KEYS = ("format", "version", "sh_degree", "feature_dim", "num_gaussians", "decoder", "antialiased",
                    "write_id")
SIDECAR_TYPES = {  # the sidecar's schema: each known key's JSON type(s), checked on load (other keys are kept as read)
    "format": str, "version": int, "sh_degree": int, "feature_dim": int, "num_gaussians": int,
    "decoder": (dict, type(None)), "antialiased": bool, "write_id": str, "teacher": (dict, type(None)),
    "scene": (str, type(None)), "scene_options": dict, "backbone": str, "lift": dict, "edits": list,
}
"""The sidecar keys :func:`save_ply` writes from the model itself; the rest is the caller's metadata (teacher, scene,
scene_options, backbone, lift, edits: :func:`dff_gs.io.run_dir.run_metadata`)."""
BASE_PROPS = ["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2"]
TAIL_PROPS = ["opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"]


WRITE_ID_COMMENT = "dff_gs_write_id"
"""The PLY header comment ``dff_gs_write_id <id>`` that ties a PLY to its sidecar (the same ``write_id``)."""


def new_write_id() -> str:
    """A fresh id for the files of one write (a PLY, its sidecar, an edit's summary)."""
    import uuid

    return uuid.uuid4().hex[:16]


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


def save_ply(model: GaussianModel, path: str | Path, metadata: Optional[dict] = None,
             write_id: Optional[str] = None) -> Path:
    """Write ``model`` as a 3DGS PLY (+ sidecar JSON), each atomically, both stamped with ``write_id`` (a fresh one
    by default; :func:`load_ply` refuses a PLY and sidecar of different writes). Returns the PLY path."""
    from plyfile import PlyData, PlyElement

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model.check_finite(f"{path} (model to save)")
    arr = model_to_array(model)
    write_id = write_id or new_write_id()
    with atomic_write_path(path) as tmp:
        PlyData([PlyElement.describe(arr, "vertex")], text=False, byte_order="<",
                comments=[f"{WRITE_ID_COMMENT} {write_id}"]).write(str(tmp))
    dec = None
    if model.decoder is not None:
        dec = {"in": model.decoder.in_features, "out": model.decoder.out_features,
               "weight": model.decoder.weight.detach().cpu().tolist(),
               "bias": model.decoder.bias.detach().cpu().tolist()}
    side = {"format": SIDECAR_FORMAT, "version": SIDECAR_VERSION, "sh_degree": model.sh_degree,
            "feature_dim": model.feature_dim, "num_gaussians": model.num_gaussians, "decoder": dec,
            "antialiased": model.antialiased, **(metadata or {}), "write_id": write_id}
    with atomic_write_path(sidecar_path(path)) as tmp:
        tmp.write_text(json.dumps(side, default=str))
    return path


def _read_vertices(path: Path) -> tuple[np.ndarray, list[str], list[str]]:
    """(vertex data, property names, header comments) of a PLY file."""
    from plyfile import PlyData

    if not path.is_file():
        raise DataError(f"{path}: PLY file not found")
    try:
        ply = PlyData.read(str(path))
        vert = ply["vertex"]
        data = vert.data
        names = [p.name for p in vert.properties]
        comments = [str(c) for c in ply.comments]
    except KeyError:
        raise DataError(f"{path}: the PLY has no 'vertex' element") from None
    except Exception as err:  # noqa: BLE001  plyfile raises many kinds for truncated/corrupt files
        raise DataError(f"{path}: not a readable PLY file ({type(err).__name__}: {err})") from None
    return data, names, comments


def _check_same_write(comments: list[str], meta: dict, side: Path, path: Path) -> None:
    """A sidecar that exists must come from the same write as the PLY (the same ``write_id``)."""
    ply_id = next((c.split()[1] for c in comments if c.startswith(WRITE_ID_COMMENT + " ") and len(c.split()) == 2),
                  None)
    side_id = meta.get("write_id")
    if side.is_file() and (ply_id or side_id) and ply_id != side_id:
        raise DataError(f"{side}: belongs to another write than {path.name} (write_id {side_id!r:.24} vs "
                        f"{ply_id!r:.24}): a write was cut short or one file replaced; write them again, or move the "
                        "sidecar away to load the PLY alone")


def _property_indices(names: list[str], prefix: str, path: Path) -> int:
    """How many ``{prefix}0 .. {prefix}{n-1}`` properties there are; a gap or a repeat in the numbering is an
    error (a column would otherwise be dropped or read from the wrong place)."""
    idx = sorted(int(m.group(1)) for n in names if (m := re.fullmatch(re.escape(prefix) + r"(0|[1-9]\d*)", n)))
    if idx != list(range(len(idx))):
        missing = sorted(set(range(len(idx))) - set(idx))
        raise DataError(f"{path}: the {prefix}* properties are not numbered 0..{len(idx) - 1} "
                        f"(missing {prefix}{missing[0] if missing else '?'}; found indices up to {max(idx)})")
    return len(idx)


def read_sidecar(side: Path) -> dict:
    """The sidecar's JSON object ({} when there is none), each key of :data:`SIDECAR_TYPES` of its type; its
    ``format`` and ``version``, when given, must be ours."""
    if not side.is_file():
        return {}
    try:
        meta = json.loads(side.read_bytes())
    except (ValueError, RecursionError) as err:  # JSONDecodeError, UnicodeDecodeError, nesting too deep
        raise DataError(f"{side}: malformed sidecar JSON ({type(err).__name__}: {err})") from None
    if not isinstance(meta, dict):
        raise DataError(f"{side}: the sidecar must be a JSON object, got a {type(meta).__name__}")
    for key, types in SIDECAR_TYPES.items():
        value = meta.get(key)
        if key in meta and (not isinstance(value, types) or (isinstance(value, bool) and types is not bool)):
            want = " or ".join("null" if t is type(None) else {dict: "an object", list: "a list", str: "a string",
                                                                int: "an integer", bool: "true or false"}[t]
                               for t in (types if isinstance(types, tuple) else (types,)))
            raise DataError(f"{side}: '{key}' must be {want}, got {value!r:.40}")
    fmt, version = meta.get("format", SIDECAR_FORMAT), meta.get("version", SIDECAR_VERSION)
    if fmt != SIDECAR_FORMAT:
        raise DataError(f"{side}: unknown sidecar format {fmt!r:.40} (expected {SIDECAR_FORMAT!r})")
    check_version(side, "sidecar", version, SIDECAR_VERSION, DataError)
    return meta


def _decoder(dec, D: int, side: Path, path: Path) -> tuple[np.ndarray, np.ndarray] | None:
    """The sidecar's ``decoder`` as (weight ``[out, in]``, bias ``[out]``), checked against the PLY's ``D`` features;
    None when there is none."""
    if dec is None:
        return None
    if not isinstance(dec, dict):
        raise DataError(f"{side}: 'decoder' must be an object with 'in', 'out', 'weight' and 'bias' (or null), "
                        f"got a {type(dec).__name__}")
    lacking = [k for k in ("in", "out", "weight", "bias") if k not in dec]
    if lacking:
        raise DataError(f"{side}: 'decoder' lacks {', '.join(repr(k) for k in lacking)}")
    n_in, n_out = dec["in"], dec["out"]
    for k, v in (("in", n_in), ("out", n_out)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise DataError(f"{side}: decoder '{k}' must be a positive integer, got {v!r:.40}")
    if n_in != D:
        raise DataError(f"{side}: decoder expects {n_in} features but {path} has {D}")
    weight = real_array(dec["weight"], str(side), "decoder 'weight'", [(n_out, n_in)])
    bias = real_array(dec["bias"], str(side), "decoder 'bias'", [(n_out,)])
    return weight, bias


def _check_vertices(data: np.ndarray, used: list[str], path: Path) -> None:
    """At least one vertex; every property read a plain number (not a list); no all-zero rotation."""
    if len(data) == 0:
        raise DataError(f"{path}: the PLY has no Gaussians (0 vertices)")
    lists = [n for n in used if data.dtype[n].kind not in "fiub"]
    if lists:
        raise DataError(f"{path}: vertex properties {lists[:4]} are not plain numbers (list or unknown type)")
    with np.errstate(over="ignore", invalid="ignore"):  # NaN / inf are left to check_finite
        biggest = np.max([np.abs(np.asarray(data[f"rot_{i}"], dtype=np.float32)) for i in range(4)], axis=0)
    zero = np.flatnonzero(biggest < 1e-18)  # all zero, or too small for a float32 norm (its squares underflow)
    if len(zero):
        raise DataError(f"{path}: {len(zero)} Gaussians have an all-zero rotation rot_0..3 (the first: {zero[0]})")


def load_ply(path: str | Path) -> tuple[GaussianModel, dict]:
    """Read one of our PLYs or any plain 3DGS PLY. Returns the model and the sidecar metadata ({} if none)."""
    path = Path(path)
    data, names, comments = _read_vertices(path)
    missing = [n for n in ["x", "y", "z", "f_dc_0", "f_dc_1", "f_dc_2"] + TAIL_PROPS if n not in names]
    if missing:
        raise DataError(f"{path}: not a 3D Gaussian Splatting PLY: missing vertex properties {missing}")
    n_rest = _property_indices(names, "f_rest_", path)
    K = n_rest // 3 + 1
    degree = math.isqrt(K) - 1
    if n_rest % 3 or (degree + 1) ** 2 != K or degree > 3:
        raise DataError(f"{path}: {n_rest} f_rest properties do not match an SH degree 0..3")
    D = _property_indices(names, "semantic_", path)
    rest, sem = [f"f_rest_{i}" for i in range(n_rest)], [f"semantic_{i}" for i in range(D)]
    _check_vertices(data, ["x", "y", "z", "f_dc_0", "f_dc_1", "f_dc_2"] + TAIL_PROPS + rest + sem, path)
    side = sidecar_path(path)
    meta = read_sidecar(side)
    _check_same_write(comments, meta, side, path)
    dec = _decoder(meta.get("decoder"), D, side, path)

    def cols(keys: list[str]) -> torch.Tensor:
        return torch.from_numpy(np.stack([np.asarray(data[k], dtype=np.float32) for k in keys], 1)) if keys \
            else torch.zeros(len(data), 0)

    N = len(data)
    params = {
        "means": cols(["x", "y", "z"]),
        "sh0": cols(["f_dc_0", "f_dc_1", "f_dc_2"]).reshape(N, 1, 3),
        "shN": cols(rest).reshape(N, 3, K - 1).transpose(1, 2).contiguous(),
        "opacities": cols(["opacity"])[:, 0],
        "scales": cols(["scale_0", "scale_1", "scale_2"]),
        "quats": cols(["rot_0", "rot_1", "rot_2", "rot_3"]),
        "features": cols(sem),
    }
    model = GaussianModel(params, degree, decoder_dim=len(dec[1]) if dec is not None else None,
                          antialiased=bool(meta.get("antialiased", False)))
    if model.decoder is not None:
        with torch.no_grad():
            model.decoder.weight.copy_(torch.from_numpy(dec[0]))
            model.decoder.bias.copy_(torch.from_numpy(dec[1]))
    model.check_finite(str(path))
    return model, meta

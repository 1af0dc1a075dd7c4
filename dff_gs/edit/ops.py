"""Edit operations: pure functions ``(model, mask, options) -> OpResult(new model, new mask, info)``.

The input model is never modified. ``mask  # [N] bool`` is the current selection; each operation returns
the selection in its output model, so operations chain:

| op | result | selection afterwards |
| --- | --- | --- |
| ``delete`` | the model without the selection | empty |
| ``extract`` | only the selection | everything |
| ``recolor`` | the selection's SH through a linear colour map | unchanged |
| ``translate`` / ``rotate`` / ``scale`` | the selection moved about its centre (AABB centre) | unchanged |
| ``duplicate`` | copies of the selection appended (optionally transformed) | the copies |
| ``compose`` | another model's Gaussians appended (at a transform) | the inserted Gaussians |
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Sequence

import torch
from torch import Tensor

from dff_gs.core.errors import ConfigError
from dff_gs.core.gaussians import PARAM_KEYS, GaussianModel, num_sh_bases, rgb_to_sh0
from dff_gs.core.geometry import Similarity
from dff_gs.edit.color import LUMA, apply_color_matrix, clamp_displayable, color_matrix, dc_colors, parse_color


@dataclass
class OpResult:
    """model: the edited model; mask: Tensor  # [N'] bool, the selection in it; info: what was done"""

    model: GaussianModel
    mask: Tensor
    info: dict = field(default_factory=dict)


# ------------------------------------------------------------------------------------------- helpers
def with_params(model: GaussianModel, params: dict[str, Tensor], sh_degree: Optional[int] = None) -> GaussianModel:
    """A new model with ``params`` and a copy of ``model``'s decoder (on ``model``'s device)."""
    out = GaussianModel.from_parts({k: params[k].detach() for k in PARAM_KEYS},
                                   model.sh_degree if sh_degree is None else sh_degree, model.decoder,
                                   model.antialiased)
    return out.to(model.device)


def take(model: GaussianModel, rows: Tensor) -> GaussianModel:
    """The Gaussians ``rows`` (bool [N] or int64 [M]) as a new model."""
    return with_params(model, {k: v.detach()[rows] for k, v in model.params.items()})


def _check_mask(model: GaussianModel, mask: Tensor, op: str, need: bool = True) -> Tensor:
    if mask is None or mask.dtype != torch.bool or mask.shape != (model.num_gaussians,):
        raise ConfigError(f"{op}: the selection must be a bool mask of {model.num_gaussians} Gaussians")
    if need and not mask.any():
        raise ConfigError(f"{op}: the selection is empty (an earlier operation removed it, or nothing was selected)")
    return mask.to(model.device)


def selection_center(model: GaussianModel, mask: Tensor) -> Tensor:
    """Centre of the selection's AABB (the pivot of rotate / scale).  Returns Tensor  # [3]"""
    pts = model.get_means().detach()[mask]
    return 0.5 * (pts.amin(0) + pts.amax(0))


# ------------------------------------------------------------------------------------------- ops
def delete(model: GaussianModel, mask: Tensor) -> OpResult:
    mask = _check_mask(model, mask, "delete")
    if bool(mask.all()):
        raise ConfigError(f"delete: the selection is all {model.num_gaussians} Gaussians; the result would be an "
                          "empty scene (nothing written)")
    out = take(model, ~mask)
    return OpResult(out, torch.zeros(out.num_gaussians, dtype=torch.bool, device=out.device),
                    {"removed": int(mask.sum())})


def extract(model: GaussianModel, mask: Tensor) -> OpResult:
    mask = _check_mask(model, mask, "extract")
    out = take(model, mask)
    return OpResult(out, torch.ones(out.num_gaussians, dtype=torch.bool, device=out.device),
                    {"kept": int(mask.sum()), "removed": int((~mask).sum())})


def recolor(model: GaussianModel, mask: Tensor, color=None, hue: float = 0.0, saturation: float = 1.0,
            brightness: float = 1.0, shading: bool = True) -> OpResult:
    """Recolour the selection (see :mod:`dff_gs.edit.color`): tint to ``color`` (keeping each Gaussian's
    shading if ``shading``, else a flat DC colour with the view-dependent part tinted), then ``hue`` (degrees),
    ``saturation`` and ``brightness`` factors. The new colours are kept within [0, 1] in every direction
    (:func:`~dff_gs.edit.color.clamp_displayable`: DC clamped, an oversized view-dependent part scaled down), so
    that 8-bit viewers and exports show what our renderer shows."""
    mask = _check_mask(model, mask, "recolor")
    rgb = parse_color(color) if color is not None else None
    if rgb is None and hue == 0 and saturation == 1 and brightness == 1:
        raise ConfigError("recolor: give a color or a hue / saturation / brightness change")
    params = {k: v.detach().clone() for k, v in model.params.items()}
    sh0, shN = params["sh0"][mask], params["shN"][mask]
    ref = float((dc_colors(sh0).clamp(0, 1) @ LUMA.to(sh0)).mean())
    M = color_matrix(rgb, hue, saturation, brightness, reference_luma=ref)
    new0, newN = apply_color_matrix(sh0, shN, M)
    if rgb is not None and not shading:  # flat target colour, then the hue / saturation / brightness change
        flat = torch.tensor(rgb).to(sh0) @ color_matrix(None, hue, saturation, brightness).to(sh0).T
        new0 = rgb_to_sh0(flat).expand_as(sh0[:, 0])[:, None].clone()
    new0, newN, clamped = clamp_displayable(new0, newN)
    params["sh0"][mask], params["shN"][mask] = new0, newN
    info = {"recolored": int(mask.sum()), "matrix": M.tolist(), "mean_color_before": dc_colors(sh0).mean(0).tolist(),
            "mean_color_after": dc_colors(new0).mean(0).tolist(), "clamped_to_displayable": clamped}
    return OpResult(with_params(model, params), mask, info)


def transform(model: GaussianModel, mask: Tensor, sim: Similarity, op: str = "transform") -> OpResult:
    """Apply ``sim`` to the selection (means, quats, log scales, SH bands)."""
    mask = _check_mask(model, mask, op)
    params = sim.apply(dict(model.params.items()), mask, model.sh_degree)
    return OpResult(with_params(model, params), mask, {"moved": int(mask.sum()), **sim.describe()})


def _pivot(model: GaussianModel, mask: Tensor, pivot: Optional[Sequence[float]]) -> list[float]:
    return list(pivot) if pivot is not None else selection_center(model, mask).tolist()


def translate(model: GaussianModel, mask: Tensor, offset: Sequence[float]) -> OpResult:
    return transform(model, mask, Similarity.build(offset=offset, what="translate"), "translate")


def rotate(model: GaussianModel, mask: Tensor, axis: Sequence[float] = (0.0, 0.0, 1.0), degrees: float = 0.0,
           pivot: Optional[Sequence[float]] = None) -> OpResult:
    """Rotate the selection by ``degrees`` about ``axis`` through ``pivot`` (default: its AABB centre)."""
    mask = _check_mask(model, mask, "rotate")
    sim = Similarity.build(axis=axis, degrees=degrees, pivot=_pivot(model, mask, pivot), what="rotate")
    return transform(model, mask, sim, "rotate")


def scale(model: GaussianModel, mask: Tensor, factor: float, pivot: Optional[Sequence[float]] = None) -> OpResult:
    """Scale the selection uniformly by ``factor`` about ``pivot`` (default: its AABB centre)."""
    mask = _check_mask(model, mask, "scale")
    sim = Similarity.build(scale=factor, pivot=_pivot(model, mask, pivot), what="scale")
    return transform(model, mask, sim, "scale")


def duplicate(model: GaussianModel, mask: Tensor, offset: Sequence[float] = (0.0, 0.0, 0.0),
              axis: Sequence[float] = (0.0, 0.0, 1.0), degrees: float = 0.0, factor: float = 1.0,
              pivot: Optional[Sequence[float]] = None) -> OpResult:
    """Append a copy of the selection, transformed about ``pivot`` (default: the selection's AABB centre)."""
    mask = _check_mask(model, mask, "duplicate")
    sim = Similarity.build(offset=offset, axis=axis, degrees=degrees, scale=factor,
                           pivot=_pivot(model, mask, pivot), what="duplicate")
    copy = take(model, mask)
    copy_params = sim.apply(dict(copy.params.items()), torch.ones(copy.num_gaussians, dtype=torch.bool,
                                                                    device=copy.device), copy.sh_degree)
    params = {k: torch.cat([model.params[k].detach(), copy_params[k]]) for k in PARAM_KEYS}
    out = with_params(model, params)
    new_mask = torch.zeros(out.num_gaussians, dtype=torch.bool, device=out.device)
    new_mask[model.num_gaussians:] = True
    return OpResult(out, new_mask, {"copies": copy.num_gaussians, **sim.describe()})


# ------------------------------------------------------------------------------------------- compose
FEATURE_POLICIES = ("auto", "zero", "error")
_TEACHER_SPACE_KEYS = ("name", "text_model", "clip_model", "model", "weights", "dim")


def _pad_sh(shN: Tensor, degree: int) -> Tensor:
    """``shN  # [N, K-1, 3]`` zero-padded to ``degree`` (the extra bands contribute nothing)."""
    K = num_sh_bases(degree)
    return torch.cat([shN, shN.new_zeros(shN.shape[0], K - 1 - shN.shape[1], 3)], 1)


def _same_decoder(a: GaussianModel, b: GaussianModel) -> bool:
    if a.feature_dim != b.feature_dim:
        return False
    if a.decoder is None or b.decoder is None:
        return a.decoder is None and b.decoder is None
    return (a.decoder.weight.shape == b.decoder.weight.shape
            and torch.allclose(a.decoder.weight.cpu(), b.decoder.weight.cpu(), atol=1e-6)
            and torch.allclose(a.decoder.bias.cpu(), b.decoder.bias.cpu(), atol=1e-6))


def _teacher_space(meta: Optional[dict]) -> Optional[tuple]:
    t = (meta or {}).get("teacher") or {}
    if not t.get("name"):
        return None
    return tuple((k, str(t.get(k))) for k in _TEACHER_SPACE_KEYS if k in t)


def _compose_features(model: GaussianModel, other: GaussianModel, model_meta, other_meta, policy: str,
                      source: str) -> tuple[Tensor, str]:
    """The inserted Gaussians' features in ``model``'s stored space, and a note saying how.  Returns ([M, D], note)"""
    D, M = model.feature_dim, other.num_gaussians
    zeros = torch.zeros(M, D, device=model.device)
    if D == 0:
        return zeros, ("" if other.feature_dim == 0 else f"{source}: its {other.feature_dim}-D features were dropped "
                       "(the scene carries none)")
    if other.feature_dim == 0:
        if policy == "error":
            raise ConfigError(f"compose: {source} has no features but the scene has {D}-D features "
                              "(features: zero inserts them with zero features)")
        return zeros, (f"{source} carries no features: inserted with zero features (queries will not find its "
                       "Gaussians reliably)")
    if policy == "zero":
        return zeros, f"{source}: features replaced by zeros (features: zero)"
    if _same_decoder(model, other):
        return other.params["features"].detach().to(model.device).clone(), ""
    same_space = (_teacher_space(model_meta) is not None and _teacher_space(model_meta) == _teacher_space(other_meta)
                  and model.output_dim == other.output_dim)
    if policy == "error" or not same_space:
        raise ConfigError(
            f"compose: {source} has {other.feature_dim}-D features decoding to {other.output_dim}-D "
            f"({_teacher_space(other_meta) or 'unknown teacher'}), the scene {D}-D decoding to {model.output_dim}-D "
            f"({_teacher_space(model_meta) or 'unknown teacher'}): not the same feature space"
            + ("" if policy == "error" else "; pass features: zero to insert it without features"))
    # same teacher space, different decoders: decode, then least-squares encode with the scene's decoder
    with torch.no_grad():
        y = other.decode(other.params["features"].detach()).to(model.device)  # [M, C]
        if model.decoder is None:
            return y, f"{source}: features decoded into the teacher space"
        W, b = model.decoder.weight, model.decoder.bias  # [C, D], [C]
        f = torch.linalg.lstsq(W, (y - b).T).solution.T  # [M, D]
    return f, f"{source}: features re-encoded through the scene's decoder (same teacher, different decoders)"


def compose(model: GaussianModel, other: GaussianModel, sim: Optional[Similarity] = None,
            model_meta: Optional[dict] = None, other_meta: Optional[dict] = None, features: str = "auto",
            source: str = "other") -> OpResult:
    """Insert ``other``'s Gaussians, mapped by ``sim`` (``x -> s R x + t``, default identity).

    SH degrees may differ: both are brought to the higher degree (zero-padded bands change nothing).
    Features (``features``): ``auto`` copies them when the decoders match, re-encodes them when both come
    from the same teacher with different decoders, inserts zeros when ``other`` has none and otherwise
    raises; ``zero`` always inserts zeros; ``error`` raises on any mismatch.
    """
    if features not in FEATURE_POLICIES:
        raise ConfigError(f"compose: features={features!r} (one of {', '.join(FEATURE_POLICIES)})")
    if other.num_gaussians == 0:
        raise ConfigError(f"compose: {source} has no Gaussians")
    notes = []
    degree = max(model.sh_degree, other.sh_degree)
    if model.sh_degree != other.sh_degree:
        notes.append(f"SH degrees differ (scene {model.sh_degree}, {source} {other.sh_degree}): both used at "
                     f"degree {degree}, missing bands zero")
    feats, note = _compose_features(model, other, model_meta, other_meta, features, source)
    if note:
        notes.append(note)
    sim = sim or Similarity.build(what="compose")
    dev = model.device
    oparams = {k: v.detach().to(dev) for k, v in other.params.items()}
    oparams = sim.apply(oparams, torch.ones(other.num_gaussians, dtype=torch.bool, device=dev), other.sh_degree)
    oparams["features"] = feats
    oparams["shN"] = _pad_sh(oparams["shN"], degree)
    base = {k: v.detach() for k, v in model.params.items()}
    base["shN"] = _pad_sh(base["shN"], degree)
    params = {k: torch.cat([base[k], oparams[k]]) for k in PARAM_KEYS}
    out = with_params(model, params, sh_degree=degree)
    mask = torch.zeros(out.num_gaussians, dtype=torch.bool, device=out.device)
    mask[model.num_gaussians:] = True
    return OpResult(out, mask, {"inserted": other.num_gaussians, "source": source, **sim.describe(), "notes": notes})

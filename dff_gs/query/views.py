"""Queries in 2D: clicks, Eq. 5 on rendered features (of any :class:`~dff_gs.backbone.Backbone`: Gaussians or a
NeRF), per-Gaussian values composited from cameras, the views a 2D query is rendered from and lifted back
through, and segmentation overlays."""

from __future__ import annotations

from typing import Optional, Sequence

import torch
from torch import Tensor

from dff_gs.backbone import as_backbone, require_features
from dff_gs.core.cameras import Cameras
from dff_gs.core.errors import ConfigError
from dff_gs.core.gaussians import GaussianModel
from dff_gs.core.utils import evenly_spaced, fit_side
from dff_gs.io.images import colorize_labels
from dff_gs.lift import compositing_weights
from dff_gs.query.eq5 import (
    DEFAULT_TEMPERATURE,
    label_probabilities,
    reference_query_embeddings,
    segment_features,
    text_query_embeddings,
)
from dff_gs.render import rasterize, render


def check_click(cameras: Cameras, view: int, x: int, y: int) -> None:
    """A ``ConfigError`` unless pixel ``(x, y)`` of camera ``view`` exists."""
    if not (0 <= view < len(cameras)):
        raise ConfigError(f"click view {view} is out of range (0..{len(cameras) - 1})")
    if not (0 <= x < cameras.width and 0 <= y < cameras.height):
        raise ConfigError(f"click ({x}, {y}) is outside the {cameras.width}x{cameras.height} image")


def click_feature(model, cameras: Cameras, view: int, x: int, y: int, backend: str = "auto") -> Tensor:
    """The decoded rendered feature at pixel (x, y) of camera ``view`` of any backbone (Gaussians rendered with
    ``backend``): a click query.  Returns Tensor  # [C]"""
    b = as_backbone(model, backend)
    require_features(b)
    check_click(cameras, view, x, y)
    with torch.no_grad():
        return b.pixel_feature(cameras, view, x, y)


@torch.no_grad()
def render_probabilities(model, cameras: Cameras, queries: Tensor, temperature: float = DEFAULT_TEMPERATURE,
                         backend: str = "auto") -> Tensor:
    """Eq. 5 on the rendered, decoded features of any backbone: a 2D segmentation from any camera.

    queries: Tensor  # [K, C]
    Returns Tensor  # [C_cams, H, W, K]
    """
    b = as_backbone(model, backend)
    require_features(b)
    out = b.render(cameras, with_features=True)
    return label_probabilities(b.decode(out.features), queries, temperature)


def render_text_probabilities(model, cameras: Cameras, encode_text, query: str, negatives: Sequence[str],
                              temperature: float = DEFAULT_TEMPERATURE, backend: str = "auto") -> Tensor:
    """``p(query | pixel)`` of a text query and its negatives.  Returns Tensor  # [C_cams, H, W]"""
    queries = text_query_embeddings(encode_text, query, negatives)
    return render_probabilities(model, cameras, queries, temperature, backend)[..., 0]


def render_reference_probabilities(model, cameras: Cameras, reference: Tensor, k: int = 8, seed: int = 0,
                                   temperature: float = DEFAULT_TEMPERATURE, backend: str = "auto") -> Tensor:
    """``p(reference | pixel)`` of a patch / click reference ``[C]`` against the k-means competitors of the
    backbone's own content.  Returns Tensor  # [C_cams, H, W]"""
    b = as_backbone(model, backend)
    require_features(b)
    queries = reference_query_embeddings(b.content_features(seed=seed), reference, k, seed)
    return render_probabilities(b, cameras, queries, temperature)[..., 0]


@torch.no_grad()
def render_segmentation(model, cameras: Cameras, label_embeddings: Tensor, backend: str = "auto") -> Tensor:
    """Argmax of Eq. 5 over a label set per pixel.  label_embeddings [K, C] -> Tensor  # [C_cams, H, W] int64"""
    b = as_backbone(model, backend)
    require_features(b)
    return segment_features(b.decode(b.render(cameras, with_features=True).features), label_embeddings)


@torch.no_grad()
def render_values(model: GaussianModel, cameras: Cameras, values: Tensor,
                  backend: str = "auto") -> tuple[Tensor, Tensor]:
    """Composite arbitrary per-Gaussian values (probabilities, one-hot labels, masks) from ``cameras`` with the
    model's geometry, over 0; the model itself is not touched.

    values: Tensor  # [N, K]
    Returns (image [C, H, W, K], alpha [C, H, W, 1])
    """
    colors = values.float()[None].expand(len(cameras), -1, -1).contiguous()
    img, _, alpha, _ = rasterize(model.get_means(), model.get_quats(), model.get_scales(), model.get_opacities(),
                                 colors, cameras.viewmats, cameras.Ks, cameras.width, cameras.height,
                                 render_depth=False, backend=backend, antialiased=model.antialiased)
    return img, alpha


def selection_bbox(model: GaussianModel, mask: Tensor) -> Optional[list]:
    """AABB ``[[min xyz], [max xyz]]`` of the selected centres (None if the selection is empty)."""
    if not mask.any():
        return None
    pts = model.get_means().detach()[mask]
    return [pts.amin(0).tolist(), pts.amax(0).tolist()]


def render_selection(model: GaussianModel, cameras: Cameras, mask: Tensor, backend: str = "auto") -> Tensor:
    """How much of each pixel the selected Gaussians cover (their share of the composited weight).

    mask: Tensor  # [N] bool
    Returns Tensor  # [C, H, W] in [0, 1]
    """
    return render_values(model, cameras, mask[:, None], backend)[0][..., 0]


def query_cameras(scene, count: int, side: int):
    """The training cameras the 2D query is rendered from: ``count`` evenly spaced (0 = all), resized so the
    longer side is at most ``side`` pixels (0 = as they are)."""
    ids = list(scene.train_ids) or list(range(scene.num_views))
    if count and len(ids) > count:
        ids = [ids[j] for j in evenly_spaced(len(ids), count)]
    cams = scene.cameras[ids]
    h, w = fit_side(cams.height, cams.width, side)
    return cams if (h, w) == (cams.height, cams.width) else cams.resized(w, h)


@torch.no_grad()
def render_views(model: GaussianModel, cameras: Cameras, backend: str = "auto"):
    """The model's stored (undecoded) features rendered from ``cameras`` and the sparse compositing weights of
    those views (:func:`dff_gs.lift.compositing_weights`): what lifting a 2D result back onto the Gaussians needs.

    Returns (features: Tensor  # [V, h, w, D], weights: CompositingWeights)
    """
    if model.feature_dim == 0:
        raise ConfigError("rendering features needs per-Gaussian features and this model carries none")
    cams = cameras.to(model.device)
    feats = torch.cat([render(model, cams[[i]], with_features=True, backend=backend).features
                       for i in range(len(cams))])
    return feats, compositing_weights(model, cams, min_weight=0.01)


@torch.no_grad()
def segmentation_overlay(model: GaussianModel, cameras: Cameras, values: Tensor, threshold: Optional[float] = None,
                         backend: str = "auto", rgb: Optional[Tensor] = None) -> Tensor:
    """The model's RGB blended half-and-half with a 2D segmentation rendered from per-Gaussian ``values``:
    one-hot labels ``[N, K]`` (argmax per pixel), or ``[N, 2]`` = ``[p, 1 - p]`` of a query with ``threshold``
    (a pixel is selected where the composited ``p`` exceeds ``threshold`` x alpha).
    ``rgb: Tensor  # [C, H, W, 3]`` the model's renders of ``cameras`` when the caller has them (else rendered).

    Returns Tensor  # [C, H, W, 3] in [0, 1]
    """
    out = []
    for i in range(len(cameras)):
        cams = cameras[[i]]
        view_rgb = render(model, cams, with_features=False, backend=backend).rgb[0] if rgb is None else rgb[i]
        img, alpha = render_values(model, cams, values, backend)
        seg = img[0].argmax(-1) if threshold is None else (img[0, ..., 0] > threshold * alpha[0, ..., 0]).long()
        out.append(blend_labels(seg, values.shape[1], view_rgb))
    return torch.stack(out)


@torch.no_grad()
def rendered_overlay(model, cameras: Cameras, queries, threshold: Optional[float] = None,
                     backend: str = "auto") -> Tensor:
    """Any backbone's RGB blended half-and-half with Eq. 5 on its rendered, decoded features, one view at a time:
    with ``threshold`` None the argmax over a label set ``queries: Tensor  # [K, C]``; else ``p(query | pixel) >
    threshold`` where ``queries`` is one query's label set ``[1 + M, C]`` (its embedding, then its competitors) or
    a list of them (their ``p`` unioned: the largest counts). (Gaussians also have :func:`segmentation_overlay`, from
    per-Gaussian values.)

    Returns Tensor  # [C, H, W, 3] in [0, 1]
    """
    b = as_backbone(model, backend)
    require_features(b)
    sets = [queries] if isinstance(queries, Tensor) else list(queries)
    out = []
    for i in range(len(cameras)):
        r = b.render(cameras[[i]], with_features=True)
        feats = b.decode(r.features[0])
        if threshold is None:
            seg, k = segment_features(feats, sets[0]), len(sets[0])
        else:
            p = torch.stack([label_probabilities(feats, q.to(b.device))[..., 0] for q in sets]).amax(0)
            seg, k = (p > threshold).long(), 2
        out.append(blend_labels(seg, k, r.rgb[0]))
    return torch.stack(out)


def blend_labels(seg: Tensor, num_labels: int, rgb: Tensor) -> Tensor:
    """Label colours of ``seg: Tensor  # [H, W] int64`` (``num_labels`` of them) half-and-half over ``rgb: Tensor
    # [H, W, 3]``.  Returns Tensor  # [H, W, 3] in [0, 1], on the CPU"""
    colours = torch.from_numpy(colorize_labels(seg.cpu(), num_labels)).float() / 255.0
    return 0.5 * colours + 0.5 * rgb.cpu().clamp(0, 1)

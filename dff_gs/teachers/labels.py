"""The ``labels`` teacher: per-frame class-id maps (ground truth or any 2D segmenter's output) turned into
feature maps by embedding each class name with a text model (MiniLM offline by default, or CLIP's).

With ``degrade`` it behaves like a real 2D teacher: labels are pooled to a coarse patch grid (majority
vote per ``patch x patch`` cell, the resolution a ViT gives), a fraction of each view is relabeled in
random blobs, and a fraction of views confuses one class for another. All deterministic from ``seed``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from dff_gs.core.errors import ConfigError, DataError, quote
from dff_gs.core.utils import IGNORE_LABEL
from dff_gs.teachers.base import Teacher, register_teacher
from dff_gs.teachers.clip import ClipTeacher
from dff_gs.teachers.text import encode_minilm


def check_class_names(names: list[str], where: str) -> None:
    """Class names a text teacher embeds are distinct (case and spaces aside: a text model reads "Wall" as
    "wall"); else a ``DataError`` naming ``where`` (the scene) and the repeated name: two ids with one embedding
    cannot be told apart, the later one would never be predicted and the mIoU would be wrong."""
    first: dict[str, int] = {}
    for i, name in enumerate(names):
        key = " ".join(str(name).split()).lower()
        if key in first:
            raise DataError(f"{where}: class ids {first[key]} and {i} are both named {quote(name)}; a text teacher "
                            "cannot tell them apart (the mIoU would be wrong): give each class its own name, or "
                            "one id")
        first[key] = i


class LabelsTeacher(Teacher):
    name = "labels"
    supports_text = True

    def __init__(self, degrade: bool = True, text_model: str = "minilm", patch: int = 4, noise: float = 0.08,
                 wrong_views: float = 0.1, seed: int = 0, clip_model: str = "ViT-B-16", weights: str = ""):
        if text_model not in ("minilm", "clip"):
            raise ConfigError(f"labels teacher: text_model={quote(text_model)} (minilm | clip)")
        if patch < 1 or not 0 <= noise < 1 or not 0 <= wrong_views <= 1:
            raise ConfigError("labels teacher: need patch >= 1, 0 <= noise < 1, 0 <= wrong_views <= 1")
        self.degrade, self.text_model, self.patch = degrade, text_model, int(patch)
        self.noise, self.wrong_views, self.seed = float(noise), float(wrong_views), int(seed)
        self.clip_model, self.weights = clip_model, weights
        self._clip = None

    def settings(self) -> dict:
        s = {"degrade": self.degrade, "text_model": self.text_model}
        if self.degrade:
            s.update(patch=self.patch, noise=self.noise, wrong_views=self.wrong_views, seed=self.seed)
        if self.text_model == "clip":
            s.update(clip_model=self.clip_model, weights=self.weights)
        return s

    @property
    def dim(self) -> int:
        return 384 if self.text_model == "minilm" else self._clip_teacher().dim

    def _clip_teacher(self):
        if self._clip is None:
            self._clip = ClipTeacher(model=self.clip_model, weights=self.weights)
        return self._clip

    def encode_text(self, texts: list[str]) -> Tensor:
        if self.text_model == "minilm":
            return encode_minilm(texts)
        return self._clip_teacher().encode_text(texts)

    def features(self, image: Tensor) -> Tensor:
        raise ConfigError("the labels teacher reads a scene's label maps, not images: use features_for_scene")

    # ------------------------------------------------------------------------------------------------
    def degraded_labels(self, scene) -> Tensor:
        """The teacher's own 2D predictions ``[V, h, w]`` int64 (coarse grid when degrading, else the labels)."""
        if scene.semantics is None or not scene.class_names:
            raise DataError(f"{scene.source}: the labels teacher needs per-pixel semantics and class names "
                            f"(semantic_path + classes.json); use --teacher efficientnet for scenes without")
        labels = scene.semantics.to(torch.long, copy=True)  # int64 (one_hot and indexing need it), the scene's kept
        if not self.degrade:
            return labels
        return degrade_labels(labels, len(scene.class_names), self.patch, self.noise, self.wrong_views, self.seed)

    def features_for_scene(self, scene, progress: bool = False) -> Tensor:
        labels = self.degraded_labels(scene)
        emb = self.encode_text(list(scene.class_names)).float()  # [K, C]
        table = torch.cat([emb, emb.new_zeros(1, emb.shape[1])])  # row K: unlabeled -> zero feature
        idx = torch.where(labels == IGNORE_LABEL, torch.full_like(labels, len(emb)), labels)
        return table[idx].to(torch.float16)  # [V, h, w, C]


def _mode_pool(labels: Tensor, num_classes: int, patch: int) -> Tensor:
    """Majority label per ``patch x patch`` cell: ``[V, H, W] -> [V, ceil(H/p), ceil(W/p)]`` (ignore wins only
    where a cell has no labeled pixel)."""
    V, H, W = labels.shape
    h, w = math.ceil(H / patch), math.ceil(W / patch)
    lab = F.pad(labels, (0, w * patch - W, 0, h * patch - H), value=IGNORE_LABEL)
    votes = torch.stack([  # a view at a time: the one-hot of every view at once is V x H x W x (K + 1) int64
        F.one_hot((lab[v] + 1).clamp_min(0), num_classes + 1).float()  # class 0 = ignore
        .reshape(h, patch, w, patch, num_classes + 1).sum(dim=(1, 3)) for v in range(V)])
    votes[..., 0] *= 1e-3  # ignore only where nothing else is present
    return votes.argmax(-1) - 1


def degrade_labels(labels: Tensor, num_classes: int, patch: int, noise: float, wrong_views: float,
                   seed: int) -> Tensor:
    """Coarse, noisy label maps ``[V, h, w]`` from clean ones ``[V, H, W]`` (see the module docstring)."""
    g = torch.Generator().manual_seed(seed)
    coarse = _mode_pool(labels, num_classes, patch)
    V, h, w = coarse.shape
    yy, xx = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij")
    out = coarse.clone()
    for v in range(V):
        present = out[v].unique()
        present = present[present >= 0]
        if len(present) < 2:
            continue
        # blobs of wrong labels covering about `noise` of the view
        covered = 0.0
        while covered < noise * h * w:
            cy, cx = float(torch.rand((), generator=g) * h), float(torch.rand((), generator=g) * w)
            r = float(1.0 + torch.rand((), generator=g) * max(h, w) * 0.12)
            blob = (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
            wrong = present[int(torch.randint(len(present), (), generator=g))]
            out[v][blob & (out[v] >= 0)] = wrong
            covered += float(blob.sum())
        # a fraction of views confuses one present class with another
        if float(torch.rand((), generator=g)) < wrong_views:
            a, b = present[torch.randperm(len(present), generator=g)[:2]]
            out[v][coarse[v] == a] = b
    return out


register_teacher("labels", LabelsTeacher)

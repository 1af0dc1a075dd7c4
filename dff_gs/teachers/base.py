"""The teacher interface and its registry: a new 2D teacher is one new module calling ``register_teacher``."""

from __future__ import annotations

import hashlib
import json
from typing import Callable, Optional

import torch
from torch import Tensor

from dff_gs.core.errors import ConfigError
from dff_gs.core.utils import as_rgb


class Teacher:
    """A 2D feature teacher.

    features(image [H, W, 3] in [0, 1]) -> Tensor [h, w, C] at the teacher's own resolution.
    encode_text(list[str]) -> Tensor [K, C]   (``supports_text``)
    encode_image_patch(image [h, w, 3]) -> Tensor [C]   (``supports_patch``)
    Features and text embeddings live in one space; queries compare them by dot products (paper Eq. 5).
    """

    name: str = "teacher"
    supports_text: bool = False
    supports_patch: bool = False

    @property
    def dim(self) -> int:
        raise NotImplementedError

    def settings(self) -> dict:
        """Everything that changes the maps (part of the cache key)."""
        return {}

    def cache_key(self) -> str:
        blob = json.dumps({"name": self.name, **self.settings()}, sort_keys=True, default=str)
        return f"{self.name}-{hashlib.sha1(blob.encode()).hexdigest()[:12]}"

    def features(self, image: Tensor) -> Tensor:
        raise NotImplementedError

    def features_for_scene(self, scene, progress: bool = False) -> Tensor:
        """Maps of every view of ``scene``: ``[V, h, w, C]`` (CPU, float16 to keep caches small)."""
        from tqdm import tqdm

        out = None  # filled view by view: no list of maps beside the stacked copy (twice the maps at the peak)
        for i, img in enumerate(tqdm(scene.images, desc=f"teacher {self.name}", disable=not progress, leave=False)):
            fmap = self.features(as_rgb(img)).detach().to("cpu", torch.float16)
            if out is None:
                out = torch.empty(len(scene.images), *fmap.shape, dtype=torch.float16)
            out[i] = fmap
        return out

    def encode_text(self, texts: list[str]) -> Tensor:
        raise ConfigError(f"teacher {self.name!r} has no text encoder: on this run use a patch, click or cluster "
                          f"query; for text, train with a text-aligned teacher (teacher.name=clip, its weights from "
                          f"the hub or teacher.weights=PATH, or teacher.name=labels on a scene with label maps)")

    def encode_image_patch(self, image: Tensor) -> Tensor:
        """Mean feature of the teacher over a crop ``[h, w, 3]``: a patch query in the teacher's space."""
        return self.features(image).float().mean(dim=(0, 1))


_TEACHERS: dict[str, Callable[..., Teacher]] = {}


def register_teacher(name: str, factory: Callable[..., Teacher]) -> None:
    _TEACHERS[name] = factory


def teacher_names() -> list[str]:
    return sorted(_TEACHERS)


def get_teacher(name: str, **kwargs) -> Teacher:
    if name not in _TEACHERS:
        raise ConfigError(f"unknown teacher {name!r} (known: {', '.join(teacher_names())}, or none)")
    return _TEACHERS[name](**kwargs)


def normalize(x: Tensor, dim: int = -1) -> Tensor:
    return torch.nn.functional.normalize(x.float(), dim=dim)


def weights_error(teacher: str, looked: list[str], how: str) -> str:
    where = "; ".join(looked) if looked else "nowhere"
    return f"teacher {teacher!r}: weights not found (looked in: {where}). {how}"


OFFLINE_HINT = "Without network, HF_HUB_OFFLINE=1 makes this fail at once instead of after the hub's retries."


def hub_cache_dir() -> str:
    try:
        from huggingface_hub import constants

        return str(constants.HF_HUB_CACHE)
    except Exception:  # noqa: BLE001  only used in a message
        return "the Hugging Face cache"


def hub_error(teacher: str, hub_id: str, how: str, err: Exception) -> ConfigError:
    """The error for weights the Hugging Face hub could not provide: where it looked, how to give a path."""
    where = f"Hugging Face hub {hub_id} (cache {hub_cache_dir()})"
    return ConfigError(weights_error(teacher, [where], f"{how}. {OFFLINE_HINT} ({type(err).__name__}: {err})"))


def optional_path(p: Optional[str]) -> Optional[str]:
    return p or None

"""On-disk cache of teacher maps, keyed by scene (path, views, resolution, content hash) and teacher settings."""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch
from torch import Tensor

from dff_gs.core.utils import as_rgb, atomic_write_path


def scene_key(scene) -> str:
    h = hashlib.sha1()
    h.update(str(Path(scene.source).resolve()).encode())
    h.update(str((scene.num_views, scene.height, scene.width)).encode())
    h.update(as_rgb(scene.images[:, ::7, ::7]).contiguous().numpy().tobytes())  # content sample: a changed scene misses
    if scene.semantics is not None:
        h.update(scene.semantics[:, ::5, ::5].long().contiguous().numpy().tobytes())  # the key of int64 ids, as before
    return h.hexdigest()[:16]


def cache_path(teacher, scene, cache_dir: Path) -> Path:
    return Path(cache_dir) / f"{scene_key(scene)}-{teacher.cache_key()}.pt"


def cached_features(teacher, scene, cache_dir: Path, progress: bool = False) -> Tensor:
    """Teacher maps of every view ``[V, h, w, C]`` from the cache, computed and stored on a miss."""
    path = cache_path(teacher, scene, cache_dir)
    maps = _mapped(path, scene.num_views)
    if maps is not None:
        return maps
    maps = teacher.features_for_scene(scene, progress=progress)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write_path(path) as tmp:
        torch.save(maps, tmp)
    mapped = _mapped(path, scene.num_views)  # the file, mapped: the computed copy is freed before the caller's
    return maps if mapped is None else mapped


def _mapped(path: Path, num_views: int) -> Tensor | None:
    """The cached maps of ``path`` mapped, not read (only the views the caller copies out become private memory:
    reading the whole file held it twice beside the training views' copy, +1.1 GB at start-up on a 125-view
    capture), or None when the file is missing, unreadable or of another scene's length."""
    if not path.is_file():
        return None
    try:
        maps = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # noqa: BLE001  a broken cache entry is recomputed, not fatal
        return None
    return maps if isinstance(maps, Tensor) and maps.shape[0] == num_views else None

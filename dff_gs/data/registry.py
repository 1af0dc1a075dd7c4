"""Scene loaders behind a registry: a new format is one new module that calls ``register_loader``."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from dff_gs.core.errors import DataError

_LOADERS: dict[str, tuple[Callable[[Path], bool], Callable]] = {}


def register_loader(name: str, detect: Callable[[Path], bool], load: Callable) -> None:
    """``detect(path) -> bool`` says whether ``path`` is in this format; ``load(path, **options) -> SceneData``."""
    _LOADERS[name] = (detect, load)


def loader_names() -> list[str]:
    return list(_LOADERS)


def find_loader(path: Path, format: str = "auto") -> tuple[str, Callable]:
    if format != "auto":
        if format not in _LOADERS:
            raise DataError(f"{path}: unknown scene format {format!r} (known: auto, {', '.join(_LOADERS)})")
        return format, _LOADERS[format][1]
    if not path.exists():
        raise DataError(f"{path}: scene path does not exist")
    for name, (detect, load) in _LOADERS.items():
        if detect(path):
            return name, load
    raise DataError(f"{path}: not a scene this package can read (looked for transforms.json, a COLMAP "
                    f"sparse/ model, the Replica layout rgb/ + traj_w_c.txt, a folder of photos or a video)")

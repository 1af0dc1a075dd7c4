"""Scene data: ``SceneData`` and ``load_scene`` over the registered formats (transforms.json, COLMAP, Replica)."""

from __future__ import annotations

import os
from pathlib import Path

from dff_gs.data import colmap, photos, replica, transforms  # noqa: F401  (register the loaders)
from dff_gs.data.registry import find_loader, loader_names, register_loader
from dff_gs.data.scene import SceneData, split_every

__all__ = ["SceneData", "load_scene", "register_loader", "loader_names", "split_every"]


def load_scene(path: str | os.PathLike, downscale: int = 1, test_every: int = 8, background=(1.0, 1.0, 1.0),
               format: str = "auto", max_side: int = 0, skip_missing: bool = False,
               progress: bool = False, posed_out: str = "") -> SceneData:
    """Load a scene folder (or a transforms json) in any registered format.

    downscale: integer factor the images (and intrinsics) are shrunk by on load; 0 = automatic: the smallest
        factor that brings the longer side to ``max_side`` (a pre-downscaled COLMAP ``images_N`` folder is used
        when there is one), said in one printed line
    skip_missing: a COLMAP model naming images that are not on disk trains on the rest (else an error)
    test_every: view ``i`` is held out for testing when ``i % test_every == 0`` (0 = no test views); a
        Blender scene's own transforms_test.json overrides it
    background: RGB that RGBA images are composited on
    posed_out: a folder of photos or a video is posed into this folder (empty: a cache folder keyed by the inputs)
    """
    path = Path(path).expanduser()
    name, load = find_loader(path, format)
    extra = {"posed_out": posed_out} if name == "photos" else {}  # where photos / a video are posed
    scene = load(path, downscale=int(downscale), test_every=int(test_every), background=tuple(background),
                 max_side=int(max_side), skip_missing=bool(skip_missing), progress=progress, **extra)
    scene.format = name
    return scene

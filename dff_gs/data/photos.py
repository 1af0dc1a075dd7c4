"""``photos``: a folder of photos or a video with no poses, read as the COLMAP scene structure from motion makes of
it (:mod:`dff_gs.data.posing`; posed once, then read from the cache)."""

from __future__ import annotations

from pathlib import Path

from dff_gs.data import colmap
from dff_gs.data.posing import posed_scene, unposed_kind
from dff_gs.data.registry import register_loader


def detect(path: Path) -> bool:
    return unposed_kind(path) is not None


def load(path: Path, progress: bool = False, posed_out: str = "", **options):
    """The scene of ``path`` posed (into ``posed_out``, else the cache; read from there when it was posed
    before), read by the COLMAP loader (``options``: its own)."""
    return colmap.load(posed_scene(path, progress=progress, out=posed_out), progress=progress, **options)


register_loader("photos", detect, load)

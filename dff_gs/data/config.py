"""The ``data`` section of the config: which scene, and how it is read."""

from __future__ import annotations

from dataclasses import dataclass

from dff_gs.core.config import Section, one_of, option
from dff_gs.core.errors import ConfigError, quote
from dff_gs.core.rules import MAX_COUNT, count, finite
from dff_gs.data.registry import loader_names

TEST_EVERY = ((lambda v: v == 0 or (finite(v) and 2 <= v <= MAX_COUNT)),
              "must be 0 (no test views) or >= 2 (1 holds every view out)")


@dataclass
class DataConfig(Section):
    path: str = option("", "scene folder (transforms.json, COLMAP or Replica layout); empty = the embedded default "
                           "scene")
    format: str = option("auto", "scene format: auto | transforms | colmap | replica")
    downscale: int = option(0, "integer downscale factor applied on load; 0 = automatic: 1 on GPU, on CPU the smallest "
                                  "factor bringing the longer image side to data.max_side (images_N used if present)",
                                  rule=count(0))
    max_side: int = option(800, "CPU resolution budget in pixels for data.downscale=0 (0 = no budget)", rule=count(0))
    test_every: int = option(8, "every Nth view is a held-out test view (0 = none)", rule=TEST_EVERY)
    background: list[float] = option([1.0, 1.0, 1.0], "RGB that RGBA images are composited on and renders use "
                                                      "(white, as 3DGS / NeRF for Blender scenes)")
    skip_missing: bool = option(False, "train on the images that exist when the scene names missing ones (else an "
                                       "error)")
    posed_out: str = option("", "a folder of photos or a video is posed (structure from motion) into this folder; "
                                "empty = a cache folder keyed by the inputs ($DFF_GS_CACHE/posed)")
    labels: bool = option(True, "read the scene's ground-truth label maps (false: withhold them, as on a scene without "
                                "labels; the label-free teacher is used and no mIoU is reported)")

    def check(self, prefix: str = "") -> None:
        """The format is a registered loader's (or auto); the background an RGB in [0, 1]."""
        if self.format not in ("auto", *loader_names()):
            raise one_of(f"{prefix}format", self.format, ("auto", *loader_names()))
        bg = self.background
        if len(bg) != 3 or not all(finite(c) and 0 <= c <= 1 for c in bg):
            raise ConfigError(f"{prefix}background={quote(list(bg))}: must be three numbers (RGB) in [0, 1]")

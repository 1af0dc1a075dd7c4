"""``dff-process INPUT --out SCENE`` (``python -m dff_gs.process``): camera poses for a folder of photos or a video,
by structure from motion (COLMAP's own bindings, pycolmap), written as an ordinary COLMAP scene (``images/``,
``sparse/0``) that ``train.py --data SCENE`` reads. ``train.py --data PHOTOS`` does the same by itself, into a
cache folder keyed by the inputs; this command is for the posed scene alone, where you want it.

Choices a careful user would make are the defaults: every pair of images matched for up to 200 photos,
consecutive frames (overlap 10, and every pair of 40 evenly spaced ones to close loops) for a video or more
photos; one camera for a video, one per folder of photos of one size (else one per image; the EXIF focal length is
the prior where there is one); camera model SIMPLE_RADIAL (undistorted when the scene is read); about 120 sharp
frames of a video (each the sharpest of its stretch, blurred ones skipped); the largest connected reconstruction
kept.
"""

from __future__ import annotations

import argparse
import dataclasses
import typing

from dff_gs.core.errors import run_cli
from dff_gs.data.posing import PosingOptions, pose

FLAG_HELP = {
    "matcher": "which pairs of images are matched",
    "camera_model": "COLMAP camera model (distortion undistorted when the scene is read)",
    "cameras": "cameras shared: auto (one for a video, one per folder of photos of one size, else per image)",
    "max_features": "SIFT features per image",
    "sequential_overlap": "sequential matching: each image against this many next ones",
    "loop_keyframes": "sequential matching: every pair of this many evenly spaced images too (loop closing, "
                      "offline; 0 = off)",
    "min_registered": "fewer posed images than this fraction is an error",
    "frames": "frames taken from a video (the sharpest of each stretch)",
    "blur_fraction": "a video frame sharper than this x the median of the kept ones, else skipped",
    "threads": "feature extraction threads (0: every core)",
}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="dff-process", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("input", help="a folder of photos (or a folder holding images/), or a video file")
    p.add_argument("--out", required=True, help="the posed scene's folder (must not exist; written whole or not at "
                                                "all)")
    types = typing.get_type_hints(PosingOptions)
    for f in dataclasses.fields(PosingOptions):
        choices = typing.get_args(types[f.name]) or None
        kind = types[f.name] if choices is None else str
        p.add_argument(f"--{f.name.replace('_', '-')}", type=kind, choices=choices, default=f.default,
                       help=f"{FLAG_HELP[f.name]} (default: %(default)s)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    options = PosingOptions(**{f.name: getattr(args, f.name) for f in dataclasses.fields(PosingOptions)})
    return run_cli(lambda: pose(args.input, args.out, options, progress=not args.quiet),
                   lambda out: f"posed scene: {out} (train it: python train.py --data {out})")

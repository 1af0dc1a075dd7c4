"""Shared assembly of a ``SceneData`` from per-frame file lists (every loader ends here)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import torch
from torch import Tensor

from dff_gs.cameras import Cameras
from dff_gs.data.image_io import check_size, load_depth, load_labels, load_rgb
from dff_gs.data.scene import SceneData, estimate_bounds, split_every
from dff_gs.errors import DataError
from dff_gs.utils import IGNORE_LABEL


@dataclass
class Frame:
    """One view on disk. ``c2w`` is camera-to-world ``[4, 4]`` in ``convention``; ``K`` pixel intrinsics
    ``[3, 3]`` at the native ``width x height``."""

    image: Path
    c2w: Tensor
    K: Tensor
    width: int
    height: int
    name: str
    semantic: Optional[Path] = None
    depth: Optional[Path] = None


def assemble(frames: Sequence[Frame], *, source: Path, convention: str, downscale: int = 1, test_every: int = 8,
             background=(1.0, 1.0, 1.0), class_names: Optional[list[str]] = None, ignore_label: Optional[int] = None,
             depth_png_scale: float = 1000.0, split: Optional[tuple[list[int], list[int]]] = None,
             bounds: Optional[Tensor] = None, points: Optional[Tensor] = None,
             point_colors: Optional[Tensor] = None, progress: bool = False) -> SceneData:
    """Read every frame's files (downscaled by the integer ``downscale``) and build the scene."""
    if not frames:
        raise DataError(f"{source}: the scene has no frames")
    if downscale < 1:
        raise DataError(f"{source}: downscale must be an integer >= 1, got {downscale}")
    w0, h0 = frames[0].width, frames[0].height
    for f in frames:
        if (f.width, f.height) != (w0, h0):
            raise DataError(f"{f.image}: size {f.width}x{f.height} differs from the first frame's {w0}x{h0} "
                            f"(all views of a scene must have one size)")
    w, h = max(1, round(w0 / downscale)), max(1, round(h0 / downscale))
    size = (w, h)
    with_sem = any(f.semantic for f in frames)
    with_depth = any(f.depth for f in frames)
    images, sems, depths = [], [], []
    it = frames
    if progress:
        from tqdm import tqdm

        it = tqdm(frames, desc=f"loading {source.name}", leave=False)
    for f in it:
        img0 = load_rgb(f.image, background)
        check_size(f.image, img0, (h0, w0), "the image")
        images.append(load_rgb(f.image, background, size) if size != (w0, h0) else img0)
        if with_sem:
            if f.semantic is None:
                sems.append(torch.full((h, w), IGNORE_LABEL, dtype=torch.long))
            else:
                lab = load_labels(f.semantic)
                check_size(f.semantic, lab, (h0, w0), "the semantic map")
                if size != (w0, h0):
                    lab = load_labels(f.semantic, size)
                if ignore_label is not None:
                    lab = torch.where(lab == ignore_label, torch.full_like(lab, IGNORE_LABEL), lab)
                if class_names is None:
                    raise DataError(f"{f.semantic}: semantic maps given but no class names (classes.json)")
                valid = lab[lab != IGNORE_LABEL]
                if valid.numel() and int(valid.max()) >= len(class_names):
                    raise DataError(f"{f.semantic}: class id {int(valid.max())} has no name "
                                    f"(only {len(class_names)} classes are named)")
                sems.append(lab)
        if with_depth:
            if f.depth is None:
                depths.append(torch.zeros(h, w))
            else:
                d = load_depth(f.depth, None, depth_png_scale)
                check_size(f.depth, d, (h0, w0), "the depth map")
                depths.append(load_depth(f.depth, size, depth_png_scale) if size != (w0, h0) else d)
    Ks = torch.stack([f.K.float() for f in frames])
    cams = Cameras.from_camtoworlds(torch.stack([f.c2w.float() for f in frames]), Ks, w0, h0, convention,
                                    source=str(source))
    if size != (w0, h0):
        cams = cams.scaled(1.0 / downscale)
        cams = Cameras(cams.viewmats, cams.Ks, w, h)
    train_ids, test_ids = split if split is not None else split_every(len(frames), test_every)
    depth_t = torch.stack(depths) if with_depth else None
    if bounds is None:
        bounds = estimate_bounds(cams, depth_t, points)
    return SceneData(images=torch.stack(images), cameras=cams, image_names=[f.name for f in frames],
                     train_ids=list(train_ids), test_ids=list(test_ids), bounds=torch.as_tensor(bounds).float(),
                     depths=depth_t, semantics=torch.stack(sems) if with_sem else None,
                     class_names=list(class_names) if class_names is not None else None,
                     points=points, point_colors=point_colors, source=str(source))

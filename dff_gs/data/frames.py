"""Shared assembly of a ``SceneData`` from per-frame file lists (every loader ends here)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import torch
from torch import Tensor

from dff_gs.core.cameras import Cameras
from dff_gs.core.errors import DataError, warn
from dff_gs.core.utils import IGNORE_LABEL
from dff_gs.data.image_io import check_size, image_size, load_depth, load_labels, load_mask, load_rgba
from dff_gs.data.region import content_region
from dff_gs.data.scene import SceneData, estimate_bounds, split_every
from dff_gs.io.images import to_uint8
from dff_gs.data.undistort import Distortion, undistort_frame_paths
from dff_gs.data.validate import check_intrinsics, check_position


@dataclass
class Frame:
    """One view on disk. ``c2w`` is camera-to-world ``[4, 4]`` in ``convention``; ``K`` pixel intrinsics
    ``[3, 3]`` at the native ``width x height``; ``distortion`` (None = pinhole) is removed at load; ``mask`` is a
    PNG whose zero pixels are left out of the photometric loss (nerfstudio's ``mask_path``)."""

    image: Path
    c2w: Tensor
    K: Tensor
    width: int
    height: int
    name: str
    semantic: Optional[Path] = None
    depth: Optional[Path] = None
    mask: Optional[Path] = None
    distortion: Optional[Distortion] = None


def resolve_downscale(width: int, height: int, downscale: int, max_side: int) -> int:
    """The integer factor images are shrunk by: ``downscale`` when >= 1; ``0`` = automatic, the smallest factor
    that brings the longer side to at most ``max_side`` (``max_side <= 0``: none)."""
    if downscale >= 1:
        return int(downscale)
    if downscale < 0:
        raise DataError(f"data.downscale must be 0 (automatic) or an integer >= 1, got {downscale}")
    longest = max(width, height)
    return max(1, -(-longest // max_side)) if max_side > 0 else 1


def check_missing(missing: Sequence[str], total: int, skip_missing: bool, where: Path) -> None:
    """Images a scene names but that are not on disk: a ``DataError`` with the count and the first names, or with
    ``skip_missing`` (and some left) one printed line saying how many are skipped."""
    if not missing:
        return
    msg = f"{where}: {len(missing)} of the {total} images named are missing (first: {', '.join(missing[:3])})"
    if not skip_missing or len(missing) == total:
        raise DataError(msg + "; data.skip_missing=true trains on the rest")
    print(msg + f"; training on the other {total - len(missing)} (data.skip_missing=true)")


def check_frame(f: Frame) -> None:
    """A frame a loader built is usable: finite intrinsics with positive focal lengths, a positive integer size that
    is the image file's own (read from its header, so a wrong size fails before any undistortion map is made),
    finite distortion coefficients; a ``DataError`` naming the image otherwise. (Poses are checked by
    :func:`dff_gs.core.cameras.check_rigid`.)"""
    check_intrinsics(f.K, f.width, f.height, f"{f.image}: the camera")
    if f.distortion is not None and not all(math.isfinite(c) for c in f.distortion.coeffs):
        raise DataError(f"{f.image}: the camera's distortion coefficients are not finite ({f.distortion.describe()})")
    if bool(torch.isfinite(f.c2w).all()):  # the loaders name the file and field first; this holds for any loader
        check_position(f.c2w[:3, 3], f"{f.image}: the camera", "its pose")
    w, h = image_size(f.image)
    if (w, h) != (f.width, f.height):
        raise DataError(f"{f.image}: the image is {w}x{h} but the camera says {f.width}x{f.height}")


def _same_camera(a: Frame, b: Frame) -> bool:
    scale = max(1.0, float(a.c2w[:3, 3].abs().max()))
    return ((a.width, a.height) == (b.width, b.height) and torch.allclose(a.K.double(), b.K.double(), rtol=1e-5)
            and torch.allclose(a.c2w.double(), b.c2w.double(), rtol=1e-5, atol=1e-6 * scale)
            and (a.distortion is None) == (b.distortion is None)
            and (a.distortion is None or a.distortion.describe() == b.distortion.describe()))


def check_duplicates(frames: Sequence[Frame], test_ids: Sequence[int], source: Path) -> None:
    """An image file listed more than once: with two different cameras (which is right?) or once for training and
    once for testing (held-out metrics of a training image) a ``DataError`` naming it; else one warning (each
    listing trains as a view of its own)."""
    first: dict[Path, int] = {}
    repeats: list[tuple[int, int]] = []
    test = set(test_ids)
    for i, f in enumerate(frames):
        j = first.setdefault(f.image.resolve(), i)
        if j == i:
            continue
        if not _same_camera(frames[j], f):
            raise DataError(f"{f.image}: listed twice (views {j} and {i}) with different cameras; list each image "
                            "once")
        if (i in test) != (j in test):
            raise DataError(f"{f.image}: listed twice (views {j} and {i}), as a training and as a held-out test view: "
                            "its held-out metrics would measure a training image; list each image once")
        repeats.append((j, i))
    if repeats:
        j, i = repeats[0]
        warn(f"{source}: {len(repeats)} image(s) listed more than once (first: {frames[i].image.name}, views {j} and "
             f"{i}); each listing trains as a view of its own")


def announce_downscale(source: Path, w0: int, h0: int, factor: int, max_side: int, via: str = "") -> None:
    """The one line printed when the resolution budget (not the user) chose to downscale."""
    w, h = max(1, round(w0 / factor)), max(1, round(h0 / factor))
    print(f"{source}: {w0}x{h0} images downscaled {factor}x to {w}x{h}{via} for the CPU budget "
          f"data.max_side={max_side} (set data.downscale=1 for full size, or raise data.max_side)")


def _undistorted(frames: Sequence[Frame], source: Path, depth_png_scale: float, progress: bool) -> list[Frame]:
    """The frames with lens distortion removed; a distortion so strong that the pinhole camera it leaves is not
    valid (a focal length <= 0, an empty crop) is a ``DataError`` naming the image."""
    try:
        out = undistort_frame_paths(frames, source, depth_png_scale, progress=progress)
    except DataError as err:  # some of its messages name no file
        raise err if str(source) in str(err) else DataError(f"{source}: {err}") from None
    for f, u in zip(frames, out, strict=True):
        if f.distortion is not None and not f.distortion.is_zero:
            check_intrinsics(u.K, u.width, u.height, f"{f.image}: undistorted ({f.distortion.describe()})")
    return out


def _labels(path: Path, hw0: tuple[int, int], size: tuple[int, int], ignore_label: int | None,
            class_names: list[str] | None) -> Tensor:
    """A semantic map ``[H, W]`` int64 at ``size = (W, H)`` (checked to be ``hw0`` natively): ``ignore_label``
    mapped to ``IGNORE_LABEL``, every other id named in ``class_names``."""
    lab = load_labels(path)
    check_size(path, lab, hw0, "the semantic map")
    if size != (hw0[1], hw0[0]):
        lab = load_labels(path, size)
    if ignore_label is not None:
        lab = torch.where(lab == ignore_label, torch.full_like(lab, IGNORE_LABEL), lab)
    if class_names is None:
        raise DataError(f"{path}: semantic maps given but no class names (classes.json)")
    valid = lab[lab != IGNORE_LABEL]
    if valid.numel() and int(valid.max()) >= len(class_names):
        raise DataError(f"{path}: class id {int(valid.max())} has no name (only {len(class_names)} classes are named)")
    return lab


def assemble(frames: Sequence[Frame], *, source: Path, convention: str, downscale: int = 1, test_every: int = 8,
             background=(1.0, 1.0, 1.0), class_names: Optional[list[str]] = None, ignore_label: Optional[int] = None,
             depth_png_scale: float = 1000.0, split: Optional[tuple[list[int], list[int]]] = None,
             bounds: Optional[Tensor] = None, points: Optional[Tensor] = None,
             point_colors: Optional[Tensor] = None, max_side: int = 0, prescaled: int = 1,
             progress: bool = False) -> SceneData:
    """Read every frame's files and build the scene: lens distortion removed (cached), images shrunk by the
    integer ``downscale`` (``0``: automatic, to fit ``max_side``), RGBA composited on ``background`` with the
    alpha kept. ``prescaled``: the factor by which the frames' files are already smaller than the capture
    (a COLMAP ``images_N`` folder), recorded in ``SceneData.downscale`` with the rest."""
    if not frames:
        raise DataError(f"{source}: the scene has no frames")
    for f in frames:
        check_frame(f)
    train_ids, test_ids = split if split is not None else split_every(len(frames), test_every)
    check_duplicates(frames, test_ids, source)
    factor = resolve_downscale(frames[0].width, frames[0].height, downscale, max_side)
    if downscale == 0 and factor > 1:
        announce_downscale(source, frames[0].width, frames[0].height, factor, max_side)
    frames = _undistorted(frames, source, depth_png_scale, progress)
    w0, h0 = frames[0].width, frames[0].height
    for f in frames:
        if (f.width, f.height) != (w0, h0):
            raise DataError(f"{f.image}: size {f.width}x{f.height} differs from the first frame's {w0}x{h0} "
                            f"(all views of a scene must have one size)")
    w, h = max(1, round(w0 / factor)), max(1, round(h0 / factor))
    size = (w, h)
    with_sem = any(f.semantic for f in frames)
    with_depth = any(f.depth for f in frames)
    with_mask = any(f.mask for f in frames)
    V = len(frames)
    # filled in place, one frame decoded at a time: the peak is what the scene keeps (images as uint8, a quarter of
    # float32), not that plus a list of per-frame tensors to stack
    images = torch.empty(V, h, w, 3, dtype=torch.uint8)
    alphas: list[Optional[Tensor]] = []
    sems = torch.full((V, h, w), IGNORE_LABEL, dtype=torch.int32) if with_sem else None  # narrowed below
    depth_t = torch.zeros(V, h, w) if with_depth else None
    masks = torch.ones(V, h, w, dtype=torch.bool) if with_mask else None
    it = frames
    if progress:
        from tqdm import tqdm

        it = tqdm(frames, desc=f"loading {source.name}", leave=False)
    for i, f in enumerate(it):
        img, alpha = load_rgba(f.image, background, (h0, w0), size)
        images[i] = torch.from_numpy(to_uint8(img))
        alphas.append(alpha)
        if with_mask and f.mask is not None:
            masks[i] = load_mask(f.mask, (h0, w0), size)
        if with_sem and f.semantic is not None:
            sems[i] = _labels(f.semantic, (h0, w0), size, ignore_label, class_names)
        if with_depth and f.depth is not None:
            d = load_depth(f.depth, None, depth_png_scale)
            check_size(f.depth, d, (h0, w0), "the depth map")
            depth_t[i] = load_depth(f.depth, size, depth_png_scale) if size != (w0, h0) else d
    Ks = torch.stack([f.K.float() for f in frames])
    cams = Cameras.from_camtoworlds(torch.stack([f.c2w.float() for f in frames]), Ks, w0, h0, convention,
                                    source=str(source))
    if size != (w0, h0):
        cams = cams.resized(w, h)
    alpha_t = None  # RGBA views' alpha (an opaque view among them counts as all 1)
    if any(a is not None for a in alphas):
        alpha_t = torch.stack([a if a is not None else torch.ones(h, w) for a in alphas])
    region = None
    if bounds is None and depth_t is None and points is None:  # the region the training views see (test untouched)
        tr = torch.as_tensor(list(train_ids) or list(range(len(frames))), dtype=torch.long)
        region = content_region(cams[tr], None if alpha_t is None else alpha_t[tr])
        bounds = region.bounds if region is not None else estimate_bounds(cams[tr])
    elif bounds is None:
        bounds = estimate_bounds(cams, depth_t, points)
    if sems is not None and int(sems.max()) <= torch.iinfo(torch.int16).max:
        sems = sems.to(torch.int16)  # class ids as 16 bits when they fit: a quarter of int64
    return SceneData(images=images, cameras=cams, image_names=[f.name for f in frames],
                     train_ids=list(train_ids), test_ids=list(test_ids), bounds=torch.as_tensor(bounds).float(),
                     depths=depth_t, semantics=sems,
                     class_names=list(class_names) if class_names is not None else None,
                     points=points, point_colors=point_colors, source=str(source), alphas=alpha_t,
                     masks=masks, downscale=factor * prescaled,
                     background=tuple(float(c) for c in background), region=region)

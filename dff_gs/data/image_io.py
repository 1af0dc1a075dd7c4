"""Reading images, label maps and depth maps with errors that name the file."""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch import Tensor

from dff_gs.core.errors import DataError, warn

IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".JPG", ".PNG", ".JPEG", ".exr", ".webp")


def image_stem(file_path: str) -> str:
    """A view's name for output files: its relative path without the image extension or a leading ``./``."""
    p = Path(file_path)
    if p.suffix in IMAGE_EXTS:
        p = p.with_suffix("")
    name = p.as_posix()
    return name[2:] if name.startswith("./") else name


class ImageMissing(DataError):
    """An image a scene names that is not on disk (``data.skip_missing`` may train on the others); a folder or a
    symlink loop in its place is a plain :class:`DataError`: something is there, but not an image."""


def path_problem(path: Path) -> Optional[str]:
    """Why ``path`` cannot be read as a file, in words ("is a folder, not a file", "is a symlink loop", "is a
    symlink to X, which does not exist", "permission denied"), or None when it is a file or there is nothing at
    all there."""
    try:
        os.stat(path)
    except OSError as err:
        if err.errno == errno.ELOOP:
            return "is a symlink loop"
        if err.errno in (errno.ENOENT, errno.ENOTDIR):
            if path.is_symlink():
                return f"is a symlink to {os.readlink(path)}, which does not exist"
            return None
        return (err.strerror or str(err)).lower()
    return "is a folder, not a file" if path.is_dir() else None


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def resolve_image(path: Path, ambiguous: Optional[list[str]] = None) -> Path:
    """``path`` itself or, when it has no extension on disk, the first ``path + ext`` (in :data:`IMAGE_EXTS`'
    order) that exists. A name that several files could be (``r_0`` of ``r_0.png`` and ``r_0.jpg``) is noted in
    ``ambiguous`` as ``"r_0 -> r_0.png (also r_0.jpg)"`` for the caller to report once, or warned about here when
    no list is given. Nothing there is an :class:`ImageMissing`; a folder or a symlink loop there a
    :class:`DataError` that says so."""
    if path.is_file():
        return path
    found: list[Path] = []
    for ext in IMAGE_EXTS:
        cand = path.with_name(path.name + ext)
        if cand.is_file() and not any(_same_file(cand, f) for f in found):  # .png / .PNG on a case-blind disk
            found.append(cand)
    if found:
        if len(found) > 1:
            note = f"{path.name} -> {found[0].name} (also {', '.join(f.name for f in found[1:])})"
            if ambiguous is None:
                warn(f"{path}: the name matches several images; using {note}")
            else:
                ambiguous.append(note)
        return found[0]
    problem = path_problem(path)
    if problem is None:
        raise ImageMissing(f"{path}: image file not found")
    if problem.startswith("is a symlink to"):  # a dangling link: the image is missing
        raise ImageMissing(f"{path}: {problem}")
    raise DataError(f"{path}: {problem}")


def report_ambiguous(ambiguous: list[str], where: Path) -> None:
    """One warning for the names :func:`resolve_image` found several images for (none: nothing)."""
    if ambiguous:
        warn(f"{where}: {len(ambiguous)} image name(s) without an extension match several files; using the first "
             f"by extension ({', '.join(IMAGE_EXTS)}): {'; '.join(ambiguous[:2])}"
             + (f"; and {len(ambiguous) - 2} more" if len(ambiguous) > 2 else ""))


def _unreadable(path: Path, err: Exception, what: str = "image") -> DataError:
    """The ``DataError`` of a file that did not open: what is in its place (a folder, a symlink loop, nothing),
    else "not a readable <what>"."""
    problem = path_problem(path)
    if problem is not None:
        return DataError(f"{path}: {problem}")
    if isinstance(err, FileNotFoundError):
        return DataError(f"{path}: file not found")
    return DataError(f"{path}: not a readable {what} ({err})")


def _open(path: Path) -> Image.Image:
    try:
        img = Image.open(path)
        img.load()
        return img
    except (UnidentifiedImageError, OSError, SyntaxError) as err:
        raise _unreadable(path, err) from None


def image_size(path: Path) -> tuple[int, int]:
    """``(width, height)`` of an image file, read from its header; a ``DataError`` naming the file otherwise."""
    try:
        with Image.open(path) as im:
            return im.size
    except (UnidentifiedImageError, OSError, SyntaxError) as err:
        raise _unreadable(path, err) from None


def _resize(img: Image.Image, size: Optional[tuple[int, int]], resample) -> Image.Image:
    if size is not None and img.size != size:
        img = img.resize(size, resample)
    return img


def load_rgba(path: Path, background=(1.0, 1.0, 1.0), expect_hw: Optional[tuple[int, int]] = None,
              size: Optional[tuple[int, int]] = None) -> tuple[Tensor, Optional[Tensor]]:
    """RGB image ``[H, W, 3]`` float32 in [0, 1] composited on ``background``, and its alpha ``[H, W]`` (None for
    an image without an alpha channel). ``expect_hw``: the size the camera says (else a ``DataError`` naming the
    file); ``size = (W, H)``: resized to it (area filter) when given."""
    img = _open(path)
    if img.mode in ("I;16", "I", "F"):
        raise DataError(f"{path}: expected an 8-bit colour image, got mode {img.mode}")
    if expect_hw is not None and (img.size[1], img.size[0]) != tuple(expect_hw):
        raise DataError(f"{path}: the image is {img.size[0]}x{img.size[1]} but the camera says "
                        f"{expect_hw[1]}x{expect_hw[0]}")
    has_alpha = img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info)
    img = _resize(img.convert("RGBA"), size, Image.Resampling.BOX)
    a = np.asarray(img, dtype=np.float32) / 255.0
    rgb, alpha = a[..., :3], a[..., 3:]
    rgb = rgb * alpha + np.asarray(background, dtype=np.float32) * (1.0 - alpha)
    return torch.from_numpy(np.ascontiguousarray(rgb)), torch.from_numpy(alpha[..., 0].copy()) if has_alpha else None


def load_rgb(path: Path, background=(1.0, 1.0, 1.0), size: Optional[tuple[int, int]] = None) -> Tensor:
    """RGB image ``[H, W, 3]`` float32 in [0, 1]; RGBA is composited on ``background``; resized to
    ``size = (W, H)`` (area filter) when given."""
    return load_rgba(path, background, None, size)[0]


def load_mask(path: Path, expect_hw: tuple[int, int], size: Optional[tuple[int, int]] = None) -> Tensor:
    """A loss mask ``[H, W]`` bool (nerfstudio's ``mask_path``: zero = ignore the pixel) from a grey or RGB(A)
    PNG; resized by nearest neighbour."""
    img = _open(path)
    if (img.size[1], img.size[0]) != tuple(expect_hw):
        raise DataError(f"{path}: the mask is {img.size[0]}x{img.size[1]} but the image is "
                        f"{expect_hw[1]}x{expect_hw[0]}")
    img = _resize(img.convert("L"), size, Image.Resampling.NEAREST)
    return torch.from_numpy(np.asarray(img) > 0)


def load_labels(path: Path, size: Optional[tuple[int, int]] = None) -> Tensor:
    """Class-id map ``[H, W]`` int64 from an 8- or 16-bit single-channel PNG (nearest-neighbour resize)."""
    img = _open(path)
    if img.mode not in ("L", "P", "I", "I;16", "I;16B"):
        raise DataError(f"{path}: a semantic map must be a single-channel 8- or 16-bit PNG of class ids, "
                        f"got mode {img.mode}")
    if img.mode == "P":
        img = Image.fromarray(np.asarray(img))
    img = _resize(img, size, Image.Resampling.NEAREST)
    return torch.from_numpy(np.asarray(img).astype(np.int64))


def load_depth(path: Path, size: Optional[tuple[int, int]] = None, png_scale: float = 1000.0) -> Tensor:
    """Depth ``[H, W]`` float32 metres from ``.npy`` (metres) or a 16-bit PNG (``png_scale`` units per metre,
    millimetres by default); 0 = invalid. Resized by nearest neighbour."""
    if path.suffix == ".npy":
        try:
            d = np.load(path, allow_pickle=False)
        except (ValueError, OSError, EOFError) as err:
            raise _unreadable(path, err, ".npy depth map") from None
        d = np.squeeze(np.asarray(d))
        if d.ndim != 2 or not np.issubdtype(d.dtype, np.number):
            raise DataError(f"{path}: expected a 2D numeric depth map, got shape {list(d.shape)} dtype {d.dtype}")
        d = d.astype(np.float32)
    else:
        img = _open(path)
        if img.mode not in ("I", "I;16", "I;16B", "F", "L"):
            raise DataError(f"{path}: a depth PNG must be 16-bit single channel, got mode {img.mode}")
        d = np.asarray(img).astype(np.float32) / png_scale
    d = np.where(np.isfinite(d) & (d > 0), d, 0.0).astype(np.float32)
    if size is not None and (d.shape[1], d.shape[0]) != size:
        d = np.asarray(Image.fromarray(d, mode="F").resize(size, Image.Resampling.NEAREST))
    return torch.from_numpy(np.array(d, dtype=np.float32, copy=True))


def check_size(path: Path, t: Tensor, hw: tuple[int, int], what: str) -> None:
    if tuple(t.shape[:2]) != tuple(hw):
        raise DataError(f"{path}: {what} is {t.shape[1]}x{t.shape[0]} but the images are {hw[1]}x{hw[0]}")

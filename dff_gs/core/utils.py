"""Small shared helpers: atomic writes, seeding, constants."""

from __future__ import annotations

import contextlib
import os
import random
import tempfile
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

IGNORE_LABEL = -1
"""Semantic id meaning "unlabeled"; ignored by losses and metrics."""


def cache_dir(*parts: str) -> Path:
    """The package's cache, ``$DFF_GS_CACHE`` (unset or empty: ``~/.cache/dff_gs``), joined with ``parts``: the
    embedded scene, undistorted images, teacher maps, posed photos and rendered benchmark scenes live under it."""
    return Path(os.environ.get("DFF_GS_CACHE") or "~/.cache/dff_gs").expanduser().joinpath(*parts)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def file_mode() -> int:
    """The mode a plain ``open(path, "w")`` gives a new file: 0666 less the process's umask (0644 under 022)."""
    return 0o666 & ~_umask()


def folder_mode() -> int:
    """The mode ``mkdir`` gives a new folder: 0777 less the umask (0755 under 022)."""
    return 0o777 & ~_umask()


@contextlib.contextmanager
def atomic_write_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only on success.

    The temporary file keeps the suffix of ``path`` so writers that look at it (PIL, numpy) work, and the file
    gets the usual permissions (the umask respected, as ``open`` would), not ``mkstemp``'s private 0600, so a
    web server running as another user can serve it.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, file_mode())
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_json(path: str | os.PathLike, data: dict) -> Path:
    """``data`` as indented JSON (numbers that JSON lacks, numpy / torch scalars, as floats), written atomically."""
    import json

    with atomic_write_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, default=float))
    return Path(path)


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA) from one integer."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def evenly_spaced(total: int, n: int) -> list[int]:
    """Up to ``n`` indices of ``range(total)`` spread evenly over it, the first and the last included (sorted, no
    repeats: fewer than ``n`` when ``total < n``)."""
    return sorted({round(i * (total - 1) / max(n - 1, 1)) for i in range(n)})


def fit_side(height: int, width: int, max_side: int) -> tuple[int, int]:
    """``(height, width)`` shrunk, aspect kept, so the longer side is at most ``max_side`` (``max_side <= 0`` or a
    smaller image: unchanged)."""
    longest = max(height, width)
    if max_side <= 0 or longest <= max_side:
        return height, width
    return max(1, round(height * max_side / longest)), max(1, round(width * max_side / longest))


def as_rgb(images: torch.Tensor) -> torch.Tensor:
    """Views as float32 in [0, 1]: ``images  # [..., 3]`` uint8 (``SceneData.images`` as loaded: a quarter of the
    memory of float32) divided by 255, or float ones as they are. Convert the slice a step needs, not every view.
    Returns Tensor  # [..., 3] float32"""
    return images.float() / 255.0 if images.dtype == torch.uint8 else images.float()


def has_depth(depths: torch.Tensor) -> torch.Tensor:
    """Where depth maps ``depths  # [...]`` give a depth: positive and finite (the loaders write 0 where a map has
    none: the sky, past the sensor's range).  Returns Tensor  # [...] bool"""
    return torch.isfinite(depths) & (depths > 0)

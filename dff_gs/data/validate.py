"""Checks of values read from files (JSON, COLMAP models, PLY sidecars): each bad value is a one-line
``DataError`` that names the file and the key, never a generic exception or a value that loads silently wrong.

``where`` is the file (and, where it helps, the frame / line / camera) put in front of the message; ``name`` is
the key the value came from."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from numbers import Integral, Real
from typing import Any

import numpy as np
import torch
from torch import Tensor

from dff_gs.core.errors import DataError


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def number(value: Any, where: str, name: str, *, positive: bool = False) -> float:
    """A finite real number (an int or float, or a string that is one: ``"7.5"``; never a bool), > 0 when
    ``positive``."""
    out: float | None = None
    if isinstance(value, Real) and not isinstance(value, bool):
        try:
            out = float(value)
        except OverflowError:  # an int too large for a float
            out = math.inf
    elif isinstance(value, str):
        try:
            out = float(value)
        except ValueError:
            out = None
    if out is None:
        raise DataError(f"{where}: {name} must be a number, got {_short(value)}")
    if not math.isfinite(out):
        raise DataError(f"{where}: {name} must be finite, got {_short(value)}")
    if positive and out <= 0:
        raise DataError(f"{where}: {name} must be > 0, got {_short(value)}")
    return out


def positive_int(value: Any, where: str, name: str) -> int:
    """An integer >= 1 (an int, an integral float such as ``128.0``, or a string of digits; never a bool)."""
    out: int | None = None
    integral_float = isinstance(value, (float, np.floating)) and math.isfinite(value) and float(value).is_integer()
    digits = isinstance(value, str) and re.fullmatch(r"\s*[0-9]{1,18}\s*", value)
    if not isinstance(value, bool) and (isinstance(value, (int, np.integer)) or integral_float or digits):
        out = int(value)
    if out is None or out < 1:
        raise DataError(f"{where}: {name} must be a positive integer, got {_short(value)}")
    return out


def optional_int(value: Any, where: str, name: str) -> int | None:
    """None, or a 64-bit integer (an int, never a bool or a float)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not -(2 ** 63) <= value < 2 ** 63:
        raise DataError(f"{where}: {name} must be a 64-bit integer, got {_short(value)}")
    return value


def optional_str(value: Any, where: str, name: str) -> str | None:
    """None for a missing or empty value, else the string itself (a path); anything else is an error."""
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise DataError(f"{where}: {name} must be a string (a path), got {_short(value)}")
    return value


def real_array(value: Any, where: str, name: str, shapes: Sequence[tuple[int, ...]]) -> np.ndarray:
    """Nested JSON lists of real numbers (no strings, bools or None) of one of ``shapes`` as a float64 array;
    non-finite values are left for the caller to judge."""

    def shape_of(v: Any) -> tuple[int, ...] | None:
        if isinstance(v, Real) and not isinstance(v, bool):
            return ()
        if not isinstance(v, (list, tuple)) or not v:
            return None
        inner = [shape_of(x) for x in v]
        if any(s is None or s != inner[0] for s in inner):
            return None
        return (len(v),) + inner[0]

    want = " or ".join("x".join(map(str, s)) for s in shapes)
    shape = shape_of(value)
    if shape is None or shape not in [tuple(s) for s in shapes]:
        got = "x".join(map(str, shape)) if shape is not None else _short(value)
        raise DataError(f"{where}: {name} must be a {want} array of numbers, got {got}")
    try:
        return np.asarray(value, dtype=np.float64)
    except OverflowError:
        raise DataError(f"{where}: {name} holds a number too large for a float") from None


MAX_POSITION = 1e7
"""Largest distance of a camera from the world origin, in scene units. Cameras and Gaussians are kept in float32,
which at 1e7 resolves one whole unit: nothing can be trained there. Real captures are far inside it, whatever their
unit: a site in metres or millimetres (DTU's cameras are ~1e3 mm out), even georeferenced (UTM northings stay
below 1e7 m). Beyond it is a wrong value (1e30), not a scene."""
MAX_FOCAL_RATIO = 1e4
"""Largest focal length (and principal point coordinate) in pixels, as a multiple of the image's longer side: a
field of view of 0.006 degrees. The longest real lenses (a 5000 mm lens on a 36 mm sensor, a satellite's
pushbroom camera) are near 150x; a principal point of a crop lies within a few image sides."""
MIN_FOCAL_RATIO = 1e-3
"""Smallest focal length in pixels, as a multiple of the image's longer side: a pinhole field of view of 179.9
degrees (wider lenses are fisheyes, undistorted at load to a narrower pinhole)."""


def check_intrinsic_range(fx: float, fy: float, cx: float, cy: float, width: int, height: int, where: str) -> None:
    """Focal lengths within ``[MIN_FOCAL_RATIO, MAX_FOCAL_RATIO]`` x the image's longer side, the principal point
    within ``MAX_FOCAL_RATIO`` sides of the image (finite values, a positive size); a ``DataError`` naming ``where``
    and the value otherwise."""
    side = max(width, height)
    lo, hi = MIN_FOCAL_RATIO * side, MAX_FOCAL_RATIO * side
    for name, v in (("fx", fx), ("fy", fy)):
        if not lo <= v <= hi:
            raise DataError(f"{where}: focal length {name}={v:g} is implausible for a {width}x{height} image "
                            f"(expected {lo:g}..{hi:g} pixels, a field of view of 0.006 to 179.9 degrees)")
    for name, v in (("cx", cx), ("cy", cy)):
        if abs(v) > hi:
            raise DataError(f"{where}: principal point {name}={v:g} is implausible for a {width}x{height} image "
                            f"(expected within {hi:g} pixels of it)")


def check_position(t: Any, where: str, name: str) -> None:
    """A camera translation ``t  # [3]`` (finite, already checked) no farther than :data:`MAX_POSITION` from the
    origin; a ``DataError`` naming ``where`` and ``name`` otherwise."""
    d = math.hypot(*np.asarray(t, dtype=np.float64).reshape(-1).tolist())  # inf, not an overflow warning, past 1e308
    if d > MAX_POSITION:
        raise DataError(f"{where}: {name} puts the camera {d:.3g} units from the origin, beyond any real scene "
                        f"(at most {MAX_POSITION:g}; float32 cannot train there)")


def check_intrinsics(K: Tensor, width: Any, height: Any, where: str) -> None:
    """``K  # [3, 3]`` finite with plausible positive focal lengths and principal point
    (:func:`check_intrinsic_range`), ``width`` / ``height`` positive integers."""
    for name, v in (("width", width), ("height", height)):
        if isinstance(v, bool) or not isinstance(v, Integral) or v < 1:
            raise DataError(f"{where}: image {name} must be a positive integer, got {_short(v)}")
    K = torch.as_tensor(K).double()
    if K.shape != (3, 3) or not bool(torch.isfinite(K).all()):
        raise DataError(f"{where}: intrinsics must be finite, got {K.tolist()}")
    if not (float(K[0, 0]) > 0 and float(K[1, 1]) > 0):
        raise DataError(f"{where}: focal lengths must be > 0, got fx={float(K[0, 0]):g} fy={float(K[1, 1]):g}")
    check_intrinsic_range(float(K[0, 0]), float(K[1, 1]), float(K[0, 2]), float(K[1, 2]), int(width), int(height),
                          where)


def check_finite_points(xyz: np.ndarray, where: str, what: str = "points") -> None:
    """Every row of ``xyz  # [P, 3]`` finite, in float32 too (as the scene keeps them); else the first bad row is
    named."""
    with np.errstate(over="ignore", invalid="ignore"):
        bad = ~np.isfinite(np.asarray(xyz, dtype=np.float64).astype(np.float32)).all(-1)
    if bad.any():
        raise DataError(f"{where}: {int(bad.sum())} {what} are not finite (the first is row {int(bad.argmax())})")

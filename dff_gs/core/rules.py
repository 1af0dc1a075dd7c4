"""Rules a config value must follow (``option(..., rule=...)``): each a ``(check, requirement)`` pair, the
requirement worded for the error line ``<key>=<value>: <requirement>``
(:meth:`dff_gs.core.config.Section.validate`)."""

from __future__ import annotations

import math
from typing import Any, Callable

Rule = tuple[Callable[[Any], bool], str]

MAX_COUNT = 2**31 - 1
"""Upper bound of every step / count / interval key: a 32-bit count (2^31 steps is ~68 years at one a second), so
that ``train.steps=1e300`` is one line, not a run that never ends or an index overflow in a library."""
MAX_LR = 1e3
"""Upper bound of every learning rate: Adam moves a parameter by about ``lr`` a step, and the largest rate here is
5e-2 (logit opacities); a rate of 1e3 already throws every parameter off in one step, so anything above is a typo
(a missing ``e-``), refused before any work rather than trained into NaNs."""
MAX_MAGNITUDE = 2**31
"""Every other number of the config is finite and below this in magnitude."""
MAX_FEATURE_DIM = 4096
"""Widest feature: the widest teacher maps are 1536 (DINOv2-g) / 1280 (EfficientNet); 4096 floats x 50M Gaussians x 4
(value, gradient, two Adam moments) is already 3 TB. Bounds like this one keep a typo (``model.feature_dim=300000``)
one line naming the key before any work, not an allocator's traceback minutes in."""


def finite(v: Any) -> bool:
    """A number (not a bool) that is finite; an integer too large for a float (10**400) counts as out of range."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return False
    try:
        return math.isfinite(v)
    except OverflowError:
        return False


def _num(x: float) -> str:
    return str(x) if isinstance(x, int) else f"{x:g}"


def at_least(low: float, high: float | None = None) -> Rule:
    if high is None:
        return (lambda v: finite(v) and v >= low), f"must be >= {_num(low)}"
    return (lambda v: finite(v) and low <= v <= high), f"must be >= {_num(low)} and <= {_num(high)}"


def count(low: int) -> Rule:
    """A step, count or interval: ``low`` .. :data:`MAX_COUNT`."""
    return at_least(low, MAX_COUNT)


def within(low: float, high: float, open_low: bool = False) -> Rule:
    if open_low:
        return (lambda v: finite(v) and low < v <= high), f"must be in ({_num(low)}, {_num(high)}]"
    return (lambda v: finite(v) and low <= v <= high), f"must be in [{_num(low)}, {_num(high)}]"


POSITIVE: Rule = ((lambda v: finite(v) and v > 0), "must be > 0")
BELOW_ONE: Rule = ((lambda v: finite(v) and 0 <= v < 1), "must be in [0, 1)")
LEARNING_RATE: Rule = within(0, MAX_LR)

"""Analytic ray-primitive intersections and smooth value noise for the synthetic scene.

Every primitive answers ``intersect(origins [M, 3], dirs [M, 3]) -> (t [M], normals [M, 3])`` for a
batch of rays at once (numpy, float64): ``t`` is the ray parameter of the nearest hit in front of the
origin (``inf`` where the ray misses), ``normals`` the outward unit surface normal there (undefined
where ``t`` is ``inf``). Directions need not be unit length: ``t`` is measured in units of ``dirs``, so
rays whose camera-space direction has z = 1 return the z-depth directly.

World frame of the scene: z up, metres. Cylinders and frusta have vertical (z) axes; boxes may be
rotated about z (``yaw``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

EPS_T = 1e-6
"""Hits closer than this along the ray are ignored (self-intersection guard)."""

_TINY = 1e-12


def _safe(d: np.ndarray) -> np.ndarray:
    """Replace exact zeros by a tiny number of the right sign, so slab divisions stay finite."""
    return np.where(np.abs(d) < _TINY, np.where(d < 0, -_TINY, _TINY), d)


def _rot_z(yaw: float) -> np.ndarray:
    c, s = np.cos(yaw), np.sin(yaw)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def _nearest_positive(t_a: np.ndarray, t_b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Of two candidate roots per ray, the smaller one above EPS_T (inf if none); also which (False=a)."""
    a_ok = t_a > EPS_T
    t = np.where(a_ok, t_a, np.where(t_b > EPS_T, t_b, np.inf))
    return t, ~a_ok


@dataclass
class Primitive:
    """Base class: a solid with a class id, an owning object index, a part name and a material."""

    class_id: int = 0
    object_index: int = 0
    part: str = ""
    material: object = None  # callable(points_world [M,3], points_local [M,3], normals [M,3]) -> albedo [M,3]

    def intersect(self, origins: np.ndarray, dirs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    def local(self, points: np.ndarray) -> np.ndarray:
        """World points [M, 3] -> the primitive's local frame [M, 3] (used for solid textures)."""
        raise NotImplementedError

    def aabb(self) -> np.ndarray:
        """[2, 3] world axis-aligned bounding box (min, max)."""
        raise NotImplementedError


@dataclass
class Box(Primitive):
    """Box with centre ``center`` [3], half extents ``half`` [3] and rotation ``yaw`` about z."""

    center: np.ndarray = field(default_factory=lambda: np.zeros(3))
    half: np.ndarray = field(default_factory=lambda: np.ones(3))
    yaw: float = 0.0

    def __post_init__(self):
        self.center = np.asarray(self.center, np.float64)
        self.half = np.asarray(self.half, np.float64)
        self._r = _rot_z(self.yaw)  # local -> world

    def local(self, points):
        return (points - self.center) @ self._r  # R^T (p - c), row vectors

    def intersect(self, origins, dirs):
        o = self.local(origins)
        d = _safe(dirs @ self._r)
        inv = 1.0 / d
        t1 = (-self.half - o) * inv
        t2 = (self.half - o) * inv
        tmin = np.minimum(t1, t2)
        tmax = np.maximum(t1, t2)
        near_axis = np.argmax(tmin, axis=1)
        far_axis = np.argmin(tmax, axis=1)
        t_near = np.take_along_axis(tmin, near_axis[:, None], 1)[:, 0]
        t_far = np.take_along_axis(tmax, far_axis[:, None], 1)[:, 0]
        hit = (t_near <= t_far) & (t_far > EPS_T)
        inside = t_near <= EPS_T
        t = np.where(hit, np.where(inside, t_far, t_near), np.inf)
        axis = np.where(inside, far_axis, near_axis)
        rows = np.arange(len(o))
        n_local = np.zeros_like(o)
        # Entering through the face whose slab was crossed last: normal opposes the direction.
        sign = -np.sign(d[rows, axis])
        n_local[rows, axis] = np.where(inside, -sign, sign)
        return t, n_local @ self._r.T

    def aabb(self):
        corners = np.array([[sx, sy, sz] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)]) * self.half
        world = corners @ self._r.T + self.center
        return np.stack([world.min(0), world.max(0)])


@dataclass
class Quad(Primitive):
    """Axis-aligned rectangle ``coord[axis] == offset`` with bounds ``lo``/``hi`` [3] on the other axes.

    Used for the room's floor, walls and ceiling. ``normal_sign`` orients the normal along ``axis``.
    """

    axis: int = 2
    offset: float = 0.0
    lo: np.ndarray = field(default_factory=lambda: -np.ones(3))
    hi: np.ndarray = field(default_factory=lambda: np.ones(3))
    normal_sign: float = 1.0

    def local(self, points):
        return points.copy()

    def intersect(self, origins, dirs):
        d = _safe(dirs[:, self.axis])
        t = (self.offset - origins[:, self.axis]) / d
        p = origins + t[:, None] * dirs
        ok = t > EPS_T
        for ax in range(3):
            if ax != self.axis:
                ok &= (p[:, ax] >= self.lo[ax]) & (p[:, ax] <= self.hi[ax])
        n = np.zeros_like(origins)
        n[:, self.axis] = self.normal_sign
        return np.where(ok, t, np.inf), n

    def aabb(self):
        lo, hi = self.lo.copy(), self.hi.copy()
        lo[self.axis] = hi[self.axis] = self.offset
        return np.stack([lo, hi])


@dataclass
class Ellipsoid(Primitive):
    """Axis-aligned ellipsoid with centre ``center`` [3] and radii ``radii`` [3]."""

    center: np.ndarray = field(default_factory=lambda: np.zeros(3))
    radii: np.ndarray = field(default_factory=lambda: np.ones(3))

    def __post_init__(self):
        self.center = np.asarray(self.center, np.float64)
        self.radii = np.asarray(self.radii, np.float64)

    def local(self, points):
        return points - self.center

    def intersect(self, origins, dirs):
        o = (origins - self.center) / self.radii
        d = dirs / self.radii
        a = np.einsum("ij,ij->i", d, d)
        b = np.einsum("ij,ij->i", o, d)
        c = np.einsum("ij,ij->i", o, o) - 1.0
        disc = b * b - a * c
        sq = np.sqrt(np.maximum(disc, 0.0))
        t, _ = _nearest_positive((-b - sq) / a, (-b + sq) / a)
        t = np.where(disc >= 0, t, np.inf)
        p = origins + np.where(np.isfinite(t), t, 0.0)[:, None] * dirs
        n = (p - self.center) / self.radii**2
        n /= np.maximum(np.linalg.norm(n, axis=1, keepdims=True), _TINY)
        return t, n

    def aabb(self):
        return np.stack([self.center - self.radii, self.center + self.radii])


@dataclass
class Frustum(Primitive):
    """Capped vertical cone frustum: axis through (cx, cy), z in [z0, z1], radius r0 at z0 and r1 at z1.

    ``r0 == r1`` gives a capped cylinder.
    """

    cx: float = 0.0
    cy: float = 0.0
    z0: float = 0.0
    z1: float = 1.0
    r0: float = 0.5
    r1: float = 0.5

    def local(self, points):
        return points - np.array([self.cx, self.cy, self.z0])

    def intersect(self, origins, dirs):
        ox = origins[:, 0] - self.cx
        oy = origins[:, 1] - self.cy
        oz = origins[:, 2]
        dx, dy, dz = dirs[:, 0], dirs[:, 1], dirs[:, 2]
        k = (self.r1 - self.r0) / (self.z1 - self.z0)
        rad0 = self.r0 + k * (oz - self.z0)  # radius at the origin's height (linear extension)
        a = dx * dx + dy * dy - k * k * dz * dz
        b = ox * dx + oy * dy - k * rad0 * dz
        c = ox * ox + oy * oy - rad0 * rad0
        disc = b * b - a * c
        sq = np.sqrt(np.maximum(disc, 0.0))
        a_safe = _safe(a)
        cand = []
        for root in ((-b - sq) / a_safe, (-b + sq) / a_safe):
            z = oz + root * dz
            r_at = self.r0 + k * (z - self.z0)
            ok = (disc >= 0) & (root > EPS_T) & (z >= self.z0) & (z <= self.z1) & (r_at >= 0)
            cand.append(np.where(ok, root, np.inf))
        dz_safe = _safe(dz)
        for zc, rc in ((self.z0, self.r0), (self.z1, self.r1)):
            tc = (zc - oz) / dz_safe
            px, py = ox + tc * dx, oy + tc * dy
            ok = (tc > EPS_T) & (px * px + py * py <= rc * rc)
            cand.append(np.where(ok, tc, np.inf))
        cand = np.stack(cand, 1)
        which = np.argmin(cand, 1)
        t = cand[np.arange(len(cand)), which]
        tt = np.where(np.isfinite(t), t, 0.0)
        px, py, pz = ox + tt * dx, oy + tt * dy, oz + tt * dz
        r_here = self.r0 + k * (pz - self.z0)
        side = np.stack([px, py, -r_here * k], 1)
        side /= np.maximum(np.linalg.norm(side, axis=1, keepdims=True), _TINY)
        n = np.zeros_like(origins)
        is_side = which < 2
        n[is_side] = side[is_side]
        n[which == 2, 2] = -1.0
        n[which == 3, 2] = 1.0
        return t, n

    def aabb(self):
        r = max(self.r0, self.r1)
        return np.array([[self.cx - r, self.cy - r, self.z0], [self.cx + r, self.cy + r, self.z1]])


def cylinder(cx: float, cy: float, z0: float, z1: float, r: float, **kw) -> Frustum:
    """Capped vertical cylinder (a frustum with equal radii)."""
    return Frustum(cx=cx, cy=cy, z0=z0, z1=z1, r0=r, r1=r, **kw)


class ValueNoise:
    """Smooth 3D value noise: random values on an integer lattice (periodic, ``size``^3), smoothstep-
    interpolated. Values in [0, 1]; one lattice cell per unit of input, so ``noise(p * f)`` has features
    about ``1 / f`` apart."""

    def __init__(self, rng: np.random.Generator, size: int = 32):
        self.size = size
        self.table = rng.random((size, size, size))

    def __call__(self, points: np.ndarray) -> np.ndarray:
        """points [M, 3] -> [M] in [0, 1]."""
        pf = np.floor(points)
        f = points - pf
        w = f * f * (3.0 - 2.0 * f)
        i0 = pf.astype(np.int64) % self.size
        i1 = (i0 + 1) % self.size
        tab = self.table
        out = np.zeros(len(points))
        for cx in (0, 1):
            ix = i1[:, 0] if cx else i0[:, 0]
            wx = w[:, 0] if cx else 1.0 - w[:, 0]
            for cy in (0, 1):
                iy = i1[:, 1] if cy else i0[:, 1]
                wy = w[:, 1] if cy else 1.0 - w[:, 1]
                for cz in (0, 1):
                    iz = i1[:, 2] if cz else i0[:, 2]
                    wz = w[:, 2] if cz else 1.0 - w[:, 2]
                    out += wx * wy * wz * tab[ix, iy, iz]
        return out

    def fbm(self, points: np.ndarray, octaves: int = 2, gain: float = 0.5) -> np.ndarray:
        """Fractal sum of ``octaves`` octaves (frequency doubling), renormalised to [0, 1]."""
        total, amp, norm = np.zeros(len(points)), 1.0, 0.0
        for o in range(octaves):
            total += amp * self(points * (2.0**o) + 17.0 * o)
            norm += amp
            amp *= gain
        return total / norm


def smoothstep(e0: float, e1: float, x: np.ndarray) -> np.ndarray:
    x = np.clip((x - e0) / (e1 - e0), 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)

"""Seeded pybullet layouts (``gen-<seed>``) for the selection / edit benchmarks: an evaluation no code is tuned to.

From the seed alone (``numpy.random.default_rng(seed)``): which objects (3-8, one per class, at least one
multi-part: robots, arms, cars, tables with legs, block towers, ...), their sizes, yaw and joint poses, what they
rest on (the floor, a table top, another object: a cube on a crate, a ball in a tray) and touch (objects pushed
against each other), the floor (tinted checker, grid or plain), the sky colour, the light and the camera path.
Every body has a collision shape whose axis-aligned box bounds what it draws, so footprints come from
``p.getAABB`` and placement is rejection sampling on them. ``pybullet_scene.py`` renders these layouts.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Callable

import numpy as np
import pybullet as p
import pybullet_data

DATA = Path(pybullet_data.getDataPath())
REGRESSION_SEEDS = (1, 2, 3, 4, 5, 6, 7, 8)  # the fixed regression set: gen-1 ... gen-8
PREFIX = "gen-"
GAP = 0.025  # free space kept between footprints of objects that do not touch (metres)


def generated_layouts(seeds) -> list[str]:
    """Layout names for ``seeds``: ``gen-<seed>``."""
    return [f"{PREFIX}{int(s)}" for s in seeds]


def fresh_seeds(n: int, rng=None) -> list[int]:
    """``n`` new distinct seeds (outside the regression set), from ``rng`` or the OS's entropy."""
    rng = rng if rng is not None else np.random.default_rng(int.from_bytes(os.urandom(8), "little"))
    seeds: list[int] = []
    while len(seeds) < n:
        s = int(rng.integers(100, 2**31 - 1))
        if s not in seeds and s not in REGRESSION_SEEDS:
            seeds.append(s)
    return seeds


def layout_seed(name: str) -> int | None:
    """The seed of a generated layout's name (``gen-12`` -> 12), None for any other name."""
    if not name.startswith(PREFIX):
        return None
    try:
        return int(name[len(PREFIX):])
    except ValueError:
        return None


# ---------------------------------------------------------------------------------------------- bodies
def quat(yaw_deg: float, roll_deg: float = 0.0) -> list[float]:
    return p.getQuaternionFromEuler([math.radians(roll_deg), 0.0, math.radians(yaw_deg)])


@lru_cache(maxsize=None)
def _obj_vertices(file: str) -> np.ndarray:
    return np.array([ln.split()[1:4] for ln in (DATA / file).read_text().splitlines() if ln.startswith("v ")],
                    dtype=np.float64)


def mesh(cid: int, file: str, size: float, yaw=0.0, roll=0.0, rgba=None, stretch=(1.0, 1.0, 1.0)) -> int:
    """A mesh scaled so its largest side is ``size`` metres, centred on the origin, with a collision box that is
    exactly its (rotated) bounding box."""
    q = quat(yaw, roll)
    rot = np.array(p.getMatrixFromQuaternion(q)).reshape(3, 3)
    v = (_obj_vertices(file) * np.asarray(stretch)) @ rot.T
    lo, hi = v.min(0), v.max(0)
    scale = size / float((hi - lo).max())
    extra = {} if rgba is None else {"rgbaColor": list(rgba)}
    vis = p.createVisualShape(p.GEOM_MESH, fileName=str(DATA / file), meshScale=[scale * s for s in stretch],
                              visualFramePosition=(-0.5 * (lo + hi) * scale).tolist(), visualFrameOrientation=q,
                              physicsClientId=cid, **extra)
    col = p.createCollisionShape(p.GEOM_BOX, halfExtents=(0.5 * (hi - lo) * scale).tolist(), physicsClientId=cid)
    return p.createMultiBody(0, col, vis, [0, 0, 0], physicsClientId=cid)


def prim(cid: int, geom: int, pos, rgba, orn=(0, 0, 0, 1), **dims) -> int:
    """A box / sphere / cylinder body (visual and collision of the same shape) at ``pos``."""
    cdims = dict(dims)
    if "length" in cdims:
        cdims["height"] = cdims.pop("length")
    vis = p.createVisualShape(geom, rgbaColor=list(rgba), physicsClientId=cid, **dims)
    col = p.createCollisionShape(geom, physicsClientId=cid, **cdims)
    return p.createMultiBody(0, col, vis, list(pos), list(orn), physicsClientId=cid)


def urdf(cid: int, file: str, scale: float, yaw=0.0, roll=0.0, rng=None, bend=0.0) -> int:
    """A fixed-base URDF; with ``bend`` its revolute joints are set to seeded angles within +-``bend`` rad."""
    body = p.loadURDF(str(DATA / file), [0, 0, 0], quat(yaw, roll), useFixedBase=True, globalScaling=scale,
                      physicsClientId=cid)
    for j in range(p.getNumJoints(body, physicsClientId=cid) if bend else 0):
        info = p.getJointInfo(body, j, physicsClientId=cid)
        if info[2] == p.JOINT_REVOLUTE:
            lo, hi = (info[8], info[9]) if info[8] < info[9] else (-math.pi, math.pi)
            p.resetJointState(body, j, float(np.clip(rng.uniform(-bend, bend), lo, hi)), physicsClientId=cid)
    return body


def aabb(cid: int, bodies: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """The world box around every link (with a collision shape) of ``bodies``."""
    lo, hi = np.full(3, np.inf), np.full(3, -np.inf)
    for b in bodies:
        for link in range(-1, p.getNumJoints(b, physicsClientId=cid)):
            if p.getCollisionShapeData(b, link, physicsClientId=cid):
                a, c = p.getAABB(b, link, physicsClientId=cid)
                lo, hi = np.minimum(lo, a), np.maximum(hi, c)
    return lo, hi


def move(cid: int, bodies: list[int], delta) -> None:
    for b in bodies:
        pos, orn = p.getBasePositionAndOrientation(b, physicsClientId=cid)
        p.resetBasePositionAndOrientation(b, (np.asarray(pos) + delta).tolist(), orn, physicsClientId=cid)


def _rotated(yaw: float, x: float, y: float, z: float) -> list[float]:
    c, s = math.cos(math.radians(yaw)), math.sin(math.radians(yaw))
    return [c * x - s * y, s * x + c * y, z]


# ---------------------------------------------------------------------------------------------- composites
def block_tower(cid, rng, size, yaw) -> list[int]:
    """Crossed layers of three blocks (a jenga tower), one body per block, tints from a seeded palette."""
    layers, k = int(rng.integers(4, 9)), size / 0.3
    base = rng.choice([[0.82, 0.6, 0.38], [0.85, 0.3, 0.25], [0.3, 0.55, 0.85], [0.9, 0.8, 0.3]])
    bodies = []
    for i in range(layers):
        for j in range(3):
            off, tint = 0.095 * k * (j - 1), 0.75 + 0.12 * ((i + j) % 3)
            dx, dy = (off, 0.0) if i % 2 == 0 else (0.0, off)
            pos = _rotated(yaw, dx, dy, 0.027 * k * (1 + 2 * i))
            bodies.append(prim(cid, p.GEOM_BOX, pos, [*(np.asarray(base) * tint), 1.0], quat(yaw + 90.0 * (i % 2)),
                               halfExtents=[0.045 * k, 0.14 * k, 0.027 * k]))
    return bodies


def snowman(cid, rng, size, yaw) -> list[int]:
    """Three white balls, a black hat and an orange nose (three materials)."""
    r = np.array([0.3, 0.22, 0.16]) * size
    z, bodies, white = 0.0, [], [0.95, 0.95, 0.97, 1]
    for radius in r:
        z += radius
        bodies.append(prim(cid, p.GEOM_SPHERE, [0, 0, z], white, radius=float(radius)))
        z += 0.8 * radius
    head_z = z - 0.8 * r[2]
    hat_h = 0.14 * size
    bodies.append(prim(cid, p.GEOM_CYLINDER, [0, 0, head_z + 0.85 * r[2] + 0.5 * hat_h], [0.08, 0.08, 0.1, 1],
                       radius=float(0.75 * r[2]), length=float(hat_h)))
    nose = _rotated(yaw, r[2] + 0.04 * size, 0, head_z)
    nose_orn = p.getQuaternionFromEuler([0, math.pi / 2, math.radians(yaw)])
    bodies.append(prim(cid, p.GEOM_CYLINDER, nose, [1.0, 0.5, 0.1, 1], nose_orn, radius=float(0.035 * size),
                       length=float(0.1 * size)))
    return bodies


def lamp(cid, rng, size, yaw) -> list[int]:
    """A floor lamp: a dark base disc, a thin metal pole and a coloured shade."""
    shade = [*rng.uniform(0.3, 1.0, 3), 1.0]
    h_base, h_pole, h_shade = 0.04 * size, 0.7 * size, 0.26 * size
    return [prim(cid, p.GEOM_CYLINDER, [0, 0, 0.5 * h_base], [0.15, 0.15, 0.17, 1], radius=0.16 * size,
                 length=h_base),
            prim(cid, p.GEOM_CYLINDER, [0, 0, h_base + 0.5 * h_pole], [0.7, 0.7, 0.72, 1], radius=0.018 * size,
                 length=h_pole),
            prim(cid, p.GEOM_CYLINDER, [0, 0, h_base + h_pole + 0.4 * h_shade], shade, radius=0.17 * size,
                 length=h_shade)]


# ---------------------------------------------------------------------------------------------- catalogue
@dataclass(frozen=True)
class Entry:
    """One catalogue entry (``type``): its class name, whether it has several parts, its size range (metres,
    largest side, or a URDF scale), how it is built; ``small``: may stand on a table or a holder; ``holder``:
    may carry a small object; ``ground0``: the body's origin is its floor contact (its collision box does not
    reach the floor, e.g. a table whose legs are visual only)."""
    cls: str
    multi: bool
    sizes: tuple[float, float]
    build: Callable
    small: bool = False
    holder: bool = False
    ground0: bool = False
    seat: float = 1.0  # a holder carries objects at this fraction of its height (a tray: on its floor)


def _m(file, roll=0.0, rgba=None, random_rgba=False):
    def build(cid, rng, size, yaw):
        colour = [*rng.uniform(0.15, 0.95, 3), 1.0] if random_rgba else rgba
        return [mesh(cid, file, size, yaw, roll, colour)]
    return build


def _u(file, roll=0.0, bend=0.0):
    def build(cid, rng, size, yaw):
        return [urdf(cid, file, size, yaw, roll, rng, bend)]
    return build


def _gadget(cid, rng, size, yaw):
    k = int(rng.integers(0, 1000))
    return [mesh(cid, f"random_urdfs/{k:03d}/{k:03d}.obj", size, yaw, 0.0, [*rng.uniform(0.2, 0.95, 3), 1.0])]


def _box(cid, rng, size, yaw, rgba=None):
    colour = rgba or [*rng.uniform(0.15, 0.95, 3), 1.0]
    return [prim(cid, p.GEOM_BOX, [0, 0, 0], colour, quat(yaw), halfExtents=[0.5 * size] * 3)]


CATALOGUE: dict[str, Entry] = {
    "r2d2": Entry("robot", True, (0.55, 0.8), _u("r2d2.urdf")),
    "kuka": Entry("robot arm", True, (0.4, 0.55), _u("kuka_iiwa/model.urdf", bend=0.7)),
    "panda": Entry("robot arm", True, (0.45, 0.6), _u("franka_panda/panda.urdf", bend=0.5)),
    "xarm": Entry("robot arm", True, (0.8, 1.05), _u("xarm/xarm6_robot.urdf", bend=0.5)),
    "racecar": Entry("race car", True, (1.1, 1.5), _u("racecar/racecar.urdf")),
    "husky": Entry("rover", True, (0.5, 0.65), _u("husky/husky.urdf")),
    "a1": Entry("robot dog", True, (0.85, 1.1), _u("a1/a1.urdf")),
    "laikago": Entry("robot dog", True, (0.6, 0.8), _u("laikago/laikago_toes_zup.urdf")),
    "mini_cheetah": Entry("robot dog", True, (0.85, 1.1), _u("mini_cheetah/mini_cheetah.urdf")),
    "humanoid": Entry("mannequin", True, (0.1, 0.125), _u("humanoid/humanoid.urdf", roll=90.0)),
    "table": Entry("table", True, (0.5, 0.62), _u("table/table.urdf"), ground0=True),
    "table_square": Entry("table", True, (0.8, 0.95), _u("table_square/table_square.urdf"), ground0=True),
    "block_tower": Entry("block tower", True, (0.28, 0.36), block_tower),
    "snowman": Entry("snowman", True, (0.3, 0.42), snowman, small=True),
    "lamp": Entry("lamp", True, (0.55, 0.75), lamp),
    "duck": Entry("rubber duck", False, (0.3, 0.42), _m("duck.obj", roll=90.0), small=True),
    "teddy": Entry("teddy bear", False, (0.35, 0.48), _m("teddy2_VHACD_CHs.obj", 90.0, [0.62, 0.4, 0.22, 1]),
                   small=True),
    "soccer_ball": Entry("soccer ball", False, (0.25, 0.36), _m("soccerball.obj"), small=True),
    "ball": Entry("ball", False, (0.25, 0.38), _m("sphere_smooth.obj", random_rgba=True), small=True),
    "bunny": Entry("bunny", False, (0.3, 0.45), _m("bunny.obj", rgba=[0.93, 0.88, 0.72, 1]), small=True),
    "ring": Entry("ring", False, (0.35, 0.5), _m("torus/torus_textured.obj", 90.0, random_rgba=True), small=True),
    "tray": Entry("tray", False, (0.45, 0.6), _m("tray/tray_textured.obj"), holder=True, seat=0.06),
    "crate": Entry("crate", False, (0.3, 0.4), lambda c, r, s, y: _box(c, r, s, y, [0.62, 0.45, 0.26, 1]),
                   holder=True),
    "cube": Entry("cube", False, (0.15, 0.24), _box, small=True),
    "mug": Entry("mug", False, (0.2, 0.28), _m("objects/mug.obj", rgba=None), small=True),
    "lego": Entry("lego brick", False, (0.18, 0.26), _m("lego/lego.obj", random_rgba=True), small=True),
    "gadget": Entry("gadget", False, (0.22, 0.34), _gadget, small=True),
    "cone": Entry("traffic cone", False, (0.25, 0.38), _m("racecar/meshes/cone.obj", rgba=[1.0, 0.45, 0.05, 1]),
                  small=True),
}
BALLS = ("soccer ball", "ball")  # at most one of these per layout (a query "ball" must mean one object)
BIG = ("robot", "robot arm", "race car", "rover", "robot dog", "mannequin")  # large URDF classes


# ---------------------------------------------------------------------------------------------- choosing
def _classes() -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for t, e in CATALOGUE.items():
        out.setdefault(e.cls, []).append(t)
    return out


def choose(rng) -> list[tuple[str, str]]:
    """``(type, role)`` for 3-8 objects, one per class; role: "floor", "table" (on the table's top), "holder"
    (on a tray / crate chosen before it) or "touch" (pushed against an object already on the floor)."""
    n, by_class = int(rng.integers(3, 9)), _classes()
    n_big = 1 if n < 4 or rng.random() < 0.5 else 2
    classes = [str(c) for c in rng.choice(sorted(BIG), n_big, replace=False)]
    table = rng.random() < 0.6 and n - len(classes) >= 2
    pool = [str(c) for c in rng.permutation(sorted(set(by_class) - set(BIG) - {"table"}))]
    if table:
        classes.append("table")
        pool.sort(key=lambda c: not CATALOGUE[by_class[c][0]].small)  # a small object first: one for the top
    for c in pool:
        if len(classes) >= n:
            break
        if c in BALLS and any(b in classes for b in BALLS):
            continue
        classes.append(c)
    types = [str(rng.choice(by_class[c])) for c in classes]
    small = [t for t in types if CATALOGUE[t].small]
    on_table = small[: int(rng.integers(1, min(3, len(small)) + 1))] if table and small else []
    roles = {t: "table" for t in on_table}
    for h in [t for t in types if CATALOGUE[t].holder]:
        free = [t for t in small if t not in roles]
        if free and rng.random() < 0.7:
            roles[free[0]] = "holder:" + h
    for t in types:
        if t not in roles:
            roles[t] = "touch" if not CATALOGUE[t].ground0 and rng.random() < 0.4 else "floor"
    rank = {"floor": 0, "touch": 1, "table": 2}
    order = sorted(types, key=lambda t: (rank.get(roles[t], 3), not CATALOGUE[t].ground0, t not in small))
    return [(t, roles[t]) for t in order]


# ---------------------------------------------------------------------------------------------- placing
@dataclass
class Placed:
    type: str
    bodies: list[int]
    lo: np.ndarray
    hi: np.ndarray
    support: str = "floor"
    touching: list[str] = field(default_factory=list)

    @property
    def cls(self) -> str:
        return CATALOGUE[self.type].cls


def _footprint_free(lo, hi, placed: list[Placed], skip=(), gap=GAP) -> bool:
    for o in placed:
        if o.support == "floor" and o not in skip and np.all(lo[:2] < o.hi[:2] + gap) and \
                np.all(hi[:2] > o.lo[:2] - gap):
            return False
    return True


def _put(cid, obj: Placed, xy, z) -> None:
    """Move ``obj`` so its box's bottom centre is at ``(xy, z)``."""
    delta = np.array([xy[0] - 0.5 * (obj.lo[0] + obj.hi[0]), xy[1] - 0.5 * (obj.lo[1] + obj.hi[1]), z - obj.lo[2]])
    move(cid, obj.bodies, delta)
    obj.lo, obj.hi = obj.lo + delta, obj.hi + delta


def place_floor(cid, obj: Placed, placed: list[Placed], rng, radius: float) -> bool:
    half = 0.5 * (obj.hi - obj.lo)[:2]
    for k in range(400):  # the disc grows as tries fail (to 2x its radius)
        r, a = radius * (1 + k / 400) * math.sqrt(rng.uniform()), rng.uniform(0, 2 * math.pi)
        xy = np.array([r * math.cos(a), r * math.sin(a)])
        if _footprint_free(xy - half, xy + half, placed):
            _put(cid, obj, xy, 0.0)
            return True
    return False


def place_touching(cid, obj: Placed, placed: list[Placed], rng, radius: float) -> bool:
    """Against one side of an object on the floor (boxes touching, overlapping by >= 30% along the side)."""
    half = 0.5 * (obj.hi - obj.lo)[:2]
    anchors = [o for o in placed if o.support == "floor" and not CATALOGUE[o.type].ground0]
    for k in rng.permutation(len(anchors)):
        a = anchors[k]
        ah, ac = 0.5 * (a.hi - a.lo)[:2], 0.5 * (a.hi + a.lo)[:2]
        for side in rng.permutation(4):
            axis, sign = side % 2, 1.0 if side < 2 else -1.0
            other = 1 - axis
            slack = max(ah[other] + half[other] - 0.6 * min(ah[other], half[other]), 0.0)
            xy = ac.copy()
            xy[axis] += sign * (ah[axis] + half[axis] + 0.002)
            xy[other] += rng.uniform(-slack, slack)
            if np.linalg.norm(xy) < radius * 1.2 and _footprint_free(xy - half, xy + half, placed, skip=(a,)):
                _put(cid, obj, xy, 0.0)
                obj.touching.append(a.cls)
                return True
    return False


def place_on(cid, obj: Placed, base: Placed, others: list[Placed], rng, margin=0.03) -> bool:
    """On top of ``base`` (a table's top, a crate, in a tray), clear of ``others`` already on it."""
    half = 0.5 * (obj.hi - obj.lo)[:2]
    lo, hi = base.lo[:2] + margin + half, base.hi[:2] - margin - half
    if np.any(lo > hi):
        return False
    entry = CATALOGUE[base.type]
    z = base.lo[2] + entry.seat * (base.hi[2] - base.lo[2])
    for _ in range(200):
        xy = rng.uniform(lo, hi) if entry.ground0 else 0.5 * (lo + hi) + 0.3 * rng.uniform(lo - hi, hi - lo) / 2
        if all(np.any(xy - half > o.hi[:2] + GAP) or np.any(xy + half < o.lo[:2] - GAP) for o in others):
            _put(cid, obj, xy, z)
            obj.support = base.cls
            return True
    return False


# ---------------------------------------------------------------------------------------------- style
FLOORS = (  # class, texture (None: plain), tint range low / high
    ("floor", "checker_blue.png", (0.55, 0.55, 0.55), (1.0, 1.0, 1.0)),
    ("floor", "checker_grid.jpg", (0.6, 0.6, 0.6), (1.0, 1.0, 1.0)),
    ("floor", None, (0.35, 0.3, 0.25), (0.75, 0.65, 0.55)),
    ("grass", "checker_blue.png", (0.35, 0.7, 0.25), (0.55, 0.9, 0.4)),
    ("carpet", None, (0.45, 0.15, 0.15), (0.75, 0.35, 0.3)),
)


def ground(cid: int, half: float, rgba, texture: str | None, square: float) -> list[int]:
    """A ``2 * half`` metre square of ground, tinted ``rgba``, with ``texture`` tiled every ``2 * square`` m."""
    n = half / square
    shape = p.createVisualShape(p.GEOM_MESH, vertices=[[-half, -half, 0], [half, -half, 0], [half, half, 0],
                                                       [-half, half, 0]],
                                indices=[0, 1, 2, 0, 2, 3], uvs=[[0, 0], [n, 0], [n, n], [0, n]],
                                normals=[[0, 0, 1]] * 4, rgbaColor=list(rgba), physicsClientId=cid)
    body = p.createMultiBody(0, -1, shape, [0, 0, 0], physicsClientId=cid)
    if texture:
        tex = p.loadTexture(str(DATA / texture), physicsClientId=cid)
        p.changeVisualShape(body, -1, textureUniqueId=tex, physicsClientId=cid)
    return [body]


def style(rng) -> dict:
    """Floor (class, texture, tint, tile size), sky colour, light and camera-path parameters."""
    cls, tex, lo, hi = FLOORS[int(rng.integers(len(FLOORS)))]
    sky = rng.choice([[150, 195, 235], [200, 210, 220], [235, 215, 190], [120, 140, 190], [215, 230, 240]])
    az, el = rng.uniform(0, 2 * math.pi), rng.uniform(math.radians(35), math.radians(80))
    light = dict(lightDirection=[math.cos(el) * math.cos(az), math.cos(el) * math.sin(az), math.sin(el)],
                 lightColor=[1.0, 1.0, 1.0], lightDistance=5.0, lightAmbientCoeff=rng.uniform(0.45, 0.7),
                 lightDiffuseCoeff=rng.uniform(0.3, 0.6), lightSpecularCoeff=0.0, shadow=0)
    el_lo = rng.uniform(15, 30)
    camera = dict(radius=rng.uniform(1.3, 1.7), el_lo=el_lo, el_hi=min(el_lo + rng.uniform(20, 40), 68.0),
                  jitter=rng.uniform(0.05, 0.15), aim_jitter=rng.uniform(0.0, 0.06))
    return dict(floor=cls, texture=tex, tint=[*rng.uniform(lo, hi), 1.0], square=rng.uniform(0.15, 0.35),
                sky=np.clip(sky + rng.integers(-15, 16, 3), 0, 255).astype(np.uint8), light=light, camera=camera)


# ---------------------------------------------------------------------------------------------- the layout
@dataclass
class Layout:
    seed: int
    floor: tuple[str, list[int]]
    placed: list[Placed]
    style: dict

    def groups(self) -> list[tuple[str, list[int]]]:
        """``[(class name, body ids)]``, the ground first."""
        return [self.floor] + [(o.cls, o.bodies) for o in self.placed]

    def objects(self) -> list[dict]:
        """What ``transforms.json``'s ``objects`` lists for each object (the ground excluded)."""
        out = []
        for k, o in enumerate(self.placed, start=2):
            touch = sorted({q.cls for q in self.placed if q is not o and np.all(o.lo < q.hi + 0.005)
                            and np.all(o.hi > q.lo - 0.005)} | set(o.touching))
            out.append({"class": o.cls, "class_id": k, "position": (0.5 * (o.lo + o.hi)).round(4).tolist(),
                        "type": o.type, "multi_part": CATALOGUE[o.type].multi, "support": o.support,
                        "touching": touch, "aabb": [o.lo.round(4).tolist(), o.hi.round(4).tolist()]})
        return out


def _build(cid, t: str, role: str, rng, placed: list[Placed], shrink=1.0) -> Placed:
    entry = CATALOGUE[t]
    size, yaw = rng.uniform(*entry.sizes) * shrink, rng.uniform(0, 360)
    if entry.ground0:
        yaw = 90.0 * int(rng.integers(4)) + rng.uniform(-5, 5)
    if role == "table":
        size *= 0.75
    elif role.startswith("holder:"):
        base = next(o for o in placed if o.type == role[7:])
        size = min(0.65 * size, 0.6 * float(np.min(base.hi[:2] - base.lo[:2])))
    bodies = entry.build(cid, rng, size, yaw)
    lo, hi = aabb(cid, bodies)
    if entry.ground0:
        lo[2] = 0.0  # the legs stand on the floor at the body's origin
    return Placed(t, bodies, lo, hi)


def _place(cid, obj: Placed, role: str, placed: list[Placed], rng, radius: float) -> bool:
    if role == "table":
        base = next(o for o in placed if o.cls == "table")
        return place_on(cid, obj, base, [o for o in placed if o.support == "table"], rng)
    if role.startswith("holder:"):
        return place_on(cid, obj, next(o for o in placed if o.type == role[7:]), [], rng)
    return (role == "touch" and place_touching(cid, obj, placed, rng, radius)) or \
        place_floor(cid, obj, placed, rng, radius)


def generate(cid: int, seed: int) -> Layout:
    """Build layout ``gen-<seed>`` in pybullet client ``cid``."""
    rng = np.random.default_rng(seed)
    look = style(rng)
    floor = (look["floor"], ground(cid, 3.5, look["tint"], look["texture"], look["square"]))
    chosen = choose(rng)
    radius = 0.3 + 0.08 * sum(role in ("floor", "touch") for _, role in chosen)
    placed: list[Placed] = []
    for t, role in chosen:
        for shrink in (1.0, 0.8, 0.64):  # an object that finds no room is built smaller, then left out
            obj = _build(cid, t, role, rng, placed, shrink)
            if _place(cid, obj, role, placed, rng, radius):
                placed.append(obj)
                break
            for b in obj.bodies:
                p.removeBody(b, physicsClientId=cid)
    return Layout(seed, floor, placed, look)


# ---------------------------------------------------------------------------------------------- cameras
def _in_view(eye, target, corners, tan_y: float, aspect: float, limit=0.9) -> bool:
    f = target - eye
    f /= np.linalg.norm(f)
    r = np.cross(f, [0.0, 0.0, 1.0])
    r /= np.linalg.norm(r)
    u = np.cross(r, f)
    d = corners - eye
    z = d @ f
    if np.any(z < 0.1):
        return False
    return bool(np.all(np.abs(d @ r) <= limit * tan_y * aspect * z) and np.all(np.abs(d @ u) <= limit * tan_y * z))


def camera_path(layout: Layout, views: int, seed: int, fov_y: float, aspect: float):
    """``[(eye, target)]``: an orbit (azimuth evenly spread with a seeded jitter, elevation over the layout's
    range by a golden-ratio sequence, distance jittered) moved back along each ray until every object's box is
    inside the view."""
    cam, rng = layout.style["camera"], np.random.default_rng([layout.seed, seed])
    lo = np.min([o.lo for o in layout.placed], 0)
    hi = np.max([o.hi for o in layout.placed], 0)
    corners = np.array([[x, y, z] for o in layout.placed for x in (o.lo[0], o.hi[0]) for y in (o.lo[1], o.hi[1])
                        for z in (o.lo[2], o.hi[2])])
    centre = np.array([0.5 * (lo[0] + hi[0]), 0.5 * (lo[1] + hi[1]), float(np.clip(0.35 * hi[2], 0.1, 0.45))])
    tan_y, step, offset, path = math.tan(math.radians(fov_y) / 2), 360.0 / views, rng.uniform(), []
    for i in range(views):
        az = math.radians(i * step + rng.uniform(-0.3, 0.3) * step)
        el = math.radians(cam["el_lo"] + (cam["el_hi"] - cam["el_lo"]) * ((offset + i * 0.6180339887) % 1.0))
        dist = cam["radius"] * rng.uniform(1 - cam["jitter"], 1 + cam["jitter"])
        target = centre + rng.uniform(-1, 1, 3) * cam["aim_jitter"]
        ray = np.array([math.cos(el) * math.cos(az), math.cos(el) * math.sin(az), math.sin(el)])
        while not _in_view(target + dist * ray, target, corners, tan_y, aspect) and dist < 10.0:
            dist *= 1.05
        path.append((target + dist * ray, target))
    return path

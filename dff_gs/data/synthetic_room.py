"""The embedded room's content: its furniture as analytic primitives with solid textures, every position, colour
and texture jittered from one seed (:func:`build_scene`); rendered by :mod:`dff_gs.data.synthetic`."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from dff_gs.data.synthetic_shapes import Box, Ellipsoid, Frustum, Primitive, Quad, ValueNoise, cylinder, smoothstep

CLASSES = ["floor", "wall", "ceiling", "table", "chair", "sofa", "lamp", "plant", "vase", "ball"]
"""Class names; index = class id written in the semantic PNGs."""
ROOM_MIN = np.array([-3.0, -2.5, 0.0])
ROOM_MAX = np.array([3.0, 2.5, 2.6])
DEFAULT_SEED = 0


@dataclass
class SceneObject:
    name: str
    class_name: str
    primitives: list[Primitive] = field(default_factory=list)

    def aabb(self) -> np.ndarray:
        boxes = np.stack([p.aabb() for p in self.primitives])
        return np.stack([boxes[:, 0].min(0), boxes[:, 1].max(0)])


@dataclass
class Scene:
    """Primitives (room first, then objects), the objects they belong to and the room bounds."""

    primitives: list[Primitive]
    objects: list[SceneObject]
    seed: int
    _aabbs: np.ndarray = None  # [P, 2, 3] per-primitive bounds, for the ray pre-test

    def __post_init__(self):
        self._aabbs = np.stack([p.aabb() for p in self.primitives])


def _mix(c0, c1, s: np.ndarray) -> np.ndarray:
    """Blend colours c0, c1 [3] with weights s [M] -> [M, 3]."""
    s = np.asarray(s)[:, None]
    return np.asarray(c0)[None] * (1.0 - s) + np.asarray(c1)[None] * s


class _Builder:
    """What the parts of the room share: the seeded random stream (drawn in a fixed order, so the room is the
    same for a seed), the texture noise, the materials' helpers and the objects and primitives added so far."""

    def __init__(self, seed: int):
        self.rng = np.random.default_rng(seed)
        self.noise = ValueNoise(self.rng)
        self.cid = {name: i for i, name in enumerate(CLASSES)}
        self.objects: list[SceneObject] = []
        self.prims: list[Primitive] = []

    def jit(self, colour, s=0.05):
        return np.clip(np.asarray(colour, float) + self.rng.uniform(-s, s, 3), 0.02, 0.9)

    def offset(self):
        return self.rng.uniform(0, 32, 3)

    def fabric(self, colour, freq, amount=0.35):
        off, noise = self.offset(), self.noise
        return lambda pw, pl, n: colour[None] * (1.0 - amount / 2 + amount * noise.fbm(pl * freq + off, 2))[:, None]

    def plain(self, colour, freq=3.0, amount=0.15):
        return self.fabric(colour, freq, amount)

    def add(self, obj: SceneObject, *parts: tuple[str, Primitive, object]):
        for part, prim, mat in parts:
            prim.class_id, prim.object_index, prim.part, prim.material = (self.cid[obj.class_name],
                                                                          len(self.objects), part, mat)
            obj.primitives.append(prim)
            self.prims.append(prim)
        self.objects.append(obj)


def build_scene(seed: int = DEFAULT_SEED) -> Scene:
    """The room and its furniture; positions, colours and textures jittered from ``seed``."""
    b = _Builder(seed)
    _add_room(b)
    tx, ty, tyaw, rt, top_z = _add_table(b)
    _add_vase(b, tx, ty, rt, top_z)
    metal = _add_chairs(b, tx, ty, tyaw, rt)
    _add_sofa(b)
    _add_lamp(b, metal)
    _add_plant(b)
    _add_ball(b)
    return Scene(primitives=b.prims, objects=b.objects, seed=seed)


def _add_room(b: _Builder) -> None:
    """Add the room: floor tiles, striped wallpaper with a skirting board, plain ceiling."""
    # --- room: floor tiles, striped wallpaper with a skirting board, plain ceiling
    tile = 0.5
    floor_a, floor_b = b.jit([0.72, 0.62, 0.48]), b.jit([0.42, 0.33, 0.25])
    floor_off = b.offset()

    def floor_mat(pw, pl, n):
        parity = (np.floor(pw[:, 0] / tile) + np.floor(pw[:, 1] / tile)) % 2
        return _mix(floor_a, floor_b, parity) * (0.88 + 0.24 * b.noise(pw * 3.0 + floor_off))[:, None]

    wall_col, skirting = b.jit([0.78, 0.74, 0.62]), b.jit([0.35, 0.27, 0.2])
    wall_off = b.offset()

    def wall_mat(pw, pl, n):
        u = pw[:, 0] + pw[:, 1]  # the coordinate along whichever wall was hit
        stripes = 0.5 + 0.5 * np.sin(2 * np.pi * u / 0.3)
        col = wall_col[None] * ((0.9 + 0.1 * stripes) * (0.92 + 0.16 * b.noise(pw * 1.5 + wall_off)))[:, None]
        return np.where((pw[:, 2] < 0.12)[:, None], skirting[None], col)

    lo, hi, m = ROOM_MIN, ROOM_MAX, 1e-3
    lo_m, hi_m = lo - m, hi + m
    room = SceneObject("room_floor", "floor")
    b.add(room, ("floor", Quad(axis=2, offset=lo[2], lo=lo_m, hi=hi_m, normal_sign=1.0), floor_mat))
    b.add(SceneObject("room_ceiling", "ceiling"),
        ("ceiling", Quad(axis=2, offset=hi[2], lo=lo_m, hi=hi_m, normal_sign=-1.0),
         b.plain(b.jit([0.86, 0.85, 0.82], 0.03), 1.5, 0.1)))
    walls = SceneObject("room_walls", "wall")
    b.add(walls, *[(f"wall_{'xy'[ax]}{'-+'[side]}", Quad(axis=ax, offset=(lo, hi)[side][ax], lo=lo_m, hi=hi_m,
                                                     normal_sign=1.0 if side == 0 else -1.0), wall_mat)
                 for ax in (0, 1) for side in (0, 1)])


def _add_table(b: _Builder) -> tuple[float, float, float, np.ndarray, float]:
    """Add the table (wooden top with stripes, four cylinder legs); returns its x, y, yaw, 2D rotation and top
    height."""
    # --- table: wooden top with stripes, four cylinder legs
    tx, ty, tyaw = 0.3 + b.rng.uniform(-0.1, 0.1), -0.1 + b.rng.uniform(-0.1, 0.1), b.rng.uniform(-0.15, 0.15)
    rt = np.array([[np.cos(tyaw), -np.sin(tyaw)], [np.sin(tyaw), np.cos(tyaw)]])
    wood_light, wood_dark = b.jit([0.78, 0.55, 0.32]), b.jit([0.5, 0.31, 0.16])
    wood_off = b.offset()

    def wood_mat(pw, pl, n):
        v = pl[:, 1] * 9.0 + 1.8 * b.noise.fbm(pl * np.array([0.7, 2.0, 2.0]) + wood_off, 2)
        return _mix(wood_dark, wood_light, 0.5 + 0.5 * np.sin(2 * np.pi * v))

    top_z = 0.75
    legs = [rt @ np.array([sx * 0.6, sy * 0.33]) + [tx, ty] for sx in (-1, 1) for sy in (-1, 1)]
    b.add(SceneObject("table", "table"),
        ("top", Box(center=[tx, ty, top_z - 0.03], half=[0.72, 0.44, 0.03], yaw=tyaw), wood_mat),
        *[("leg", cylinder(x, y, 0.0, top_z - 0.06, 0.04), b.plain(wood_dark * 0.8, 5.0)) for x, y in legs])
    return tx, ty, tyaw, rt, top_z


def _add_vase(b: _Builder, tx: float, ty: float, rt: np.ndarray, top_z: float) -> None:
    """Add the vase on the table."""
    # --- vase on the table: ellipsoid body + cylinder neck, blue-to-white gradient with rings
    vx, vy = rt @ np.array([0.35, 0.1]) + [tx, ty]
    vase_blue, vase_light = b.jit([0.12, 0.25, 0.62]), b.jit([0.85, 0.85, 0.8])

    def vase_mat(pw, pl, n):
        frac = np.clip((pw[:, 2] - top_z) / 0.42, 0, 1)
        rings = 0.5 + 0.5 * np.sin(2 * np.pi * pw[:, 2] / 0.07)
        return _mix(vase_blue, vase_light, frac * 0.8) * (0.82 + 0.18 * rings)[:, None]

    b.add(SceneObject("vase", "vase"),
        ("body", Ellipsoid(center=[vx, vy, top_z + 0.15], radii=[0.12, 0.12, 0.17]), vase_mat),
        ("neck", cylinder(vx, vy, top_z + 0.25, top_z + 0.42, 0.055), vase_mat))


def _add_chairs(b: _Builder, tx: float, ty: float, tyaw: float, rt: np.ndarray) -> np.ndarray:
    """Add two chairs at the table; returns their metal colour (the lamp's too)."""
    # --- two chairs at the table: fabric seat and back, metal legs
    chair_col = b.jit(b.rng.choice([[0.72, 0.2, 0.16], [0.8, 0.5, 0.12]]))
    metal = b.jit([0.22, 0.22, 0.25], 0.03)
    for k, (local_pos, facing) in enumerate([((-1.05, 0.0), 0.0), ((0.0, -0.85), np.pi / 2)]):
        cxy = rt @ np.array(local_pos) + [tx, ty]
        yaw = tyaw + facing + b.rng.uniform(-0.25, 0.25)
        rc = np.array([[np.cos(yaw), -np.sin(yaw)], [np.sin(yaw), np.cos(yaw)]])
        back = rc @ np.array([-0.215, 0.0]) + cxy
        chair_legs = [rc @ np.array([sx * 0.19, sy * 0.19]) + cxy for sx in (-1, 1) for sy in (-1, 1)]
        mat = b.fabric(chair_col, 10.0)
        b.add(SceneObject(f"chair_{k}", "chair"),
            ("seat", Box(center=[*cxy, 0.46], half=[0.23, 0.23, 0.03], yaw=yaw), mat),
            ("back", Box(center=[*back, 0.73], half=[0.025, 0.23, 0.25], yaw=yaw), mat),
            *[("leg", cylinder(x, y, 0.0, 0.43, 0.022), b.plain(metal, 4.0)) for x, y in chair_legs])
    return metal


def _add_sofa(b: _Builder) -> None:
    """Add the sofa against the +y wall."""
    # --- sofa against the +y wall: base, back, arms, two cushions; fabric noise
    sx_, syaw = -0.7 + b.rng.uniform(-0.15, 0.15), b.rng.uniform(-0.04, 0.04)
    sofa_col = b.jit(b.rng.choice([[0.18, 0.42, 0.5], [0.3, 0.36, 0.58], [0.3, 0.48, 0.3]]))
    rs = np.array([[np.cos(syaw), -np.sin(syaw)], [np.sin(syaw), np.cos(syaw)]])
    sofa_c = np.array([sx_, 2.0])

    def sofa_box(part, lx, ly, z, half, col, freq=8.0):
        c = rs @ np.array([lx, ly]) + sofa_c
        return (part, Box(center=[*c, z], half=half, yaw=syaw), b.fabric(col, freq, 0.3))

    b.add(SceneObject("sofa", "sofa"),
        sofa_box("base", 0.0, 0.0, 0.2, [1.0, 0.42, 0.2], sofa_col * 0.85),
        sofa_box("back", 0.0, 0.32, 0.65, [1.0, 0.1, 0.25], sofa_col),
        sofa_box("arm", -1.1, 0.0, 0.29, [0.1, 0.42, 0.29], sofa_col * 0.92),
        sofa_box("arm", 1.1, 0.0, 0.29, [0.1, 0.42, 0.29], sofa_col * 0.92),
        *[sofa_box("cushion", x, -0.08, 0.46, [0.48, 0.32, 0.065], b.jit(sofa_col * 1.12, 0.03), 12.0)
          for x in (-0.5, 0.5)])


def _add_lamp(b: _Builder, metal: np.ndarray) -> None:
    """Add the floor lamp."""
    # --- floor lamp: base disc, pole, ribbed frustum shade
    lx, ly = 1.65 + b.rng.uniform(-0.1, 0.1), 1.95 + b.rng.uniform(-0.1, 0.1)
    shade_col = b.jit([0.9, 0.82, 0.6], 0.04)

    def shade_mat(pw, pl, n):
        ribs = 0.5 + 0.5 * np.sin(14.0 * np.arctan2(pl[:, 1], pl[:, 0]))
        return shade_col[None] * (0.85 + 0.15 * ribs)[:, None]

    b.add(SceneObject("lamp", "lamp"),
        ("base", cylinder(lx, ly, 0.0, 0.04, 0.18), b.plain(metal, 4.0)),
        ("pole", cylinder(lx, ly, 0.04, 1.4, 0.025), b.plain(metal * 1.4, 4.0)),
        ("shade", Frustum(cx=lx, cy=ly, z0=1.3, z1=1.68, r0=0.28, r1=0.16), shade_mat))


def _add_plant(b: _Builder) -> None:
    """Add the plant in a corner."""
    # --- plant in a corner: terracotta pot (frustum) with a band, leafy blotched foliage blobs
    px, py = -2.45 + b.rng.uniform(-0.08, 0.08), -1.95 + b.rng.uniform(-0.08, 0.08)
    pot_col, leaf_dark, leaf_light = b.jit([0.66, 0.33, 0.2]), b.jit([0.1, 0.3, 0.1]), b.jit([0.38, 0.62, 0.22])
    leaf_off = b.offset()

    def pot_mat(pw, pl, n):
        band = smoothstep(0.3, 0.31, pl[:, 2]) * (1 - smoothstep(0.36, 0.37, pl[:, 2]))
        return pot_col[None] * (0.9 + 0.25 * band)[:, None]

    def leaf_mat(pw, pl, n):
        blotch = smoothstep(0.42, 0.62, b.noise.fbm(pw * 7.0 + leaf_off, 2))
        return _mix(leaf_dark, leaf_light, blotch)

    b.add(SceneObject("plant", "plant"),
        ("pot", Frustum(cx=px, cy=py, z0=0.0, z1=0.42, r0=0.17, r1=0.23), pot_mat),
        ("foliage", Ellipsoid(center=[px, py, 0.85], radii=[0.36, 0.36, 0.46]), leaf_mat),
        ("foliage", Ellipsoid(center=[px + 0.16, py + 0.12, 1.18], radii=[0.24, 0.24, 0.26]), leaf_mat),
        ("foliage", Ellipsoid(center=[px - 0.1, py + 0.22, 0.72], radii=[0.22, 0.22, 0.2]), leaf_mat))


def _add_ball(b: _Builder) -> None:
    """Add the beach ball on the floor."""
    # --- beach ball on the floor: six coloured segments around a tilted axis, white caps
    bx, by, br = 1.45 + b.rng.uniform(-0.15, 0.15), -1.3 + b.rng.uniform(-0.15, 0.15), 0.3
    axis = np.array([b.rng.uniform(-0.5, 0.5), b.rng.uniform(-0.5, 0.5), 1.0])
    axis /= np.linalg.norm(axis)
    e1 = np.cross(axis, [1.0, 0.0, 0.0])
    e1 /= np.linalg.norm(e1)
    e2 = np.cross(axis, e1)
    seg_cols = np.array([b.jit(c, 0.03) for c in ([0.85, 0.15, 0.12], [0.9, 0.8, 0.15], [0.15, 0.35, 0.8],
                                                 [0.88, 0.88, 0.85], [0.2, 0.65, 0.25], [0.92, 0.5, 0.1])])

    def ball_mat(pw, pl, n):
        q = pl / br
        seg = np.floor((np.arctan2(q @ e2, q @ e1) / (2 * np.pi) + 0.5) * 6).astype(int) % 6
        return np.where((np.abs(q @ axis) > 0.88)[:, None], seg_cols[3][None], seg_cols[seg])

    b.add(SceneObject("ball", "ball"), ("ball", Ellipsoid(center=[bx, by, br], radii=[br, br, br]), ball_mat))

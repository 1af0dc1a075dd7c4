"""Synthetic benchmark scenes with ground-truth semantics, rendered by pybullet's CPU TinyRenderer.

Objects bundled in ``pybullet_data`` are placed on a textured ground plane (Z-up world, metres) and seen by an
orbit of cameras over the upper hemisphere: two fixed layouts (``toys``, ``garden``) and any number of seeded
ones, ``gen-<seed>`` (``layouts.py``: 3-8 objects, multi-part ones in every layout, on tables, stacked, touching;
``REGRESSION_SEEDS`` is the fixed regression set, ``fresh_seeds`` draws new ones). Writes a Blender / nerfstudio
scene that ``dff_gs.data.load_scene`` reads: ``transforms.json`` (OpenGL camera-to-world poses),
``images/NNNN.png`` (RGB, sky background), ``semantics/NNNN.png`` (8-bit class ids, every link of a body labelled
with its class), ``classes.json`` and, with ``depth``, ``depth/NNNN.npy`` (z-depth in metres, 0 = sky).
``transforms.json`` also lists every object (``objects``: class, class_id, position; for generated layouts also
type, multi_part, support, touching, aabb) and the settings it was made with (``generator``); a folder made with
identical settings is not rendered again.

    python benchmarks/scenes/pybullet_scene.py --layout toys --out /tmp/toys [--views 64] [--depth]
    python benchmarks/scenes/pybullet_scene.py --layout gen-12 --out /tmp/gen-12 [--sheet /tmp/gen-12.png]
    python benchmarks/scenes/pybullet_scene.py --regression --out /tmp/layouts   # OUT/gen-1 ... OUT/gen-8
    python benchmarks/scenes/pybullet_scene.py --fresh 2 --out /tmp/layouts      # two new seeds
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import pybullet as p
import pybullet_data
from PIL import Image


def _load_layouts():
    """``layouts.py`` beside this file, loaded afresh with this module (which is itself often loaded from its path,
    not as a package)."""
    name = "dff_gs_bench_layouts"
    spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name("layouts.py"))
    sys.modules[name] = module = importlib.util.module_from_spec(spec)  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


gen = _load_layouts()
REGRESSION_SEEDS, generated_layouts, fresh_seeds = gen.REGRESSION_SEEDS, gen.generated_layouts, gen.fresh_seeds
DATA = Path(pybullet_data.getDataPath())
SOURCE = hashlib.sha1(Path(__file__).read_bytes() + Path(__file__).with_name("layouts.py").read_bytes()
                      ).hexdigest()[:12]  # any edit here or in layouts.py invalidates cached scenes
GEN_DEFAULTS = (60, 128, 96)  # views, width, height of a generated layout unless given
FIXED_DEFAULTS = (64, 192, 144)  # those of toys / garden
FOV_Y = 50.0  # vertical field of view, degrees
# samples per pixel along each axis: a camera integrates light over each pixel, TinyRenderer samples one point
# (nearest texel, no mipmaps), so a checkered floor towards the horizon aliases into moire that no two views share
SUPERSAMPLE = 4
NEAR, FAR = 0.05, 12.0
CENTRE = (0.0, 0.0, 0.2)  # the point every camera looks at
SKY = np.array([150, 195, 235], dtype=np.uint8)
LIGHT = dict(lightDirection=[0.4, -0.3, 1.0], lightColor=[1.0, 1.0, 1.0], lightDistance=5.0,
             lightAmbientCoeff=0.55, lightDiffuseCoeff=0.5, lightSpecularCoeff=0.0, shadow=0)


# ---------------------------------------------------------------------------------------------- scene building
def _quat(yaw_deg: float, roll_deg: float = 0.0) -> list[float]:
    return p.getQuaternionFromEuler([math.radians(roll_deg), 0.0, math.radians(yaw_deg)])


def _mesh(cid: int, file: str, xy, size: float, yaw=0.0, roll=0.0, rgba=None) -> list[int]:
    """A visual-only mesh scaled so its largest side is ``size`` metres, standing on the ground at ``xy``; the
    body origin (its base position) is the centre of the mesh's bounding box."""
    verts = np.array([ln.split()[1:4] for ln in (DATA / file).read_text().splitlines() if ln.startswith("v ")],
                     dtype=np.float64)
    rot = np.array(p.getMatrixFromQuaternion(_quat(yaw, roll))).reshape(3, 3)
    v = verts @ rot.T
    lo, hi = v.min(0), v.max(0)
    scale = size / float((hi - lo).max())
    centre = 0.5 * (lo + hi) * scale
    extra = {} if rgba is None else {"rgbaColor": rgba}
    shape = p.createVisualShape(p.GEOM_MESH, fileName=str(DATA / file), meshScale=[scale] * 3,
                                visualFramePosition=(-centre).tolist(), visualFrameOrientation=_quat(yaw, roll),
                                physicsClientId=cid, **extra)
    pos = [xy[0], xy[1], 0.5 * (hi[2] - lo[2]) * scale]
    return [p.createMultiBody(0, -1, shape, pos, physicsClientId=cid)]


def _box(cid: int, xy, half: float, rgba, yaw=0.0) -> list[int]:
    """A coloured cube of side ``2 * half`` resting on the ground at ``xy``."""
    shape = p.createVisualShape(p.GEOM_BOX, halfExtents=[half] * 3, rgbaColor=rgba, physicsClientId=cid)
    return [p.createMultiBody(0, -1, shape, [xy[0], xy[1], half], _quat(yaw), physicsClientId=cid)]


def _block_tower(cid: int, xy, layers=7, yaw=0.0) -> list[int]:
    """A jenga-style tower: ``layers`` crossed layers of three wooden blocks, one body per block."""
    bodies, c, s = [], math.cos(math.radians(yaw)), math.sin(math.radians(yaw))
    for k in range(layers):
        for j in range(3):
            off = 0.095 * (j - 1)
            dx, dy = (off, 0.0) if k % 2 == 0 else (0.0, off)
            tint = 0.8 + 0.1 * ((k + j) % 3)
            shape = p.createVisualShape(p.GEOM_BOX, halfExtents=[0.045, 0.14, 0.027], physicsClientId=cid,
                                        rgbaColor=[0.82 * tint, 0.6 * tint, 0.38 * tint, 1.0])
            pos = [xy[0] + c * dx - s * dy, xy[1] + s * dx + c * dy, 0.027 + 0.054 * k]
            bodies.append(p.createMultiBody(0, -1, shape, pos, _quat(yaw + 90.0 * (k % 2)), physicsClientId=cid))
    return bodies


def _ground(cid: int, half_size: float, rgba, square=0.25) -> list[int]:
    """A ``2 * half_size`` metre square of ground with ``pybullet_data``'s checker texture (``square`` metre
    tiles), tinted by ``rgba``."""
    h, n = half_size, half_size / square  # the texture holds 2 x 2 tiles
    shape = p.createVisualShape(p.GEOM_MESH, vertices=[[-h, -h, 0], [h, -h, 0], [h, h, 0], [-h, h, 0]],
                                indices=[0, 1, 2, 0, 2, 3], uvs=[[0, 0], [n, 0], [n, n], [0, n]],
                                normals=[[0, 0, 1]] * 4, rgbaColor=rgba, physicsClientId=cid)
    body = p.createMultiBody(0, -1, shape, [0, 0, 0], physicsClientId=cid)
    texture = p.loadTexture(str(DATA / "checker_blue.png"), physicsClientId=cid)
    p.changeVisualShape(body, -1, textureUniqueId=texture, physicsClientId=cid)
    return [body]


def _ring(k: int, n: int, radius: float, phase=90.0) -> tuple[float, float]:
    a = math.radians(phase + 360.0 * k / n)
    return radius * math.cos(a), radius * math.sin(a)


def _toys(cid: int) -> tuple[list[tuple[str, list[int]]], float]:
    """Five toys in a ring on a blue-checkered floor."""
    return [
        ("floor", _ground(cid, 2.0, [1, 1, 1, 1])),
        ("tray", _mesh(cid, "tray/tray_textured.obj", _ring(0, 5, 0.62), 0.55, yaw=20)),
        ("wooden blocks", _block_tower(cid, _ring(1, 5, 0.62), yaw=15)),
        ("rubber duck", _mesh(cid, "duck.obj", _ring(2, 5, 0.62), 0.5, yaw=200, roll=90)),
        ("teddy bear", _mesh(cid, "teddy2_VHACD_CHs.obj", _ring(3, 5, 0.62), 0.5, yaw=100, roll=90,
                             rgba=[0.62, 0.4, 0.22, 1])),
        ("soccer ball", _mesh(cid, "soccerball.obj", _ring(4, 5, 0.62), 0.4)),
    ], 1.75


def _garden(cid: int) -> tuple[list[tuple[str, list[int]]], float]:
    """A robot, a ball, a cube, a bunny and a torus scattered unevenly on a green lawn."""
    robot = p.loadURDF(str(DATA / "r2d2.urdf"), [-0.1, 0.05, 0.302], _quat(-60), useFixedBase=True,
                       physicsClientId=cid)
    return [
        ("grass", _ground(cid, 2.0, [0.45, 0.85, 0.35, 1], square=0.3)),
        ("robot", [robot]),
        ("ball", _mesh(cid, "sphere_smooth.obj", (0.7, 0.4), 0.44, rgba=[0.9, 0.15, 0.12, 1])),
        ("cube", _box(cid, (0.45, -0.62), 0.19, [0.2, 0.35, 0.9, 1], yaw=30)),
        ("bunny", _mesh(cid, "bunny.obj", (-0.75, -0.4), 0.55, yaw=140, rgba=[0.93, 0.88, 0.72, 1])),
        ("torus", _mesh(cid, "torus/torus_textured.obj", (-0.45, 0.75), 0.55, roll=90, rgba=[1.0, 0.65, 0.1, 1])),
    ], 2.0


# name -> builder(client id) returning ([(class name, body ids)], camera orbit radius); the ground comes first
LAYOUTS = {"toys": _toys, "garden": _garden}


# ---------------------------------------------------------------------------------------------- cameras
def orbit(views: int, radius: float, seed: int, centre=CENTRE) -> list[np.ndarray]:
    """Eye positions ``[3]`` over the upper hemisphere: azimuth evenly spread with a seeded jitter, elevation
    20-55 degrees (golden-ratio sequence), distance ``radius`` +-15%."""
    rng = np.random.default_rng(seed)
    step, offset, eyes = 360.0 / views, rng.uniform(), []
    for i in range(views):
        az = math.radians(i * step + rng.uniform(-0.3, 0.3) * step)
        el = math.radians(20.0 + 35.0 * ((offset + i * 0.6180339887) % 1.0))
        r = radius * rng.uniform(0.85, 1.15)
        eyes.append(np.array(centre) + r * np.array([math.cos(el) * math.cos(az), math.cos(el) * math.sin(az),
                                                     math.sin(el)]))
    return eyes


# ---------------------------------------------------------------------------------------------- rendering
def _settings(layout, views, width, height, seed, depth) -> dict:
    return {"script": "pybullet_scene", "source": SOURCE, "layout": layout, "views": int(views),
            "width": int(width), "height": int(height), "seed": int(seed), "depth": bool(depth)}


def _cached(out: Path, settings: dict) -> bool:
    try:
        meta = json.loads((out / "transforms.json").read_text())
    except (OSError, ValueError):
        return False
    files = [out / f[k] for f in meta.get("frames", []) for k in ("file_path", "semantic_path", "depth_path")
             if k in f]
    return meta.get("generator") == settings and (out / "classes.json").is_file() and all(f.is_file() for f in files)


def is_layout(layout: str) -> bool:
    return layout in LAYOUTS or gen.layout_seed(layout) is not None


def _setup(layout: str, cid: int, views: int, width: int, height: int, seed: int):
    """Build ``layout``: ``(groups, objects, [(eye, target)], light, sky)``; groups ``[(class, bodies)]`` with
    the ground first, objects what ``transforms.json`` lists for each (the ground excluded)."""
    s = gen.layout_seed(layout)
    if s is None:
        groups, radius = LAYOUTS[layout](cid)
        objects = [{"class": name, "class_id": k,
                    "position": np.mean([p.getBasePositionAndOrientation(b, physicsClientId=cid)[0]
                                         for b in bodies], 0).round(4).tolist()}
                   for k, (name, bodies) in enumerate(groups[1:], start=2)]
        path = [(eye, np.array(CENTRE)) for eye in orbit(views, radius, seed)]
        return groups, objects, path, LIGHT, SKY
    built = gen.generate(cid, s)
    path = gen.camera_path(built, views, seed, FOV_Y, width / height)
    return built.groups(), built.objects(), path, built.style["light"], built.style["sky"]


def _block_mode(labels: np.ndarray, s: int) -> np.ndarray:
    """The most frequent label of each ``s x s`` block: ``labels [H*s, W*s]`` -> ``[H, W]`` (ties: lowest id)."""
    h, w = labels.shape[0] // s, labels.shape[1] // s
    blocks = labels.reshape(h, s, w, s).transpose(0, 2, 1, 3).reshape(h, w, s * s)
    ids = np.unique(blocks)
    counts = np.stack([(blocks == c).sum(-1) for c in ids], -1)
    return ids[counts.argmax(-1)]


def _render(cid, out: Path, name: str, eye, target, lut, size, light, sky_rgb, depth) -> dict:
    """Render one view into ``out`` as ``name``: its image, class map (and depth); returns its ``frames`` entry.
    Drawn at ``SUPERSAMPLE`` times the size: the image is the mean of each pixel's samples, the class map their
    most frequent class, the depth the sample nearest the pixel centre."""
    width, height = size
    s = SUPERSAMPLE
    big_w, big_h = width * s, height * s
    proj = list(p.computeProjectionMatrixFOV(FOV_Y, width / height, NEAR, FAR))
    # TinyRenderer samples pixel (u, v) at window (u, v + 1) counted from the top-left corner; shift the image
    # by half a (sample) pixel so samples fall on their centres, which average to the pixel centres (u + 0.5,
    # v + 0.5) the loader's cameras assume
    proj[8], proj[9] = 1.0 / big_w, 1.0 / big_h
    view = p.computeViewMatrix([float(x) for x in eye], [float(x) for x in target], [0.0, 0.0, 1.0])
    _, _, rgba, zbuf, seg = p.getCameraImage(big_w, big_h, view, proj, renderer=p.ER_TINY_RENDERER,
                                             physicsClientId=cid, **light)
    seg = np.asarray(seg, dtype=np.int64).reshape(big_h, big_w)
    sky = seg < 0
    # every link of a body is labelled by the body's id, in the low 24 bits (the link index sits above them)
    labels = _block_mode(np.where(sky, 0, lut[np.where(sky, 0, seg & ((1 << 24) - 1))]), s).astype(np.uint8)
    rgb = np.asarray(rgba, dtype=np.uint8).reshape(big_h, big_w, 4)[..., :3].astype(np.float64)
    rgb[sky] = sky_rgb
    rgb = rgb.reshape(height, s, width, s, 3).mean((1, 3))
    Image.fromarray(np.round(rgb).astype(np.uint8)).save(out / "images" / f"{name}.png")
    Image.fromarray(labels).save(out / "semantics" / f"{name}.png")  # an 8-bit PNG
    c2w = np.linalg.inv(np.array(view, dtype=np.float64).reshape(4, 4).T)  # column-major world-to-camera
    frame = {"file_path": f"images/{name}.png", "semantic_path": f"semantics/{name}.png",
             "transform_matrix": c2w.round(8).tolist()}
    if depth:
        centre = (slice(s // 2, None, s), slice(s // 2, None, s))
        d = np.asarray(zbuf, dtype=np.float64).reshape(big_h, big_w)[centre]
        z = FAR * NEAR / (FAR - (FAR - NEAR) * d)
        np.save(out / "depth" / f"{name}.npy", np.where(sky[centre], 0.0, z).astype(np.float32))
        frame["depth_path"] = f"depth/{name}.npy"
    return frame


def make_scene(layout: str, out: Path, views=None, width=None, height=None, seed=0, depth=False) -> Path:
    """Render ``layout`` (``toys``, ``garden`` or ``gen-<seed>``) into the folder ``out`` (skipped when it already
    holds the same settings); returns ``out``. Views / size default to 60 at 128 x 96 for generated layouts, 64
    at 192 x 144 for the fixed ones; ``seed`` seeds the camera jitter."""
    if not is_layout(layout):
        raise ValueError(f"unknown layout {layout!r} (choose from {', '.join(LAYOUTS)} or gen-<seed>)")
    dv, dw, dh = FIXED_DEFAULTS if layout in LAYOUTS else GEN_DEFAULTS
    views, width, height = views or dv, width or dw, height or dh
    out, settings = Path(out), _settings(layout, views, width, height, seed, depth)
    if _cached(out, settings):
        print(f"{layout}: {out} is up to date ({views} views {width}x{height}), not rendered again")
        return out
    t0 = time.time()
    cid = p.connect(p.DIRECT)
    try:
        groups, objects, path, light, sky = _setup(layout, cid, views, width, height, seed)
        classes = ["sky"] + [name for name, _ in groups]
        lut = np.zeros(1 + max(b for _, bodies in groups for b in bodies), np.uint8)
        for k, (_, bodies) in enumerate(groups):
            lut[bodies] = k + 1
        for sub in ("images", "semantics") + (("depth",) if depth else ()):
            (out / sub).mkdir(parents=True, exist_ok=True)
        frames = [_render(cid, out, f"{i:04d}", eye, target, lut, (width, height), light, sky, depth)
                  for i, (eye, target) in enumerate(path)]
    finally:
        p.disconnect(cid)
    angle_x = 2.0 * math.atan(math.tan(math.radians(FOV_Y) / 2.0) * width / height)
    (out / "classes.json").write_text(json.dumps(classes) + "\n")
    meta = {"camera_angle_x": angle_x, "w": width, "h": height, "frames": frames, "objects": objects,
            "generator": settings}
    (out / "transforms.json").write_text(json.dumps(meta, indent=1) + "\n")
    print(f"{layout}: wrote {views} views {width}x{height} to {out} in {time.time() - t0:.1f}s "
          f"(classes: {', '.join(classes)})")
    return out


def contact_sheet(scene: Path, sheet: Path, n=6) -> Path:
    """``n`` evenly spaced views of a rendered scene, images above their class maps (coloured), as one PNG."""
    meta = json.loads((Path(scene) / "transforms.json").read_text())
    frames = meta["frames"][:: max(1, len(meta["frames"]) // n)][:n]
    palette = (np.random.default_rng(0).uniform(40, 255, (256, 3))).astype(np.uint8)
    palette[0] = 0
    top = [np.asarray(Image.open(Path(scene) / f["file_path"]).convert("RGB")) for f in frames]
    bottom = [palette[np.asarray(Image.open(Path(scene) / f["semantic_path"]))] for f in frames]
    Path(sheet).parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.concatenate([np.concatenate(top, 1), np.concatenate(bottom, 1)], 0)).save(sheet)
    return Path(sheet)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--layout", help="toys, garden or gen-<seed> (any integer seed)")
    ap.add_argument("--regression", action="store_true", help="render the regression set into OUT/gen-<seed>")
    ap.add_argument("--fresh", type=int, default=0, help="render this many new seeded layouts into OUT/gen-<seed>")
    ap.add_argument("--out", required=True, type=Path, help="output folder")
    ap.add_argument("--views", type=int, help="default: 60 (generated layouts), 64 (toys, garden)")
    ap.add_argument("--width", type=int, help="default: 128 (generated), 192 (toys, garden)")
    ap.add_argument("--height", type=int, help="default: 96 (generated), 144 (toys, garden)")
    ap.add_argument("--seed", type=int, default=0, help="seeds the camera jitter")
    ap.add_argument("--depth", action="store_true", help="also write metric z-depth maps (depth/NNNN.npy)")
    ap.add_argument("--sheet", type=Path, help="also write a contact sheet PNG (one per layout: SHEET/NAME.png "
                    "with --regression / --fresh)")
    a = ap.parse_args()
    names = generated_layouts(REGRESSION_SEEDS) if a.regression else []
    names += generated_layouts(fresh_seeds(a.fresh)) if a.fresh else []
    if a.layout and not is_layout(a.layout):
        ap.error(f"unknown layout {a.layout!r} (choose from {', '.join(LAYOUTS)} or gen-<seed>)")
    if not names and not a.layout:
        ap.error("give --layout, --regression or --fresh N")
    jobs = [(a.layout, a.out, a.sheet)] if a.layout else []
    jobs += [(n, a.out / n, a.sheet / f"{n}.png" if a.sheet else None) for n in names]
    for name, out, sheet in jobs:
        make_scene(name, out, a.views, a.width, a.height, a.seed, a.depth)
        if sheet:
            print(f"{name}: contact sheet {contact_sheet(out, sheet)}")


if __name__ == "__main__":
    main()

"""What ``bench_click.py`` and ``bench_edit.py`` share: the layouts, their trained runs, random clicks, tables.

- *Layouts*: the regression set ``gen-<seed>`` for the generator's ``REGRESSION_SEEDS`` (default), ``--fresh N``
  new seeds (``fresh_seeds``), ``--seeds a,b`` again, or ``--scenes`` by name (``embedded``, ``toys``, ``garden``,
  ``gen-K``). Every pybullet layout is rendered by ``benchmarks/scenes/pybullet_scene.py`` at 60 views of 128x96
  (no depth maps: what a user's scene of that kind brings).
- *Runs*: ``python train.py --data SCENE --out RUN --quiet OVERRIDES`` in its own process, the default command;
  a finished run is reused. The run folder is named after the scene's generator settings (a hash of its
  transforms.json ``generator``) and the code's default config, so an edited generator or a changed default
  (a schedule, a teacher) renders and trains again instead of reusing a stale run.
- *Objects*: the transforms.json ``objects`` (``class``, ``class_id``, ``type``, ``multi_part``), else every class
  under a quarter of the test pixels.
- *Clicks*: per object ``k`` clicks from a seeded RNG (seed, layout name, class id): views drawn at random among
  the training views where the object covers at least ``MIN_PX`` pixels, the first click in the mask's border
  band (within ``BAND`` px of its edge), the others uniformly inside the mask.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import subprocess
import sys
import zlib
from pathlib import Path

import cv2
import numpy as np
import torch

from dff_gs.core.utils import cache_dir

ROOT = Path(__file__).resolve().parents[1]
GENERATOR = ROOT / "benchmarks" / "scenes" / "pybullet_scene.py"
VIEWS, WIDTH, HEIGHT = 60, 128, 96
MIN_PX, BAND = 30, 2
# objects made of several bodies / parts in the fixed layouts (toys, garden; the generator marks its own)
MULTI_PART = {"robot", "wooden blocks", "kuka", "racecar", "humanoid", "chair", "table"}
FLAT_WORDS = ("floor", "table", "rug", "carpet", "mat", "wall", "tray", "sofa", "shelf", "board", "plate", "desk")


def generator():
    """``benchmarks/scenes/pybullet_scene.py`` as a module (loaded by path: ``benchmarks/`` is no package)."""
    spec = importlib.util.spec_from_file_location("pybullet_scene", GENERATOR)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def layout_sets(scenes: str, fresh: int, seeds: str, regression: bool) -> dict[str, list[str]]:
    """``{set name: [layout names]}`` from the command line: ``named`` (--scenes), ``seeds`` (--seeds),
    ``fresh`` (--fresh N, new seeds), ``regression`` (the default, or --regression beside another set)."""
    gen = generator()
    sets: dict[str, list[str]] = {}
    if scenes:
        sets["named"] = [s for s in scenes.split(",") if s]
    if seeds:
        sets["seeds"] = gen.generated_layouts([int(s) for s in seeds.split(",") if s])
    if fresh:
        fitted = fitted_seeds()  # the click grouping's rule was fitted on these: never an evaluation's
        drawn = [s for s in gen.fresh_seeds(fresh + len(fitted)) if s not in fitted][:fresh]
        print(f"fresh seeds: {','.join(map(str, drawn))} (repeat with --seeds {','.join(map(str, drawn))})")
        sets["fresh"] = gen.generated_layouts(drawn)
    if regression or not sets:
        sets["regression"] = gen.generated_layouts(list(gen.REGRESSION_SEEDS))
    return sets


def fitted_seeds() -> set[int]:
    """The generated layouts' seeds the shipped merge rule of the click grouping was fitted on (its JSON's
    ``meta.fitted_on``; ``benchmarks/fit_merge_rule.py``)."""
    from dff_gs.query.merge_rule import RULE_PATH, shipped_rule

    if not RULE_PATH.is_file():
        return set()
    names = shipped_rule().meta.get("fitted_on", [])
    return {int(n[4:]) for n in names if n.startswith("gen-") and n[4:].isdigit()}


def scene_path(name: str, cache: Path) -> Path | None:
    """The folder of layout ``name`` rendered at 60 views 128x96 (None: the embedded room)."""
    if name == "embedded":
        return None
    out = cache / f"{name}-{VIEWS}v{WIDTH}x{HEIGHT}"
    return Path(generator().make_scene(name, out, views=VIEWS, width=WIDTH, height=HEIGHT, seed=0, depth=False))


def default_cache() -> Path:
    return cache_dir("scenes")


NOT_TRAINING = (("data", "posed_out"), ("train", "minutes"), ("train", "random_background"))
"""Defaults that do not change what training computes on a layout (where a posed scene is written;
``train.minutes``, off by default, the steps chosen otherwise; ``train.random_background``, which only RGBA views
have): left out of the key, so that adding such an option does not train every layout again."""


def run_dir(runs: Path, name: str, path: Path | None, teacher: str) -> Path:
    """``RUNS/NAME-TEACHER-HASH``: HASH of the scene's settings, objects and first image and label map, and of the
    code's default config (a scene rendered differently or a changed default: a new run; an edit of the generator
    that leaves the scene as it was: the same)."""
    if path is None or not (path / "transforms.json").is_file():
        return runs / f"{name}-{teacher}-fixed"
    meta = json.loads((path / "transforms.json").read_text())
    settings = {k: v for k, v in meta.get("generator", {}).items() if k != "source"}
    from dff_gs.core.config import to_dict
    from dff_gs.train.config import Config

    defaults = to_dict(Config())  # the code's defaults: a changed default schedule trains again
    for section, key in NOT_TRAINING:
        defaults.get(section, {}).pop(key, None)
    h = hashlib.sha1(json.dumps([settings, meta.get("objects"), defaults], sort_keys=True, default=str).encode())
    frame = (meta.get("frames") or [{}])[0]
    for key in ("file_path", "semantic_path"):
        if key in frame and (path / frame[key]).is_file():
            h.update((path / frame[key]).read_bytes())
    return runs / f"{name}-{teacher}-{h.hexdigest()[:8]}"


def train(run: Path, path: Path | None, overrides: list[str]) -> bool:
    """``python train.py [--data SCENE] --out RUN --quiet overrides`` in its own process (skipped when finished)."""
    if (run / "point_cloud.ply").is_file() and (run / "metrics.json").is_file():
        print(f"{run}: finished run found, not trained again")
        return True
    cmd = [sys.executable, str(ROOT / "train.py"), "--out", str(run), "--quiet"]
    cmd += (["--data", str(path)] if path is not None else []) + overrides
    print(" ".join(cmd[1:]), flush=True)
    return subprocess.run(cmd, cwd=ROOT).returncode == 0


def scene_objects(scene, max_share: float = 0.25) -> list[str]:
    """The classes that are objects: every class present in the test views that covers on average less than
    ``max_share`` of the pixels (not floor, walls, sky or grass)."""
    sem = scene.semantics.long()
    share = torch.bincount(sem[sem >= 0].reshape(-1), minlength=len(scene.class_names)).float() / sem.numel()
    return [n for n, f in zip(scene.class_names, share.tolist()) if 0 < f < max_share]


def is_flat(obj: dict) -> bool:
    words = f"{obj.get('type', '')} {obj['class']}".lower()
    return any(w in words for w in FLAT_WORDS)


def layout_objects(scene, path: Path | None) -> list[dict]:
    """Per object: ``class``, ``class_id`` (index in the scene's classes), ``type``, ``multi_part``, ``flat``."""
    meta = path / "transforms.json" if path is not None else None
    listed = json.loads(meta.read_text()).get("objects", []) if meta is not None and meta.is_file() else []
    if not listed:
        listed = [{"class": n} for n in scene_objects(scene.split("test"))]
    out = []
    for o in listed:
        if o["class"] not in scene.class_names:
            continue
        obj = {"class": o["class"], "class_id": scene.class_names.index(o["class"]),
               "type": o.get("type") or o["class"],
               "multi_part": bool(o.get("multi_part", o["class"] in MULTI_PART))}
        obj["flat"] = is_flat(obj)
        out.append(obj)
    return out


@torch.no_grad()
def lifted_truth(ctx) -> torch.Tensor:
    """Each Gaussian's true class, the ceiling of any selection on this model: the training views' label maps
    lifted onto the Gaussians by their compositing weights, the class of the largest weight (-1 where no training
    view draws it). Selecting the Gaussians of an object's class is the best any query can do with this model's
    geometry (a diagnostic: it reads the training views' labels, which no selection may).
    Returns Tensor  # [N] int64"""
    from dff_gs.lift import compositing_weights

    def compute():
        train = ctx.scene().split("train")
        sem = train.semantics.long()
        onehot = torch.nn.functional.one_hot(sem.clamp_min(0), len(ctx.scene().class_names)).float()
        w = compositing_weights(ctx.model, train.cameras, min_weight=1e-3)
        truth = w.lift(onehot * (sem >= 0)[..., None]).argmax(1)
        truth[w.weight_sum < 1e-6] = -1
        return truth

    return ctx.per_model("lifted_truth", compute)


def click_pieces(ctx):
    """The default grouping's grouper on ``ctx.model`` (its pieces, ``dff_gs.query.pieces``), built once per model
    for the fit of the merge rule and for ``bench_click``'s ``pieces_ceiling``."""
    from dff_gs.query.grouping import GroupingSettings, build_grouper

    return ctx.per_model(("layout grouper",), lambda: build_grouper(ctx, GroupingSettings()))


def object_share(pieces, truth: torch.Tensor, class_id: int) -> torch.Tensor:
    """Each piece's share of Gaussians whose lifted true class (:func:`lifted_truth`) is ``class_id``.
    Returns Tensor  # [P]"""
    return torch.bincount(pieces.piece[truth == class_id], minlength=pieces.num).float() / pieces.size


def grow_from_click(ctx, grouper, click, decide, record: list | None = None) -> torch.Tensor | None:
    """The pieces ``decide(ids, rows)`` joins, grown from the piece that draws most of the click's pixel
    (``Pieces.start``) as the rule grows them (``Pieces.grow``); ``record`` receives each round's candidates.
    ``click``: (view, x, y) of ``ctx.scene()``.
    Returns Tensor  # [P] bool, or None where the pixel shows no Gaussian"""
    from dff_gs.query.grouping import click_seeds
    from dff_gs.query.views import click_feature

    cams, (v, x, y) = ctx.scene().cameras, click
    seeds, weights = click_seeds(ctx.model, cams, v, x, y)
    if len(seeds) == 0:
        return None
    reference = click_feature(ctx.backbone, cams, v, x, y)
    pieces = grouper.pieces
    return pieces.grow(pieces.start(seeds, weights), grouper.labels(reference), reference, decide, record=record)


def border_band(mask: np.ndarray, band: int = BAND) -> np.ndarray:
    """The pixels of ``mask  # [H, W] bool`` within ``band`` px of its edge (the image's edge does not count)."""
    padded = np.pad(mask.astype(np.uint8), 1, mode="edge")
    dist = cv2.distanceTransform(padded, cv2.DIST_L2, 3)[1:-1, 1:-1]
    return mask & (dist <= band)


def draw_clicks(scene, class_id: int, k: int, seed: int, layout: str) -> list[dict]:
    """``k`` clicks ``{"view", "x", "y", "where"}`` on class ``class_id`` (see the module docstring); [] when no
    training view sees the object."""
    rng = np.random.default_rng([seed, zlib.crc32(layout.encode()), class_id])
    areas = {v: int((scene.semantics[v] == class_id).sum()) for v in scene.train_ids}
    views = [v for v, a in areas.items() if a >= MIN_PX] or [max(areas, key=areas.get)] * (max(areas.values()) > 0)
    if not views:
        return []
    picked = rng.choice(views, size=k, replace=len(views) < k)
    clicks = []
    for i, v in enumerate(picked.tolist()):
        mask = (scene.semantics[v] == class_id).numpy()
        band = border_band(mask) if i == 0 else np.zeros_like(mask)
        where = "border" if band.any() else "inside"
        ys, xs = np.nonzero(band if band.any() else mask)
        j = int(rng.integers(len(xs)))
        clicks.append({"view": int(v), "x": int(xs[j]), "y": int(ys[j]), "where": where})
    return clicks


def percentile(values, q: float) -> float:
    return float(np.percentile(values, q)) if len(values) else float("nan")


def fmt(v, spec: str = ".3f") -> str:
    return "-" if v is None or (isinstance(v, float) and np.isnan(v)) else format(v, spec)


def markdown(head: list[str], rows: list[list[str]], align: str = "") -> str:
    """A markdown table; ``align``: one char per column, ``l`` or ``r`` (default: first left, others right)."""
    align = align or "l" + "r" * (len(head) - 1)
    sep = "|" + "|".join(" --- " if a == "l" else " ---: " for a in align) + "|"
    return "\n".join(["| " + " | ".join(head) + " |", sep] + ["| " + " | ".join(r) + " |" for r in rows])


def common_args(ap, out: str) -> None:
    """The command-line options both benchmarks take."""
    ap.add_argument("--out", default=out, help="folder for the table (md, json) and the PNGs")
    ap.add_argument("--runs", default="runs/layouts", help="folder of the trained runs (shared by both benchmarks)")
    ap.add_argument("--scenes", default="", help="layouts by name: embedded, toys, garden, gen-K (comma-separated)")
    ap.add_argument("--fresh", type=int, default=0, help="draw N new generator seeds (printed, kept in the JSON)")
    ap.add_argument("--seeds", default="", help="generated layouts gen-K for these seeds (repeat a --fresh run)")
    ap.add_argument("--regression", action="store_true", help="also the regression set beside --fresh/--seeds/--scenes")
    ap.add_argument("--click-seed", type=int, default=0, help="seed of the random clicks")
    ap.add_argument("--cache", default="", help="where the layouts are rendered (default $DFF_GS_CACHE/scenes)")
    ap.add_argument("--png-layouts", type=int, default=3, help="PNGs for this many layouts of each set")

"""``python train.py``: parse the command line into a :class:`Config` and run it."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from dff_gs.config import apply_dict, apply_overrides, describe, load_yaml
from dff_gs.errors import DffError
from dff_gs.train.config import Config

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
DEFAULT_PRESET = CONFIGS / "default.yaml"
FORMAT_PRESETS = {"blender": "blender.yaml", "transforms": "colmap.yaml", "colmap": "colmap.yaml"}
"""The preset a ``--data`` scene gets without ``--config``: Blender / NeRF-synthetic objects (``transforms_train.json``)
``blender.yaml``; COLMAP models and nerfstudio ``transforms.json`` captures ``colmap.yaml``; anything else (the
Replica layout) ``default.yaml``."""


def scene_kind(path: Path) -> str:
    """``blender`` for a Blender / NeRF-synthetic layout, else the format ``load_scene`` detects ("" if none)."""
    from dff_gs.data.registry import find_loader
    from dff_gs.errors import DataError

    if path.is_dir() and (path / "transforms_train.json").is_file() and not (path / "transforms.json").is_file():
        return "blender"
    try:
        return find_loader(path)[0]
    except DataError:
        return ""  # the run itself reports what is wrong with the path


def preset_for(data: str | None, fmt: str | None = None) -> Path | None:
    """The preset used without ``--config``: :data:`FORMAT_PRESETS` by the scene's kind, else ``default.yaml``."""
    name = None
    if data:
        kind = fmt if fmt and fmt != "auto" else scene_kind(Path(data).expanduser())
        name = FORMAT_PRESETS.get(kind)
    for candidate in ([CONFIGS / name] if name else []) + [DEFAULT_PRESET]:
        if candidate.is_file():
            return candidate
    return None


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="train.py",
        description="Train a feature Gaussian scene (no arguments: the embedded default scene on CPU).",
        epilog="Any config key can be overridden as key=value, e.g. train.steps=500 model.feature_dim=32.\n"
        "Config keys (defaults):\n" + "\n".join(describe(Config())),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--config", help="YAML preset (default: by the scene's format: configs/blender.yaml for Blender "
                                     "objects, configs/colmap.yaml for COLMAP / nerfstudio captures, else "
                                     "configs/default.yaml)")
    p.add_argument("--data", help="scene folder (= data.path)")
    p.add_argument("--teacher", help="labels | efficientnet | clip | dino | none (= teacher.name)")
    p.add_argument("--backbone", help="gs | nerf (= train.backbone)")
    p.add_argument("--steps", type=int, help="optimisation steps (= train.steps)")
    p.add_argument("--out", help="run folder (= out)")
    p.add_argument("--device", help="auto | cpu | cuda (= train.device)")
    p.add_argument("--backend", help="auto | torch | gsplat (= train.backend)")
    p.add_argument("--resume", help="checkpoint or run folder to resume from (= resume)")
    p.add_argument("--init-ply", help="start from a 3DGS PLY of any trainer (= model.init_ply)")
    p.add_argument("--lift", action="store_true",
                   help="lift teacher features onto --init-ply in one pass instead of training (= lift.enabled)")
    p.add_argument("--lift-steps", type=int, help="then distil the features alone for N steps (= lift.steps)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("overrides", nargs="*", help="key=value config overrides")
    return p


def resolve_config(args: argparse.Namespace) -> Config:
    cfg = Config()
    given = lambda key: next((o.split("=", 1)[1] for o in args.overrides if o.startswith(key + "=")), None)  # noqa: E731
    preset = args.config or preset_for(args.data or given("data.path"), given("data.format"))
    if preset:
        if not args.config and Path(preset) != DEFAULT_PRESET:
            print(f"preset: {Path(preset).relative_to(CONFIGS.parent)} (for this scene's format; --config to choose)")
        apply_dict(cfg, load_yaml(preset))
    flags = {
        "data.path": args.data,
        "teacher.name": args.teacher,
        "train.backbone": args.backbone,
        "train.steps": args.steps,
        "out": args.out,
        "train.device": args.device,
        "train.backend": args.backend,
        "resume": args.resume,
        "model.init_ply": args.init_ply,
        "lift.enabled": True if args.lift else None,
        "lift.steps": args.lift_steps,
    }
    apply_overrides(cfg, [f"{k}={v}" for k, v in flags.items() if v is not None])
    apply_overrides(cfg, args.overrides)
    return cfg


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        cfg = resolve_config(args)
        from dff_gs.train.run import run

        metrics = run(cfg, progress=not args.quiet)
    except DffError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: checkpoint written; resume with --resume RUN_DIR", file=sys.stderr)
        return 130
    print(f"run folder: {cfg.out}")
    print(json.dumps({k: v for k, v in metrics.items() if not isinstance(v, dict)}, indent=2))
    return 0

"""``python train.py``: parse the command line into a :class:`Config` and run it."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
from pathlib import Path

from dff_gs.core.backends import BACKENDS
from dff_gs.core.config import (
    apply_dict,
    apply_overrides,
    describe,
    field_choices,
    leaves,
    load_yaml,
    to_dict,
    warn_repeated,
)
from dff_gs.core.errors import CheckpointError, ConfigError, DataError, quote, run_cli
from dff_gs.data.registry import find_loader
from dff_gs.engine.pipeline import run
from dff_gs.teachers import teacher_names
from dff_gs.train.checkpoint import run_record
from dff_gs.train.config import Config, TrainConfig
from dff_gs.view.live import live_viewer

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
FORMAT_PRESETS = {"blender": "blender.yaml", "transforms": "colmap.yaml", "colmap": "colmap.yaml",
                  "photos": "colmap.yaml"}
"""The preset a ``--data`` scene gets without ``--config``, layered on the code defaults: Blender / NeRF-synthetic
objects (``transforms_train.json``) ``blender.yaml``; COLMAP models, nerfstudio ``transforms.json`` captures and
photos / videos posed here ``colmap.yaml``; anything else (the embedded room, the Replica layout) none: the defaults
are its settings."""


def scene_kind(path: Path) -> str:
    """``blender`` for a Blender / NeRF-synthetic layout, else the format ``load_scene`` detects ("" if none)."""
    if path.is_dir() and (path / "transforms_train.json").is_file() and not (path / "transforms.json").is_file():
        return "blender"
    try:
        return find_loader(path)[0]
    except DataError:
        return ""  # the run itself reports what is wrong with the path


def preset_for(data: str | None, fmt: str | None = None) -> Path | None:
    """The preset used without ``--config``: :data:`FORMAT_PRESETS` by the scene's kind (None: the defaults)."""
    if not data:
        return None
    kind = fmt if fmt and fmt != "auto" else scene_kind(Path(data).expanduser())
    name = FORMAT_PRESETS.get(kind)
    if name and not (CONFIGS / name).is_file():
        print(f"preset configs/{name} for this {kind} scene is not installed here (a non-editable install?): "
              "training with the defaults")
        return None
    return CONFIGS / name if name else None


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="train.py",
        description="Train a feature Gaussian scene (no arguments: the embedded default scene on CPU).",
        epilog="Any config key can be overridden as key=value, e.g. train.steps=500 model.feature_dim=32.\n"
        "Config keys, with the defaults a bare `python train.py` runs (presets in configs/ change only the keys they "
        "name):\n" + "\n".join(describe(Config())),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--config", help="YAML preset layered on the defaults (default: by the scene's format: "
                                     "configs/blender.yaml for Blender objects, configs/colmap.yaml for COLMAP / "
                                     "nerfstudio captures, else none)")
    p.add_argument("--data", help="scene folder, or a folder of photos / a video to pose first (= data.path)")
    p.add_argument("--posed-out", help="pose photos / a video into this folder instead of the cache "
                                       "(= data.posed_out)")
    p.add_argument("--teacher", help=f"{' | '.join((*teacher_names(), 'none'))} (= teacher.name)")
    p.add_argument("--backbone", help=f"{' | '.join(field_choices(TrainConfig, 'backbone'))} (= train.backbone)")
    p.add_argument("--steps", type=int, help="optimisation steps (= train.steps)")
    p.add_argument("--out", help="run folder (= out)")
    p.add_argument("--device", help="auto | cpu | cuda (= train.device)")
    p.add_argument("--backend", help=f"{' | '.join(BACKENDS)} (= train.backend)")
    p.add_argument("--resume", help="run folder or checkpoint to continue, with the config it was trained with "
                                    "(= resume)")
    p.add_argument("--force", action="store_true", help="replace the run already in --out (= force)")
    p.add_argument("--init-ply", help="start from a 3DGS PLY of any trainer (= model.init_ply)")
    p.add_argument("--lift", action="store_true",
                   help="lift teacher features onto --init-ply in one pass instead of training (= lift.enabled)")
    p.add_argument("--lift-steps", type=int, help="then distil the features alone for N steps (= lift.steps)")
    p.add_argument("--viewer", action="store_true", help="watch the Gaussians train in the browser, on port 8080 "
                                                         "(= train.viewer=8080; another port: train.viewer=PORT)")
    p.add_argument("--export", help="viewer exports beside point_cloud.ply, through gsplat's exporter: a comma list "
                                    "of ply | splat | ply_compressed (= train.export)")
    p.add_argument("--up", help="up axis of the exports: z (our world) | y (Y-up viewers) (= train.export_up)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("overrides", nargs="*", help="key=value config overrides")
    return p


def flag_overrides(args: argparse.Namespace) -> list[str]:
    """The command line's settings as ``key=value`` strings: the named flags, then the free overrides."""
    flags = {
        "data.path": args.data,
        "data.posed_out": args.posed_out,
        "teacher.name": args.teacher,
        "train.backbone": args.backbone,
        "train.steps": args.steps,
        "out": args.out,
        "train.device": args.device,
        "train.backend": args.backend,
        "resume": args.resume,
        "force": True if args.force else None,
        "model.init_ply": args.init_ply,
        "lift.enabled": True if args.lift else None,
        "lift.steps": args.lift_steps,
        "train.viewer": 8080 if args.viewer else None,
        "train.export": args.export,
        "train.export_up": args.up,
    }
    return [f"{k}={v}" for k, v in flags.items() if v is not None] + list(args.overrides)


RESUME_MAY_CHANGE = {"resume", "out", "force", "train.device", "train.backend", "train.log_every",
                     "train.checkpoint_every", "train.checkpoint_minutes", "train.eval_every", "train.num_render_views",
                     "train.viewer", "train.viewer_every", "train.image_every", "train.lpips_weights", "train.export",
                     "train.export_up"}
"""Keys a resumed run may set differently from the run it continues: where and how it runs and reports, not what it
trains. ``data.path`` may name the same scene by another path (where it moved, or a copy: :func:`_same_scene`)."""


def _same_scene(before: str, after: str, verifiable: bool) -> bool:
    """Whether ``data.path`` may name the run's scene by another path: any scene there when the checkpoint holds the
    scene's fingerprint (``verifiable``: the pipeline compares it once the scene is loaded,
    :func:`dff_gs.engine.common.check_resumed_scene`); for an older checkpoint, the same folder, or the old one
    gone and the new one there (trusted, with a warning)."""
    old, new = Path(before).expanduser(), Path(after).expanduser()
    if verifiable:
        return scene_kind(new) != ""
    return bool(before) and new.is_dir() and (not old.exists() or old.resolve() == new.resolve())


def resume_config(resume: str, settings: list[str]) -> Config:
    """The config of the run ``resume`` continues (read from its checkpoint), with ``settings`` applied; a setting
    that would change what the run trains is refused in one line."""
    path, saved, fingerprint = run_record(resume)
    cfg = Config()
    try:
        apply_dict(cfg, saved)
    except ConfigError as e:
        raise CheckpointError(f"{path}: its saved config does not read ({e})") from None
    before = leaves(to_dict(cfg))
    apply_overrides(cfg, settings)
    after = leaves(to_dict(cfg))
    changed = [k for k in after if after[k] != before[k] and k not in RESUME_MAY_CHANGE
               and not (k == "data.path" and _same_scene(before[k], after[k], fingerprint is not None))]
    if changed:
        what = ", ".join(f"{k}={quote(after[k], 60)} (the run has {quote(before[k], 60)})" for k in changed[:3])
        what += f" and {len(changed) - 3} more" if len(changed) > 3 else ""
        raise ConfigError(f"--resume {quote(resume)} continues that run with its own config; refusing {what}: drop "
                          "them, or start a new run with --out")
    cfg.resume = str(resume)
    cfg.force = apply_overrides(Config(), [s for s in settings if s.startswith("force=")]).force  # this command's
    if not any(s.startswith("out=") for s in settings):
        cfg.out = ""  # continue in the checkpoint's own folder, wherever it is now
    return cfg


def resolve_config(args: argparse.Namespace) -> Config:
    """The run's config: a resumed run's own, else the preset (by the scene's format) with the command line on it.
    :func:`dff_gs.engine.pipeline.run` checks its values (:func:`~dff_gs.engine.validate.validate_config`) before any
    work."""
    settings = flag_overrides(args)
    warn_repeated(settings)  # a key set twice: the last one wins, said once
    given = lambda key: next((s.split("=", 1)[1] for s in reversed(settings) if s.startswith(key + "=")), None)  # noqa: E731
    if given("resume"):
        if args.config:
            raise ConfigError("--resume continues a run with its own config; --config does not apply")
        cfg = resume_config(given("resume"), settings)
    else:
        cfg = Config()
        preset = args.config or preset_for(given("data.path"), given("data.format"))
        if preset:
            if not args.config:
                print(f"preset: {Path(preset).relative_to(CONFIGS.parent)} (for this scene's format; --config to "
                      "choose)")
            apply_dict(cfg, load_yaml(preset))
        apply_overrides(cfg, settings)
    return cfg


TRAIN_MEMORY = ("while training: lower model.feature_dim, strategy.max_gaussians, model.init_points, "
                "train.batch_views or the image size (a larger data.downscale, a smaller data.max_side)")
"""What ``train.py`` says after "out of memory" (:func:`~dff_gs.core.errors.run_cli`)."""


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_intermixed_args(argv)

    def job() -> tuple[Config, dict]:
        with contextlib.ExitStack() as quiet:
            if os.environ.get("RANK", "0") != "0":  # a torchrun rank other than 0: rank 0 says it all (errors aside)
                quiet.enter_context(contextlib.redirect_stdout(quiet.enter_context(open(os.devnull, "w"))))
            cfg = resolve_config(args)
            return cfg, run(cfg, progress=not args.quiet, watch=live_viewer)

    def report(result: tuple[Config, dict]) -> str:
        cfg, metrics = result
        if not metrics:  # a torchrun rank other than 0: rank 0 reports the run
            return ""
        return f"run folder: {cfg.out}\n" + json.dumps({k: v for k, v in metrics.items() if not isinstance(v, dict)},
                                                       indent=2)

    return run_cli(job, report, memory=TRAIN_MEMORY)

"""Config dataclasses, YAML presets, overrides and CLI errors."""

import pytest

from dff_gs.core.config import apply_dict, apply_overrides, load_yaml, save_yaml, to_dict
from dff_gs.core.errors import ConfigError
from dff_gs.cli.train import build_parser, resolve_config
from dff_gs.train.config import Config


def test_overrides_coerce_types():
    cfg = apply_overrides(Config(), ["train.steps=10", "model.decoder=false", "optim.means_lr=1e-3", "data.path=/x"])
    assert cfg.train.steps == 10 and cfg.model.decoder is False
    assert cfg.optim.means_lr == pytest.approx(1e-3) and cfg.data.path == "/x"


@pytest.mark.parametrize("bad", ["train.stepz=1", "nosection.x=1", "train.steps=abc", "train.steps=1.5", "steps"])
def test_bad_overrides_raise(bad):
    with pytest.raises(ConfigError):
        apply_overrides(Config(), [bad])


def test_yaml_roundtrip_and_unknown_key(tmp_path):
    cfg = apply_overrides(Config(), ["train.steps=7"])
    save_yaml(cfg, tmp_path / "c.yaml")
    again = apply_dict(Config(), load_yaml(tmp_path / "c.yaml"))
    assert to_dict(again) == to_dict(cfg)
    (tmp_path / "bad.yaml").write_text("train:\n  not_a_key: 1\n")
    with pytest.raises(ConfigError, match="not_a_key"):
        apply_dict(Config(), load_yaml(tmp_path / "bad.yaml"))
    (tmp_path / "broken.yaml").write_text("train: [1,\n")
    with pytest.raises(ConfigError, match="broken.yaml"):
        load_yaml(tmp_path / "broken.yaml")


def test_cli_flags_map_to_config(tmp_path):
    args = build_parser().parse_args(["--steps", "5", "--teacher", "none", "--out", str(tmp_path), "model.sh_degree=0"])
    cfg = resolve_config(args)
    assert cfg.train.steps == 5 and cfg.teacher.name == "none" and cfg.out == str(tmp_path)
    assert cfg.model.sh_degree == 0


def test_help_shows_what_a_bare_run_uses_and_presets_layer_on_it(tmp_path, capsys):
    """The code defaults are what ``python train.py`` runs (no preset changes them), ``--help`` prints them, and
    a preset (given or picked by the scene's format) changes only the keys it names."""
    bare = resolve_config(build_parser().parse_args([]))
    assert to_dict(bare) == to_dict(Config())
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--help"])
    shown = capsys.readouterr().out
    assert f"train.steps={bare.train.steps!r}" in shown and "strategy.max_gaussians=35000" in shown
    (tmp_path / "p.yaml").write_text("strategy:\n  max_gaussians: 7\n")
    layered = resolve_config(build_parser().parse_args(["--config", str(tmp_path / "p.yaml")]))
    expected = to_dict(Config())
    expected["strategy"]["max_gaussians"] = 7
    assert to_dict(layered) == expected


@pytest.mark.parametrize("flags, message", [
    (["--export", "splat,obj"], "train.export='obj': not an export format"),
    (["--up", "x"], "train.export_up='x': must be one of z | y"),
    (["--export", "splat", "--backbone", "nerf"], "the NeRF backbone has no Gaussians to export"),
    (["train.lpips_weights=/no/such/alexnet.pth"], "train.lpips_weights=/no/such/alexnet.pth: no such file"),
    (["train.image_every=-1"], "train.image_every=-1: must be >= 0"),
])
def test_export_and_metric_keys_checked_before_any_work(flags, message):
    from dff_gs.engine.validate import validate_config

    with pytest.raises(ConfigError, match=message.replace("|", r"\|")):  # a choice is refused as it is read
        validate_config(resolve_config(build_parser().parse_args(flags)))


def test_each_section_checks_itself():
    """A section validates its own fields (rules, choices, finite numbers) and what spans them, with the key's full
    name; the root config validates every section."""
    from dff_gs.data.config import DataConfig
    from dff_gs.nerf.config import NerfConfig
    from dff_gs.teachers.settings import TeacherSettings
    from dff_gs.train.config import LiftConfig, TrainConfig

    Config().validate()
    for section, prefix, message in [
        (TrainConfig(steps=-1), "train.", r"train.steps=-1: must be >= 0"),
        (TrainConfig(backend="vulkan"), "train.", r"train.backend='vulkan': must be one of auto \| cpu \| torch"),
        (TrainConfig(device="tpu"), "train.", r"train.device='tpu': must be auto"),
        (TrainConfig(checkpoint_minutes=float("nan")), "train.", r"train.checkpoint_minutes=nan: must be >= 0"),
        (DataConfig(background=[1.0, 2.0, 0.0]), "data.", r"data.background=\[1.0, 2.0, 0.0\]: must be three"),
        (DataConfig(format="obj"), "data.", r"data.format='obj': must be one of auto \| "),
        (TeacherSettings(name="sam"), "teacher.", r"teacher.name='sam': must be one of "),
        (NerfConfig(field="grid"), "nerf.", r"nerf.field='grid': must be one of hash \| mlp"),
        (LiftConfig(top_k=-2), "lift.", r"lift.top_k=-2: must be >= 0"),
    ]:
        with pytest.raises(ConfigError, match=message):
            section.validate(prefix)
    cfg = Config()
    cfg.optim.means_lr = 1e9
    with pytest.raises(ConfigError, match=r"optim.means_lr=1000000000.0: must be in \[0, 1000\]"):
        cfg.validate()


def test_help_and_flags_read_the_choices_from_the_config(capsys):
    """Every choice field is a Literal: --help names each of its values, and each train.py flag names the config key
    it sets and every value that key takes (--backend lists cpu, as the config does)."""
    import dataclasses

    from dff_gs.cli.train import flag_overrides
    from dff_gs.core.config import describe, field_choices

    def sections(cfg, prefix=""):
        for f in dataclasses.fields(cfg):
            value = getattr(cfg, f.name)
            if dataclasses.is_dataclass(value):
                yield from sections(value, f"{prefix}{f.name}.")
            else:
                yield f"{prefix}{f.name}", field_choices(type(cfg), f.name)

    choices = dict(sections(Config()))
    assert choices["train.backend"] == ("auto", "cpu", "torch", "gsplat") and choices["model.init"]
    lines = {line.split("=")[0].strip(): line for line in describe(Config())}
    for key, allowed in choices.items():
        assert all(str(a) in lines[key] for a in allowed), lines[key]
    parser = build_parser()
    args = parser.parse_args([])
    for action in parser._actions:
        if not action.option_strings or action.dest in ("help", "config", "quiet"):
            continue
        setattr(args, action.dest, True if action.nargs == 0 else "1")
        (key,) = [s.split("=")[0] for s in flag_overrides(args)]
        setattr(args, action.dest, False if action.nargs == 0 else None)
        assert action.help.endswith(f"(= {key})") or f"(= {key}" in action.help, (action.option_strings, key)
        assert key in choices or key in ("out", "resume", "force"), key
        assert all(str(a) in action.help for a in choices.get(key, ())), (action.option_strings, action.help)

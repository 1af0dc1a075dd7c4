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

    cfg = resolve_config(build_parser().parse_args(flags))
    with pytest.raises(ConfigError, match=message.replace("|", r"\|")):
        validate_config(cfg)

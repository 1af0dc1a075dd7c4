"""``train.steps=0`` (the default): the steps chosen for the scene (:mod:`dff_gs.train.schedule`)."""

from types import SimpleNamespace

import pytest

from dff_gs.core.config import apply_overrides
from dff_gs.train.config import Config
from dff_gs.train.schedule import BASE_STEPS, MAX_AUTO_STEPS, auto_steps, resolve_steps


def fake_scene(width=128, height=96, depths=None, points=None):
    return SimpleNamespace(width=width, height=height, depths=depths, points=points)


def test_auto_steps_buy_a_pixel_budget_between_the_bounds():
    assert auto_steps(128, 96, in_place=False) == 2441  # 30M pixels / 12,288 a view
    assert auto_steps(600, 340, in_place=False) == BASE_STEPS  # a real capture after the CPU budget: as before
    assert auto_steps(48, 36, in_place=False) == MAX_AUTO_STEPS
    assert auto_steps(128, 96, in_place=True) == BASE_STEPS


@pytest.mark.parametrize("settings, scene, steps, said", [
    ([], fake_scene(), 2441, True),  # region init (no depth, no points): the scene chooses
    ([], fake_scene(depths=object()), BASE_STEPS, False),  # starts in place: the base schedule, silently
    ([], fake_scene(points=object()), BASE_STEPS, False),
    (["model.init=random"], fake_scene(depths=object()), 2441, True),  # the user's init counts, not the data's
    (["model.init_ply=x.ply"], fake_scene(), BASE_STEPS, False),
    (["train.backbone=nerf"], fake_scene(), BASE_STEPS, False),
    (["lift.enabled=true", "model.init_ply=x.ply"], fake_scene(), BASE_STEPS, False),
    (["train.steps=120"], fake_scene(), 120, False),  # given: untouched
])
def test_resolve_steps(settings, scene, steps, said, capsys):
    cfg = apply_overrides(Config(), settings)
    resolve_steps(cfg, scene)
    assert cfg.train.steps == steps
    out = capsys.readouterr().out
    assert (f"train.steps={steps}: the Gaussians start where the cameras look" in out) is said
    assert ("128x96 views make a step cheap" in out) is said


def test_the_loaded_scene_resolves_the_steps_the_run_writes(tiny_scene, capsys):
    from dff_gs.engine.common import load_run_scene, saved_config

    for init, steps in (("region", MAX_AUTO_STEPS), ("depth", BASE_STEPS)):
        cfg = apply_overrides(Config(), [f"data.path={tiny_scene}", f"model.init={init}"])
        assert cfg.train.steps == 0
        _, scene, _, _ = load_run_scene(cfg, progress=False)
        assert (scene.width, scene.height) == (48, 36)
        assert cfg.train.steps == steps and saved_config(cfg, scene)["train"]["steps"] == steps

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


# ------------------------------------------------------------------------- train.minutes (dff_gs.train.budget)


def test_steps_for_minutes_follow_the_measured_step_cost():
    from dff_gs.train.budget import MIN_STEPS, steps_for

    assert steps_for(1.0, 0.1, 0.1, 0.5) == 600  # 60 s at 0.1 s a step
    assert steps_for(2.0, 0.1, 0.1, 0.5) == 1200
    # growing from 0.1 s to 0.3 s over the first half, then 0.3 s: 0.5 * 0.2 + 0.5 * 0.3 = 0.25 s a step
    assert steps_for(1.0, 0.1, 0.3, 0.5) == 240
    assert steps_for(0.01, 1.0, 1.0, 0.5) == MIN_STEPS  # a budget too small to densify once: the fewest steps


@pytest.mark.parametrize("settings, error", [
    (["train.minutes=2", "train.steps=500"], "give one"),
    (["train.minutes=2", "train.backbone=nerf"], "train.backbone=nerf"),
    (["train.minutes=2", "lift.enabled=true", "model.init_ply=x.ply"], "with lift.enabled"),
])
def test_minutes_refused_where_they_cannot_choose_the_steps(settings, error):
    from dff_gs.core.errors import ConfigError

    cfg = apply_overrides(Config(), settings)
    with pytest.raises(ConfigError, match=error):
        resolve_steps(cfg, fake_scene())


def test_minutes_refused_under_torchrun(monkeypatch):  # each rank would time its own share and choose its own steps
    from dff_gs.core.errors import ConfigError

    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(ConfigError, match="under torchrun"):
        resolve_steps(apply_overrides(Config(), ["train.minutes=2"]), fake_scene())


def test_minutes_leave_the_steps_to_the_built_model():
    cfg = apply_overrides(Config(), ["train.minutes=2"])
    resolve_steps(cfg, fake_scene())
    assert cfg.train.steps == 0  # not the pixel budget's: plan_minutes sets them once the model is built


def test_plan_minutes_measures_on_a_copy_and_leaves_the_run_as_it_was(tiny_scene, capsys):
    import torch

    from dff_gs.core.gaussians import GaussianModel
    from dff_gs.data import load_scene
    from dff_gs.train.budget import plan_minutes, repeated
    from dff_gs.train.trainer import TrainData, scene_scale_of

    scene = load_scene(tiny_scene).split("train")
    model = GaussianModel.from_depth(scene, max_points=500, sh_degree=1)
    before = {k: v.detach().clone() for k, v in model.params.items()}
    data = TrainData(images=scene.images, cameras=scene.cameras, teacher_maps=None, background=torch.ones(3),
                     scene_scale=scene_scale_of(scene))
    cfg = apply_overrides(Config(), ["train.minutes=0.5", "train.backend=torch", "train.batch_views=1",
                                     "strategy.max_gaussians=1000"])
    torch.manual_seed(7)
    expected = torch.rand(3)
    torch.manual_seed(7)
    plan = plan_minutes(cfg, model, data, torch.device("cpu"))
    assert torch.equal(torch.rand(3), expected)  # the random states as they were: the run trains as it would have
    assert all(torch.equal(before[k], model.params[k]) for k in before)  # measured on copies
    assert plan["gaussians_start"] == 500 and plan["gaussians_cap"] == 1000
    assert plan["step_seconds_start"] > 0 and plan["step_seconds_cap"] > 0
    assert cfg.train.steps == plan["steps"] >= 100
    assert f"train.minutes=0.5: train.steps={plan['steps']:,}" in capsys.readouterr().out
    grown = repeated(model, 1200)
    assert grown.num_gaussians == 1200 and torch.equal(grown.params["means"][500:1000], model.params["means"])

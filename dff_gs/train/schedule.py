"""How many steps a run trains when ``train.steps`` is left to the scene (``train.steps=0``, the default).

Gaussians that start in place (depth maps, sparse points, a PLY) converge in the base schedule of 850 steps. Those
that start where the cameras look (``model.init=region``: a scene without depth maps or points, such as a
``transforms.json`` capture, or ``random``) must first find the surfaces, and 850 steps do not suffice: on a
generated pybullet layout of 60 views at 128x96 (``benchmarks/layout_eval.py``, gen-3) held-out PSNR is 16.8 dB
at 850 steps, 18.4 at 1,500, 20.5 at 2,500, 20.2 at 4,000, and the Gaussians carrying the objects' true labels
(the selection ceiling of ``benchmarks/bench_click.py``) cover them with a mean IoU of 0.16, 0.46, 0.89, 0.89.
A step costs about its pixels, so such a run gets the steps ``PIXEL_BUDGET`` pixels buy, between the base
schedule and ``MAX_AUTO_STEPS``: 2,441 at 128x96 (about 2 minutes on two CPU cores), the base 850 from 35,000
pixels a view up (a 600x340 capture: as before). The densification window and the learning-rate decay
follow the steps, as they do for a given ``train.steps``.
"""

from __future__ import annotations

from dff_gs.train.budget import check_minutes

AUTO_STEPS = 0
"""``train.steps`` value that asks for the schedule of :func:`auto_steps` (the default)."""
BASE_STEPS = 850
"""Steps of the base schedule (the NeRF's, and the Gaussians' when they start in place)."""
PIXEL_BUDGET = 30_000_000
"""Pixels rendered in a run whose Gaussians must find the surfaces (at one view a step)."""
MAX_AUTO_STEPS = 3000
"""The most steps the automatic schedule chooses (smaller images train no longer than this)."""
IN_PLACE = ("depth", "points", "ply")
"""Initialisations that put the Gaussians on the surfaces (``model.init`` resolved, :func:`init_method`)."""


def init_method(cfg, scene) -> str:
    """``model.init`` with ``auto`` resolved: ``ply`` (``model.init_ply``), depth maps, else sparse points, else
    the region the cameras see."""
    if cfg.model.init_ply:
        return "ply"
    if cfg.model.init != "auto":
        return cfg.model.init
    return "depth" if scene.depths is not None else "points" if scene.points is not None else "region"


def auto_steps(width: int, height: int, in_place: bool) -> int:
    """The steps of the automatic schedule for ``width`` x ``height`` views (see the module docstring)."""
    if in_place:
        return BASE_STEPS
    return max(BASE_STEPS, min(MAX_AUTO_STEPS, round(PIXEL_BUDGET / max(width * height, 1))))


def resolve_steps(cfg, scene) -> None:
    """``train.steps=0`` becomes :func:`auto_steps` for ``scene`` (the loaded scene, at the size it trains at),
    before the run's config is written, so that its ``config.yaml`` and checkpoint hold the steps it trains (a
    resume continues to them). One printed line when the scene, not the base schedule, chose them. With
    ``train.minutes`` the steps are left to :func:`dff_gs.train.budget.plan_minutes` once the model is built."""
    check_minutes(cfg)
    if cfg.train.steps != AUTO_STEPS or (cfg.train.minutes > 0 and not cfg.resume):  # the minutes: once built
        return
    method = init_method(cfg, scene)
    in_place = cfg.train.backbone != "gs" or cfg.lift.enabled or method in IN_PLACE
    cfg.train.steps = auto_steps(scene.width, scene.height, in_place)
    if cfg.train.steps != BASE_STEPS:
        print(f"train.steps={cfg.train.steps}: the Gaussians start where the cameras look (model.init={method}: no "
              f"depth maps or points) and must find the surfaces; {scene.width}x{scene.height} views make a step "
              f"cheap ({PIXEL_BUDGET // 1_000_000}M pixels' worth; train.steps=N to choose)")

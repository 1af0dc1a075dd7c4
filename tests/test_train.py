"""End-to-end training on a tiny generated scene: run folder, exact resume, bad checkpoints."""

import json
import math

import pytest
import torch

from dff_gs.core.config import apply_overrides
from dff_gs.core.errors import CheckpointError, ConfigError
from dff_gs.train.config import Config
from dff_gs.engine.pipeline import run
from dff_gs.train.trainer import Trainer



def tiny_cfg(scene, out, *extra):
    cfg = Config()
    apply_overrides(
        cfg,
        [
            f"data.path={scene}",
            "data.test_every=5",
            f"out={out}",
            "teacher.name=none",
            "model.sh_degree=1",
            "model.init_points=1500",
            "train.steps=24",
            "train.device=cpu",
            "train.backend=torch",
            "train.checkpoint_every=0",
            "strategy.refine_start=10",
            "strategy.refine_every=10",
            *extra,
        ],
    )
    return cfg


def test_run_writes_run_folder(tiny_scene, tmp_path):
    metrics = run(tiny_cfg(tiny_scene, tmp_path / "run", "train.export=splat,ply_compressed"), progress=False)
    out = tmp_path / "run"
    for name in ["config.yaml", "checkpoint.pt", "point_cloud.ply", "point_cloud.dff.json", "metrics.json",
                 "point_cloud.splat", "point_cloud.compressed.ply"]:
        assert (out / name).is_file(), name
    assert (out / "point_cloud.splat").stat().st_size == 32 * metrics["num_gaussians"]
    assert metrics["lpips"] == "unavailable (no weights)"
    assert list((out / "renders").glob("*.png"))
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["num_gaussians"] == metrics["num_gaussians"] > 0
    assert math.isfinite(saved["psnr"]) and saved["psnr"] > 10  # a depth-initialised room is already recognisable
    assert "depth_delta1" in saved and saved["train_seconds"] > 0


def test_interrupt_then_resume_is_exact(tiny_scene, tmp_path, monkeypatch):
    full = tiny_cfg(tiny_scene, tmp_path / "full")
    run(full, progress=False)

    original = Trainer.train_step

    def interrupt_at_12(self):  # what Ctrl-C does: the SIGINT handler sets the flag mid-run
        stats = original(self)
        if self.step == 12:
            self.stop_requested = True
        return stats

    monkeypatch.setattr(Trainer, "train_step", interrupt_at_12)
    with pytest.raises(KeyboardInterrupt):
        run(tiny_cfg(tiny_scene, tmp_path / "half"), progress=False)
    monkeypatch.setattr(Trainer, "train_step", original)
    assert torch.load(tmp_path / "half" / "checkpoint.pt", weights_only=False)["step"] == 12
    run(tiny_cfg(tiny_scene, tmp_path / "half", f"resume={tmp_path / 'half'}"), progress=False)
    a = torch.load(tmp_path / "full" / "checkpoint.pt", weights_only=False)["model"]
    b = torch.load(tmp_path / "half" / "checkpoint.pt", weights_only=False)["model"]
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k  # bit-identical


def test_bad_checkpoints_are_clear(tiny_scene, tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        run(tiny_cfg(tiny_scene, tmp_path / "r", f"resume={tmp_path / 'missing.pt'}"), progress=False)
    run(tiny_cfg(tiny_scene, tmp_path / "ok", "train.steps=2"), progress=False)
    data = (tmp_path / "ok" / "checkpoint.pt").read_bytes()
    (tmp_path / "trunc.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="trunc.pt"):
        run(tiny_cfg(tiny_scene, tmp_path / "r2", f"resume={tmp_path / 'trunc.pt'}"), progress=False)
    ckpt = torch.load(tmp_path / "ok" / "checkpoint.pt", weights_only=False)
    ckpt["model"]["params.means"][0, 0] = float("nan")
    torch.save(ckpt, tmp_path / "nan.pt")
    with pytest.raises(CheckpointError, match="means"):
        run(tiny_cfg(tiny_scene, tmp_path / "r3", f"resume={tmp_path / 'nan.pt'}"), progress=False)


def test_unknown_backend_and_backbone(tiny_scene, tmp_path):
    with pytest.raises((ConfigError, ValueError), match="backend"):
        run(tiny_cfg(tiny_scene, tmp_path / "b", "train.backend=vulkan", "train.steps=1"), progress=False)
    with pytest.raises(ConfigError, match="backbone"):
        run(tiny_cfg(tiny_scene, tmp_path / "c", "train.backbone=mlp"), progress=False)


def test_labels_teacher_distils_and_evaluates_segmentation(tiny_scene, tmp_path):
    """A transforms.json scene with semantic_path/classes.json it never saw: distil, then mIoU vs teacher."""
    cfg = tiny_cfg(tiny_scene, tmp_path / "sem", "teacher.name=labels", f"teacher.cache_dir={tmp_path / 'cache'}",
                   "model.feature_dim=8")
    metrics = run(cfg, progress=False)
    assert metrics["teacher_miou"] < 0.95  # the degraded teacher is not the ground truth ...
    assert metrics["accuracy"] > 0.3  # ... and 24 steps distil it well above chance over 10 classes
    side = json.loads((tmp_path / "sem" / "point_cloud.dff.json").read_text())
    assert side["decoder"]["out"] == 384 and side["teacher"]["name"] == "labels"


def test_unknown_teacher_is_a_config_error(tiny_scene, tmp_path):
    with pytest.raises(ConfigError, match="teacher.name='nope': must be one of"):
        run(tiny_cfg(tiny_scene, tmp_path / "t", "teacher.name=nope"), progress=False)


def test_tensorboard_events_read_back(tiny_scene, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run(tiny_cfg(tiny_scene, tmp_path / "tb", "train.log=tensorboard", "train.log_every=5", "train.image_every=10",
                 "train.eval_every=12"), progress=False)
    events = EventAccumulator(str(tmp_path / "tb" / "tb"), size_guidance={"images": 0})
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {"train/loss", "train/loss_rgb", "train/psnr", "train/num_gaussians", "eval/psnr", "eval/ssim"} <= tags
    assert "eval/lpips" not in tags  # no weights: "unavailable (no weights)" in metrics.json, no number logged
    assert [e.step for e in events.Scalars("train/loss")] == [5, 10, 15, 20, 24]
    assert [e.step for e in events.Scalars("eval/psnr")] == [12, 24]
    images = events.Images("train/comparison")
    assert [e.step for e in images] == [10, 20]
    assert (images[0].width, images[0].height) == (2 * 48, 36)  # render | ground truth (teacher none: no PCA)
    # periodic evaluation: PSNR / mIoU against time drawn with matplotlib in the run folder
    assert (tmp_path / "tb" / "psnr_vs_time.png").stat().st_size > 1000
    history = json.loads((tmp_path / "tb" / "history.json").read_text())
    assert events.Scalars("train/psnr")[-1].value == pytest.approx(history["history"][-1]["psnr"], rel=1e-6)
    run(tiny_cfg(tiny_scene, tmp_path / "none", "train.log=none"), progress=False)
    assert not (tmp_path / "none" / "tb").exists()


def test_comparison_image_does_not_change_training(tiny_scene, tmp_path):
    """Logging images every 4 steps (render | ground truth | feature PCA) leaves the run bit-identical."""
    from dff_gs.train.preview import feature_pca

    extra = ("teacher.name=labels", "train.steps=12")
    a = run(tiny_cfg(tiny_scene, tmp_path / "a", *extra, "train.log=none"), progress=False)
    b = run(tiny_cfg(tiny_scene, tmp_path / "b", *extra, "train.image_every=4"), progress=False)
    assert a["psnr"] == b["psnr"] and a["num_gaussians"] == b["num_gaussians"]
    g = torch.Generator().manual_seed(0)
    t = torch.linspace(0, 1, 30).reshape(6, 5, 1)  # features varying along one direction, plus a little noise
    feats = t * torch.randn(1, 1, 8, generator=g) + 0.01 * torch.randn(6, 5, 8, generator=g)
    pca = feature_pca(feats)
    assert pca.shape == (6, 5, 3) and 0 <= pca.min() and pca.max() <= 1 and torch.equal(pca, feature_pca(feats))
    assert abs(torch.corrcoef(torch.stack([pca[..., 0].flatten(), t.flatten()]))[0, 1]) > 0.99


def test_no_matplotlib_one_line(monkeypatch, tmp_path, capsys):
    import dff_gs.engine.plots as plots

    history = [{"step": 10, "seconds": 1.0, "psnr": 20.0, "miou": 0.5}, {"step": 20, "seconds": 2.0, "psnr": 22.0}]
    assert [p.name for p in plots.plot_run_curves(tmp_path, history, "run")] == ["psnr_vs_time.png",
                                                                               "miou_vs_time.png"]
    assert plots.plot_run_curves(tmp_path / "single", history[:1], "run") == []  # no periodic evaluation
    monkeypatch.setattr(plots, "_pyplot", lambda: None)
    assert plots.plot_run_curves(tmp_path / "x", history, "run") == []
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no PSNR / mIoU curves drawn: matplotlib is not installed" in err[0]
    assert not (tmp_path / "x").exists()


def test_random_backgrounds_recomposite_rgba_views_and_leave_opaque_ones():
    from dff_gs.core.cameras import Cameras
    from dff_gs.train.trainer import TrainData, step_backgrounds

    torch.manual_seed(0)
    rgb, alpha = torch.rand(3, 4, 5, 3), (torch.rand(3, 4, 5) > 0.5).float()
    white = torch.ones(3)
    loaded = (((rgb * alpha[..., None] + white * (1 - alpha[..., None])) * 255).round()).to(torch.uint8)
    cams = Cameras(torch.eye(4).repeat(3, 1, 1), torch.eye(3).repeat(3, 1, 1), 5, 4)
    opaque = TrainData(loaded, cams, None, white, 1.0)
    bg, gt = step_backgrounds(opaque, [0, 2], step=7, seed=0)
    assert torch.equal(bg, white.expand(2, 3)) and torch.equal(gt, loaded[[0, 2]].float() / 255)
    rgba = TrainData(loaded, cams, None, white, 1.0, alphas=alpha)
    bg, gt = step_backgrounds(rgba, [0, 2], step=7, seed=0)
    assert not torch.allclose(bg, white.expand(2, 3)) and not torch.allclose(bg[0], bg[1])
    want = rgb[[0, 2]] * alpha[[0, 2], ..., None] + bg[:, None, None, :] * (1 - alpha[[0, 2], ..., None])
    assert torch.allclose(gt, want, atol=0.5 / 255 + 1e-6)  # the view over its own random colour
    again, _ = step_backgrounds(rgba, [2], step=7, seed=0)  # a view's colour: (seed, step, view), not the batch
    assert torch.equal(again[0], bg[1]) and not torch.equal(step_backgrounds(rgba, [2], 8, 0)[0][0], bg[1])

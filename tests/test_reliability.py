"""Nothing lost, nothing half-written, never a traceback: exact resume of every trainer, the resumed run's own
config, run folders claimed (existing runs refused, locks), Ctrl-C / SIGTERM / kill -9, checked config values."""

import json
import os
import random
import shutil
import socket
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from dff_gs.core.config import apply_overrides
from dff_gs.core.errors import DataError, Interrupted, run_cli
from dff_gs.cli.train import main
from dff_gs.train.config import Config
from dff_gs.engine.pipeline import run
from dff_gs.train.trainer import Trainer

ROOT = Path(__file__).resolve().parents[1]
SMALL = ["data.test_every=5", "model.sh_degree=1", "model.init_points=1500", "train.device=cpu",
         "strategy.refine_start=10", "strategy.refine_every=10", "train.checkpoint_every=0"]


def cfg_of(scene, out, *extra) -> Config:
    cfg = Config()
    apply_overrides(cfg, [f"data.path={scene}", f"out={out}", "train.steps=24", *SMALL, *extra])
    return cfg


def labels(tmp_path_factory_or_path) -> list[str]:
    return ["teacher.name=labels", f"teacher.cache_dir={tmp_path_factory_or_path}", "model.feature_dim=8"]


def assert_same_model(a: Path, b: Path) -> None:
    sa = torch.load(a, weights_only=False)["model"]
    sb = torch.load(b, weights_only=False)["model"]
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k


def interrupt_at(monkeypatch, cls, step: int) -> None:
    original = cls.train_step

    def stop(self):  # what Ctrl-C does: the handler sets the flag mid-run
        stats = original(self)
        if self.step == step:
            self.stop_requested = True
        return stats

    monkeypatch.setattr(cls, "train_step", stop)


@pytest.fixture(scope="module")
def labelled_run(tiny_scene, tmp_path_factory):
    """A finished 24-step run distilling the labels teacher through a decoder."""
    root = tmp_path_factory.mktemp("labelled")
    run(cfg_of(tiny_scene, root / "run", *labels(root / "cache")), progress=False)
    return root


def test_every_method_is_built_and_run_through_one_interface(labelled_run, tiny_scene, tmp_path):
    """The Gaussians, the NeRF and the lift are chosen from the config, built from the same inputs, and each yields
    a Backbone of its kind and the parameter groups its trainer optimises (the lift without fine-tune: none)."""
    from dff_gs.core.distributed import World
    from dff_gs.engine.common import load_run_scene
    from dff_gs.engine.pipeline import METHODS, method_of
    from dff_gs.teachers.prepare import prepare_teacher
    from dff_gs.train.method import MethodInputs

    ply = labelled_run / "run" / "point_cloud.ply"
    cpu = torch.device("cpu")
    for name, extra in (("gs", []), ("nerf", ["train.backbone=nerf", "nerf.occ_resolution=8"]),
                        ("lift", ["lift.enabled=true", f"model.init_ply={ply}", "lift.steps=2"]),
                        ("lift", ["lift.enabled=true", f"model.init_ply={ply}"])):
        cfg = cfg_of(tiny_scene, tmp_path / name, *labels(labelled_run / "cache"), *extra)
        assert method_of(cfg) is METHODS[name]
        _, scene, train, _ = load_run_scene(cfg, cpu, progress=False)
        teacher = prepare_teacher(cfg.teacher, scene, cpu, progress=False)
        method = METHODS[name].build(cfg, MethodInputs(scene, train, teacher, cpu, World(), False))
        assert method.backbone().kind == method.kind == ("nerf" if name == "nerf" else "gs")
        groups = method.parameter_groups()
        if method.trainer is None:
            assert groups == {} and name == "lift"
            continue
        optimised = {id(p) for g in groups.values() for p in g}
        assert groups and optimised and all(p.requires_grad for g in groups.values() for p in g), name
        assert optimised <= {id(p) for p in method.model.parameters()} | {id(p) for p in getattr(
            method.model, "params", {}).values()}, name


# ----------------------------------------------------------------------------------------- exact resume
def test_resume_with_a_decoder_is_bit_identical(labelled_run, tiny_scene, tmp_path, monkeypatch):
    extra = labels(labelled_run / "cache")
    interrupt_at(monkeypatch, Trainer, 12)
    with pytest.raises(Interrupted) as stopped:
        run(cfg_of(tiny_scene, tmp_path / "half", *extra), progress=False)
    assert stopped.value.checkpoint == tmp_path / "half" / "checkpoint.pt"
    monkeypatch.undo()
    run(cfg_of(tiny_scene, tmp_path / "half", *extra, f"resume={tmp_path / 'half'}"), progress=False)
    assert_same_model(labelled_run / "run" / "checkpoint.pt", tmp_path / "half" / "checkpoint.pt")
    ckpt = torch.load(tmp_path / "half" / "checkpoint.pt", weights_only=False)
    assert "decoder.weight" in ckpt["model"]
    assert int(next(iter(ckpt["decoder_opt"]["state"].values()))["step"]) == 24  # the decoder trained throughout


def test_lift_finetune_resume_is_bit_identical(labelled_run, tiny_scene, tmp_path, monkeypatch):
    from dff_gs.lift.tuner import FeatureTuner

    extra = [*labels(labelled_run / "cache"), f"model.init_ply={labelled_run / 'run' / 'point_cloud.ply'}",
             "lift.enabled=true", "lift.steps=10", "train.backend=torch"]
    run(cfg_of(tiny_scene, tmp_path / "full", *extra), progress=False)
    interrupt_at(monkeypatch, FeatureTuner, 4)
    with pytest.raises(Interrupted):
        run(cfg_of(tiny_scene, tmp_path / "half", *extra), progress=False)
    monkeypatch.undo()
    assert torch.load(tmp_path / "half" / "checkpoint.pt", weights_only=False)["step"] == 4
    run(cfg_of(tiny_scene, tmp_path / "half", *extra, f"resume={tmp_path / 'half'}"), progress=False)
    assert_same_model(tmp_path / "full" / "checkpoint.pt", tmp_path / "half" / "checkpoint.pt")
    a = json.loads((tmp_path / "full" / "metrics.json").read_text())
    b = json.loads((tmp_path / "half" / "metrics.json").read_text())
    assert a["miou"] == b["miou"] and a["lifted_fraction"] == b["lifted_fraction"]


def test_every_trainer_has_step_state_and_checkpoint(labelled_run, tiny_scene, tmp_path):
    """The Gaussians', the NeRF's and the lift fine-tune's trainers are TrainerBases, each with its own step, state,
    save and load (the loop and the shared state are the base's); the fine-tune's load() continues
    from its checkpoint bit-identically, as the others' do (tests above and in test_nerf.py)."""
    from dff_gs.data import load_scene
    from dff_gs.io.ply import load_ply
    from dff_gs.lift.tuner import FeatureTuner
    from dff_gs.nerf.trainer import NerfTrainer
    from dff_gs.train.loop import TrainerBase

    for cls in (Trainer, NerfTrainer, FeatureTuner):
        assert issubclass(cls, TrainerBase)
        assert all(getattr(cls, n) is not getattr(TrainerBase, n) for n in ("train_step", "state", "save", "load")), cls
    ply = labelled_run / "run" / "point_cloud.ply"
    cams = load_scene(tiny_scene, test_every=5).split("train").cameras
    model, _ = load_ply(ply)
    maps = torch.rand(len(cams), 9, 12, model.output_dim, generator=torch.Generator().manual_seed(0))
    cfg = cfg_of(tiny_scene, tmp_path, "lift.steps=3", "train.backend=torch")
    straight = FeatureTuner(cfg, model, cams, maps)
    straight.fit(progress=False)
    ckpt = straight.save(tmp_path / "checkpoint.pt", {})
    straight.total_steps = 6
    straight.fit(progress=False)
    resumed = FeatureTuner(cfg, load_ply(ply)[0], cams, maps)
    resumed.load(ckpt)
    assert resumed.step == 3 and resumed.history == straight.history[:len(resumed.history)]
    resumed.total_steps = 6
    resumed.fit(progress=False)
    for k, v in straight.model.state_dict().items():
        assert torch.equal(v, resumed.model.state_dict()[k]), k


def test_files_of_a_newer_version_are_refused_in_one_line(labelled_run, tmp_path):
    from dff_gs.core.errors import CheckpointError
    from dff_gs.io.ply import load_ply
    from dff_gs.train.checkpoint import load_checkpoint

    run_dir = tmp_path / "r"
    shutil.copytree(labelled_run / "run", run_dir)
    payload = torch.load(run_dir / "checkpoint.pt", weights_only=False)
    torch.save(dict(payload, version=2), run_dir / "checkpoint.pt")
    with pytest.raises(CheckpointError, match="checkpoint.pt: unknown checkpoint version 2 .*newer dff_gs"):
        load_checkpoint(run_dir)
    side = run_dir / "point_cloud.dff.json"
    side.write_text(json.dumps(dict(json.loads(side.read_text()), version=3)))
    with pytest.raises(DataError, match="point_cloud.dff.json: unknown sidecar version 3 .*newer dff_gs"):
        load_ply(run_dir / "point_cloud.ply")
    side.write_text(json.dumps(dict(json.loads(side.read_text()), version=1, format="splatfacto")))
    with pytest.raises(DataError, match="unknown sidecar format 'splatfacto'"):
        load_ply(run_dir / "point_cloud.ply")


def test_time_based_checkpoints(tiny_scene, tmp_path, monkeypatch):
    saved = []
    original = Trainer.save
    monkeypatch.setattr(Trainer, "save", lambda self, *a, **k: saved.append(self.step) or original(self, *a, **k))
    run(cfg_of(tiny_scene, tmp_path / "r", "teacher.name=none", "train.checkpoint_minutes=1e-9"), progress=False)
    assert saved == list(range(1, 25))  # every step (the time is always up), the last one once


# ----------------------------------------------------------------------------------------- resume's config
def test_resume_takes_the_runs_config_and_refuses_changes(labelled_run, tmp_path, capsys):
    r = tmp_path / "r"
    shutil.copytree(labelled_run / "run", r)
    assert main(["--resume", str(r), "--quiet", "train.checkpoint_every=0"]) == 0  # finished: evaluates again
    assert torch.load(r / "checkpoint.pt", weights_only=False)["step"] == 24  # not the preset's 850 steps
    capsys.readouterr()
    for flags, key in ((["--steps", "30"], "train.steps=30"), (["--data", str(tmp_path)], "data.path"),
                       (["model.feature_dim=4"], "model.feature_dim=4")):
        assert main(["--resume", str(r), "--quiet", *flags]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: --resume") and key in err and len(err.strip().splitlines()) == 1
    (tmp_path / "trunc.pt").write_bytes((r / "checkpoint.pt").read_bytes()[:1000])
    before = (r / "config.yaml").read_text()
    assert main(["--resume", str(tmp_path / "trunc.pt"), "--quiet"]) == 2
    assert "trunc.pt" in capsys.readouterr().err and (r / "config.yaml").read_text() == before


# ----------------------------------------------------------------------------------------- run folders
def test_an_existing_run_is_refused_without_force(labelled_run, tiny_scene, tmp_path, capsys):
    r = tmp_path / "r"
    shutil.copytree(labelled_run / "run", r)
    args = ["--data", str(tiny_scene), "--out", str(r), "--quiet", "--steps", "3", "teacher.name=none", *SMALL]
    assert main(args) == 2
    assert "holds a run already" in capsys.readouterr().err
    assert torch.load(r / "checkpoint.pt", weights_only=False)["step"] == 24  # untouched
    assert main(args + ["--force"]) == 0
    assert torch.load(r / "checkpoint.pt", weights_only=False)["step"] == 3
    assert not (r / ".dff.lock").exists()


def test_a_run_folder_has_one_writer(tiny_scene, tmp_path, capsys):
    from dff_gs.io.lock import OutputLock

    r = tmp_path / "r"
    args = ["--data", str(tiny_scene), "--out", str(r), "--quiet", "--steps", "2", "teacher.name=none", *SMALL]
    with OutputLock(r / ".dff.lock", "another writer"):  # held as another process would (an flock of its own)
        assert main(args) == 2
        assert f"process {os.getpid()} on {socket.gethostname()} is writing it now" in capsys.readouterr().err
    (r / ".dff.lock").write_text(json.dumps({"pid": 999999, "host": socket.gethostname()}))  # left by a kill -9
    assert main(args) == 0  # a lock file nobody holds is simply taken
    assert not (r / ".dff.lock").exists()


def test_force_replaces_only_a_run_and_never_its_inputs(labelled_run, tiny_scene, tmp_path, capsys):
    base = ["--quiet", "--steps", "2", "teacher.name=none", *SMALL]
    project = tmp_path / "project"
    (project / "renders").mkdir(parents=True)
    (project / "config.yaml").write_text("name: my project\n")
    (project / "renders" / "notes.txt").write_text("mine")
    assert main(["--data", str(tiny_scene), "--out", str(project), "--force", *base]) == 2
    assert "is not a dff_gs run folder" in capsys.readouterr().err
    assert (project / "config.yaml").read_text() == "name: my project\n"
    assert (project / "renders" / "notes.txt").exists()
    r = tmp_path / "r"
    shutil.copytree(labelled_run / "run", r)
    lift = ["--init-ply", str(r / "point_cloud.ply"), "--lift", "--teacher", "labels"]  # a lift needs a teacher
    base = [a for a in base if a != "teacher.name=none"]
    assert main(["--data", str(tiny_scene), "--out", str(r), "--force", *lift, *base]) == 2
    assert "remove this run's own input" in capsys.readouterr().err and (r / "point_cloud.ply").exists()


def test_resume_keeps_this_commands_force_and_its_own_folder(labelled_run, tiny_scene, tmp_path, capsys):
    forced = tmp_path / "forced"
    args = ["--data", str(tiny_scene), "--quiet", "--steps", "2", "teacher.name=none", *SMALL]
    assert main([*args, "--out", str(forced)]) == 0
    assert main([*args, "--out", str(forced), "--force"]) == 0  # its checkpoint's config now says force=True
    other = tmp_path / "other"
    shutil.copytree(labelled_run / "run", other)
    assert main(["--resume", str(forced), "--out", str(other), "--quiet"]) == 2  # not forced by the old command
    assert "holds a run already" in capsys.readouterr().err and (other / "metrics.json").exists()
    (other / "backup.pt").write_bytes((forced / "checkpoint.pt").read_bytes())
    assert main(["--resume", str(other / "backup.pt"), "--quiet"]) == 2  # a foreign checkpoint in another run
    assert "holds a run already" in capsys.readouterr().err


def test_an_interrupt_after_training_names_the_checkpoint(tiny_scene, tmp_path, monkeypatch, capsys):
    def stopped(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr("dff_gs.engine.pipeline.evaluate", stopped)  # Ctrl-C during the final evaluation
    r = tmp_path / "r"
    assert main(["--data", str(tiny_scene), "--out", str(r), "--quiet", "--steps", "3", "teacher.name=none",
                 *SMALL]) == 130
    assert f"progress is in {r / 'checkpoint.pt'}" in capsys.readouterr().err
    assert torch.load(r / "checkpoint.pt", weights_only=False)["step"] == 3


def test_impossible_outputs_fail_before_any_work(tiny_scene, tmp_path, capsys, monkeypatch):
    (tmp_path / "file").write_text("x")
    args = ["--data", str(tiny_scene), "--quiet", "--steps", "2", "teacher.name=none", *SMALL]
    monkeypatch.setattr("dff_gs.engine.pipeline.load_run_scene", lambda *a: pytest.fail("work started"))
    for out in (tmp_path / "file", tmp_path / "file" / "run"):
        assert main(args + ["--out", str(out)]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and str(tmp_path / "file") in err and len(err.strip().splitlines()) == 1


def test_a_full_disk_is_one_line_and_keeps_the_last_checkpoint(tiny_scene, tmp_path, monkeypatch, capsys):
    r = tmp_path / "r"
    args = ["--data", str(tiny_scene), "--out", str(r), "--quiet", "--steps", "4", "teacher.name=none", *SMALL]
    assert main(args) == 0
    good = (r / "checkpoint.pt").read_bytes()

    def full(*a, **k):
        raise RuntimeError("[enforce fail at inline_container.cc:664] . unexpected pos 64 vs 0")

    monkeypatch.setattr(torch, "save", full)
    assert main(["--resume", str(r), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "checkpoint.pt: could not be written" in err
    assert len(err.strip().splitlines()) == 1
    assert (r / "checkpoint.pt").read_bytes() == good and not list(r.glob(".checkpoint*"))


# ----------------------------------------------------------------------------------------- bad values
@pytest.mark.parametrize("args, key", [
    (["--steps", "-5"], "train.steps=-5"),
    (["train.log_every=0"], "train.log_every=0"),
    (["model.sh_degree=7"], "model.sh_degree=7"),
    (["model.feature_dim=-1"], "model.feature_dim=-1"),
    (["model.init_points=0"], "model.init_points=0"),
    (["data.test_every=1"], "data.test_every=1"),
    (["train.checkpoint_minutes=nan"], "train.checkpoint_minutes=nan"),
    (["data.background=[1,2,3]"], "data.background"),
    (["train.steps=-1", "--quiet", "model.feature_dim=8"], "train.steps=-1"),  # overrides on both sides of a flag
])
def test_bad_values_are_one_line_before_any_work(args, key, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["--quiet", *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {key}") and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "runs").exists()  # no folder left behind


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")
def test_gsplat_without_cuda_is_refused_before_any_work(tiny_scene, tmp_path, capsys):
    assert main(["--data", str(tiny_scene), "--out", str(tmp_path / "r"), "--backend", "gsplat", "--quiet"]) == 2
    assert capsys.readouterr().err.startswith("error: train.backend=gsplat: needs CUDA")
    assert not (tmp_path / "r").exists()


def test_a_scene_without_training_views(tiny_scene, tmp_path):
    one = tmp_path / "one"
    shutil.copytree(tiny_scene, one)
    meta = json.loads((one / "transforms.json").read_text())
    meta["frames"] = meta["frames"][:1]
    (one / "transforms.json").write_text(json.dumps(meta))
    with pytest.raises(DataError, match="no training views"):
        run(cfg_of(one, tmp_path / "r", "teacher.name=none"), progress=False)


def test_interrupted_messages_are_honest(capsys):
    def stopped_early():
        raise KeyboardInterrupt

    assert run_cli(stopped_early, str) == 130
    assert "nothing was saved" in capsys.readouterr().err

    def stopped_late():
        raise Interrupted(Path("R/checkpoint.pt"), "SIGTERM")

    assert run_cli(stopped_late, str) == 130
    expected = "interrupted (SIGTERM): the run's progress is in R/checkpoint.pt; continue with --resume R"
    assert expected in capsys.readouterr().err


# ----------------------------------------------------------------------------------------- signals, kill -9
def train_process(scene, out, *extra) -> subprocess.Popen:
    args = [sys.executable, str(ROOT / "train.py"), "--data", str(scene), "--out", str(out), "--quiet",
            "teacher.name=none", *SMALL, *extra]
    return subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for(path: Path, proc: subprocess.Popen, timeout: float = 120) -> None:
    t0 = time.time()
    while not path.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.time() - t0 < timeout, f"{path} never appeared"
        time.sleep(0.05)


def test_sigterm_writes_a_checkpoint(tiny_scene, tmp_path):
    proc = train_process(tiny_scene, tmp_path / "r", "--steps", "100000", "train.checkpoint_minutes=0")
    wait_for(tmp_path / "r" / "config.yaml", proc)  # written when training starts
    time.sleep(1.0)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "interrupted (SIGTERM): the run's progress is in" in err
    assert torch.load(tmp_path / "r" / "checkpoint.pt", weights_only=False)["step"] > 0


def test_kill_9_then_resume_is_bit_identical(tiny_scene, tmp_path):
    extra = ["--steps", "120", "train.checkpoint_every=7", "train.checkpoint_minutes=0"]
    assert main(["--data", str(tiny_scene), "--out", str(tmp_path / "straight"), "--quiet", "teacher.name=none",
                 *SMALL, *extra]) == 0
    proc = train_process(tiny_scene, tmp_path / "killed", *extra)
    wait_for(tmp_path / "killed" / "checkpoint.pt", proc)
    time.sleep(random.Random(os.getpid()).uniform(0.0, 1.0))
    proc.kill()
    proc.communicate()
    step = torch.load(tmp_path / "killed" / "checkpoint.pt", weights_only=False)["step"]
    assert main(["--resume", str(tmp_path / "killed"), "--quiet"]) == 0
    assert_same_model(tmp_path / "straight" / "checkpoint.pt", tmp_path / "killed" / "checkpoint.pt")
    assert 0 < step < 120 and proc.returncode == -signal.SIGKILL  # killed mid-run


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")
def test_tools_refuse_gsplat_without_cuda_in_one_line(labelled_run, tmp_path, capsys):
    from dff_gs.cli.edit import main as edit
    from dff_gs.cli.query import main as query
    from dff_gs.cli.render import main as render

    r = labelled_run / "run"
    for tool, args in ((edit, [r, "--text", "chair", "--op", "delete", "--out", tmp_path / "e.ply", "--quiet"]),
                       (query, [r, "--text", "chair"]), (render, [r, "--out", tmp_path / "renders", "--quiet"])):
        assert tool([str(a) for a in args] + ["--backend", "gsplat"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert err[-1].startswith("error: render backend 'gsplat' is unavailable") and len(err) == 1
    assert not (tmp_path / "e.ply").exists() and not (tmp_path / "renders").exists()


def test_outputs_get_the_usual_permissions(tmp_path):
    from dff_gs.core.utils import atomic_write_path

    previous = os.umask(0o022)
    try:
        with atomic_write_path(tmp_path / "a.json") as tmp:
            tmp.write_text("{}")
    finally:
        os.umask(previous)
    assert (tmp_path / "a.json").stat().st_mode & 0o777 == 0o644

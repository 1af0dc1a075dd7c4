"""torchrun as people type it: ``train.batch_views`` left out means one view per process (resolved before the run's
config is written, so a resume keeps it), and the project's launcher (``python -m dff_gs.launch``, ``dff-torchrun``)
ends a failed run with the ranks' one-line messages and one line of its own, never torchrun's ``ChildFailedError``
traceback."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from dff_gs.cli.train import resume_config
from dff_gs.core.config import apply_overrides
from dff_gs.core.distributed import resolve_batch_views
from dff_gs.core.errors import ConfigError
from dff_gs.launch import failure_line, main as launch
from dff_gs.engine.pipeline import run
from dff_gs.train.config import Config

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--quiet", "--teacher", "none", "train.steps=10", "train.log=none", "train.num_render_views=0",
        "model.init_points=300", "data.test_every=5", "train.backend=cpu", "train.device=cpu"]


def launcher(scene, out, *extra) -> subprocess.CompletedProcess:
    """``python -m dff_gs.launch --standalone --nproc_per_node 2 train.py ...``: two gloo ranks, one thread each."""
    args = [sys.executable, "-m", "dff_gs.launch", "--standalone", "--nproc_per_node", "2", str(ROOT / "train.py"),
            "--data", str(scene), "--out", str(out), *TINY, *extra]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    return subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


def test_two_processes_without_batch_views_train_one_view_each(tiny_scene, tmp_path, monkeypatch):
    done = launcher(tiny_scene, tmp_path / "run")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "train.batch_views=2: one view per process (torchrun's 2 processes)\n" in done.stdout
    saved = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert saved["train"]["batch_views"] == 2  # the number it trained with, not "auto"
    assert torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=False)["step"] == 10
    resumed = resume_config(str(tmp_path / "run"), [])  # resumed by plain python: the same 2 views a step
    assert resumed.train.batch_views == 2
    monkeypatch.setenv("WORLD_SIZE", "3")  # resumed under 3 processes: refused in one line, before any work
    with pytest.raises(ConfigError, match=r"train.batch_views=2: must be a multiple of the number of processes \(3"):
        run(resumed, progress=False)


def test_plain_python_default_is_one_view_a_step_as_before(tiny_scene, tmp_path, capsys):
    assert Config().train.batch_views == 0  # auto: resolved by the run
    cfg = Config()
    resolve_batch_views(cfg, 1)
    assert cfg.train.batch_views == 1 and capsys.readouterr().out == ""  # plain python: no word
    settings = [f"data.path={tiny_scene}", "teacher.name=none", "train.steps=6", "train.log=none",
                "train.num_render_views=0", "model.init_points=300", "data.test_every=5", "train.backend=cpu",
                "train.device=cpu", "train.checkpoint_minutes=0"]
    for name, extra in (("auto", []), ("one", ["train.batch_views=1"])):
        run(apply_overrides(Config(), [*settings, f"out={tmp_path / name}", *extra]), progress=False)
    assert "batch_views: 1\n" in (tmp_path / "auto" / "config.yaml").read_text()
    auto, one = (torch.load(tmp_path / n / "checkpoint.pt", weights_only=False)["model"] for n in ("auto", "one"))
    assert auto.keys() == one.keys() and all(torch.equal(auto[k], one[k]) for k in auto)


@pytest.mark.parametrize("backbone, message", [("train.backbone=nerf", "train.backbone=nerf: the NeRF trains"),
                                               ("lift.enabled=true", "lift.enabled=true: the lift")])
def test_nerf_and_lift_refusals_name_the_processes(tiny_scene, tmp_path, monkeypatch, backbone, message):
    monkeypatch.setenv("WORLD_SIZE", "2")
    cfg = apply_overrides(Config(), [f"data.path={tiny_scene}", f"out={tmp_path / 'x'}", backbone])
    with pytest.raises(ConfigError, match=f"{message}.*torchrun's 2 processes is for") as err:
        run(cfg, progress=False)
    assert "batch_views=2" not in str(err.value)


def test_launcher_ends_a_refused_value_in_one_line(tiny_scene, tmp_path):
    done = launcher(tiny_scene, tmp_path / "run", "train.batch_views=3")
    assert done.returncode == 2  # the failed rank's own exit status
    output = done.stdout + done.stderr
    assert "Traceback" not in output and "ChildFailedError" not in output, output[-3000:]
    errors = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
    assert errors and all(line.startswith("error: train.batch_views=3: must be a multiple of the number of "
                                          "processes (2 under torchrun)") for line in errors), output[-3000:]
    assert done.stderr.splitlines()[-1].startswith("torchrun: rank ") and "exited with status 2" in done.stderr
    assert not (tmp_path / "run").exists()


def test_failure_line_and_exit_status():
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError, ProcessFailure

    killed = ChildFailedError("train.py", {1: ProcessFailure(1, 123, -9, "<N/A>")})
    assert failure_line(killed) == ("torchrun: rank 1 was killed by SIGKILL; every rank has stopped", 137)
    refused = ChildFailedError("train.py", {0: ProcessFailure(0, 124, 2, "<N/A>")})
    assert failure_line(refused)[1] == 2 and "rank 0 exited with status 2" in failure_line(refused)[0]


def test_launcher_options_are_torchruns(capsys):
    with pytest.raises(SystemExit) as stop:
        launch(["--help"])
    assert stop.value.code == 0 and "--nproc-per-node" in capsys.readouterr().out.replace("_", "-")

"""Training across processes (torchrun, gloo on the CPU) and several views a step: two ranks end with identical
parameters equal to one process with ``train.batch_views=2``; a killed rank stops every rank in one line, rank 0
checkpoints the last finished step, and the run resumes under torchrun to the straight run's parameters."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from dff_gs.core.config import apply_overrides
from dff_gs.core.errors import ConfigError
from dff_gs.engine.pipeline import run
from dff_gs.io.run_dir import LOCK_NAME, RUN_FILES
from dff_gs.train.config import Config
from dff_gs.train.trainer import view_for_step, views_for_step

ROOT = Path(__file__).resolve().parents[1]
STEPS = 40
SETTINGS = ["data.test_every=5", "model.sh_degree=1", "model.init_points=600", "train.device=cpu",
            "train.backend=cpu", "train.log=none", "train.checkpoint_minutes=0", "train.num_render_views=0",
            "model.feature_dim=4", "teacher.name=labels", "train.batch_views=2",
            # densification that clones and splits (split draws random offsets: the ranks' RNGs must agree)
            "strategy.refine_start=5", "strategy.refine_every=15", "strategy.refine_stop_frac=1.0",
            "strategy.grow_grad2d=1e-4", "strategy.grow_scale3d=0.02"]


def torchrun(scene, out, cache, params, *extra) -> subprocess.Popen:
    """Two gloo ranks on this machine (a free port: torchrun's standalone rendezvous), one CPU thread each."""
    args = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
            str(ROOT / "tests" / "dist_worker.py"), "--data", str(scene), "--out", str(out), "--quiet",
            f"--steps={STEPS}", f"teacher.cache_dir={cache}", *SETTINGS, *extra]
    env = dict(os.environ, OMP_NUM_THREADS="1", DFF_TEST_PARAMS=str(params), PYTHONPATH=str(ROOT))
    params.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def rank_pids(launcher: int) -> dict[int, int]:
    """{rank: pid} of the workers torchrun ``launcher`` started (read from /proc)."""
    found = {}
    for d in filter(str.isdigit, os.listdir("/proc")):
        try:
            ppid = int(Path(f"/proc/{d}/stat").read_text().rsplit(")", 1)[1].split()[1])
            env = dict(e.split(b"=", 1) for e in Path(f"/proc/{d}/environ").read_bytes().split(b"\0") if b"=" in e)
        except (OSError, ValueError, IndexError):
            continue
        if ppid == launcher and b"RANK" in env:
            found[int(env[b"RANK"])] = int(d)
    return found


def load(path: Path) -> dict:
    payload = torch.load(path, weights_only=False)
    return payload.get("model", payload)


def assert_close(a: dict, b: dict, atol: float) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert a[k].shape == b[k].shape, k
        gap = float((a[k] - b[k]).abs().max()) if a[k].numel() else 0.0
        assert gap <= atol, (k, gap)


def one_process(scene, out, cache, *extra) -> None:
    """The same run in this process, ``train.batch_views=2`` with the views rendered one at a time (their gradients
    then add up in the order the two ranks' all-reduce adds them) on one thread, as each rank."""
    cfg = Config()
    apply_overrides(cfg, [f"data.path={scene}", f"out={out}", f"train.steps={STEPS}", f"teacher.cache_dir={cache}",
                          *SETTINGS, "train.batch_render=false", *extra])
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the compiled rasterizer is deterministic for a given thread count
    try:
        run(cfg, progress=False)
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def two_ranks(tiny_scene, tmp_path_factory):
    """A straight 2-rank run (one view a rank a step) and the folder it wrote."""
    root = tmp_path_factory.mktemp("dist")
    proc = torchrun(tiny_scene, root / "run", root / "cache", root / "params")
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-3000:]
    return root


def test_two_ranks_equal_each_other_and_one_process(two_ranks, tiny_scene, tmp_path):
    r0, r1 = load(two_ranks / "params" / "rank0.pt"), load(two_ranks / "params" / "rank1.pt")
    assert_close(r0, r1, 0.0)  # the ranks' parameter sets are identical
    assert_close(load(two_ranks / "run" / "checkpoint.pt"), r0, 0.0)
    for rank in (0, 1):  # the process group was destroyed and its threads joined before the interpreter exits
        threads = (two_ranks / "params" / f"threads{rank}.txt").read_text().split()
        assert not [t for t in threads if "gloo" in t], threads
    assert r0["params.means"].shape[0] > 600  # densification grew the model on both ranks alike
    one_process(tiny_scene, tmp_path / "one", two_ranks / "cache")
    assert_close(load(tmp_path / "one" / "checkpoint.pt"), r0, 0.0)  # asked: within 1e-5; it is bit for bit
    written = {p.name for p in (two_ranks / "run").iterdir()}  # rank 0's files, once, and nothing else
    assert {"checkpoint.pt", "config.yaml", "history.json", "metrics.json", "point_cloud.ply"} <= written
    assert written <= {*RUN_FILES, LOCK_NAME}, written


def test_killed_rank_stops_all_and_the_run_resumes(two_ranks, tiny_scene, tmp_path):
    out, light = tmp_path / "killed", "teacher.name=none"  # no text model to load: two launches stay short
    proc = torchrun(tiny_scene, out, two_ranks / "cache", tmp_path / "params", light, "train.checkpoint_every=5")
    t0 = time.time()
    while len(pids := rank_pids(proc.pid)) < 2:  # the workers, found before they train
        assert proc.poll() is None and time.time() - t0 < 120, proc.communicate()[1][-3000:]
        time.sleep(0.02)
    while not (out / "checkpoint.pt").exists():
        assert proc.poll() is None and time.time() - t0 < 120, proc.communicate()[1][-3000:]
        time.sleep(0.005)
    os.kill(pids[1], signal.SIGKILL)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode != 0
    assert not any(Path(f"/proc/{pid}").exists() for pid in pids.values())  # every rank has stopped
    lines = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, err[-3000:]  # rank 0's one line
    step = torch.load(out / "checkpoint.pt", weights_only=False)["step"]
    assert f"error: training stopped at step {step}: rank 0 of 2: summing the" in lines[0]
    assert "another rank has stopped" in lines[0] and f"is in {out / 'checkpoint.pt'}" in lines[0]
    assert 5 <= step < STEPS

    proc = torchrun(tiny_scene, out, two_ranks / "cache", tmp_path / "params", light, "--resume", str(out))
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-3000:]
    one_process(tiny_scene, tmp_path / "straight", two_ranks / "cache", light)  # = a straight 2-rank run
    assert_close(load(out / "checkpoint.pt"), load(tmp_path / "straight" / "checkpoint.pt"), 0.0)


def test_views_of_a_step_and_bad_settings(tiny_scene, tmp_path, monkeypatch):
    seq = [view_for_step(s, 8, 3) for s in range(12)]
    assert views_for_step(1, 8, 3, 4) == seq[4:8] and views_for_step(2, 8, 3, 4) == seq[8:12]
    assert views_for_step(5, 8, 3) == [seq[5]]

    def cfg(*extra):
        c = Config()
        apply_overrides(c, [f"data.path={tiny_scene}", f"out={tmp_path / 'x'}", *extra])
        return c

    for extra, message in [(["train.batch_views=-1"], r"train.batch_views=-1: must be in \[1, 1024\] \(0: one view"),
                           (["train.batch_views=2", "train.backbone=nerf"], "train.backbone=nerf: the NeRF trains"),
                           (["train.batch_views=2", "lift.enabled=true"], "lift.enabled=true: the lift")]:
        with pytest.raises(ConfigError, match=message):
            run(cfg(*extra), progress=False)
    monkeypatch.setenv("WORLD_SIZE", "2")  # as torchrun sets it: checked before the process group is opened
    with pytest.raises(ConfigError, match="train.batch_views=3: must be a multiple of the number of processes"):
        run(cfg("train.batch_views=3"), progress=False)


def test_batched_render_gives_the_gradients_of_views_one_at_a_time(tiny_scene, tmp_path, monkeypatch):
    """The batched render (one call for the step's views) and the views rendered one at a time give the same
    gradients of every parameter and the same densification statistics, to float rounding."""
    from dff_gs.train.trainer import Trainer

    seen = {}

    def capture(self, step, info):  # in place of densifying and stepping: the step's gradients, kept
        self.strategy._update_state(self.model.params, self.strategy_state, info)
        seen[self.cfg.train.batch_render] = ({k: t.grad.clone() for k, t in self.model.named_parameters()},
                                             self.strategy_state["grad2d"].clone())

    monkeypatch.setattr(Trainer, "_apply", capture)
    for batched in (True, False):
        cfg = Config()
        apply_overrides(cfg, [f"data.path={tiny_scene}", f"out={tmp_path / str(batched)}", "train.steps=1",
                              f"teacher.cache_dir={tmp_path / 'cache'}", *SETTINGS, "train.batch_views=4",
                              f"train.batch_render={batched}", "data.test_every=0"])  # no evaluation
        run(cfg, progress=False)
    (grads_b, stats_b), (grads_v, stats_v) = seen[True], seen[False]
    assert grads_b.keys() == grads_v.keys() and "decoder.weight" in grads_b
    for k in grads_b:
        scale = float(grads_v[k].abs().max())
        assert float((grads_b[k] - grads_v[k]).abs().max()) <= 1e-5 * scale, k  # shN: 0 (SH degree 0 at step 0)
    assert float(grads_v["params.means"].abs().max()) > 0 and float(grads_v["params.features"].abs().max()) > 0
    assert stats_v.sum() > 0 and torch.allclose(stats_b, stats_v, rtol=1e-5, atol=1e-12)

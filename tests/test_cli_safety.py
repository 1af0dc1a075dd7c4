"""Issue 34's command-line safety: images smaller than SSIM's window, config files that are not text (or not
files), repeated keys, absurd sizes and running out of memory, a signal while the libraries load, the viewer's
exit status and host, long values quoted short, repeated class names: each one line, never a traceback."""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from dff_gs.cli.train import main
from dff_gs.core.config import apply_overrides, load_yaml
from dff_gs.core.errors import ConfigError, DataError, run_cli
from dff_gs.engine.pipeline import run
from dff_gs.train.config import Config
from dff_gs.engine.validate import validate_config

ROOT = Path(__file__).resolve().parents[1]
SMALL = ["train.steps=5", "teacher.name=none", "train.device=cpu", "model.init_points=500", "--quiet"]


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    assert err.startswith("error: "), err
    return err


# ----------------------------------------------------------------------------------- 4: images under SSIM's window
def test_images_smaller_than_the_ssim_window_are_refused_naming_the_key(tiny_scene, tmp_path, capsys):
    # the 48 x 36 room: 8x smaller is 6 x 4 (was a padding traceback in the loss); the CPU budget likewise
    assert main(["--data", str(tiny_scene), "--out", str(tmp_path / "a"), "data.downscale=8", *SMALL]) == 2
    assert one_error_line(capsys) == ("error: data.downscale=8: the images become 6x4 px, smaller than the 11-px "
                                      "SSIM window; lower data.downscale")
    assert main(["--data", str(tiny_scene), "--out", str(tmp_path / "b"), "data.max_side=5", *SMALL]) == 2
    assert "data.max_side=5: the automatic downscale (10x) makes the images 5x4 px" in one_error_line(capsys)


def test_a_scene_of_tiny_images_is_refused(tmp_path):
    from dff_gs.data.synthetic import generate_scene

    scene = generate_scene(tmp_path / "tiny", seed=0, width=10, height=8, num_views=4)
    cfg = Config()
    apply_overrides(cfg, [f"data.path={scene}", f"out={tmp_path / 'r'}", "teacher.name=none", "train.steps=3"])
    with pytest.raises(DataError, match="its images are 10x8 px, smaller than the 11-px SSIM window"):
        run(cfg, progress=False)


# --------------------------------------------------------------------------- 5: --config that is not a YAML file
def test_a_config_that_is_not_a_text_file_is_named(tmp_path, capsys, monkeypatch):
    binary = tmp_path / "model.pt"
    binary.write_bytes(bytes(range(256)) * 4)
    assert main(["--config", str(binary)]) == 2
    expected = f"error: {binary}: not a text file (byte 128 is not UTF-8 text); give a YAML config"
    assert one_error_line(capsys) == expected
    nul = tmp_path / "nul.yaml"
    nul.write_bytes(b"train:\n  steps: 3\x00\n")
    with pytest.raises(ConfigError, match="NUL bytes"):
        load_yaml(nul)
    with pytest.raises(ConfigError, match="a folder, not a config file"):
        load_yaml(tmp_path)
    fifo = tmp_path / "fifo.yaml"
    os.mkfifo(fifo)  # never opened: reading it would block
    with pytest.raises(ConfigError, match="not a regular file"):
        load_yaml(fifo)
    (tmp_path / "loop.yaml").symlink_to(tmp_path / "loop.yaml")
    with pytest.raises(ConfigError, match="cannot read the config file .*symbolic links"):
        load_yaml(tmp_path / "loop.yaml")
    locked = tmp_path / "locked.yaml"
    locked.write_text("train:\n  steps: 3\n")

    def denied(self):
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "read_bytes", denied)  # as root, chmod 000 would not stop the read
    with pytest.raises(ConfigError, match=r"locked.yaml: cannot read the config file \(Permission denied\)"):
        load_yaml(locked)
    with pytest.raises(ConfigError, match="config file not found"):
        load_yaml(tmp_path / "missing.yaml")


def test_repeated_keys_in_yaml_and_on_the_command_line_warn(tmp_path, capsys):
    preset = tmp_path / "p.yaml"
    preset.write_text("train:\n  steps: 5\n  steps: 9\nmodel:\n  feature_dim: 8\n")
    assert load_yaml(preset) == {"train": {"steps": 9}, "model": {"feature_dim": 8}}
    assert capsys.readouterr().err == (f"warning: {preset}: key 'steps' is given twice (lines 2 and 3): the last one "
                                       "is used\n")
    # a flag and its key, a key twice: warned, the last one used (here refused, so the run stops before any work)
    assert main(["--steps", "5", "train.steps=9", "model.feature_dim=300000", "model.feature_dim=2e6"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err == ["warning: the command line: 'train.steps' is set 2 times ('5', then '9'): the last one wins",
                   "warning: the command line: 'model.feature_dim' is set 2 times ('300000', then '2e6'): the last "
                   "one wins",
                   "error: model.feature_dim=2000000: must be in [0, 4096]"]


# ------------------------------------------------------------------------------- 7: absurd sizes, out of memory
def test_absurd_sizes_are_refused_naming_the_key_and_the_presets_are_not():
    from dff_gs.core.config import apply_dict

    for setting in ["model.feature_dim=300000", "strategy.max_gaussians=1000000000000", "nerf.feature_dim=100000",
                    "model.init_points=100000000000", "nerf.occ_resolution=100000", "nerf.hash_log2_size=40",
                    "nerf.batch_rays=1e9"]:
        with pytest.raises(ConfigError, match=f"^{setting.split('=')[0]}=.*must be in"):
            validate_config(apply_overrides(Config(), [setting]))
    for preset in sorted((ROOT / "configs").glob("*.yaml")):  # the bounds are generous
        data = load_yaml(preset)
        if set(data) <= set(Config.__dataclass_fields__):  # not an edit script
            validate_config(apply_dict(Config(), data))


def test_out_of_memory_is_one_line(capsys):
    assert run_cli(lambda: torch.empty(1 << 50), str, memory="while testing: lower x.y") == 2  # 4 PiB
    err = one_error_line(capsys)
    assert err.startswith("error: out of memory (") and err.endswith("asked for) while testing: lower x.y"), err

    def exhausted():
        raise MemoryError

    assert run_cli(exhausted, str) == 2
    assert one_error_line(capsys).startswith("error: out of memory while")
    with pytest.raises(RuntimeError, match="not about memory"):  # any other error is not disguised
        run_cli(lambda: (_ for _ in ()).throw(RuntimeError("not about memory")), str)


# ---------------------------------------------------------------------- 6: a signal while the libraries load
def _catches(pid: int, sig: int) -> bool:
    """The process has a handler for ``sig`` (Linux: the SigCgt mask of /proc/PID/status)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("SigCgt:"):
            return bool(int(line.split()[1], 16) >> (sig - 1) & 1)
    return False


@pytest.mark.skipif(not Path("/proc/self/status").is_file(), reason="reads /proc")
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
@pytest.mark.parametrize("command", [[str(ROOT / "train.py"), "--help"], ["-m", "dff_gs.query", "--help"]],
                         ids=["train.py", "-m dff_gs.query"])
def test_a_signal_while_the_libraries_load_is_one_line(sig, command):
    proc = subprocess.Popen([sys.executable, *command], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        t0 = time.time()
        while not _catches(proc.pid, signal.SIGTERM):  # the launcher's first act (old code: only after the imports)
            assert proc.poll() is None, "the command ended without ever answering SIGTERM"
            assert time.time() - t0 < 60
            time.sleep(0.002)
        assert "libtorch" not in Path(f"/proc/{proc.pid}/maps").read_text(), "SIGTERM answered only after torch"
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert err == f"interrupted ({signal.Signals(sig).name}): nothing was saved\n" and proc.returncode == 130, err
    assert out == ""


def test_the_console_scripts_go_through_the_launcher():
    import re

    import dff_gs.cli

    scripts = {name: (module, func) for name, module, func in
               re.findall(r'"(dff-\w+) = ([\w.]+):(\w+)"', (ROOT / "setup.py").read_text())}
    for command in dff_gs.cli.COMMANDS:
        module, func = scripts[f"dff-{command}"]
        assert module == "dff_gs.cli" and callable(getattr(dff_gs.cli, func)), command
    code = "import sys, dff_gs.cli; print(sorted(m for m in ('torch', 'numpy', 'yaml') if m in sys.modules))"
    assert subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                          check=True).stdout.strip() == "[]"  # the launcher loads nothing heavy


# --------------------------------------------------------------------------------------------- the viewer
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_the_viewer_exits_130_when_stopped(sig, tmp_path):
    from dff_gs.io.ply import save_ply
    from tests.test_edit import blobs

    ply = save_ply(blobs(n_per=4)[0], tmp_path / "plain.ply")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "dff_gs.view", str(ply), "--port", str(port)], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        for line in proc.stdout:  # viser's banner, then ours once the page is up
            if line.startswith("viewer: open"):
                break
        assert proc.poll() is None, proc.stderr.read()
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    assert err.strip().splitlines()[-1] == (f"interrupted ({signal.Signals(sig).name}): viewer stopped (edits not "
                                            "exported are not kept)")
    assert "Traceback" not in err


def test_a_bad_host_names_the_host_not_the_port(capsys):
    from dff_gs.cli.view import main as view_main
    from dff_gs.view.server import check_port

    with pytest.raises(ConfigError) as err:
        check_port("192.0.2.1", 8080)  # TEST-NET-1: never this machine's
    assert str(err.value).startswith("--host '192.0.2.1': not an address of this machine")
    assert "port" not in str(err.value).split(";")[0]
    with pytest.raises(ConfigError, match="^--host 'no-such-host.invalid': not an address this machine can resolve"):
        check_port("no-such-host.invalid", 8080)
    assert view_main(["missing.ply", "--host", "192.0.2.1"]) == 2  # refused before the model is opened
    err = one_error_line(capsys)
    assert "--host" in err and "choose another port" not in err


# ------------------------------------------------------------------------------------------------- messages
def test_a_long_value_is_quoted_short(capsys):
    from dff_gs.core.errors import quote

    long = "x" * 5000
    assert len(quote(long)) == 100 and quote(long).endswith("...") and quote("abc") == "'abc'"
    for setting in (f"train.steps={long}", f"train.device={long}", f"{long}=1", long, f"train.backend={long}"):
        assert main([setting]) == 2
        err = one_error_line(capsys)
        assert len(err) < 300 and "..." in err, err


def test_repeated_class_names_are_refused_for_a_text_teacher(tiny_scene, tmp_path):
    from dff_gs.data import load_scene
    from dff_gs.teachers.prepare import prepare_teacher
    from dff_gs.teachers.settings import TeacherSettings

    scene_dir = tmp_path / "room"
    shutil.copytree(tiny_scene, scene_dir)
    names = json.loads((scene_dir / "classes.json").read_text())
    names[2] = f" {names[0].upper()}"
    (scene_dir / "classes.json").write_text(json.dumps(names))
    scene = load_scene(scene_dir)
    with pytest.raises(DataError, match=f"class ids 0 and 2 are both named ' {names[0].upper()}'"):
        prepare_teacher(TeacherSettings(name="labels", cache_dir=str(tmp_path / "cache")), scene,
                        torch.device("cpu"))


# --------------------------------------------------------------------------- hostile configs (the fuzz benchmark's)
@pytest.mark.parametrize("text, message", [
    ("train:\n  steps: " + "[" * 10000 + "]" * 10000 + "\n", "nested too deeply"),
    ("model: " + "{a: " * 3000 + "1" + "}" * 3000 + "\n", "nested too deeply"),
    ("".join(f"{' ' * i}k{i}:\n" for i in range(300)) + " " * 300 + "v: 1\n", "nested too deeply"),
    ("train:\n  \x02h_degree: 1\n", r"character #x0002 at position 9 is not allowed"),
    ("train: &a {steps: *a}\n", "refers to a node that contains it"),
    ("a: [&a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol], "
     + ", ".join(f"&a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 10)) + "]\ntrain:\n  steps: *a9\n",
     "aliases are expanded"),
])
def test_a_hostile_yaml_is_one_line_naming_the_file(tmp_path, text, message):
    preset = tmp_path / "p.yaml"
    preset.write_text(text)
    start = time.perf_counter()
    with pytest.raises(ConfigError, match=message) as err:
        load_yaml(preset)
    assert str(err.value).startswith(f"{preset}: ") and "\n" not in str(err.value)
    assert time.perf_counter() - start < 2  # an alias bomb is refused, not expanded


def test_anchors_and_merge_keys_still_read(tmp_path):
    preset = tmp_path / "p.yaml"
    preset.write_text("base: &b {steps: 5, log_every: 3}\ntrain:\n  <<: *b\n  steps: 7\n")
    assert load_yaml(preset)["train"] == {"steps": 7, "log_every": 3}


@pytest.mark.parametrize("setting, message", [
    ("data.background=[1, 2", r"^data.background='\[1, 2': not a valid value"),
    ("model.init==", r"^model.init='=': not a valid value"),
    ("model.init=!!python/object:os.system {}", r"^model.init='!!python/object:os.system {}': not a valid value"),
    ("model.init=*undefined", "undefined alias"),
    ("teacher.noise=" + "9" * 400, "too large for a float"),
    ("nerf.init_density=1e400", r"^nerf.init_density=inf: not finite \(must be a finite number; given '1e400'\)"),
])
def test_an_unreadable_value_is_one_line_naming_the_key(setting, message):
    with pytest.raises(ConfigError, match=message) as err:
        apply_overrides(Config(), [setting])
    assert len(str(err.value)) < 300


@pytest.mark.parametrize("setting, message", [
    ("strategy.refine_start=" + "9" * 400, "must be >= 0 and <= 2147483647"),
    ("train.steps=" + "9" * 300, "must be >= 0 and <= 2147483647"),
    ("train.viewer_every=1.2e21", "must be >= 1 and <= 2147483647"),
    ("nerf.occ_update_every=1e18", "must be >= 1 and <= 2147483647"),
    ("strategy.refine_start=1e308", "must be >= 0 and <= 2147483647"),
    ("optim.decoder_lr=1e30", r"must be in \[0, 1000\]"),
    ("optim.opacities_lr=1e308", r"must be in \[0, 1000\]"),
    ("nerf.weight_decay=1e18", "finite number of magnitude below 2\\^31"),
])
def test_huge_counts_and_learning_rates_are_refused(setting, message):
    with pytest.raises(ConfigError, match=f"^{setting.split('=')[0]}=.*{message}") as err:
        validate_config(apply_overrides(Config(), [setting]))
    assert len(str(err.value)) < 300


def test_an_unknown_key_in_a_large_section_is_a_short_line():
    with pytest.raises(ConfigError, match=r"'train.stepz' \(did you mean train.steps\? 27 keys in train") as err:
        apply_overrides(Config(), ["train.stepz=5"])
    assert len(str(err.value)) < 300
    with pytest.raises(ConfigError, match=r"known: data, force, lift"):
        apply_overrides(Config(), ["nope=5"])


def test_a_refused_resume_setting_quotes_values_short(monkeypatch, tmp_path):
    import dff_gs.cli.train as cli_train
    from dff_gs.cli.train import resume_config
    from dff_gs.core.config import to_dict

    monkeypatch.setattr(cli_train, "run_record", lambda resume: (tmp_path / "ckpt.pt", to_dict(Config()), None))
    long = "y" * 5000
    with pytest.raises(ConfigError, match=r"refusing teacher.weights='y+\.\.\. \(the run has ''\)") as err:
        resume_config(str(tmp_path), [f"teacher.model={long}", f"teacher.weights={long}"])
    assert len(str(err.value)) < 400 and "\n" not in str(err.value)

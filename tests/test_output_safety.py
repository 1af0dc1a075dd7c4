"""No command writes over what it reads, ``--force`` or not (a scene's images, a run's files), and a run folder
whose lock another process holds (a training in progress) stops every writer, not only ``train.py``."""

import hashlib
import shutil
from pathlib import Path

import pytest
import yaml

from dff_gs.core.errors import OutputError
from dff_gs.io.lock import OutputLock
from dff_gs.io.run_dir import LOCK_NAME


def digests(folder: Path) -> dict:
    return {p.relative_to(folder): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def render(*args) -> int:
    from dff_gs.cli.render import main

    return main([str(a) for a in args] + ["--quiet"])


def query(*args) -> int:
    from dff_gs.cli.query import main

    return main([str(a) for a in args])


def edit(*args) -> int:
    from dff_gs.cli.edit import main

    return main([str(a) for a in args] + ["--quiet"])


def scene_of(ply: Path) -> Path:
    return ply.parent / "scene"  # where the ``saved`` fixture writes the scene its sidecar names


def test_render_never_writes_over_the_scene_it_reads(saved, capsys):
    ply, _ = saved
    scene = scene_of(ply)
    before = digests(scene)
    assert render(ply, "--split", "all", "--out", scene / "images", "--force") == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "never overwritten" in err and str(scene.resolve()) in err
    assert len(err.strip().splitlines()) == 1
    assert digests(scene) == before
    # a folder of the scene that holds none of these names may take new renders
    assert render(ply, "--split", "all", "--out", scene / "renders") == 0
    assert len(list((scene / "renders").glob("*.png"))) == 3
    # ... and a link into the scene is the scene
    link = ply.parent / "link"
    link.symlink_to(scene / "images")
    assert render(ply, "--split", "all", "--out", link, "--force") == 2
    assert digests(scene / "images") == before_images(before)


def before_images(before: dict) -> dict:
    return {Path(k).relative_to("images"): v for k, v in before.items() if Path(k).parts[0] == "images"}


def test_query_never_writes_over_the_scene_it_reads(saved, capsys):
    ply, _ = saved  # query --out has no --force: it wrote over whatever file of the scene had its outputs' names
    scene = scene_of(ply)
    (scene / "notes").mkdir()
    (scene / "notes" / "selection.json").write_text("{}")  # any file of the scene, here one named like an output
    before = digests(scene)
    assert query(ply, "--text", "sofa", "--split", "all", "--out", scene / "notes") == 2
    assert "never overwritten" in capsys.readouterr().err
    assert digests(scene) == before


def test_edit_never_writes_over_a_run_or_scene_it_reads(saved, tmp_path, capsys):
    ply, _ = saved
    scene = scene_of(ply)
    (scene / "points.ply").write_bytes(ply.read_bytes())  # a scene file an edit's output could be named like
    before = digests(scene)
    args = [ply, "--text", "sofa", "--op", "delete", "--views", 0]
    assert edit(*args, "--out", scene / "points.ply", "--force") == 2
    assert "never overwritten" in capsys.readouterr().err and digests(scene) == before
    # the run folder an edit reads: its config and checkpoint are inputs too
    run = tmp_path / "run"
    run.mkdir()
    shutil.copy(ply, run / "point_cloud.ply")
    shutil.copy(ply.with_name("m.dff.json"), run / "point_cloud.dff.json")
    (run / "config.yaml").write_text(yaml.safe_dump({"train": {}, "data": {"path": str(scene)}}))
    (run / "checkpoint.ply").write_text("not ours")  # an unrelated file of the same folder may be written over
    assert edit(run, *args[1:], "--out", run / "checkpoint.ply", "--force") == 0
    assert edit(run, *args[1:], "--out", run / "point_cloud.ply", "--force") == 2


def test_the_guard_resolves_links_and_spares_runs_kept_inside_a_scene(tmp_path):
    from dff_gs.io.run_dir import check_not_inputs, enclosing_run

    scene = tmp_path / "scene"
    (scene / "images").mkdir(parents=True)
    (scene / "images" / "a.png").write_bytes(b"x")
    with pytest.raises(OutputError, match="never overwritten"):
        check_not_inputs([scene / "images" / "a.png"], input_folders=[scene])
    check_not_inputs([scene / "images" / "b.png"], input_folders=[scene])  # a new file harms nothing
    (tmp_path / "model.ply").write_bytes(b"m")
    (tmp_path / "alias.ply").symlink_to(tmp_path / "model.ply")
    with pytest.raises(OutputError, match="is an input"):
        check_not_inputs([tmp_path / "alias.ply"], input_files=[tmp_path / "model.ply"])
    run = scene / "runs" / "r1"  # a run kept inside its scene: its files are the run's own
    run.mkdir(parents=True)
    (run / "checkpoint.pt").write_bytes(b"c")
    (run / "edited.ply").write_bytes(b"e")
    assert enclosing_run(run / "edited.ply") == run
    check_not_inputs([run / "edited.ply"], input_folders=[scene])


@pytest.mark.parametrize("state", ["config", "lock only"])
def test_a_held_run_lock_stops_every_writer(saved, tmp_path, capsys, state):
    """A training holds its run folder's lock from before its config is written until it ends; while it does, an
    edit, a render or a query writing into that folder is refused, ``--force`` or not."""
    ply, _ = saved
    run = tmp_path / "training"
    run.mkdir()
    if state == "config":
        (run / "config.yaml").write_text(yaml.safe_dump({"train": {}, "data": {}}))
        (run / "point_cloud.ply").write_bytes(b"the training's own")
    with OutputLock(run / LOCK_NAME, f"run folder {run}"):  # what train.py holds (flock: any other opener fails)
        assert edit(ply, "--text", "sofa", "--op", "delete", "--views", 0, "--out", run / "point_cloud.ply",
                    "--force") == 2
        assert "is writing it now" in capsys.readouterr().err
        assert render(ply, "--split", "all", "--out", run / "renders", "--force") == 2
        assert "is writing it now" in capsys.readouterr().err
        assert query(ply, "--text", "sofa", "--split", "all", "--out", run / "q") == 2
        assert "is writing it now" in capsys.readouterr().err
    assert not (run / "renders").exists() and not (run / "q").exists()
    assert state != "config" or (run / "point_cloud.ply").read_bytes() == b"the training's own"
    # once the training has ended, the edit writes (and leaves no lock behind)
    assert edit(ply, "--text", "sofa", "--op", "delete", "--views", 0, "--out", run / "edited.ply") == 0
    assert (run / "edited.ply").is_file() and not (run / LOCK_NAME).exists()


def test_the_benchmark_never_writes_over_the_scene_it_reads(tmp_path, capsys):
    from dff_gs.cli.bench import main

    scene = tmp_path / "scene"
    scene.mkdir()
    (scene / "bench.json").write_text("the scene's own")  # a file of the scene named like the benchmark's output
    assert main(["--data", str(scene), "--out", str(scene), "--only", "gs", "--quiet"]) == 2
    assert "never overwritten" in capsys.readouterr().err
    assert (scene / "bench.json").read_text() == "the scene's own"

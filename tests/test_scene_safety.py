"""What a run reads is what it trains on: a resume recognises its own scene at another path and refuses another
(scene fingerprints, every backbone); camera values beyond any real scene are refused where the scene is read;
a diverged run never saves its NaNs as progress; an image listed twice, an extension-less name that two files
match, a camera model in lower case, a folder or a symlink loop where an image should be are each said."""

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from dff_gs.cli.train import main
from dff_gs.core.config import apply_overrides
from dff_gs.data import load_scene
from tests.examples import make_colmap, make_transforms, save_png
from dff_gs.core.errors import CheckpointError, DataError
from dff_gs.engine.pipeline import run
from dff_gs.train.checkpoint import SCENE_KEY
from dff_gs.train.config import Config
from dff_gs.train.trainer import Trainer

SMALL = ["data.test_every=5", "model.sh_degree=1", "model.init_points=500", "train.device=cpu",
         "strategy.refine_start=3", "strategy.refine_every=3", "train.checkpoint_every=0", "teacher.name=none"]


def cfg_of(scene, out, *extra) -> Config:
    cfg = Config()
    apply_overrides(cfg, [f"data.path={scene}", f"out={out}", "train.steps=8", *SMALL, *extra])
    return cfg


def stop_at(monkeypatch, cls, step: int) -> None:
    """What Ctrl-C does at ``step``: the handler sets the flag mid-run."""
    original = cls.train_step

    def stop(self):
        stats = original(self)
        if self.step == step:
            self.stop_requested = True
        return stats

    monkeypatch.setattr(cls, "train_step", stop)


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and len(err.splitlines()) == 1, err
    return err


@pytest.fixture(scope="module")
def half_run(tiny_scene, tmp_path_factory):
    """A run of a copy of the tiny room stopped at step 4 of 8 (``half``), the straight 8-step run (``full``), and
    the scene's path (``scene``)."""
    root = tmp_path_factory.mktemp("half")
    scene = root / "room"
    shutil.copytree(tiny_scene, scene)
    run(cfg_of(scene, root / "full"), progress=False)
    with pytest.MonkeyPatch.context() as mp:
        stop_at(mp, Trainer, 4)
        with pytest.raises(KeyboardInterrupt):
            run(cfg_of(scene, root / "half"), progress=False)
    assert torch.load(root / "half" / "checkpoint.pt", weights_only=False)["step"] == 4
    return root


# ----------------------------------------------------------------------------------------- resume: the same scene
def test_resume_refuses_another_scene_and_continues_on_the_moved_one(half_run, tmp_path, capsys):
    r = tmp_path / "run"
    shutil.copytree(half_run / "half", r)
    scene = tmp_path / "room"
    shutil.copytree(half_run / "room", scene)
    other = tmp_path / "colmap"  # the case: a run on one format continued on a scene of another
    make_colmap(other, binary=True)
    # the run names half_run/room, which still exists: a copy elsewhere is recognised by its fingerprint
    relabelled = tmp_path / "relabelled"  # same names and cameras, one sampled image's content replaced
    shutil.copytree(scene, relabelled)
    img = relabelled / "images" / "0000.png"
    save_png(img, np.random.default_rng(0).integers(0, 256, (36, 48, 3), dtype=np.uint8))
    for bad, what in ((other, "3 views, the run's scene has 10"), (relabelled, "the content of image")):
        assert main(["--resume", str(r), "--data", str(bad), "--quiet"]) == 2
        err = one_line_error(capsys)
        assert str(bad) in err and "not the scene" in err and what in err, err
    assert torch.load(r / "checkpoint.pt", weights_only=False)["step"] == 4  # untouched
    moved = tmp_path / "moved"
    scene.rename(moved)
    assert main(["--resume", str(r), "--data", str(moved), "--quiet"]) == 0
    a = torch.load(half_run / "full" / "checkpoint.pt", weights_only=False)
    b = torch.load(r / "checkpoint.pt", weights_only=False)
    assert b["step"] == 8
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k  # bit-identical to the straight run
    fa, fb = a["config"][SCENE_KEY], b["config"][SCENE_KEY]
    assert fb.pop("source") == str(moved) and fa.pop("source") == str(half_run / "room") and fa == fb


def test_a_scene_with_other_cameras_is_another_scene(half_run, tmp_path, capsys):
    from dff_gs.data.synthetic import generate_scene

    r = tmp_path / "run"
    shutil.copytree(half_run / "half", r)
    other = generate_scene(tmp_path / "room", seed=4, width=48, height=36, num_views=10)  # same names, sizes
    assert main(["--resume", str(r), "--data", str(other), "--quiet"]) == 2
    err = one_line_error(capsys)
    assert "differs" in err and str(other) in err


def test_a_relative_scene_path_is_the_folder_it_named_then(half_run, tmp_path, monkeypatch, capsys):
    from dff_gs.data.synthetic import generate_scene

    r = tmp_path / "run"
    shutil.copytree(half_run / "half", r)
    payload = torch.load(r / "checkpoint.pt", weights_only=False)
    payload["config"]["data"]["path"] = "room"  # trained from half_run: half_run/room
    torch.save(payload, r / "checkpoint.pt")
    generate_scene(tmp_path / "room", seed=4, width=48, height=36, num_views=10)
    monkeypatch.chdir(tmp_path)  # here "room" is another scene
    assert main(["--resume", str(r), "--quiet"]) == 2
    assert "not the scene" in one_line_error(capsys)


def test_a_checkpoint_without_a_fingerprint_is_trusted_with_a_warning(half_run, tmp_path, capsys):
    r = tmp_path / "run"
    shutil.copytree(half_run / "half", r)
    payload = torch.load(r / "checkpoint.pt", weights_only=False)
    payload["config"]["data"]["path"] = str(tmp_path / "gone")  # the run's scene is no longer there
    del payload["config"][SCENE_KEY]  # as checkpoints before fingerprints
    torch.save(payload, r / "checkpoint.pt")
    assert main(["--resume", str(r), "--data", str(half_run / "room"), "--quiet"]) == 0
    err = capsys.readouterr().err
    assert "could not be verified" in err and len([ln for ln in err.splitlines() if "verified" in ln]) == 1


def test_every_backbone_stores_the_scene_fingerprint(half_run, tmp_path):
    from dff_gs.data.fingerprint import fingerprint_difference, scene_fingerprint

    scene = half_run / "room"
    fp = torch.load(half_run / "half" / "checkpoint.pt", weights_only=False)["config"][SCENE_KEY]
    assert fingerprint_difference(fp, scene_fingerprint(load_scene(scene, test_every=5))) is None
    nerf = ["train.backbone=nerf", "train.steps=2", "nerf.hash_levels=4", "nerf.hash_log2_size=10",
            "nerf.hidden=16", "nerf.batch_rays=64", "nerf.coarse_samples=8", "nerf.fine_samples=4",
            "nerf.occ_resolution=8", "train.eval_every=0", "train.num_render_views=1"]
    lift = [f"model.init_ply={half_run / 'full' / 'point_cloud.ply'}", "lift.enabled=true", "lift.steps=2",
            "teacher.name=labels", f"teacher.cache_dir={tmp_path / 'cache'}", "train.backend=torch"]
    for name, extra in (("nerf", nerf), ("lift", lift)):
        run(cfg_of(scene, tmp_path / name, *extra), progress=False)
        saved = torch.load(tmp_path / name / "checkpoint.pt", weights_only=False)["config"][SCENE_KEY]
        assert saved == fp, name


# ----------------------------------------------------------------------------------------- divergence
def test_a_diverged_run_keeps_its_last_good_checkpoint(tiny_scene, tmp_path, monkeypatch, capsys):
    original = Trainer.train_step

    def diverge(self):
        stats = original(self)
        if self.step == 6:
            with torch.no_grad():
                self.model.params["means"][0, 0] = float("nan")
        return stats

    monkeypatch.setattr(Trainer, "train_step", diverge)
    r = tmp_path / "r"
    small = [s for s in SMALL if not s.startswith("train.checkpoint_every=")]
    assert main(["--data", str(tiny_scene), "--out", str(r), "--quiet", "--steps", "8", *small,
                 "train.checkpoint_every=4"]) == 2
    err = one_line_error(capsys)
    assert "training diverged at step 8" in err and "means" in err and f"last good checkpoint is {r}" in err
    assert torch.load(r / "checkpoint.pt", weights_only=False)["step"] == 4
    assert torch.isfinite(torch.load(r / "checkpoint.pt", weights_only=False)["model"]["params.means"]).all()
    assert not (r / "point_cloud.ply").exists()


def test_the_save_check_names_the_parameter(tmp_path):
    from dff_gs.core.gaussians import GaussianModel
    from dff_gs.train.checkpoint import check_progress

    model = GaussianModel.random(torch.tensor([[-1.0, -1, -1], [1, 1, 1]]), 10, feature_dim=0)
    check_progress(model, 3, tmp_path / "checkpoint.pt")  # finite: nothing to say
    with torch.no_grad():
        model.params["scales"][2] = float("inf")
    with pytest.raises(CheckpointError, match=r"diverged at step 3: parameter 'params.scales' has 3 of 30 values "
                                              r"NaN/inf; not saved; nothing was saved \(no checkpoint yet\)"):
        check_progress(model, 3, tmp_path / "checkpoint.pt")


# ----------------------------------------------------------------------------------------- camera values
def edit_transforms(root: Path, change) -> Path:
    meta = json.loads((root / "transforms.json").read_text())
    change(meta)
    (root / "transforms.json").write_text(json.dumps(meta))
    return root


@pytest.mark.parametrize("change, message", [
    (lambda m: m["frames"][1]["transform_matrix"][0].__setitem__(3, 1e30),
     r"frame 1 \(images/1.png\): transform_matrix puts the camera 1e\+30 units from the origin"),
    (lambda m: m["frames"][0].__setitem__("fl_x", 1e30),
     r"frame 0 \(images/0\): focal length fx=1e\+30 is implausible"),
    (lambda m: m.__setitem__("cy", -1e30), r"frame 0 \(images/0\): principal point cy=-1e\+30 is implausible"),
    (lambda m: m["frames"][2].__setitem__("fl_y", 1e-9), r"frame 2 \(images/2.png\): focal length fy=1e-09"),
])
def test_transforms_camera_values_beyond_any_scene_are_refused(tmp_path, change, message):
    make_transforms(tmp_path)
    with pytest.raises(DataError, match=r"transforms.json: " + message):
        load_scene(edit_transforms(tmp_path, change))


def test_colmap_camera_values_beyond_any_scene_are_refused(tmp_path):
    from dff_gs.data.colmap import read_model, write_model

    for binary in (True, False):
        root = tmp_path / str(binary)
        model_dir = make_colmap(root, binary=binary)
        model = read_model(model_dir)
        model.images[2].tvec = [0.0, 1e30, 0.0]
        write_model(model, model_dir, binary=binary)
        with pytest.raises(DataError, match=r"images\.(bin|txt).*image 2 \(v1.png\): the translation puts the "
                                            r"camera 1e\+30 units"):
            load_scene(root)
        model.images[2].tvec = [0.0, 1.0, 0.0]
        model.cameras[1].params = [7.0, 7.5, 1e30, 3.0]
        write_model(model, model_dir, binary=binary)
        with pytest.raises(DataError, match=r"cameras\.(bin|txt).*camera 1 \(PINHOLE\): principal point cx=1e\+30"):
            load_scene(root)


def test_replica_camera_values_beyond_any_scene_are_refused(tmp_path):
    save_png(tmp_path / "rgb" / "rgb_0.png", np.zeros((6, 8, 3), np.uint8))
    pose = np.eye(4)
    pose[2, 3] = 1e30
    np.savetxt(tmp_path / "traj_w_c.txt", pose.reshape(1, 16))
    with pytest.raises(DataError, match=r"traj_w_c.txt: pose 0: its translation puts the camera 1e\+30 units"):
        load_scene(tmp_path)
    np.savetxt(tmp_path / "traj_w_c.txt", np.eye(4).reshape(1, 16))
    (tmp_path / "intrinsics.json").write_text(json.dumps({"fl_x": 1e30, "cx": 4, "cy": 3}))
    with pytest.raises(DataError, match=r"intrinsics.json: focal length fx=1e\+30"):
        load_scene(tmp_path)


def test_the_bounds_leave_real_scenes_alone(tmp_path):
    """Far (a georeferenced site, 5e6 units out) and narrow (a 1000-pixel focal length on 8 pixels) is a scene; twice
    as far as float32 can train is not."""
    make_transforms(tmp_path)

    def far(distance):
        def change(m):
            for fr in m["frames"]:
                fr["transform_matrix"][1][3] += distance
            m["frames"][1]["fl_x"] = 1000.0
        return change

    assert load_scene(edit_transforms(tmp_path, far(5e6))).num_views == 3
    with pytest.raises(DataError, match=r"frame 0 \(images/0\): transform_matrix puts the camera 2e\+07 units"):
        load_scene(edit_transforms(tmp_path, far(1.5e7)))  # 5e6 + 1.5e7 out


# ----------------------------------------------------------------------------------------- listings and names
def test_an_image_listed_twice(tmp_path, capsys):
    make_transforms(tmp_path)
    meta = json.loads((tmp_path / "transforms.json").read_text())
    edit_transforms(tmp_path, lambda m: m["frames"].append(dict(meta["frames"][1])))
    assert load_scene(tmp_path, test_every=0).num_views == 4
    err = capsys.readouterr().err
    assert "warning:" in err and "1 image(s) listed more than once (first: 1.png, views 1 and 3)" in err
    with pytest.raises(DataError, match=r"1.png: listed twice \(views 1 and 3\), as a training and as a held-out"):
        load_scene(tmp_path, test_every=3)  # view 3 is held out, view 1 trains
    edit_transforms(tmp_path, lambda m: m["frames"][3].__setitem__("transform_matrix",
                                                                   meta["frames"][2]["transform_matrix"]))
    with pytest.raises(DataError, match=r"1.png: listed twice \(views 1 and 3\) with different cameras"):
        load_scene(tmp_path, test_every=0)


def test_a_colmap_image_listed_twice_with_two_poses(tmp_path):
    from dff_gs.data.colmap import ColmapImage, read_model, write_model

    model_dir = make_colmap(tmp_path, binary=True)
    model = read_model(model_dir)
    im = model.images[1]
    model.images[9] = ColmapImage(9, im.qvec, [v + 1.0 for v in im.tvec], im.camera_id, im.name, im.points2d)
    write_model(model, model_dir)
    with pytest.raises(DataError, match=r"v0.png: listed twice \(views 0 and 1\) with different cameras"):
        load_scene(tmp_path, test_every=0)


def test_an_extensionless_name_two_files_match(tmp_path, capsys):
    make_transforms(tmp_path)  # frame 0's file_path is images/0, without its extension
    shutil.copy(tmp_path / "images" / "0.png", tmp_path / "images" / "0.jpg")
    load_scene(tmp_path)
    err = capsys.readouterr().err
    assert "warning:" in err and "0 -> 0.png (also 0.jpg)" in err and str(tmp_path / "transforms.json") in err


def test_a_camera_model_in_lower_case(tmp_path):
    model_dir = make_colmap(tmp_path, binary=False)
    cams = model_dir / "cameras.txt"
    cams.write_text(cams.read_text().replace(" PINHOLE ", " pinhole "))
    with pytest.raises(DataError, match=r"cameras.txt:\d+: camera model 'pinhole': camera model names are upper "
                                        r"case: PINHOLE"):
        load_scene(tmp_path)


@pytest.mark.parametrize("fmt", ["transforms", "colmap"])
def test_a_folder_or_a_symlink_loop_where_an_image_should_be(tmp_path, fmt, capsys):
    if fmt == "transforms":
        make_transforms(tmp_path)
        image = tmp_path / "images" / "1.png"
    else:
        make_colmap(tmp_path, binary=True)
        image = tmp_path / "images" / "v1.png"
    image.unlink()
    image.mkdir()
    with pytest.raises(DataError, match=f"{image}: is a folder") as err:
        load_scene(tmp_path, skip_missing=True)
    assert "missing" not in str(err.value) and "not found" not in str(err.value)
    image.rmdir()
    os.symlink(image.name, image)  # a link to itself
    with pytest.raises(DataError, match=f"{image}: is a symlink loop"):
        load_scene(tmp_path)
    assert main(["--data", str(tmp_path), "--out", str(tmp_path / "run"), "--quiet", "--steps", "1", *SMALL]) == 2
    assert f"{image}: is a symlink loop" in one_line_error(capsys)


def test_a_folder_where_a_depth_map_should_be(tmp_path):
    make_transforms(tmp_path)
    depth = tmp_path / "depth" / "0.npy"
    depth.unlink()
    depth.mkdir()
    with pytest.raises(DataError, match=f"{depth}: is a folder"):
        load_scene(tmp_path)

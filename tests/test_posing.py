"""Photos and videos without poses (dff_gs.data.posing): posed by structure from motion on a scene we render
ourselves with known poses, read as a scene, cached, and refused in one line when they cannot be posed."""

import json
import shutil

import numpy as np
import pytest

from dff_gs.core.errors import DataError, OutputError
from dff_gs.data import load_scene
from dff_gs.data.colmap import read_model
from dff_gs.data.posing import PosingOptions, cache_folder, pose, unposed_kind
from dff_gs.data.posing.inputs import prepare_images
from dff_gs.data.posing.sfm import loop_pairs
from dff_gs.data.posing.video import sample_frames
from tests.examples import pose_errors, save_png, textured_views

pycolmap = pytest.importorskip("pycolmap")


@pytest.fixture(scope="module")
def ring(tmp_path_factory):
    """36 photos (240x180) of a textured floor and two boxes, taken walking around them; their true poses."""
    root = tmp_path_factory.mktemp("ring")
    c2ws = textured_views(root / "photos", num_views=36)
    return root / "photos", c2ws


def estimated_poses(scene_dir):
    images = read_model(scene_dir / "sparse" / "0").images.values()
    return [im.name for im in images], np.stack([im.camera_to_world() for im in images])


def test_photos_are_posed_as_they_were_taken(ring, tmp_path):
    photos, truth = ring
    assert unposed_kind(photos) == "images" and unposed_kind(tmp_path) is None
    out = pose(photos, tmp_path / "scene", progress=False)
    names, est = estimated_poses(out)
    assert len(names) >= 0.95 * len(truth)
    index = np.array([int(n[5:8]) for n in names])
    rot, pos = pose_errors(truth[index], est)
    assert np.median(rot) <= 1.0 and np.median(pos) <= 0.02, (np.median(rot), np.median(pos))
    record = json.loads((out / "posing.json").read_text())
    assert record["registered"] == len(names) and record["matcher"] == "exhaustive"
    assert (out / "images_2" / "view_000.png").is_file() and not (out / "images_4").exists()  # 240 px / 4 < 100
    assert len(pycolmap.Reconstruction(str(out / "sparse" / "0")).cameras) == 1  # photos of one camera share it
    scene = load_scene(out, test_every=8)
    assert scene.format == "colmap" and len(scene.train_ids) + len(scene.test_ids) == len(names)
    assert scene.points is not None and len(scene.points) > 500
    with pytest.raises(OutputError, match="already exists"):
        pose(photos, out, progress=False)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".scene.")]  # no temporary folder left


def test_train_data_photos_poses_once_into_the_cache(ring, tmp_path, monkeypatch, capsys):
    photos, _ = ring
    monkeypatch.setenv("DFF_GS_CACHE", str(tmp_path / "cache"))
    first = load_scene(photos, test_every=8)
    assert "no camera poses; posing it" in capsys.readouterr().out
    assert first.format == "photos" and len(first.train_ids) >= 30
    assert cache_folder(photos, PosingOptions()).is_dir()
    again = load_scene(photos, test_every=8)  # the next run, edit or viewer reads the cache
    assert "posing" not in capsys.readouterr().out
    assert np.array_equal(first.cameras.viewmats.numpy(), again.cameras.viewmats.numpy())
    from dff_gs.cli.train import main

    assert main(["--data", str(photos), "--out", str(tmp_path / "run"), "--steps", "3", "--teacher", "none",
                 "--quiet", "train.device=cpu"]) == 0  # train.py --data PHOTOS, with nothing else
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    # its points explain the views but for bits of the ring's edges on the white backdrop: no Gaussian past them
    assert metrics["scene"]["format"] == "photos" and metrics["scene"]["init"] == "points"
    assert main(["--data", str(photos), "--posed-out", str(tmp_path / "posed"), "--out", str(tmp_path / "run2"),
                 "--steps", "2", "--teacher", "none", "--quiet", "train.device=cpu"]) == 0  # posed where asked
    assert (tmp_path / "posed" / "sparse" / "0" / "images.bin").is_file()


def test_a_video_is_sampled_and_posed(ring, tmp_path):
    cv2 = pytest.importorskip("cv2")
    photos, truth = ring
    video = tmp_path / "walk.mp4"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 10, (240, 180))
    for f in sorted(photos.iterdir()):
        frame = cv2.imread(str(f))
        for _ in range(2):  # each view held two frames; the second one blurred: the sharper is kept
            writer.write(frame)
            frame = cv2.GaussianBlur(frame, (9, 9), 3)
    writer.release()
    assert unposed_kind(video) == "video"
    got = sample_frames(video, tmp_path / "frames", count=36, progress=False)
    assert got["read"] == 72 and 30 <= got["frames"] <= 36
    out = pose(video, tmp_path / "scene", PosingOptions(frames=36), progress=False)
    record = json.loads((out / "posing.json").read_text())
    assert record["kind"] == "video" and record["matcher"] == "sequential" and record["cameras"] == "single"
    assert record["loop_pairs"] == len(loop_pairs([f"f{i}" for i in range(record["images"])], 10, 40)) > 0
    assert record["registered"] >= 0.9 * record["images"]
    (tmp_path / "broken.mp4").write_bytes(b"not a video")
    with pytest.raises(DataError, match="broken.mp4: not a video OpenCV can read"):
        pose(tmp_path / "broken.mp4", tmp_path / "nothing", progress=False)
    assert not (tmp_path / "nothing").exists()


def test_loop_pairs_join_far_keyframes_only():
    names = [f"f{i:03d}" for i in range(100)]
    pairs = loop_pairs(names, overlap=10, keyframes=20)  # every 5th image is a keyframe
    assert ("f000", "f015") in pairs and ("f000", "f095") in pairs
    assert ("f000", "f010") not in pairs and ("f000", "f001") not in pairs  # sequential matching has those
    assert all(int(b[1:]) - int(a[1:]) > 10 and int(a[1:]) % 5 == 0 == int(b[1:]) % 5 for a, b in pairs)
    assert len(pairs) == sum(1 for i in range(20) for j in range(i + 1, 20) if 5 * (j - i) > 10)
    assert loop_pairs(names, 10, 0) == [] and loop_pairs(names[:8], 10, 40) == []


def test_photos_that_do_not_overlap_are_refused_and_nothing_is_left(tmp_path):
    rng = np.random.default_rng(0)
    for i in range(4):  # four unrelated noise images: nothing to match
        save_png(tmp_path / "noise" / f"{i}.png", rng.integers(0, 255, (120, 160, 3), dtype=np.uint8))
    with pytest.raises(DataError, match="noise: .*(posed|no two images)"):
        pose(tmp_path / "noise", tmp_path / "scene", progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["noise"]


def test_inputs_are_made_ready_upright_rgb_without_duplicates(ring, tmp_path):
    from PIL import Image

    photos, _ = ring
    src = tmp_path / "src"
    src.mkdir()
    first = sorted(photos.iterdir())[:3]
    for f in first:
        shutil.copy(f, src / f.name)
    shutil.copy(first[0], src / "copy_of_first.png")  # a duplicate
    Image.open(first[1]).convert("L").save(src / first[1].name)  # grey-scale
    im = Image.open(first[2]).convert("RGB")
    exif = im.getexif()
    exif[0x0112] = 6  # stored turned: a viewer shows it rotated 90 degrees
    im.save(src / "turned.jpg", exif=exif.tobytes())
    report = prepare_images(sorted(src.iterdir()), tmp_path / "ready")
    assert report["images"] == 4 and len(report["duplicates"]) == 1
    assert report["rotated"] == 1 and report["converted"] == 1
    assert Image.open(tmp_path / "ready" / "turned.jpg").size == (180, 240)  # upright
    assert all(Image.open(p).mode == "RGB" for p in (tmp_path / "ready").iterdir())


def test_dff_process_command(ring, tmp_path, capsys):
    from dff_gs.cli.process import main

    photos, _ = ring
    assert main([str(photos), "--out", str(tmp_path / "scene"), "--quiet", "--matcher", "sequential"]) == 0
    assert f"posed scene: {tmp_path / 'scene'}" in capsys.readouterr().out
    assert main([str(tmp_path / "missing"), "--out", str(tmp_path / "x"), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "missing" in err and len(err.splitlines()) == 1

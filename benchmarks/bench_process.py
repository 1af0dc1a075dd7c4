"""Photos and videos in: images-only scenes posed by ``dff-process`` (structure from motion, pycolmap), against the
poses they came with, then trained.

For each scene with known poses: its images alone (poses hidden) -> ``dff_gs.data.posing.pose`` -> the posed
scene; the share of views posed, the rotation and position errors of the poses after the similarity that best
maps the camera centres onto the known ones (position error as a fraction of the known cameras' extent), the
posing time; then ``python train.py --data POSED``, ``python train.py --data GIVEN`` and the given poses with the
posed scene's own start (its images or video frames and its sparse points mapped into the given frame: a run that
differs from the posed one by the poses alone), the default command each, one after the other, in their own
processes, and their held-out PSNR. Scenes: ``thermos`` (the 101 photos
of ``../shared/data/thermos_pinhole``, its ``sparse/`` hidden), ``ring`` (36 views of a textured scene our own
rasterizer renders, ``tests/examples.py``) and ``ring_video`` (those views written as an MP4 by OpenCV, each held
two frames, the second blurred).

    python benchmarks/bench_process.py [--out runs/bench_process] [--scenes thermos,ring,ring_video]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without installing

from dff_gs.data.colmap import (  # noqa: E402
    ColmapCamera,
    ColmapImage,
    ColmapModel,
    read_model,
    rotmat_to_qvec,
    write_model,
)
from dff_gs.data.posing import pose  # noqa: E402
from tests.examples import alignment, pose_errors, textured_scene, textured_views  # noqa: E402

SCENES = ("thermos", "ring", "ring_video")
THERMOS = ROOT.parent / "shared" / "data" / "thermos_pinhole"


def c2w_of(model) -> dict:
    """``{image name: OpenCV camera-to-world [4, 4]}`` of a COLMAP model read by :func:`read_model`."""
    return {im.name: im.camera_to_world() for im in model.images.values()}


def given_scene(name: str, work: Path) -> tuple[Path, Path, dict]:
    """(input to pose, the scene with its known poses, {image name: true camera-to-world})."""
    if name == "thermos":
        photos = work / "thermos_photos"
        if not photos.exists():
            shutil.copytree(THERMOS / "images", photos)
        return photos, THERMOS, c2w_of(read_model(THERMOS / "sparse" / "0"))
    ring = work / "ring_photos"
    if not ring.exists():
        c2ws = textured_views(ring, num_views=36)
        np.save(work / "ring_c2w.npy", c2ws)
    c2ws = np.load(work / "ring_c2w.npy")
    truth = {f"view_{i:03d}.png": c for i, c in enumerate(c2ws)}
    given = write_given(work / "ring_given", ring, c2ws)
    if name == "ring":
        return ring, given, truth
    import cv2

    video = work / "ring.mp4"
    if not video.exists():
        writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 10, (240, 180))
        for f in sorted(ring.iterdir()):
            frame = cv2.imread(str(f))
            writer.write(frame)
            writer.write(cv2.GaussianBlur(frame, (9, 9), 3))
        writer.release()
    return video, given, truth


def write_given(folder: Path, images: Path, c2ws: np.ndarray) -> Path:
    """The rendered views with their true poses and intrinsics, and 4,000 of the scene's true Gaussian centres as
    its sparse points, as a COLMAP scene (the baseline's: the same kind of start as a posed scene)."""
    if (folder / "sparse" / "0" / "images.txt").is_file():
        return folder
    shutil.copytree(images, folder / "images", dirs_exist_ok=True)
    f = 0.9 * 240
    cams = {1: ColmapCamera(1, "PINHOLE", 240, 180, [f, f, 120.0, 90.0])}
    ims = {}
    for i, c2w in enumerate(c2ws):
        w2c = np.linalg.inv(c2w)
        ims[i + 1] = ColmapImage(i + 1, list(rotmat_to_qvec(w2c[:3, :3])), list(w2c[:3, 3]), 1, f"view_{i:03d}.png")
    means = textured_scene(0).get_means().detach().numpy()
    pick = np.random.default_rng(0).choice(len(means), 4000, replace=False)
    xyz = means[pick]
    rgb = np.full((len(xyz), 3), 128, np.uint8)
    (folder / "sparse" / "0").mkdir(parents=True, exist_ok=True)
    write_model(ColmapModel(cams, ims, xyz, rgb, np.arange(1, len(xyz) + 1)), folder / "sparse" / "0", binary=False)
    return folder


def view_names(record: dict, truth: dict) -> Callable[[str], str]:
    """A posed image's name -> the given scene's: a video's ``frame_k`` is its k-th kept frame, video frame
    ``frame_sources[k]``, view ``// 2`` (each view was held two frames); photos keep their names."""
    if record["kind"] != "video":
        return lambda name: name
    names, sources = sorted(truth), record["frame_sources"]
    return lambda name: names[sources[int(name[6:11])] // 2]


def given_same_start(given: Path, posed: Path, points: ColmapModel, similarity: tuple, view_of: Callable[[str], str],
                     video: bool, folder: Path) -> Path:
    """The given poses with the posed scene's own start: its images (a video's kept frames, under the given names,
    ``view_of``) and its sparse ``points``, mapped into the given frame by the poses' :func:`alignment`
    (``similarity``). Trained, it differs from the posed run by the poses alone (the given run also differs by its
    points and, for a video, by frames that never went through the codec)."""
    import cv2

    R, s, mean_est, mean_true = similarity
    shutil.rmtree(folder, ignore_errors=True)
    (folder / "sparse" / "0").mkdir(parents=True)
    if video:
        (folder / "images").mkdir()
        for f in sorted((posed / "images").iterdir()):
            cv2.imwrite(str(folder / "images" / view_of(f.name)), cv2.imread(str(f)))
    else:
        for sub in [d for d in given.iterdir() if d.is_dir() and d.name.startswith("images")]:
            shutil.copytree(sub, folder / sub.name)
    model = read_model(given / "sparse" / "0")
    shown = {f.name for f in (folder / "images").iterdir()}
    images = {k: im for k, im in model.images.items() if im.name in shown}
    xyz = s * (points.xyz - mean_est) @ R.T + mean_true
    write_model(ColmapModel(model.cameras, images, xyz, points.rgb, points.point_ids), folder / "sparse" / "0",
                binary=False)
    return folder


def train(data: Path, out: Path) -> dict:
    if not (out / "metrics.json").is_file():
        subprocess.run([sys.executable, str(ROOT / "train.py"), "--data", str(data), "--out", str(out), "--quiet",
                        "--force"], cwd=ROOT, check=True)
    return json.loads((out / "metrics.json").read_text())


def measure(name: str, work: Path, out: Path) -> dict:
    source, given, truth = given_scene(name, work)
    posed = out / f"{name}_posed"
    shutil.rmtree(posed, ignore_errors=True)
    t0 = time.perf_counter()
    pose(source, posed)
    seconds = time.perf_counter() - t0
    record = json.loads((posed / "posing.json").read_text())
    posed_model = read_model(posed / "sparse" / "0")
    view_of = view_names(record, truth)
    est = {view_of(k): v for k, v in c2w_of(posed_model).items()}
    common = sorted(set(est) & set(truth))
    true_c2w, est_c2w = np.stack([truth[n] for n in common]), np.stack([est[n] for n in common])
    rot, pos = pose_errors(true_c2w, est_c2w)
    posed_run = train(posed, out / f"{name}_train_posed")
    given_run = train(given, out / f"train_given_{given.name}")  # the ring's, once for its photos and its video
    same = given_same_start(given, posed, posed_model, alignment(true_c2w, est_c2w), view_of,
                            record["kind"] == "video", out / f"{name}_given_same_start")
    same_run = train(same, out / f"{name}_train_given_same_start")
    return {"scene": name, "input": str(source), "images": record["images"], "registered": record["registered"],
            "matcher": record["matcher"], "posing_s": seconds, "rot_median_deg": float(np.median(rot)),
            "rot_max_deg": float(rot.max()), "pos_median": float(np.median(pos)), "pos_max": float(pos.max()),
            "psnr_posed": posed_run["psnr"], "psnr_given": given_run["psnr"], "psnr_given_same": same_run["psnr"]}


def table(rows: list[dict]) -> str:
    lines = ["| scene | input | posed / images | matcher | posing s | rotation error median / max (deg) | "
             "position error median / max (% of extent) | test PSNR posed | test PSNR given poses, same start | "
             "test PSNR given scene |",
             "| --- | --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        lines.append(f"| {r['scene']} | {Path(r['input']).name} | {r['registered']} / {r['images']} | "
                     f"{r['matcher']} | {r['posing_s']:.0f} | {r['rot_median_deg']:.2f} / {r['rot_max_deg']:.2f} | "
                     f"{100 * r['pos_median']:.2f} / {100 * r['pos_max']:.2f} | {r['psnr_posed']:.2f} | "
                     f"{r['psnr_given_same']:.2f} | {r['psnr_given']:.2f} |")
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="runs/bench_process")
    p.add_argument("--scenes", default=",".join(SCENES))
    args = p.parse_args()
    out = Path(args.out)
    work = out / "inputs"
    work.mkdir(parents=True, exist_ok=True)
    rows = []
    for name in [s for s in args.scenes.split(",") if s]:
        if name not in SCENES:
            p.error(f"unknown scene {name!r} (known: {', '.join(SCENES)})")
        if name == "thermos" and not THERMOS.is_dir():
            print(f"thermos: {THERMOS} not found, skipped")
            continue
        rows.append(measure(name, work, out))
        print(table(rows[-1:]), flush=True)
    text = table(rows)
    print("\n" + text)
    (out / "bench_process.md").write_text(text + "\n")
    (out / "bench_process.json").write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""A scene's fingerprint: what a training read of it (image names, size, split, cameras, a few images' content),
stored with the run's checkpoint so that a resume recognises the same scene at another path (moved, renamed,
copied) and refuses a different one.

It is computed from the loaded :class:`~dff_gs.data.scene.SceneData`, on the CPU, from nothing a resume may
change (device, backend, number of processes, evaluation settings): the same files read with the same
``data.*`` options give the same fingerprint. Cameras and images are compared within tolerances, so that a
decoder or linear-algebra library that differs in the last bits on another machine is still the same scene.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F

from dff_gs.core.utils import as_rgb, evenly_spaced
from dff_gs.data.scene import SceneData

FINGERPRINT_VERSION = 1
THUMB_VIEWS = 4
"""Views whose content is sampled (evenly spaced over the scene, the first and the last included)."""
THUMB_SIDE = 16
"""Side of the area-averaged thumbnail (``THUMB_SIDE x THUMB_SIDE`` RGB, 8-bit) kept of each sampled view."""
THUMB_TOLERANCE = 4
"""Largest difference of a thumbnail pixel (of 255) between two reads of one scene: the same image decoded by
another libjpeg, or re-encoded, moves a 16x16 area mean by a level or two; another image moves it by tens."""
CAMERA_RTOL = 1e-4
"""Relative tolerance of camera values (float32 keeps 7 digits; a pose read through another BLAS differs in the
last ones)."""


def _thumbnail(image: torch.Tensor) -> list:
    """``image  # [H, W, 3]`` in [0, 1] -> its ``THUMB_SIDE``-square area means as 8-bit ``[S, S, 3]`` lists."""
    x = image.detach().float().cpu().permute(2, 0, 1)[None]
    small = F.adaptive_avg_pool2d(x, (min(THUMB_SIDE, x.shape[2]), min(THUMB_SIDE, x.shape[3])))[0]
    return (small.permute(1, 2, 0) * 255).round().clamp(0, 255).to(torch.uint8).tolist()


def scene_fingerprint(scene: SceneData) -> dict:
    """The fingerprint of a loaded scene: a small dict of plain values (lists, ints, floats), safe to pickle.

    ``names`` (per view, in the scene's order), ``size`` ``[W, H]``, ``train`` / ``test`` ids, ``intrinsics``
    ``[V][fx, fy, cx, cy]``, ``poses`` ``[V][12]`` (world-to-camera rows 0..2) and ``thumbs``
    ``{view: [S][S][3]}`` of up to :data:`THUMB_VIEWS` views; ``source``, the scene folder's absolute path, says
    where it was read (a relative ``data.path`` names another folder from another working directory) and is not
    compared."""
    cams = scene.cameras
    Ks = cams.Ks.detach().double().cpu()
    return {
        "version": FINGERPRINT_VERSION,
        "source": scene_location(scene),
        "names": list(scene.image_names),
        "size": [int(scene.width), int(scene.height)],
        "train": [int(i) for i in scene.train_ids],
        "test": [int(i) for i in scene.test_ids],
        "intrinsics": torch.stack([Ks[:, 0, 0], Ks[:, 1, 1], Ks[:, 0, 2], Ks[:, 1, 2]], 1).tolist(),
        "poses": cams.viewmats.detach().double().cpu()[:, :3, :].reshape(len(cams), 12).tolist(),
        "thumbs": {int(i): _thumbnail(as_rgb(scene.images[i])) for i in evenly_spaced(scene.num_views, THUMB_VIEWS)},
    }


def scene_location(scene: SceneData) -> str:
    """The absolute path of the folder the scene was read from (links resolved)."""
    return str(Path(scene.source).expanduser().resolve())


def _close(a, b) -> bool:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    scale = max(1.0, float(np.abs(a).max(initial=0.0)))
    return a.shape == b.shape and bool(np.allclose(a, b, rtol=CAMERA_RTOL, atol=CAMERA_RTOL * scale))


def _first_camera_difference(run: dict, now: dict) -> Optional[int]:
    for i, (ka, kb, pa, pb) in enumerate(zip(run["intrinsics"], now["intrinsics"], run["poses"], now["poses"])):
        if not (_close(ka, kb) and _close(pa, pb)):
            return i
    return None


def fingerprint_difference(run: dict, now: dict) -> Optional[str]:
    """None when ``now`` is the scene ``run`` fingerprinted (within the tolerances), else what differs first, in a
    few words ("image names differ (view 3: 'b', the run's 'a')", "camera 3 differs", ...)."""
    if run.get("version") != FINGERPRINT_VERSION:
        return f"the run's scene fingerprint is of another version ({run.get('version')!r:.20}), this dff_gs reads 1"
    n_run, n_now = len(run["names"]), len(now["names"])
    if n_run != n_now:
        return f"{n_now} views, the run's scene has {n_run}"
    if run["names"] != now["names"]:
        if sorted(run["names"]) == sorted(now["names"]):
            return "the views are in another order"
        i = next(i for i, (a, b) in enumerate(zip(run["names"], now["names"])) if a != b)
        return f"image names differ (view {i}: {now['names'][i]!r:.60}, the run's {run['names'][i]!r:.60})"
    if run["size"] != now["size"]:
        return "image size differs ({}x{}, the run's {}x{})".format(*now["size"], *run["size"])
    if run["train"] != now["train"] or run["test"] != now["test"]:
        return "the train/test split differs"
    cam = _first_camera_difference(run, now)
    if cam is not None:
        return f"camera {cam} ({now['names'][cam]!r:.60}) differs"
    for i, thumb in run["thumbs"].items():
        other = now["thumbs"].get(i)
        diff = np.abs(np.asarray(thumb, np.int16) - np.asarray(other, np.int16)) if other is not None else None
        if diff is None or diff.shape != np.asarray(thumb).shape or int(diff.max(initial=0)) > THUMB_TOLERANCE:
            return f"the content of image {now['names'][i]!r:.60} differs"
    return None

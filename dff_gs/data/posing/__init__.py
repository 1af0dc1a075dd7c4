"""Scenes without poses: a folder of photos or a video becomes an ordinary COLMAP scene (``images/`` +
``sparse/0``) by structure from motion (:mod:`~dff_gs.data.posing.sfm`, pycolmap), written once, whole or not at
all, in a cache folder keyed by the inputs (or where asked), so that every later run, edit, render or viewer
reopens it without posing again.

- :func:`pose` (``dff-process INPUT --out SCENE``): pose into a folder of one's choosing;
- :func:`posed_scene`: the cached posed scene of an input (what ``train.py --data PHOTOS`` reads).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

from dff_gs.core.errors import DataError, OutputError
from dff_gs.core.utils import cache_dir
from dff_gs.data.posing.inputs import image_files, prepare_images, unposed_kind
from dff_gs.data.posing.sfm import PosingOptions, run_sfm
from dff_gs.data.posing.video import sample_frames

__all__ = ["PosingOptions", "pose", "posed_scene", "unposed_kind", "cache_folder"]


def cache_folder(source: Path, options: PosingOptions) -> Path:
    """``$DFF_GS_CACHE/posed/<name>-<key>``: the key hashes the input's files (names, sizes, modification times)
    and the options, so a changed input or option poses anew."""
    files = [source] if source.is_file() else image_files(source)
    h = hashlib.sha1(options.key().encode())
    for f in files:
        st = f.stat()
        h.update(f"{f.name}:{st.st_size}:{st.st_mtime_ns};".encode())
    return cache_dir("posed", f"{source.stem or source.name}-{h.hexdigest()[:12]}")


def write_downscaled(images: Path, root: Path, min_side: int = 100) -> list[int]:
    """``root/images_2``, ``images_4``, ``images_8`` (the 3DGS convention the COLMAP loader reads when it
    downscales): each image shrunk by the factor (area-averaged), as long as its longer side stays >= ``min_side``.
    Returns the factors written."""
    from PIL import Image

    files = sorted(images.iterdir())
    with Image.open(files[0]) as im:
        longest = max(im.size)
    factors = [f for f in (2, 4, 8) if longest / f >= min_side]
    for factor in factors:
        (root / f"images_{factor}").mkdir()
        for path in files:
            with Image.open(path) as im:
                small = im.convert("RGB").resize((max(1, round(im.width / factor)), max(1, round(im.height / factor))),
                                                 Image.BOX)
                small.save(root / f"images_{factor}" / path.name, quality=95)
    return factors


def posed_scene(source: str | os.PathLike, options: PosingOptions | None = None, progress: bool = True,
                out: str | os.PathLike = "") -> Path:
    """The COLMAP scene of the unposed ``source`` (a folder of images, or a video) in ``out`` (empty: its cache
    folder, :func:`cache_folder`): read from there when it was posed before, else posed now (:func:`pose`)."""
    source = Path(source).expanduser()
    options = options or PosingOptions()
    out = Path(out).expanduser() if out else cache_folder(source, options)
    if (out / "sparse" / "0" / "images.bin").is_file():
        return out
    print(f"{source}: no camera poses; posing it by structure from motion (pycolmap) into {out} (done once)",
          flush=True)
    return pose(source, out, options, progress)


def pose(source: str | os.PathLike, out: str | os.PathLike, options: PosingOptions | None = None,
         progress: bool = True) -> Path:
    """Pose ``source`` (a folder of images, or a video) into the COLMAP scene ``out`` (``images/``,
    ``images_2/4/8`` while the longer side stays >= 100 px, ``sparse/0``, ``posing.json``), built beside it under
    a temporary name and renamed when whole; ``out`` must not exist. One printed line per decision; a
    :class:`DataError` saying what to try when too few images are posed."""
    source, out = Path(source).expanduser(), Path(out).expanduser()
    options = options or PosingOptions()
    kind = unposed_kind(source)
    if kind is None:
        raise DataError(f"{source}: neither a video nor a folder of images without poses")
    if out.exists():
        raise OutputError(f"{out}: already exists; give a new folder (a posed scene is written whole, never over "
                          "another)")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        images = tmp / "images"
        if kind == "video":
            got = sample_frames(source, images, options.frames, options.blur_fraction, progress)
            print(f"{source}: {got['frames']} frames of {got['read']} kept ({got['skipped_blurry']} blurred ones "
                  f"skipped)", flush=True)
            sizes, extra = 1, {"frame_sources": got["frame_sources"]}
        else:
            extra = {}
            got = prepare_images(image_files(source), images)
            sizes = len(got["sizes"])
            said = [f"{got['images']} images"]
            said += [f"{len(got['duplicates'])} duplicate(s) dropped ({', '.join(got['duplicates'][:3])})"] \
                if got["duplicates"] else []
            said += [f"{got['rotated']} turned upright (EXIF)"] if got["rotated"] else []
            said += [f"{got['converted']} made RGB"] if got["converted"] else []
            said += [f"{sizes} image sizes: one camera per image"] if sizes > 1 else []
            print(f"{source}: " + "; ".join(said), flush=True)
        if sum(1 for _ in images.iterdir()) < 3:
            raise DataError(f"{source}: fewer than 3 usable images; structure from motion needs many overlapping "
                            "views (tens)")
        model, report = run_sfm(images, tmp / "colmap", options, video=kind == "video", sizes=sizes,
                                progress=progress, source=source)
        share = report["registered"] / report["images"]
        if share < options.min_registered:
            raise DataError(f"{source}: {report['registered']} of {report['images']} images posed, below the "
                            f"threshold of {options.min_registered:.0%} ({report['matcher']} matching): try "
                            + ("" if report["matcher"] == "exhaustive" else "--matcher exhaustive, ")
                            + "more overlapping photos, or a lower --min-registered")
        if len(report["models"]) > 1:
            print(f"{source}: the images fell into {len(report['models'])} unconnected pieces "
                  f"({', '.join(map(str, report['models']))} images); the largest is kept", flush=True)
        loops = f" + {report['loop_pairs']} loop pairs" if report["loop_pairs"] else ""
        print(f"{source}: {report['registered']} of {report['images']} images posed ({report['matcher']} matching"
              f"{loops}, {report['cameras']} camera(s), {model.num_points3D()} points)", flush=True)
        sparse = tmp / "sparse" / "0"
        sparse.mkdir(parents=True)
        model.write_binary(str(sparse))
        (tmp / "posing.json").write_text(json.dumps({"source": str(source.resolve()), "kind": kind, **report,
                                                     "options": vars(options), **extra}, indent=2))
        shutil.rmtree(tmp / "colmap")
        write_downscaled(images, tmp)
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out

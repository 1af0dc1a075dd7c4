"""Structure from motion with COLMAP's own bindings (``pycolmap``, CPU wheels): SIFT features, exhaustive or
sequential matching, incremental mapping; one progress bar a phase, the largest reconstruction kept."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from tqdm import tqdm

from dff_gs.core.errors import DataError

Matcher = Literal["auto", "exhaustive", "sequential"]
CameraModel = Literal["SIMPLE_RADIAL", "OPENCV", "PINHOLE", "SIMPLE_PINHOLE", "RADIAL"]
CameraSharing = Literal["auto", "single", "per_folder", "per_image"]
EXHAUSTIVE_MAX = 200
"""``matcher=auto``: every pair of images is matched up to this many images (a few minutes on 2 cores for 100),
consecutive ones beyond (and always for a video)."""


@dataclass
class PosingOptions:
    """How a folder of photos or a video is posed (``dff-process --help`` lists them)."""

    matcher: Matcher = "auto"
    camera_model: CameraModel = "SIMPLE_RADIAL"
    cameras: CameraSharing = "auto"  # auto: one for a video, one per folder (photos of one camera) else per image
    max_features: int = 4096
    sequential_overlap: int = 10
    loop_keyframes: int = 40  # sequential matching: every pair of this many evenly spaced images matched too
    min_registered: float = 0.5  # fraction of the images that must be posed, else an error
    frames: int = 120  # frames taken from a video
    blur_fraction: float = 0.3  # a video frame below this x the median sharpness is skipped
    threads: int = 0  # 0: every core

    def key(self) -> str:
        return repr(sorted(vars(self).items()))


def loop_pairs(names: list[str], overlap: int, keyframes: int) -> list[tuple[str, str]]:
    """Loop detection offline, for sequential matching: every pair of ``keyframes`` evenly spaced images
    (``names`` in order) that are more than ``overlap`` apart, so that a path coming back where it was (an orbit
    closing, a walk through a room twice) is matched across the gap and does not drift. COLMAP's own loop detection
    needs a vocabulary tree, a download; ``keyframes`` (about 40: 780 pairs) bounds the cost."""
    if keyframes < 2 or len(names) <= overlap + 1:
        return []
    step = max(1, -(-len(names) // keyframes))
    keys = list(range(0, len(names), step))
    return [(names[i], names[j]) for n, i in enumerate(keys) for j in keys[n + 1:] if j - i > overlap]


@contextlib.contextmanager
def _quiet_colmap():
    """COLMAP logs every image at INFO and its failures at ERROR; here the outcome is said in our own lines."""
    import pycolmap

    level = pycolmap.logging.minloglevel
    pycolmap.logging.minloglevel = 3
    try:
        yield
    finally:
        pycolmap.logging.minloglevel = level


def _import_pycolmap():
    try:
        import pycolmap
    except ImportError as err:
        raise DataError(f"posing photos needs pycolmap ({err}), a dependency of dff_gs: pip install pycolmap, or "
                        "give a scene that has poses") from None
    return pycolmap


def run_sfm(image_dir: Path, work: Path, options: PosingOptions, *, video: bool, sizes: int,
            progress: bool = True, source: Path | None = None):
    """Pose the images of ``image_dir`` (names as on disk): a COLMAP database and models under ``work``; errors
    name ``source`` (the photos or video they came from).

    ``video``: frames of one camera, in order; ``sizes``: how many image sizes there are (several: a camera per
    image). Returns ``(reconstruction, report)`` with the largest reconstruction and ``{"images", "registered",
    "models": [registered images of each model], "matcher", "cameras"}``."""
    pycolmap = _import_pycolmap()
    names = sorted(p.name for p in image_dir.iterdir() if p.is_file())
    work.mkdir(parents=True, exist_ok=True)
    database = work / "database.db"
    database.unlink(missing_ok=True)
    sharing = options.cameras
    if sharing == "auto":
        sharing = "single" if video else ("per_folder" if sizes == 1 else "per_image")
    mode = {"single": pycolmap.CameraMode.SINGLE, "per_folder": pycolmap.CameraMode.PER_FOLDER,
            "per_image": pycolmap.CameraMode.PER_IMAGE}[sharing]
    matcher = options.matcher
    if matcher == "auto":
        matcher = "sequential" if video or len(names) > EXHAUSTIVE_MAX else "exhaustive"
    loops = loop_pairs(names, options.sequential_overlap, options.loop_keyframes) if matcher == "sequential" else []
    reader = pycolmap.ImageReaderOptions()
    reader.camera_model = options.camera_model
    extraction = pycolmap.FeatureExtractionOptions()
    extraction.sift.max_num_features = options.max_features
    if options.threads:
        extraction.num_threads = options.threads
    with _quiet_colmap():
        with tqdm(total=len(names), desc="features", disable=not progress, dynamic_ncols=True) as bar:
            # one call: the camera mode shares cameras within a call (batches would make a camera each)
            pycolmap.extract_features(database, image_dir, image_names=names, camera_mode=mode,
                                      reader_options=reader, extraction_options=extraction,
                                      device=pycolmap.Device.cpu)
            bar.update(len(names))
        with tqdm(total=1, desc=f"matching ({matcher})", disable=not progress, dynamic_ncols=True) as bar:
            if matcher == "exhaustive":
                pycolmap.match_exhaustive(database, device=pycolmap.Device.cpu)
            else:
                pairing = pycolmap.SequentialPairingOptions()
                pairing.overlap = options.sequential_overlap
                pairing.loop_detection = False  # needs a vocabulary tree, which is a download: ours below
                pycolmap.match_sequential(database, pairing_options=pairing, device=pycolmap.Device.cpu)
                if loops:
                    listing = work / "loop_pairs.txt"
                    listing.write_text("".join(f"{a} {b}\n" for a, b in loops))
                    imported = pycolmap.ImportedPairingOptions()
                    imported.match_list_path = listing
                    pycolmap.match_image_pairs(database, pairing_options=imported, device=pycolmap.Device.cpu)
            bar.update(1)
        models_dir = work / "models"
        models_dir.mkdir(exist_ok=True)
        with tqdm(total=len(names), desc="mapping", disable=not progress, dynamic_ncols=True) as bar:
            def step():
                bar.update(1)

            models = pycolmap.incremental_mapping(database, image_dir, models_dir,
                                                  initial_image_pair_callback=lambda: bar.update(2),
                                                  next_image_callback=step)
    sizes_of = sorted((m.num_reg_images() for m in models.values()), reverse=True)
    report = {"images": len(names), "registered": sizes_of[0] if sizes_of else 0, "models": sizes_of,
              "matcher": matcher, "cameras": sharing,
              "loop_pairs": len(loops)}
    if not models:
        hint = "more photos" if matcher == "exhaustive" else "--matcher exhaustive, or more photos"
        raise DataError(f"{source or image_dir}: no two images could be posed together ({len(names)} images, "
                        f"{matcher} matching): the photos need to overlap (each scene point seen from several "
                        f"places); try {hint}")
    best = max(models.values(), key=lambda m: m.num_reg_images())
    return best, report

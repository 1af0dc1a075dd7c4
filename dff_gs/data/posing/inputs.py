"""What an unposed input is (a folder of photos, or a video) and its images made ready for structure from motion:
upright (EXIF orientation applied), RGB, without exact duplicates; each problem said in one line."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

from dff_gs.core.errors import DataError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
VIDEO_SUFFIXES = (".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv")
POSE_FILES = ("transforms.json", "transforms_train.json", "sparse", "traj_w_c.txt")
"""What a posed scene folder holds (any one of them): such a folder is read by its own loader, never re-posed."""
EXIF_ORIENTATION = 0x0112


def image_files(folder: Path) -> list[Path]:
    """The images of ``folder`` (or of ``folder/images`` when the folder holds only that), sorted by name."""
    if not folder.is_dir():
        return []
    inner = folder / "images"
    if inner.is_dir() and not [f for f in folder.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES]:
        folder = inner
    return sorted(f for f in folder.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)


def unposed_kind(path: Path) -> str | None:
    """``"video"`` for a video file, ``"images"`` for a folder of images with no poses, else None."""
    if path.is_file():
        return "video" if path.suffix.lower() in VIDEO_SUFFIXES else None
    if not path.is_dir() or any((path / name).exists() for name in POSE_FILES):
        return None
    return "images" if image_files(path) else None


def _digest(path: Path) -> str:
    h = hashlib.sha1()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def prepare_images(files: list[Path], dest: Path) -> dict:
    """Copy ``files`` into ``dest`` as SfM reads them: exact duplicates dropped, images with an EXIF rotation
    turned upright (their EXIF kept, orientation reset) and grey-scale / palette / alpha images made RGB; others
    copied byte for byte (their EXIF, focal length included, is the prior of the camera). Returns what was done:
    ``{"images", "duplicates", "rotated", "converted", "sizes"}``."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    dest.mkdir(parents=True, exist_ok=True)
    seen, report = {}, {"images": 0, "duplicates": [], "rotated": 0, "converted": 0, "sizes": set()}
    for f in files:
        digest = _digest(f)
        if digest in seen:
            report["duplicates"].append(f"{f.name} = {seen[digest]}")
            continue
        seen[digest] = f.name
        try:
            with Image.open(f) as im:
                exif = im.getexif()
                turned = exif.get(EXIF_ORIENTATION, 1) not in (1, None)
                rgb = im.mode == "RGB"
                if turned or not rgb:
                    out = ImageOps.exif_transpose(im).convert("RGB")
                    exif[EXIF_ORIENTATION] = 1
                    out.save(dest / (f.stem + (".jpg" if f.suffix.lower() in (".jpg", ".jpeg") else ".png")),
                             exif=exif.tobytes(), quality=95)
                    report["rotated"] += int(turned)
                    report["converted"] += int(not rgb)
                    report["sizes"].add(out.size)
                else:
                    shutil.copyfile(f, dest / f.name)
                    report["sizes"].add(im.size)
        except (UnidentifiedImageError, OSError) as err:
            raise DataError(f"{f}: not an image this package can read ({err})") from None
        report["images"] += 1
    return report

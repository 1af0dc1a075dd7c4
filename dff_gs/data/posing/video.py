"""Frames of a video for structure from motion: about ``count`` frames evenly spread over the video, each the
sharpest (variance of the Laplacian) of its stretch, and stretches whose sharpest frame is still blurred well
below the video's typical sharpness skipped."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from tqdm import tqdm

from dff_gs.core.errors import DataError


def sharpness(gray: np.ndarray) -> float:
    """Variance of the Laplacian of a grey image (high: sharp; motion blur lowers it)."""
    import cv2

    return float(cv2.Laplacian(gray, cv2.CV_64F).var())


def sample_frames(video: Path, dest: Path, count: int = 120, blur_fraction: float = 0.3,
                  progress: bool = True) -> dict:
    """Write about ``count`` frames of ``video`` to ``dest`` as ``frame_00000.jpg`` ...: the video cut into
    ``count`` equal stretches (at most half as many as it has frames), the sharpest frame of each kept unless it is
    below ``blur_fraction`` x the median sharpness of the kept ones (then the stretch is skipped). Returns
    ``{"frames", "read", "skipped_blurry", "fps", "frame_sources"}`` (the video frame each kept frame is); a file
    OpenCV cannot read is a :class:`DataError` naming it."""
    import cv2

    cap = cv2.VideoCapture(str(video))
    total = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) if cap.isOpened() else 0
    if not cap.isOpened() or total <= 0:
        cap.release()
        raise DataError(f"{video}: not a video OpenCV can read (no frames); give a folder of images instead")
    fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
    count = max(1, min(count, total // 2 or 1))  # a stretch holds at least two frames: there is a sharpest
    edges = np.linspace(0, total, count + 1).astype(int)
    dest.mkdir(parents=True, exist_ok=True)
    scores: list[tuple[float, Path, int]] = []  # each stretch's sharpest frame, written when the stretch ends

    def keep(candidate) -> None:
        if candidate is not None:
            path = dest / f"candidate_{len(scores):05d}.jpg"
            cv2.imwrite(str(path), candidate[1], [cv2.IMWRITE_JPEG_QUALITY, 95])
            scores.append((candidate[0], path, candidate[2]))

    stretch, index, read, candidate = 0, 0, 0, None
    with tqdm(total=total, desc="video frames", disable=not progress, dynamic_ncols=True) as bar:
        while True:
            ok, frame = cap.read()
            if not ok:
                break
            read += 1
            bar.update(1)
            while stretch < count - 1 and index >= edges[stretch + 1]:
                keep(candidate)
                stretch, candidate = stretch + 1, None
            score = sharpness(cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY))
            if candidate is None or score > candidate[0]:
                candidate = (score, frame, index)
            index += 1
    cap.release()
    keep(candidate)
    if not scores:
        raise DataError(f"{video}: no frame could be decoded (an unsupported codec?); extract the frames to a folder "
                        "of images and give that")
    floor = blur_fraction * float(np.median([s for s, _, _ in scores]))
    sources = []
    for score, path, index in scores:
        if score < floor:
            path.unlink()
            continue
        path.rename(dest / f"frame_{len(sources):05d}.jpg")
        sources.append(index)
    return {"frames": len(sources), "read": read, "skipped_blurry": len(scores) - len(sources), "fps": fps,
            "frame_sources": sources}

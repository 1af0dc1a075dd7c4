"""Drive the viewer's page in headless Chromium from Python (Playwright): the end-to-end test, the viewer
benchmark and the README's screenshot use it. Needs ``playwright`` (the ``test`` extra) and a Chromium binary
(Debian: ``apt-get install chromium``; Playwright's own browser download is not used)."""

from __future__ import annotations

import base64
import shutil
import time
from io import BytesIO
from typing import Callable, Optional

import numpy as np

CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                  "--disable-sync", "--no-first-run", "--use-gl=swiftshader", "--enable-unsafe-swiftshader"]


def chromium_path() -> Optional[str]:
    """The Chromium binary on PATH (None: not installed)."""
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


def launch(playwright):
    """A headless Chromium of :func:`chromium_path` (WebGL in software, no background network)."""
    return playwright.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_FLAGS)


def field(page, label: str):
    """The input of the viser control labelled ``label``."""
    return page.locator("div.mantine-Flex-root", has=page.get_by_text(label, exact=True)).locator("input").first


def screen(page, clip: Optional[dict] = None) -> np.ndarray:
    """A screenshot of ``page`` (of its ``clip = {x, y, width, height}``) as float RGB ``[H, W, 3]`` in 0..255."""
    from PIL import Image

    return np.asarray(Image.open(BytesIO(page.screenshot(clip=clip))).convert("RGB")).astype(float)


def wait_for(cond: Callable[[], bool], timeout: float = 20.0, poll: float = 0.02) -> float:
    """Seconds until ``cond()`` held (``TimeoutError`` after ``timeout``)."""
    t0 = time.monotonic()
    while not cond():
        if time.monotonic() - t0 > timeout:
            raise TimeoutError(f"waited {timeout} s")
        time.sleep(poll)
    return time.monotonic() - t0


def decode_frame(data: str) -> np.ndarray:
    """A screencast frame (base64 JPEG) as float RGB ``[H, W, 3]`` in 0..255."""
    from PIL import Image

    return np.asarray(Image.open(BytesIO(base64.b64decode(data))).convert("RGB")).astype(float)


class FrameLog:
    """The frames Chromium composites for ``page`` (the DevTools screencast), each with the wall-clock time
    (``time.time()``) at which it was drawn. Recording keeps the encoded frames; they are decoded only when read,
    so the page and the server under test share the CPU with little more than Chromium's own JPEG encoder.
    Frames arrive while Playwright runs (``page.wait_for_timeout``), not during ``time.sleep``.

    frames: list of (time drawn, base64 JPEG)"""

    def __init__(self, page, quality: int = 70):
        self.frames: list[tuple[float, str]] = []
        self._cdp = page.context.new_cdp_session(page)
        self._cdp.on("Page.screencastFrame", self._on_frame)
        self._cdp.send("Page.startScreencast", {"format": "jpeg", "quality": quality, "everyNthFrame": 1})

    def _on_frame(self, params: dict) -> None:
        self.frames.append((float(params["metadata"]["timestamp"]), params["data"]))
        self._cdp.send("Page.screencastFrameAck", {"sessionId": params["sessionId"]})

    def frame(self, i: int, clip: Optional[dict] = None) -> tuple[float, np.ndarray]:
        """Frame ``i`` (time drawn, image) decoded and cropped to ``clip = {x, y, width, height}``."""
        ts, data = self.frames[i]
        img = decode_frame(data)
        if clip:
            img = img[clip["y"]:clip["y"] + clip["height"], clip["x"]:clip["x"] + clip["width"]]
        return ts, img

    def since(self, t: float, clip: Optional[dict] = None) -> list[tuple[float, np.ndarray]]:
        """The frames drawn after wall time ``t`` (with the last one before it first, as the state at ``t``),
        decoded and cropped to ``clip``."""
        start = max([i for i, (ts, _) in enumerate(self.frames) if ts <= t], default=0)
        return [self.frame(i, clip) for i in range(start, len(self.frames))]

    def stop(self) -> None:
        self._cdp.send("Page.stopScreencast")
        self._cdp.detach()

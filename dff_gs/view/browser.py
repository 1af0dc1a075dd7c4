"""Drive the viewer's page in headless Chromium from Python (Playwright): the end-to-end test, the viewer
benchmark and the README's screenshot use it. Needs ``playwright`` (the ``test`` extra) and a Chromium binary
(Debian: ``apt-get install chromium``; Playwright's own browser download is not used)."""

from __future__ import annotations

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

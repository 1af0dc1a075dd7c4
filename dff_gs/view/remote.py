"""Drawing on the server, for browsers without a GPU: what each client's camera sees is rendered by our rasterizer
(the compiled CPU one on a CPU server) and sent as the page's background image, the browser's own splats hidden.

A browser with a GPU draws the splats itself (the default, ``--render browser``); one without (software WebGL,
as headless Chromium on a CPU machine) spends seconds per frame on them, where a server render takes a fraction of
one. The colours are the page's (the DC colour or a feature view, the selection highlighted), so both ways show
the same thing.
"""

from __future__ import annotations

import math
import threading
from collections import deque
from typing import Callable

import numpy as np
import torch

from dff_gs.core.cameras import Cameras
from dff_gs.core.geometry import quat_to_rotmat
from dff_gs.query.views import render_values

BACKGROUND = (1.0, 1.0, 1.0)  # the page's own background


def client_camera(camera, max_side: int = 960) -> Cameras:
    """A viser client's view as a pinhole camera (OpenCV, vertical ``fov``), at most ``max_side`` pixels on the
    longer side of its canvas."""
    W, H = max(int(camera.image_width), 1), max(int(camera.image_height), 1)
    f = min(1.0, max_side / max(W, H))
    W, H = max(1, round(W * f)), max(1, round(H * f))
    fy = H / 2 / math.tan(camera.fov / 2)
    c2w = torch.eye(4)
    c2w[:3, :3] = quat_to_rotmat(torch.tensor(camera.wxyz, dtype=torch.float32)[None])[0]
    c2w[:3, 3] = torch.tensor(camera.position, dtype=torch.float32)
    K = torch.tensor([[fy, 0.0, W / 2], [0.0, fy, H / 2], [0.0, 0.0, 1.0]])
    return Cameras(torch.linalg.inv(c2w)[None], K[None], W, H)


class ServerDrawing:
    """Keeps every client's background image a render of its current view (one worker thread renders the latest
    request of each client; older requests are dropped). A moving camera gets a quarter-size preview first; a
    new colouring of a still view (a selection, a colour mode) goes straight to the full render, the preview's
    transfer and draw competing with it for the CPU for nothing.

    sent_at: when the last images were sent (``time.monotonic()``)"""

    def __init__(self, snapshot: Callable[[], tuple], backend: str = "auto", max_side: int = 960):
        """snapshot: () -> (the GaussianModel shown, its colours ``[N, 3]``), taken consistently."""
        self.snapshot, self.backend, self.max_side = snapshot, backend, max_side
        self.enabled = False
        self._pending: dict = {}  # client id -> (client, preview first)
        self._wake = threading.Condition()
        self._stop = False
        self.sent_at: deque = deque(maxlen=64)  # time.monotonic() of the last images sent
        self._thread = threading.Thread(target=self._run, daemon=True, name="dff-view-render")
        self._thread.start()

    def attach(self, client) -> None:
        client.camera.on_update(lambda _: self.request(client, preview=True))
        self.request(client, preview=True)

    def request(self, *clients, preview: bool = False) -> None:
        """Render these clients' views anew (``preview``: a quarter-size one first, for a camera that moves)."""
        if not self.enabled:
            return
        with self._wake:
            for c in clients:
                earlier = self._pending.get(c.client_id, (c, False))[1]
                self._pending[c.client_id] = (c, preview or earlier)
            self._wake.notify()

    def render(self, client, max_side: int = 0) -> np.ndarray:
        """The client's view, uint8 ``[H, W, 3]``, at most ``max_side`` (default: the drawing's) on its longer side."""
        cams = client_camera(client.camera, max_side or self.max_side)
        model, colors = self.snapshot()
        colors = torch.from_numpy(colors).to(model.device)
        with torch.no_grad():
            img, alpha = render_values(model, cams.to(model.device), colors, self.backend)
        bg = torch.tensor(BACKGROUND, device=img.device)
        out = img[0] + (1 - alpha[0]) * bg
        return (out.clamp(0, 1) * 255).round().byte().cpu().numpy()

    def _run(self) -> None:
        import time

        while True:
            with self._wake:
                while not self._pending and not self._stop:
                    self._wake.wait()
                if self._stop:
                    return
                _, (client, preview) = self._pending.popitem()
            try:  # the preview, then the full render unless a newer request came meanwhile
                for side in (self.max_side // 4, self.max_side)[0 if preview else 1:]:
                    image = self.render(client, side)
                    if not self.enabled:
                        break
                    client.scene.set_background_image(image, format="jpeg", jpeg_quality=90)
                    self.sent_at.append(time.monotonic())
                    if client.client_id in self._pending:
                        break
            except Exception as err:  # a client gone mid-render: nothing to draw for
                print(f"viewer: server render skipped ({type(err).__name__}: {err})", flush=True)

    def stop(self) -> None:
        """End the render thread and wait for it: one still inside the rasterizer (which runs without the GIL)
        when the interpreter exits would abort the process."""
        with self._wake:
            self._stop = True
            self._wake.notify()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout=30)

"""``train.py --viewer``: the Gaussians of a run in the browser while it trains, updated every
``train.viewer_every`` steps, with a pause button that holds training between two steps (the training clock
does not run while paused)."""

from __future__ import annotations

import threading
import time

from dff_gs.core.ports import check_port
from dff_gs.view.splats import splat_arrays


class LiveViewer:
    """A viser page that follows a trainer: call it after every step (``fit_loop`` does, as ``trainer.watcher``)."""

    def __init__(self, port: int, every: int = 25, host: str = "127.0.0.1"):
        import viser

        check_port(host, port)
        self.every = every
        self.server = viser.ViserServer(host=host, port=port, verbose=False)
        self.server.scene.set_up_direction("+z")
        self.url = f"http://{host}:{port}"
        self.splats = None
        self.status = self.server.gui.add_markdown("starting")
        self.pause = self.server.gui.add_checkbox("Pause training", initial_value=False)
        self.updates = 0
        self._lock = threading.Lock()

    def __call__(self, trainer) -> None:
        """After a step: draw the model every ``every`` steps (and at the last), then wait while paused (a
        Ctrl-C or SIGTERM still stops the run)."""
        if trainer.step % self.every == 0 or trainer.step == trainer.total_steps:
            self.update(trainer.model, trainer.step, trainer.total_steps)
        while self.pause.value and not trainer.stop_requested:
            self.status.content = f"paused at step {trainer.step} of {trainer.total_steps}"
            time.sleep(0.1)

    def update(self, model, step: int, total: int) -> None:
        a = splat_arrays(model)
        with self._lock:
            if self.splats is None:
                self.splats = self.server.scene.add_gaussian_splats("/training", **a.as_kwargs())
            else:
                self.splats.set_gaussians(a.centers, a.covariances, a.rgbs, a.opacities)
            self.updates += 1
        self.status.content = f"step {step} of {total}: {model.num_gaussians:,} Gaussians"

    def close(self) -> None:
        self.server.stop()


def live_viewer(cfg, progress: bool = True):
    """The :class:`LiveViewer` of ``cfg.train.viewer`` (None when off); says where it is."""
    if not cfg.train.viewer:
        return None
    viewer = LiveViewer(int(cfg.train.viewer), cfg.train.viewer_every)
    print(f"viewer: open {viewer.url} to watch the Gaussians train", flush=True)
    return viewer

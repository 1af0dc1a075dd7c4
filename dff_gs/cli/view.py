"""``python -m dff_gs.view RUN_OR_PLY [--data SCENE] [--port 8080] [--host 127.0.0.1]`` (also ``dff-view``).

Serves a page where the browser draws the Gaussians (so it works on a CPU-only server) with the training cameras,
a query panel (text + threshold, a click on the scene, a k-means cluster), colour views (RGB, PCA of the
features, per-label segmentation) and an edit panel (delete, extract, recolour, move, duplicate, undo / redo)
whose "Export PLY" writes exactly what ``edit.py`` writes for the same queries and operations. Ctrl-C or SIGTERM
stops it (exit status 130).
Every action is a call of :class:`dff_gs.view.session.ViewerSession`, usable without the page.
"""

from __future__ import annotations

import argparse
import sys
import time

from dff_gs.core.backends import BACKENDS
from dff_gs.core.errors import Interrupted, run_cli


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m dff_gs.view", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", help="Gaussian run folder or PLY (a plain 3DGS PLY opens with the query panel off)")
    p.add_argument("--data", help="scene for the cameras and clicks (default: the one the run was trained on)")
    p.add_argument("--port", type=int, default=8080, help="port to serve on")
    p.add_argument("--host", default="127.0.0.1", help="address to serve on (0.0.0.0: every interface)")
    p.add_argument("--render", default="browser", choices=["browser", "server"],
                   help="who draws the Gaussians: the browser (needs its GPU) or the server (our rasterizer renders "
                        "each view: for a browser without a GPU)")
    p.add_argument("--backend", default="auto", help=f"renderer for queries that render: {' | '.join(BACKENDS)}")
    return p


def serve(args, ready=None) -> None:
    """Open the model, serve it until Ctrl-C or SIGTERM (``ready(app)`` is called once the page is up), which end it
    as an :class:`Interrupted` (exit status 130, as every command stopped so)."""
    from dff_gs.view.server import ViewerApp, check_port  # lazy: `dff-view --help` answers before torch loads (1.3 s)
    from dff_gs.view.session import ViewerSession  # lazy: as above

    check_port(args.host, args.port)  # before the seconds of opening the model
    session = ViewerSession.open(args.model, data=args.data, backend=args.backend)
    session.warm_up()
    app = ViewerApp(session, host=args.host, port=args.port, drawing=args.render)
    try:  # from the line that says the page is up, a stop is the viewer's
        print(f"viewer: open {app.url} (Ctrl-C stops)", flush=True)
        if ready is not None:
            ready(app)
        while True:
            time.sleep(0.5)
    except KeyboardInterrupt as e:
        raise Interrupted(None, getattr(e, "signal_name", "SIGINT"),
                          "viewer stopped (edits not exported are not kept)") from None
    finally:
        app.stop()


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_cli(lambda: serve(args), lambda _: "")


if __name__ == "__main__":
    sys.exit(main())

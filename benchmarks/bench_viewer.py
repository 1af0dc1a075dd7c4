"""The viewer on a CPU machine: how soon the first frame of a run appears, and how soon a text query's
highlight does, in headless Chromium (WebGL in software), the page served by ``python -m dff_gs.view``'s code.

Times are those of the frames Chromium draws (its DevTools screencast: each frame with the wall-clock time it was
composited, :class:`tests.browser.FrameLog`), not of screenshots taken in a loop, whose capture would
compete with the page and the server for the same two cores and add its own latency.

- first frame: from ``page.goto`` to the first frame whose scene area (left of the panel) is at least 5%
  covered, i.e. not the page's white background;
- text query: from the click on "Select text" (the time before Playwright's click) to the first frame whose scene
  area changed (the selection tinted), and to the frame from which the scene area no longer changes (the
  highlight complete); and the server's share of it (``select_gaussians`` + handing the result to the drawing);
each repeated ``--repeats`` times (median and worst). Writes a screenshot of the last highlight as PNG.

Usage: ``python benchmarks/bench_viewer.py RUN [--text sofa] [--render server] [--png benchmarks/figures/viewer.png]``
(a run of the embedded default: ``python train.py --out runs/default``).
"""

from __future__ import annotations

import argparse
import json
import socket
import statistics
import time

import numpy as np

CHANGED = 500  # pixels of the scene area that must differ for a frame to count as changed


def scene_changed(a: np.ndarray, b: np.ndarray) -> int:
    """Pixels that differ between two frames of the scene area."""
    return int((np.abs(a - b).sum(-1) > 30).sum())


def first_drawn(log, t0: float, clip: dict, timeout: float = 60.0, page=None) -> float:
    """Seconds from ``t0`` to the first frame whose scene area is at least 5% not white (each frame decoded once,
    as it arrives, while the page loads)."""
    seen = 0
    while time.time() - t0 < timeout:
        for i in range(seen, len(log.frames)):
            ts, img = log.frame(i, clip)
            if ts > t0 and scene_changed(img, np.full_like(img, 255.0)) > 0.05 * img[..., 0].size:
                return ts - t0
        seen = len(log.frames)
        page.wait_for_timeout(250)
    return float("nan")


def highlight_times(frames: list, t0: float) -> tuple[float, float]:
    """(first change, settled) in seconds after ``t0`` of ``frames`` = [(time, scene area), ...], the first one
    the state before ``t0``; NaN when nothing changed."""
    before, final = frames[0][1], frames[-1][1]
    first = next((ts - t0 for ts, img in frames[1:] if scene_changed(img, before) >= CHANGED), float("nan"))
    j = len(frames) - 1  # back from the last frame while the frames equal it
    while j > 1 and scene_changed(frames[j - 1][1], final) < CHANGED:
        j -= 1
    return first, (frames[j][0] - t0 if first == first else float("nan"))


def main() -> None:
    from playwright.sync_api import sync_playwright
    from PIL import Image

    from tests.browser import FrameLog, field, launch, screen, wait_for
    from dff_gs.view.server import ViewerApp
    from dff_gs.view.session import ViewerSession

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run")
    ap.add_argument("--text", default="sofa")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--render", default="browser", choices=["browser", "server"], help="who draws the Gaussians")
    ap.add_argument("--size", type=int, nargs=2, default=(1280, 720), metavar=("W", "H"), help="browser window")
    ap.add_argument("--png", default=None, help="write the highlighted page here")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    t0 = time.perf_counter()
    session = ViewerSession.open(args.run)
    session.warm_up()
    open_s = time.perf_counter() - t0
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    app = ViewerApp(session, port=port, drawing=args.render)
    size = tuple(args.size)
    scene = {"x": 0, "y": 160, "width": size[0] - 420, "height": size[1] - 160}  # not the panel, not the notice
    first, query, full, server, sent = [], [], [], [], []
    with sync_playwright() as p:
        browser = launch(p)
        for _ in range(args.repeats):
            page = browser.new_page(viewport={"width": size[0], "height": size[1]})
            log = FrameLog(page)
            t0 = time.time()
            page.goto(app.url)
            first.append(first_drawn(log, t0, scene, page=page))
            page.wait_for_timeout(1000)
            field(page, "Text query").fill(args.text)
            wait_for(lambda: app.text.value == args.text)
            page.wait_for_timeout(1000)
            done, t0 = app.actions, time.time()
            page.get_by_role("button", name="Select text").click()
            page.wait_for_timeout(3000)  # the frames of the highlight arrive meanwhile
            f, settled = highlight_times(log.since(t0, scene), t0)
            query.append(f)
            full.append(settled)
            wait_for(lambda: app.actions > done)
            server.append(app.last_action_seconds)
            if args.render == "server":  # from the click to the first image of the highlight leaving the server
                lag = time.monotonic() - time.time()  # sent_at is on the monotonic clock
                sent.append(min(t for t in app.drawing.sent_at if t > t0 + lag) - (t0 + lag))
            selected = app.session.selected_count
            log.stop()
            if args.png:
                close = page.locator("button.mantine-Notification-closeButton")  # the software-WebGL notice
                if close.count():
                    close.first.click()
                    page.wait_for_timeout(1500)
                Image.fromarray(screen(page).astype(np.uint8)).save(args.png)
            app.session.clear_selection()
            app.refresh()
            page.close()
        browser.close()
    app.stop()
    row = {"run": args.run, "render": args.render, "size": size, "gaussians": session.model.num_gaussians,
           "selected": selected, "open_s": open_s, "first_frame_s": first, "highlight_first_s": query,
           "highlight_settled_s": full, "server_query_s": server, "image_sent_s": sent}
    print("| run | drawn by | window | Gaussians | selected | open + warm-up s | first frame s | highlight first "
          "drawn s | highlight settled s | query on the server s | first image sent s |")
    print("| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")

    def cell(xs: list) -> str:  # median / worst
        return f"{statistics.median(xs):.2f} / {max(xs):.2f}" if xs else "n/a"

    print(f"| {args.run} | {args.render} | {size[0]}x{size[1]} | {row['gaussians']:,} | {selected:,} | {open_s:.1f} | "
          f"{cell(first)} | {cell(query)} | {cell(full)} | {cell(server)} | {cell(sent)} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(row, f, indent=2)


if __name__ == "__main__":
    main()

"""The viewer on a CPU machine: how soon the first frame of a run appears, and how soon a text query's
highlight does, in headless Chromium (WebGL in software), the page served by ``python -m dff_gs.view``'s code.

- first frame: from ``page.goto`` to the first screenshot whose scene area (left of the panel) is at least 5%
  covered, i.e. not the page's white background;
- text query: from the click on "Select text" to the first screenshot whose scene area changed (the selection
  tinted), and the server's share of it (``select_gaussians`` + sending the splats);
each repeated ``--repeats`` times (median and worst). Writes a screenshot of the last highlight as PNG.

Usage: ``python benchmarks/bench_viewer.py RUN [--text sofa] [--png benchmarks/figures/viewer.png]``
(a run of the embedded default: ``python train.py --out runs/default``).
"""

from __future__ import annotations

import argparse
import json
import socket
import statistics
import time

import numpy as np


def scene_changed(a: np.ndarray, b: np.ndarray) -> int:
    """Pixels that differ between two shots of the scene area."""
    return int((np.abs(a - b).sum(-1) > 30).sum())


def main() -> None:
    from playwright.sync_api import sync_playwright
    from PIL import Image

    from dff_gs.view.browser import field, launch, screen, wait_for
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
    first, query, server, sent = [], [], [], []
    with sync_playwright() as p:
        browser = launch(p)
        for _ in range(args.repeats):
            page = browser.new_page(viewport={"width": size[0], "height": size[1]})
            t0 = time.monotonic()
            page.goto(app.url)
            while True:  # the page's white background until the scene covers it
                shot = screen(page, scene)
                if scene_changed(shot, np.full_like(shot, 255.0)) > 0.05 * shot[..., 0].size or \
                        time.monotonic() - t0 > 60:
                    break
            first.append(time.monotonic() - t0)
            page.wait_for_timeout(1000)
            field(page, "Text query").fill(args.text)
            wait_for(lambda: app.text.value == args.text)
            before, done = screen(page, scene), app.actions
            t0 = time.monotonic()
            page.get_by_role("button", name="Select text").click()
            while scene_changed(screen(page, scene), before) < 500 and time.monotonic() - t0 < 60:
                pass
            query.append(time.monotonic() - t0)
            wait_for(lambda: app.actions > done)
            server.append(app.last_action_seconds)
            if args.render == "server":  # from the click to the first image of the highlight leaving the server
                sent.append(min(t for t in app.drawing.sent_at if t > t0) - t0)
            selected = app.session.selected_count
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
           "selected": selected, "open_s": open_s, "first_frame_s": first, "query_s": query, "server_query_s": server,
           "image_sent_s": sent}
    print("| run | drawn by | window | Gaussians | selected | open + warm-up s | first frame s (median / worst) | "
          "text query highlight s (median / worst) | of which the query on the server s | image sent after s |")
    print("| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    med = statistics.median
    print(f"| {args.run} | {args.render} | {size[0]}x{size[1]} | {row['gaussians']:,} | {selected:,} | {open_s:.1f} | "
          f"{med(first):.2f} / {max(first):.2f} | {med(query):.2f} / {max(query):.2f} | {med(server):.2f} | "
          f"{f'{med(sent):.2f}' if sent else 'n/a'} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(row, f, indent=2)


if __name__ == "__main__":
    main()

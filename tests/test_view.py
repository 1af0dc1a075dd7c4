"""The viewer: the session API (queries, edits, undo / redo, export = edit.py's files), ray queries, the page's
server side, bad input, and the real page driven in headless Chromium (skipped where Chromium is missing)."""

import json
import socket
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from dff_gs.edit.script import Delete, Recolor, Translate
from dff_gs.core.errors import ConfigError, DataError
from dff_gs.io.ply import load_ply, save_ply
from dff_gs.query import QuerySpec
from dff_gs.query.ray import ray_camera, ray_through_pixel
from tests.browser import chromium_path, field, launch, screen, wait_for
from tests.test_edit import blobs

CHROMIUM = chromium_path()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def same_ply(a: Path, b: Path) -> None:
    """The two PLYs hold the same Gaussians (every parameter equal) and sidecars equal but for the write id."""
    ma, meta_a = load_ply(a)
    mb, meta_b = load_ply(b)
    assert ma.params.keys() == mb.params.keys()
    for k in ma.params:
        assert torch.equal(ma.params[k], mb.params[k]), k
    drop = lambda m: {k: v for k, v in m.items() if k not in ("write_id",)}  # noqa: E731
    assert drop(meta_a) == drop(meta_b)


# ------------------------------------------------------------------------------------------- session API
def test_session_edits_undo_redo_and_export_equal_edit_py(saved, tmp_path):
    from dff_gs.cli.edit import main as edit_main
    from dff_gs.view.session import ViewerSession

    ply, labels = saved
    s = ViewerSession.open(ply)
    s.warm_up()
    sel = s.query(QuerySpec("text", "sofa"))
    assert sel is not None and torch.equal(sel.mask, labels == 0)
    s.apply(Delete())
    assert s.model.num_gaussians == 80 and s.selection is None  # the sofa is gone: nothing left to select
    assert s.undo() and s.model.num_gaussians == 120 and s.selected_count == 40
    assert s.redo() and s.model.num_gaussians == 80
    assert not s.redo()
    out = s.export(tmp_path / "viewer.ply", views=0)
    assert out["operations"][0]["selected"] == 40
    assert edit_main([str(ply), "--text", "sofa", "--op", "delete", "--out", str(tmp_path / "cli.ply"), "--views",
                      "0", "--quiet"]) == 0
    same_ply(tmp_path / "viewer.ply", tmp_path / "cli.ply")
    assert json.loads((tmp_path / "viewer.edit.json").read_text())["num_gaussians_after"] == 80
    with pytest.raises(ConfigError, match="exists"):  # outputs are never replaced without force
        s.export(tmp_path / "viewer.ply", views=0)
    with pytest.raises(ConfigError, match="input"):  # nor the input, ever
        s.export(ply, views=0, force=True)


def test_session_operations_chain_like_an_edit_script(saved, tmp_path):
    from dff_gs.edit.export import export_edit
    from dff_gs.view.session import ViewerSession

    ply, labels = saved
    s = ViewerSession.open(ply)
    s.query(QuerySpec("text", "chair"))
    s.apply(Recolor(color=[0.9, 0.1, 0.1]))
    s.apply(Translate(offset=[0.0, 0.5, 0.0]))
    moved = s.model.get_means()[labels == 1] - s.base.model.get_means()[labels == 1]
    assert torch.allclose(moved, torch.tensor([0.0, 0.5, 0.0]).expand_as(moved), atol=1e-5)
    assert torch.equal(s.model.get_means()[labels != 1], s.base.model.get_means()[labels != 1])
    script = s.script()
    assert [op.name for op in script.operations] == ["recolor", "translate"]
    assert script.select[0].value == "chair" and script.operations[1].select[0].value == "chair"
    s.export(tmp_path / "a.ply", views=0)
    export_edit(ply, script, tmp_path / "b.ply", views=0)  # the same script run from the file: the same result
    same_ply(tmp_path / "a.ply", tmp_path / "b.ply")
    with pytest.raises(ConfigError, match="nothing to export"):
        ViewerSession.open(ply).export(tmp_path / "c.ply")


def test_threshold_applies_to_the_query_and_the_edits(saved):
    from dff_gs.view.session import ViewerSession

    ply, labels = saved
    s = ViewerSession.open(ply)
    s.query(QuerySpec("text", "wall"))
    s.apply(Delete())
    before = s.model.num_gaussians
    s.set_threshold(0.9)  # re-applied with the new threshold: the edit still deletes the wall
    assert s.selection_config.threshold == 0.9 and s.model.num_gaussians == before
    with pytest.raises(ConfigError, match="threshold"):
        s.set_threshold(1.5)
    assert s.selection_config.threshold == 0.9


def test_ray_query_is_the_click_restated(saved):
    from dff_gs.view.session import ViewerSession

    ply, labels = saved
    s = ViewerSession.open(ply)
    cams = s.base.scene().cameras
    x, y = cams.project(s.base.model.get_means()[labels == 0].mean(0, keepdim=True))[0][0, 0].tolist()
    x, y = int(x), int(y)
    ray = ray_through_pixel(cams, 0, x, y)
    one = ray_camera(ray)
    assert torch.allclose(one.centers[0], cams.centers[0], atol=1e-5)
    by_click = s.query(QuerySpec("click", (0, x, y))).mask.clone()
    by_ray = s.query(QuerySpec("ray", ray)).mask
    assert torch.equal(by_click, by_ray) and by_ray[labels == 0].float().mean() > 0.9
    with pytest.raises(ConfigError, match="direction"):
        QuerySpec("ray", (0, 0, 0, 0, 0, 0))
    with pytest.raises(ConfigError, match="six"):
        QuerySpec("ray", (0, 0, 1))
    away = (0.0, 0.0, 0.0, 0.0, 0.0, -1.0)  # looking away from everything
    with pytest.raises(ConfigError, match="no Gaussian"):
        s.query(QuerySpec("ray", away))


def test_bad_input_nerf_run_plain_ply_and_busy_port(saved, tmp_path):
    from dff_gs.view.server import ViewerApp, check_port
    from dff_gs.view.session import ViewerSession

    nerf = tmp_path / "nerf_run"
    nerf.mkdir()
    (nerf / "config.yaml").write_text("train:\n  backbone: nerf\n")
    with pytest.raises(DataError, match="NeRF"):
        ViewerSession.open(nerf)
    plain = save_ply(blobs(n_per=4)[0], tmp_path / "plain.ply")
    s = ViewerSession.open(plain)
    assert "no distilled features" in s.features_reason
    with pytest.raises(ConfigError, match="no distilled features"):
        s.query(QuerySpec("cluster", (2, 0)))
    app = ViewerApp(s, port=free_port())
    try:
        assert app.text.disabled and app.cluster_button.disabled and app.color_mode.options == ("rgb",)
        with pytest.raises(ConfigError, match="in use|cannot listen"):
            check_port("127.0.0.1", int(app.url.rsplit(":", 1)[1]))
    finally:
        app.stop()
    with pytest.raises(ConfigError, match="not a TCP port"):
        check_port("127.0.0.1", 70000)


def test_page_server_side_query_tint_gizmo_and_export(saved, tmp_path):
    from types import SimpleNamespace

    from dff_gs.view.server import ViewerApp
    from dff_gs.view.session import ViewerSession
    from dff_gs.view.splats import HIGHLIGHT

    ply, labels = saved
    app = ViewerApp(ViewerSession.open(ply), port=free_port())
    try:
        rgba = lambda: app.splats.buffer[:, 7:8].view(np.uint8).reshape(-1, 4)[:, :3].astype(float)  # noqa: E731
        before = rgba()
        app.query_text("sofa")
        after = rgba()
        assert app.session.selected_count == 40
        changed = np.abs(after - before).sum(1) > 0
        assert np.array_equal(changed, (labels == 0).numpy())  # only the selection's colours change ...
        tint = after[changed] / 255 - before[changed] / 255 * 0.35
        assert np.allclose(tint, 0.65 * HIGHLIGHT, atol=0.01)  # ... towards the highlight
        app.color_mode.value = "pca"
        app.refresh()
        app.highlight_style.value = "dim"
        app.refresh()
        app.move.value = True  # the gizmo appears at the selection; a drag ends in a translate and a rotate
        app.refresh()
        centre = app.session.model.get_means().detach()[labels == 0].mean(0).numpy()
        assert app.gizmo is not None and np.allclose(app.gizmo.position, centre, atol=1e-5)
        c, sn = np.cos(np.radians(15)), np.sin(np.radians(15))
        target = SimpleNamespace(position=centre + [0.0, 0.2, 0.0], wxyz=(c, 0.0, 0.0, sn))
        app._on_gizmo(SimpleNamespace(phase="end", target=target))
        assert [st.op.name for st in app.session.steps] == ["translate", "rotate"]
        assert np.isclose(app.session.steps[1].op.degrees, 30.0) and app.session.steps[1].op.axis[2] > 0
        moved = app.session.model.get_means().detach()[labels == 0].mean(0).numpy()
        assert np.allclose(moved, centre + [0.0, 0.2, 0.0], atol=1e-4)  # rotated about its own centre
        assert app.session.undo() and app.session.undo()
        app.move.value = False
        app.session.apply(Delete())
        app.refresh()
        assert app.gizmo is None and app.splats.buffer.shape[0] == 80 and "delete" in app.status.content
        summary = app.export(str(tmp_path / "e.ply"))
        assert summary is not None and load_ply(tmp_path / "e.ply")[0].num_gaussians == 80
        assert app.export(str(tmp_path / "e.ply")) is None and "exists" in app.session.message
    finally:
        app.stop()


def test_training_viewer_follows_and_pauses(tmp_path):
    from types import SimpleNamespace

    from dff_gs.view.live import LiveViewer

    model, _ = blobs(n_per=5)
    v = LiveViewer(free_port(), every=2)
    try:
        trainer = SimpleNamespace(step=1, total_steps=4, model=model, stop_requested=False)
        v(trainer)
        assert v.updates == 0
        trainer.step = 2
        v(trainer)
        assert v.updates == 1 and v.splats.buffer.shape[0] == 15
        v.pause.value = True
        trainer.stop_requested = "SIGINT"  # a paused run still stops on Ctrl-C
        t0 = time.monotonic()
        v(trainer)
        assert time.monotonic() - t0 < 1.0 and "paused" not in v.status.content
    finally:
        v.close()


# ------------------------------------------------------------------------------------------- the real page
def projected(client, points: torch.Tensor, sigmas: torch.Tensor, size: tuple[int, int]) -> np.ndarray:
    """Pixel positions and 3-sigma radii ``[P, 3]`` of Gaussians (centres ``points``, largest standard deviations
    ``sigmas``) in ``client``'s view (viser: OpenCV camera, vertical fov)."""
    from dff_gs.core.geometry import quat_to_matrix

    W, H = size
    R = quat_to_matrix(torch.tensor(client.camera.wxyz, dtype=torch.float32)[None])[0]
    cam = (points - torch.tensor(client.camera.position, dtype=torch.float32)) @ R
    f = H / 2 / np.tan(client.camera.fov / 2)
    return np.stack([f * cam[:, 0] / cam[:, 2] + W / 2, f * cam[:, 1] / cam[:, 2] + H / 2,
                     3 * f * sigmas / cam[:, 2]], 1)


@pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium not installed (Debian package chromium)")
def test_real_page_query_highlight_and_export_in_chromium(saved, tmp_path):
    """Open the page, type a query, check the server's count and that the screenshot changes where the selection
    is, delete it, press Export and compare the PLY with edit.py's."""
    pw = pytest.importorskip("playwright.sync_api")
    from dff_gs.cli.edit import main as edit_main
    from dff_gs.view.server import ViewerApp
    from dff_gs.view.session import ViewerSession

    ply, labels = saved
    app = ViewerApp(ViewerSession.open(ply), port=free_port())
    size = (1280, 720)
    try:
        with pw.sync_playwright() as p:
            browser = launch(p)
            page = browser.new_page(viewport={"width": size[0], "height": size[1]})
            page.goto(app.url)
            wait_for(lambda: len(app.server.get_clients()) == 1)
            client = next(iter(app.server.get_clients().values()))
            field(page, "Text query").fill("sofa")
            wait_for(lambda: app.text.value == "sofa")
            page.wait_for_timeout(1500)  # the splats drawn before the query
            page.get_by_role("button", name="Select text").click()
            wait_for(lambda: app.session.selected_count == 40)
            page.wait_for_timeout(1500)
            shot = screen(page)
            page.get_by_role("button", name="Clear selection").click()
            wait_for(lambda: app.session.selected_count == 0)
            page.wait_for_timeout(1500)
            plain = screen(page)
            changed = np.abs(shot - plain).sum(-1) > 30
            changed[:160] = changed[:, 860:] = False  # the notification and the panel, not the scene
            model = app.session.model
            px = projected(client, model.get_means().detach()[labels == 0],
                           model.get_scales().detach().amax(1)[labels == 0], size)
            yy, xx = np.mgrid[:size[1], :size[0]]
            near = np.zeros(changed.shape, bool)
            for x, y, r in px:
                near |= (xx - x) ** 2 + (yy - y) ** 2 <= r * r
            assert changed.sum() > 100 and (changed & near).sum() > 0.8 * changed.sum()
            field(page, "Text query").fill("sofa")
            page.get_by_role("button", name="Select text").click()
            wait_for(lambda: app.session.selected_count == 40)
            page.get_by_role("button", name="Delete").click()
            wait_for(lambda: app.session.model.num_gaussians == 80)
            out = tmp_path / "from_page.ply"
            field(page, "Export to").fill(str(out))
            wait_for(lambda: app.out.value == str(out))
            with page.expect_download() as download:
                page.get_by_role("button", name="Export PLY").click()
            wait_for(lambda: (tmp_path / "from_page.edit.json").exists())
            assert Path(download.value.path()).read_bytes() == out.read_bytes()  # the browser's copy
            app.go_to_camera(client, 1)  # what a click on a camera frustum does
            cams = app.session.base.scene().split("train").cameras
            wait_for(lambda: np.allclose(client.camera.position, cams.centers[1].numpy(), atol=1e-4))
            browser.close()
    finally:
        app.stop()
    assert edit_main([str(ply), "--text", "sofa", "--op", "delete", "--out", str(tmp_path / "cli.ply"), "--quiet"]) == 0
    same_ply(out, tmp_path / "cli.ply")


# ------------------------------------------------------------------------------------------- commands
def test_view_command_bad_input_is_one_line(saved, tmp_path, capsys):
    from dff_gs.cli.view import main

    ply, _ = saved
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert main([str(ply), "--port", str(port)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: --port {port}") and len(err.splitlines()) == 1
    nerf = tmp_path / "nerf_run"
    nerf.mkdir()
    (nerf / "config.yaml").write_text("train:\n  backbone: nerf\n")
    assert main([str(nerf)]) == 2
    assert "NeRF" in capsys.readouterr().err
    assert main([str(tmp_path / "missing.ply")]) == 2
    assert "missing.ply" in capsys.readouterr().err


def test_train_with_the_viewer(tiny_scene, tmp_path, capsys):
    from dff_gs.cli.train import main as train_main

    port = free_port()
    args = ["--data", str(tiny_scene), "--teacher", "none", "--steps", "4", "--device", "cpu", "--quiet",
            "data.test_every=5", "model.init_points=300", "train.viewer_every=2", f"train.viewer={port}"]
    assert train_main(args + ["--out", str(tmp_path / "r")]) == 0, capsys.readouterr().err
    assert f"viewer: open http://127.0.0.1:{port}" in capsys.readouterr().out
    with socket.socket() as busy:  # a busy port is refused before any work
        busy.bind(("127.0.0.1", port))
        busy.listen()
        assert train_main(args + ["--out", str(tmp_path / "r2")]) == 2
    assert "train.viewer=" in capsys.readouterr().err and not (tmp_path / "r2").exists()
    assert train_main(args + ["--out", str(tmp_path / "r3"), "--backbone", "nerf"]) == 2
    assert "shows the Gaussians" in capsys.readouterr().err


def test_server_drawing_renders_what_the_client_camera_sees(saved):
    from types import SimpleNamespace

    from dff_gs.core.geometry import matrix_to_quat
    from dff_gs.query.views import render_values
    from dff_gs.view.remote import ServerDrawing, client_camera
    from dff_gs.view.session import ViewerSession
    from dff_gs.view.splats import base_colors

    ply, labels = saved
    s = ViewerSession.open(ply)
    cams = s.base.scene().cameras
    c2w = cams.camtoworlds[1]
    fov = 2 * np.arctan(cams.height / 2 / float(cams.Ks[1, 1, 1]))
    camera = SimpleNamespace(wxyz=matrix_to_quat(c2w[:3, :3]).numpy(), position=c2w[:3, 3].numpy(), fov=fov,
                             image_width=cams.width, image_height=cams.height)
    mine = client_camera(camera)
    assert torch.allclose(mine.viewmats[0], cams.viewmats[1], atol=1e-5)
    assert torch.allclose(mine.Ks[0], cams.Ks[1], atol=1e-3)
    colors = base_colors(s.model)
    drawing = ServerDrawing(lambda: (s.model, colors), backend="torch")
    try:
        img = drawing.render(SimpleNamespace(camera=camera))
        ref, alpha = render_values(s.model, cams[[1]], torch.from_numpy(colors), "torch")
        ref = ((ref[0] + 1 - alpha[0]).clamp(0, 1) * 255).round().byte().numpy()
        assert img.shape == (cams.height, cams.width, 3) and np.abs(img.astype(int) - ref).max() <= 1
        assert client_camera(SimpleNamespace(**{**vars(camera), "image_width": 4000, "image_height": 2000}),
                             max_side=960).width == 960
    finally:
        drawing.stop()

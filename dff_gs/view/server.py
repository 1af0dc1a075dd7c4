"""The browser page (viser): the Gaussians drawn by the browser, the training cameras, and panels whose every
control calls one method of :class:`~dff_gs.view.session.ViewerSession` (the page holds no selection logic).

Panels: *Query* (text with threshold, a click on the scene, a k-means cluster, clear), *View* (colours: RGB, PCA
of the features, per-label segmentation; the selection tinted or the rest dimmed), *Edit* (delete, extract,
recolour, move with a gizmo, duplicate, undo / redo, export PLY + download).
"""

from __future__ import annotations

import math
import threading
import time
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from dff_gs.core.errors import ConfigError, DffError
from dff_gs.core.geometry import matrix_to_quat
from dff_gs.core.ports import check_port
from dff_gs.core.utils import as_rgb
from dff_gs.edit.script import Delete, Duplicate, Extract, Recolor, Rotate, Translate
from dff_gs.query import QuerySpec, label_list, segment_gaussians
from dff_gs.view.remote import ServerDrawing
from dff_gs.view.session import ViewerSession
from dff_gs.view.splats import COLOR_MODES, base_colors, highlight, label_colors, pca_colors, splat_arrays

THUMBNAIL_SIDE = 48  # pixels: the images shown on the camera frustums
DRAWING = ("browser", "server")


class ViewerApp:
    """A viser server showing one :class:`ViewerSession` (see the module docstring)."""

    def __init__(self, session: ViewerSession, host: str = "127.0.0.1", port: int = 8080, drawing: str = "browser"):
        """drawing: ``browser`` (the browser draws the splats: a client with a GPU) | ``server`` (our rasterizer
        renders each client's view, :mod:`dff_gs.view.remote`: a client without one)."""
        import viser

        if drawing not in DRAWING:
            raise ConfigError(f"--render {drawing}: must be one of {', '.join(DRAWING)}")

        check_port(host, port)
        self.session = session
        self.lock = threading.RLock()  # one action at a time: the GUI's callbacks run in a thread pool
        self.server = viser.ViserServer(host=host, port=port, verbose=False)
        self.server.gui.configure_theme(control_width="large")
        self.server.scene.set_up_direction("+z")  # dff_gs scenes are Z-up
        # Splats and frustums need no lighting: no environment map (an HDRI fetched from the web), no shadow
        # passes (seconds per frame in a browser without a GPU).
        self.server.scene.configure_environment_map(None)
        self.server.scene.configure_default_lights(enabled=True, cast_shadow=False)
        self.url = f"http://{host}:{port}"
        self._colors = None  # ((mode, labels), model, [N, 3]): the view's colours of one model, before highlighting
        self.splats = None  # the browser's splat node, while the browser draws (see set_drawing)
        self.gizmo = None
        self.drawing = ServerDrawing(self._snapshot, session.base.backend)
        self.actions, self.last_action_seconds = 0, 0.0  # actions done, and what the last one took
        self._add_cameras()
        self._build_query_panel()
        self._build_view_panel()
        self._build_edit_panel()
        self.server.scene.on_click()(self._on_scene_click)
        self.server.on_client_connect(self.drawing.attach)
        self.set_drawing(drawing)

    # ------------------------------------------------------------------------------------ drawing
    def colors(self) -> np.ndarray:
        """The colours of the current view mode, the selection highlighted ``[N, 3]``."""
        s, mode = self.session, self.color_mode.value
        key = (mode, self.labels.value if mode == "segmentation" else "")
        if self._colors is None or self._colors[0] != key or self._colors[1] is not s.model:  # kept per model
            if mode == "pca" and s.model.feature_dim:
                colors = pca_colors(s.model.params["features"])
            elif mode == "segmentation" and s.can_text:
                names = [n.strip() for n in self.labels.value.split(",") if n.strip()]
                labels = _segment(s, names)
                colors = label_colors(labels, len(names)) if labels is not None else base_colors(s.model)
            else:
                colors = base_colors(s.model)
            self._colors = (key, s.model, colors)
        return highlight(self._colors[2], self.session.mask, self.highlight_style.value)

    def refresh(self) -> None:
        """Send the current model, colours and selection to the browsers (the splats when the browser draws them,
        else a new server render of each view), and the status line."""
        with self.lock:
            if not self.drawing.enabled:
                a = splat_arrays(self.session.model, self.colors())
                if self.splats is None:
                    self.splats = self.server.scene.add_gaussian_splats("/scene", **a.as_kwargs())
                else:
                    self.splats.set_gaussians(a.centers, a.covariances, a.rgbs, a.opacities)
            s = self.session
            lines = [f"**{s.selected_count:,}** of {s.model.num_gaussians:,} Gaussians selected"]
            if s.message:
                lines.append(s.message)
            if s.steps:
                lines.append("edits: " + " → ".join(st.op.name for st in s.steps))
            self.status.content = "  \n".join(lines)
            self.undo_button.disabled = not s.steps
            self.redo_button.disabled = not s.undone
            self._place_gizmo()
        self.drawing.request(*self.server.get_clients().values())

    def _snapshot(self) -> tuple:
        with self.lock:
            return self.session.model, self.colors()

    def set_drawing(self, mode: str) -> None:
        """Who draws the Gaussians: ``browser`` or ``server`` (see :class:`ViewerApp`)."""
        self.drawing.enabled = mode == "server"
        if self.drawing.enabled and self.splats is not None:  # removed, not hidden: browsers sort hidden splats too
            self.splats.remove()
            self.splats = None
        if not self.drawing.enabled:
            self.server.scene.set_background_image(None)
        self.drawn_by.value = mode
        self.refresh()

    def _act(self, fn, *args):
        """Run one session action and show its result; a bad input becomes the status message, never a crash of
        the server. Returns what ``fn`` returned (None when it failed). ``last_action_seconds``: what the action
        and sending its result took."""
        t0, result = time.perf_counter(), None
        with self.lock:
            try:
                result = fn(*args)
            except DffError as err:
                self.session.message = f"⚠ {err}"
        self.refresh()
        self.last_action_seconds = time.perf_counter() - t0
        self.actions += 1
        return result

    # ------------------------------------------------------------------------------------ panels
    def _build_query_panel(self) -> None:
        gui, s = self.server.gui, self.session
        with gui.add_folder("Query"):
            self.status = gui.add_markdown("")
            reason = s.features_reason or (None if s.can_text else "no teacher with a text encoder is recorded "
                                                                     "with this model: text queries are off")
            if reason:
                gui.add_markdown(f"*{reason}*")
            self.text = gui.add_text("Text query", initial_value="")
            self.negatives = gui.add_text("Negatives", initial_value="")
            self.query_button = gui.add_button("Select text")
            self.threshold = gui.add_slider("Threshold", min=0.0, max=0.99, step=0.01,
                                            initial_value=s.selection_config.threshold)
            self.click_selects = gui.add_checkbox("Click selects", initial_value=True)
            self.cluster_k = gui.add_number("Clusters K", initial_value=8, min=2, max=64, step=1)
            self.cluster_id = gui.add_number("Cluster id", initial_value=0, min=0, max=63, step=1)
            self.cluster_button = gui.add_button("Select cluster")
            self.clear_button = gui.add_button("Clear selection")
        for h in (self.text, self.negatives, self.query_button):
            h.disabled = not s.can_text
        for h in (self.threshold, self.click_selects, self.cluster_k, self.cluster_id, self.cluster_button):
            h.disabled = s.features_reason is not None
        self.query_button.on_click(lambda _: self.query_text(self.text.value, self.negatives.value))
        self.threshold.on_update(lambda _: self._act(s.set_threshold, self.threshold.value))
        self.cluster_button.on_click(lambda _: self.query_cluster(int(self.cluster_k.value),
                                                                  int(self.cluster_id.value)))
        self.clear_button.on_click(lambda _: self._act(s.clear_selection))

    def _build_view_panel(self) -> None:
        gui, s = self.server.gui, self.session
        with gui.add_folder("View"):
            modes = [m for m in COLOR_MODES if m == "rgb" or (m == "pca" and s.model.feature_dim)
                     or (m == "segmentation" and s.can_text)]
            self.color_mode = gui.add_dropdown("Colours", options=modes, initial_value="rgb")
            self.labels = gui.add_text("Labels", initial_value=", ".join(s.base.class_names or []))
            self.highlight_style = gui.add_dropdown("Selection", options=["tint", "dim"], initial_value="tint")
            self.drawn_by = gui.add_dropdown("Drawn by", options=list(DRAWING), initial_value="browser")
            self.show_cameras = gui.add_checkbox("Cameras", initial_value=True)
        for h in (self.color_mode, self.labels, self.highlight_style):
            h.on_update(lambda _: self.refresh())
        self.drawn_by.on_update(lambda _: self.drawn_by.value != ("server" if self.drawing.enabled else "browser")
                                and self.set_drawing(self.drawn_by.value))
        self.show_cameras.on_update(lambda _: self._show_cameras(self.show_cameras.value))

    def _build_edit_panel(self) -> None:
        gui, s = self.server.gui, self.session
        with gui.add_folder("Edit"):
            delete, extract = gui.add_button("Delete"), gui.add_button("Extract")
            self.color = gui.add_rgb("Colour", initial_value=(230, 40, 40))
            recolor = gui.add_button("Recolour")
            self.move = gui.add_checkbox("Move (gizmo)", initial_value=False)
            self.offset = gui.add_vector3("Duplicate offset", initial_value=(0.3, 0.0, 0.0), step=0.05)
            duplicate = gui.add_button("Duplicate")
            self.undo_button, self.redo_button = gui.add_button("Undo"), gui.add_button("Redo")
            default_out = Path(s.base.source).with_name(Path(s.base.source).stem + "_edited.ply")
            self.out = gui.add_text("Export to", initial_value=str(default_out))
            self.overwrite = gui.add_checkbox("Overwrite", initial_value=False)
            self.export_button = gui.add_button("Export PLY")
        delete.on_click(lambda _: self._act(s.apply, Delete()))
        extract.on_click(lambda _: self._act(s.apply, Extract()))
        recolor.on_click(lambda _: self._act(s.apply, Recolor(color=[c / 255.0 for c in self.color.value])))
        duplicate.on_click(lambda _: self._act(s.apply, Duplicate(offset=[float(v) for v in self.offset.value])))
        self.undo_button.on_click(lambda _: self._act(s.undo))
        self.redo_button.on_click(lambda _: self._act(s.redo))
        self.move.on_update(lambda _: self.refresh())
        self.export_button.on_click(lambda e: self.export(self.out.value, self.overwrite.value, e.client))

    # ------------------------------------------------------------------------------------ actions
    def query_text(self, text: str, negatives: str = "") -> None:
        if not text.strip():
            self.session.message = "type a text query first"
            return self.refresh()
        self._act(self.session.query, QuerySpec("text", text.strip(), label_list(negatives)))

    def query_cluster(self, k: int, cluster_id: int) -> None:
        if not 0 <= cluster_id < k:
            self.session.message = f"cluster id must be in 0..{k - 1}"
            return self.refresh()
        self._act(self.session.query, QuerySpec("cluster", (k, cluster_id)))

    def query_ray(self, origin, direction) -> None:
        self._act(self.session.query, QuerySpec("ray", (*map(float, origin), *map(float, direction))))

    def _on_scene_click(self, event) -> None:
        if self.click_selects.value and self.session.features_reason is None:
            self.query_ray(event.ray_origin, event.ray_direction)

    def export(self, out: str, force: bool = False, client=None) -> Optional[dict]:
        """Export through the session (``edit.py``'s code); the PLY is also sent to ``client`` as a download."""
        def write() -> dict:
            summary = self.session.export(out, force=force)
            self.session.message = f"wrote {summary['output']} (+ sidecar, {Path(summary['summary']).name})"
            return summary

        summary = self._act(write)
        if summary is not None and client is not None:
            client.send_file_download(Path(summary["output"]).name, Path(summary["output"]).read_bytes(),
                                      save_immediately=True)
        return summary

    # ------------------------------------------------------------------------------------ move gizmo
    def _place_gizmo(self) -> None:
        """Show the gizmo at the selection's centre while "Move" is on and something is selected."""
        mask = self.session.mask
        if not (self.move.value and mask is not None and mask.any()):
            if self.gizmo is not None:
                self.gizmo.remove()
                self.gizmo = None
            return
        centre = self.session.model.get_means().detach()[torch.from_numpy(mask)].mean(0).cpu().numpy()
        if self.gizmo is None:
            self.gizmo = self.server.scene.add_transform_controls("/move", scale=0.5, disable_sliders=True,
                                                                  position=centre)
            self.gizmo.on_update(self._on_gizmo)
        self.gizmo.position, self.gizmo.wxyz = centre, (1.0, 0.0, 0.0, 0.0)
        self._gizmo_start = centre

    def _on_gizmo(self, event) -> None:
        if getattr(event, "phase", "end") != "end":
            return

        start, pos = np.asarray(self._gizmo_start, float), np.asarray(event.target.position, float)
        w, x, y, z = (float(v) for v in event.target.wxyz)
        angle = 2 * math.degrees(math.atan2(math.sqrt(x * x + y * y + z * z), w))

        def drag() -> None:  # the drag as a translate, then a rotate about where the gizmo ended
            if np.linalg.norm(pos - start) > 1e-6:
                self.session.apply(Translate(offset=[float(v) for v in pos - start]))
            if abs(angle) > 1e-3 and self.session.selection is not None:
                self.session.apply(Rotate(axis=[x, y, z], degrees=angle, pivot=[float(v) for v in pos]))

        self._act(drag)

    # ------------------------------------------------------------------------------------ cameras
    def _add_cameras(self) -> None:
        """The scene's training cameras as frustums with their images; a click on one moves the view there (and
        hides that frustum, which would cover the view). A new page opens at the first one."""
        s = self.session
        self.frustums: list = []
        self._at_camera = 0  # the camera a new page opens at, whose frustum is hidden
        if not s.has_scene:
            return
        try:
            train = s.base.scene().split("train")
        except DffError as err:  # the run's scene moved: show the Gaussians anyway
            s.message = f"cameras not shown: {err}"
            return
        cams = train.cameras
        c2w = cams.camtoworlds.cpu().numpy()
        fov = 2 * math.atan(cams.height / (2 * float(cams.Ks[0, 1, 1])))
        centres = torch.from_numpy(c2w[:, :3, 3])
        spacing = torch.cdist(centres, centres).fill_diagonal_(float("inf")).amin(1).median() if len(c2w) > 1 else 1.0
        scale = float(min(0.15 * spacing, 0.02 * float((centres.amax(0) - centres.amin(0)).norm()) or 0.1))
        for i in range(len(cams)):
            h = self.server.scene.add_camera_frustum(
                f"/cameras/{i}", fov=fov, aspect=cams.width / cams.height, scale=scale, thickness=1.5,
                thickness_units="screen", image=_thumbnail(as_rgb(train.images[i])),
                wxyz=matrix_to_quat(torch.from_numpy(c2w[i, :3, :3])).numpy(),
                position=c2w[i, :3, 3], cast_shadow=False, receive_shadow=False)  # no shadow passes to draw
            h.on_click(lambda e, i=i: self.go_to_camera(e.client, i))
            self.frustums.append((h, c2w[i], fov))
        self._initial_view(c2w[0], fov)
        self.frustums[0][0].visible = False

    def _initial_view(self, c2w: np.ndarray, fov: float) -> None:
        cam = self.server.initial_camera
        centre = c2w[:3, 3]
        depth = float(np.median(np.linalg.norm(self.session.model.get_means().detach().cpu().numpy() - centre, axis=1)))
        cam.position, cam.look_at = centre, centre + c2w[:3, 2] * depth
        cam.up, cam.fov = -c2w[:3, 1], fov

    def go_to_camera(self, client, index: int) -> None:
        """Move ``client``'s view to training camera ``index`` (its frustum hidden, the others shown)."""
        self._at_camera = index
        self._show_cameras(self.show_cameras.value)
        _, c2w, fov = self.frustums[index]
        with client.atomic():
            client.camera.wxyz = matrix_to_quat(torch.from_numpy(c2w[:3, :3])).numpy()
            client.camera.position = c2w[:3, 3]
            client.camera.fov = fov

    def _show_cameras(self, show: bool) -> None:
        for j, (h, _, _) in enumerate(self.frustums):
            h.visible = show and j != self._at_camera

    def stop(self) -> None:
        self.drawing.stop()
        self.server.stop()


def _segment(session: ViewerSession, names: list[str]):
    """Each Gaussian's label among ``names`` (argmax of Eq. 5), None for fewer than two names."""
    if len(names) < 2:
        return None
    return segment_gaussians(session.model, session.base.teacher.encode_text(names))


def _thumbnail(image) -> np.ndarray:
    """A uint8 ``[h, w, 3]`` copy of a scene image ``[H, W, 3]`` (in [0, 1]) at most :data:`THUMBNAIL_SIDE` on its
    longer side."""
    import torch.nn.functional as F

    img = torch.as_tensor(image).float()
    H, W = img.shape[:2]
    f = THUMBNAIL_SIDE / max(H, W)
    if f < 1:
        img = F.interpolate(img.permute(2, 0, 1)[None], size=(max(1, round(H * f)), max(1, round(W * f))),
                            mode="area")[0].permute(1, 2, 0)
    return (img.clamp(0, 1) * 255).round().byte().numpy()

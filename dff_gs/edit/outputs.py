"""What an edit writes: the edited PLY (+ sidecar), a JSON summary beside it and before | after renders.

``out.ply`` -> ``out.ply``, ``out.dff.json`` (sidecar: decoder, teacher, scene, edit history),
``out.edit.json`` (summary) and ``out_renders/NAME.png`` (before | after, side by side). The input is never
overwritten; existing outputs are refused without ``force``; every file is written atomically.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch
from tqdm import tqdm

from dff_gs.core.errors import ConfigError
from dff_gs.core.gaussians import GaussianModel
from dff_gs.core.utils import atomic_write_path, evenly_spaced, folder_mode
from dff_gs.io.export import check_up, export_model, export_paths
from dff_gs.io.images import save_png, side_by_side
from dff_gs.io.ply import SIDECAR_OWN_KEYS, new_write_id, save_ply, sidecar_path
from dff_gs.query import render_selection
from dff_gs.render import render


@dataclass
class OutputPaths:
    ply: Path
    sidecar: Path
    summary: Path
    renders: Path
    exports: dict[str, Path] = field(default_factory=dict)  # viewer exports (--export): format -> file
    up: str = "z"  # their up axis (--up)

    @classmethod
    def for_ply(cls, out: str | Path, exports: Sequence[str] = (), up: str = "z") -> "OutputPaths":
        out = Path(out)
        if out.suffix.lower() != ".ply":
            raise ConfigError(f"{out}: the output must be a .ply file")
        return cls(out, sidecar_path(out), out.with_name(out.stem + ".edit.json"), out.with_name(out.stem + "_renders"),
                   export_paths(out, exports), check_up(up))

    @property
    def lock(self) -> Path:
        """The lock file that keeps a second command from writing these outputs at the same time."""
        return self.ply.with_name(f".{self.ply.name}.lock")

    def all(self) -> list[Path]:
        """Every output: the PLY, its sidecar, the summary, the renders folder and the viewer exports."""
        return [self.ply, self.sidecar, self.summary, self.renders, *self.exports.values()]

    def existing(self) -> list[Path]:
        return [p for p in self.all() if p.exists()]


def check_outputs(input_ply: str | Path, out: str | Path, force: bool = False, exports: Sequence[str] = (),
                  up: str = "z") -> OutputPaths:
    """The output paths, after refusing to overwrite the input (ever) or existing outputs (without ``force``)."""
    paths = OutputPaths.for_ply(out, exports, up)
    inp = Path(input_ply).resolve()
    protected = {inp, sidecar_path(inp).resolve()}
    if {paths.ply.resolve(), paths.sidecar.resolve(), paths.summary.resolve(),
            *(e.resolve() for e in paths.exports.values())} & protected:
        raise ConfigError(f"{paths.ply}: refusing to overwrite the input {inp}; choose another --out")
    clash = paths.existing()
    if clash and not force:
        raise ConfigError(f"{clash[0]}: exists; pass --force to overwrite, or choose another --out")
    for p in (paths.ply, paths.sidecar, paths.summary, *paths.exports.values()):
        if p.is_dir():
            raise ConfigError(f"{p}: is a folder; --out names the edited .ply file")
    return paths


def pick_views(model: GaussianModel, cameras, mask: Optional[torch.Tensor], n: int, backend: str = "auto") -> list[int]:
    """``n`` views to show an edit in: those where the selection covers the most pixels (evenly spaced views
    when there is no selection)."""
    n = min(n, len(cameras))
    if n <= 0:
        return []
    if mask is None or not mask.any():
        return evenly_spaced(len(cameras), n)
    cover = torch.stack([render_selection(model, cameras[[i]], mask, backend)[0].sum() for i in range(len(cameras))])
    return sorted(cover.argsort(descending=True)[:n].tolist())


@torch.no_grad()
def before_after_panels(before: GaussianModel, after: GaussianModel, cameras, names: list[str], ids: list[int],
                        backend: str = "auto", progress: bool = False) -> dict[str, np.ndarray]:
    """``{file name: before | after}`` uint8 panels ``[H, 2W + gap, 3]`` of the views ``ids``."""
    panels = {}
    for i in tqdm(ids, desc="renders", disable=not progress, leave=False):
        cam = cameras[[i]]
        a = render(before, cam, with_features=False, backend=backend).rgb[0].cpu()
        b = render(after, cam, with_features=False, backend=backend).rgb[0].cpu()
        panels[f"{names[i].replace('/', '_')}.png"] = side_by_side(a, b)
    return panels


def sidecar_metadata(meta: dict, summary: dict) -> dict:
    """The input's sidecar metadata (teacher, scene) with this edit appended to its ``edits`` history."""
    out = {k: v for k, v in (meta or {}).items() if k not in SIDECAR_OWN_KEYS}
    history = list(out.get("edits") or [])
    history.append({k: summary[k] for k in ("input", "operations", "num_gaussians_after") if k in summary})
    out["edits"] = history
    return out


def write_outputs(model: GaussianModel, meta: dict, paths: OutputPaths, summary: dict,
                  panels: dict[str, np.ndarray]) -> None:
    """Write the before | after PNGs (into a fresh folder swapped in whole), the PLY + sidecar, the viewer exports
    (``paths.exports``), then the summary.

    The files of one edit carry one ``write_id`` (the PLY's header, its sidecar and the summary): a PLY beside
    a sidecar of another write (a write cut short by a full disk) is refused on load instead of mixing, and the
    summary, written last, exists for a complete edit only (its ``write_id`` names the PLY it describes)."""
    write_id = new_write_id()
    summary["write_id"] = write_id
    write_renders(paths.renders, panels)
    save_ply(model, paths.ply, metadata=sidecar_metadata(meta, summary), write_id=write_id)
    if paths.exports:
        summary["exports"] = [str(p) for p in export_model(model, paths.ply, list(paths.exports), paths.up)]
    with atomic_write_path(paths.summary) as tmp:
        tmp.write_text(json.dumps(summary, indent=2, default=str))


def write_renders(folder: Path, panels: dict[str, np.ndarray]) -> None:
    """``folder/NAME`` for each panel, written into a temporary folder that then replaces ``folder`` whole (no
    PNG of an earlier edit is left among the new ones; the earlier folder is put back if the swap fails)."""
    import shutil
    import tempfile

    if not panels and not folder.exists():
        return
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        os.chmod(tmp, folder_mode())  # mkdtemp's is 0700
        for name, img in panels.items():
            save_png(tmp / name, img)
        old = folder.with_name(f".{folder.name}.old") if folder.exists() else None
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
            folder.rename(old)
        try:
            tmp.rename(folder)
        except OSError:
            if old is not None:
                old.rename(folder)
            raise
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

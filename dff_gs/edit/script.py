"""Edit scripts: a selection and a list of operations, as dataclasses, read from YAML (or built by the CLI).

```yaml
select:                       # queries, unioned (each: text | patch | click | cluster)
  - text: chair
  - click: [3, 64, 40]        # view x y of the scene's cameras
  - cluster: "8:3"            # k-means k=8, cluster 3
  - ray: [0, -2, 1, 0, 1, 0]  # a click from any viewpoint: origin, direction (world)
negatives: [stool]            # extra competing labels for the text queries
selection: {threshold: 0.5, grow_sigma: 2.0}   # dff_gs.edit.selection.SelectionConfig
operations:
  - op: recolor
    color: [0.2, 0.4, 0.9]
  - op: translate
    offset: [0.3, 0.0, 0.0]
  - op: delete
    select: [{text: vase}]    # this operation re-queries the current (edited) model
  - op: compose
    source: other/point_cloud.ply
    offset: [1.0, 0.0, 0.0]
```
Unknown operations and keys are errors naming the file, the operation and the known names.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar, Optional

import torch

from dff_gs.core.config import apply_dict, load_yaml, option
from dff_gs.core.errors import ConfigError
from dff_gs.core.geometry import Similarity
from dff_gs.edit import ops
from dff_gs.edit.color import color_matrix, parse_color
from dff_gs.edit.fill import fill_deleted
from dff_gs.edit.ops import OpResult
from dff_gs.edit.selection import SelectionConfig
from dff_gs.engine.runs import load_model
from dff_gs.query import QUERY_KINDS, QuerySpec, label_list


@dataclass
class Operation:
    """Base of the operations. ``select``: queries that replace the current selection for this operation
    (resolved on the model as edited so far)."""

    name: ClassVar[str] = ""
    needs_selection: ClassVar[bool] = True
    select: list = field(default_factory=list)

    def check(self) -> None:
        """Validate the options (before any work is done)."""

    def apply(self, model, mask, env: "EditEnv") -> OpResult:
        raise NotImplementedError

    def options(self) -> dict:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "select"}


@dataclass
class EditEnv:
    """What operations may need besides the model: metadata, a folder for relative paths, a model loader."""

    meta: dict = field(default_factory=dict)
    base_dir: Path = Path(".")
    scene: Optional[Callable[[], Any]] = None  # loads the model's scene (cameras, images): delete --fill needs it
    backend: str = "auto"

    def bound_to(self, ctx) -> "EditEnv":
        """This environment with ``ctx``'s (a :class:`~dff_gs.query.QueryContext`) scene loader, when it names a
        scene and none is set, and its renderer; returns itself."""
        if self.scene is None and ctx.scene_path:
            self.scene = ctx.scene
        self.backend = ctx.backend
        return self

    def resolve(self, path: str) -> Path:
        p = Path(path).expanduser()
        if p.is_absolute() or p.exists():
            return p
        return self.base_dir / p


@dataclass
class Delete(Operation):
    """Remove the selected Gaussians; with ``fill``, fill what that reveals (:mod:`dff_gs.edit.fill`)."""

    name: ClassVar[str] = "delete"
    fill: bool = False

    def apply(self, model, mask, env):
        result = ops.delete(model, mask)
        if not self.fill:
            return result

        if env.scene is None:
            raise ConfigError("delete with fill needs the scene's cameras: pass --data SCENE (the model names no "
                              "scene)")
        filled, info = fill_deleted(model, mask.to(model.device), result.model, env.scene(), backend=env.backend)
        added = filled.num_gaussians - result.model.num_gaussians
        notes = [f"fill: {added} Gaussians fitted to {info['hole_pixels']} revealed pixels"]
        return OpResult(filled, torch.zeros(filled.num_gaussians, dtype=torch.bool, device=filled.device),
                        {**result.info, "fill": info, "notes": notes})


@dataclass
class Extract(Operation):
    """Keep only the selected Gaussians."""

    name: ClassVar[str] = "extract"

    def apply(self, model, mask, env):
        return ops.extract(model, mask)


@dataclass
class Recolor(Operation):
    """Recolour the selection: tint to ``color`` and/or shift hue, saturation, brightness (applied to the SH)."""

    name: ClassVar[str] = "recolor"
    color: Any = option(None, "target colour [r, g, b] in 0..1, 'r,g,b' or '#rrggbb'")
    hue: float = option(0.0, "hue rotation in degrees")
    saturation: float = option(1.0, "saturation factor")
    brightness: float = option(1.0, "brightness factor")
    shading: bool = option(True, "with color: keep each Gaussian's shading (else one flat colour)")

    def check(self):
        if self.color is not None:
            parse_color(self.color)
        color_matrix(None, self.hue, self.saturation, self.brightness)
        if self.color is None and self.hue == 0 and self.saturation == 1 and self.brightness == 1:
            raise ConfigError("recolor: give a color or a hue / saturation / brightness change")

    def apply(self, model, mask, env):
        return ops.recolor(model, mask, self.color, self.hue, self.saturation, self.brightness, self.shading)


@dataclass
class Translate(Operation):
    """Move the selection by ``offset``."""

    name: ClassVar[str] = "translate"
    offset: Optional[list[float]] = option(None, "[x, y, z] in scene units")

    def check(self):
        if self.offset is None:
            raise ConfigError("translate needs offset: [x, y, z]")
        Similarity.build(offset=self.offset, what="translate")

    def apply(self, model, mask, env):
        return ops.translate(model, mask, self.offset)


@dataclass
class Rotate(Operation):
    """Rotate the selection about ``axis`` through ``pivot`` (default: the selection's AABB centre)."""

    name: ClassVar[str] = "rotate"
    axis: list[float] = option([0.0, 0.0, 1.0], "rotation axis")
    degrees: Optional[float] = option(None, "angle in degrees (right hand about axis)")
    pivot: Optional[list[float]] = option(None, "[x, y, z] (default: the selection's AABB centre)")

    def check(self):
        if self.degrees is None:
            raise ConfigError("rotate needs degrees: ANGLE")
        Similarity.build(axis=self.axis, degrees=self.degrees, pivot=self.pivot or (0, 0, 0), what="rotate")

    def apply(self, model, mask, env):
        return ops.rotate(model, mask, self.axis, self.degrees, self.pivot)


@dataclass
class Scale(Operation):
    """Scale the selection uniformly by ``factor`` about ``pivot`` (default: its AABB centre)."""

    name: ClassVar[str] = "scale"
    factor: Optional[float] = option(None, "uniform scale factor > 0")
    pivot: Optional[list[float]] = option(None, "[x, y, z] (default: the selection's AABB centre)")

    def check(self):
        if self.factor is None:
            raise ConfigError("scale needs factor: F")
        Similarity.build(scale=self.factor, pivot=self.pivot or (0, 0, 0), what="scale")

    def apply(self, model, mask, env):
        return ops.scale(model, mask, self.factor, self.pivot)


@dataclass
class Duplicate(Operation):
    """Append a copy of the selection, transformed about its AABB centre; the copy becomes the selection."""

    name: ClassVar[str] = "duplicate"
    offset: list[float] = option([0.0, 0.0, 0.0], "[x, y, z] offset of the copy")
    axis: list[float] = option([0.0, 0.0, 1.0], "rotation axis of the copy")
    degrees: float = option(0.0, "rotation of the copy in degrees")
    factor: float = option(1.0, "uniform scale of the copy")
    pivot: Optional[list[float]] = option(None, "[x, y, z] (default: the selection's AABB centre)")

    def check(self):
        Similarity.build(offset=self.offset, axis=self.axis, degrees=self.degrees, scale=self.factor,
                         pivot=self.pivot or (0, 0, 0), what="duplicate")

    def apply(self, model, mask, env):
        return ops.duplicate(model, mask, self.offset, self.axis, self.degrees, self.factor, self.pivot)


@dataclass
class Compose(Operation):
    """Insert the Gaussians of another PLY or run, mapped by ``x -> scale R x + offset`` (or ``matrix``)."""

    name: ClassVar[str] = "compose"
    needs_selection: ClassVar[bool] = False
    source: str = option("", "PLY file or run folder to insert")
    offset: list[float] = option([0.0, 0.0, 0.0], "translation")
    axis: list[float] = option([0.0, 0.0, 1.0], "rotation axis")
    degrees: float = option(0.0, "rotation in degrees about the world origin")
    scale: float = option(1.0, "uniform scale about the world origin")
    matrix: Optional[list] = option(None, "4x4 similarity [sR | t] instead of offset/axis/degrees/scale")
    features: str = option("auto", "feature mismatch: auto | zero | error")

    def similarity(self) -> Similarity:
        if self.matrix is not None:
            return Similarity.from_matrix(self.matrix, what="compose")
        return Similarity.build(offset=self.offset, axis=self.axis, degrees=self.degrees, scale=self.scale,
                                what="compose")

    def check(self):
        if not self.source:
            raise ConfigError("compose needs source: PLY or run folder")
        if self.features not in ops.FEATURE_POLICIES:
            raise ConfigError(f"compose: features={self.features!r} (one of {', '.join(ops.FEATURE_POLICIES)})")
        self.similarity()

    def apply(self, model, mask, env):
        path = env.resolve(self.source)
        other, other_meta = load_model(path)
        return ops.compose(model, other, self.similarity(), env.meta, other_meta, self.features, str(path))


OPERATIONS: dict[str, type[Operation]] = {c.name: c for c in (Delete, Extract, Recolor, Translate, Rotate, Scale,
                                                               Duplicate, Compose)}


@dataclass
class EditScript:
    """A selection (queries + cleanup settings) and the operations to run in order."""

    select: list = field(default_factory=list)  # list[QuerySpec]
    selection: SelectionConfig = field(default_factory=SelectionConfig)
    operations: list = field(default_factory=list)  # list[Operation]
    source: str = "<command line>"

    def check(self) -> "EditScript":
        """Validate everything before any work: options, and that each operation has a selection."""
        if not self.operations:
            raise ConfigError(f"{self.source}: no operations (give --op OP or operations: in the script)")
        self.selection.validate()
        has_selection = bool(self.select)
        for i, op in enumerate(self.operations):
            where = f"{self.source}: operation {i + 1} ({op.name})"
            try:
                op.check()
            except ConfigError as err:
                raise ConfigError(f"{where}: {err}") from None
            if op.select:
                has_selection = True
            if op.needs_selection and not has_selection:
                raise ConfigError(f"{where} needs a selection: give a query (--text, --click, --patch, --cluster) "
                                  "or select: in the script")
            if op.name == "delete":
                has_selection = False  # nothing stays selected after a delete
            if op.name in ("compose", "duplicate", "extract"):
                has_selection = True
        return self


# ------------------------------------------------------------------------------------------- parsing
def parse_query(item: Any, negatives: tuple = (), where: str = "select") -> QuerySpec:
    """One query mapping ``{text: ...} | {patch: ...} | {click: [v, x, y]} | {cluster: "K:ID" | [K, ID]} |
    {ray: [ox, oy, oz, dx, dy, dz]}``
    (a bare string is a text query), with optional ``negatives``."""
    if isinstance(item, str):
        item = {"text": item}
    if not isinstance(item, dict):
        raise ConfigError(f"{where}: a query must be a mapping like {{text: chair}}, got {item!r}")
    kinds = [k for k in item if k in QUERY_KINDS]
    unknown = [k for k in item if k not in QUERY_KINDS and k != "negatives"]
    if unknown or len(kinds) != 1:
        raise ConfigError(f"{where}: a query has exactly one of {', '.join(QUERY_KINDS)} (and optional negatives); "
                          f"got keys {list(item)}")
    kind, value = kinds[0], item[kinds[0]]
    negs = label_list(item.get("negatives", ()))
    if kind == "click" and isinstance(value, list):
        value = tuple(value)
    elif kind == "cluster":  # "K:ID" or [K, ID]; an edit selects one cluster
        try:
            value = tuple(int(v) for v in (value.split(":") if isinstance(value, str) else value))
        except (TypeError, ValueError):
            pass
        if not (isinstance(value, tuple) and len(value) == 2):
            raise ConfigError(f"{where}: cluster needs K:ID (the cluster ID of K), got {value!r:.60}")
    elif kind == "patch":
        value = str(value)
    try:
        return QuerySpec(kind, value, tuple(negatives) + negs)
    except ConfigError as err:
        raise ConfigError(f"{where}: {err}") from None


def _queries(value: Any, negatives: tuple, where: str) -> list[QuerySpec]:
    if value is None:
        return []
    items = value if isinstance(value, list) else [value]
    return [parse_query(it, negatives, f"{where}[{i}]") for i, it in enumerate(items)]


def parse_operation(item: Any, negatives: tuple = (), where: str = "operation") -> Operation:
    """One ``{op: NAME, ...options, [select: ...]}`` mapping -> an :class:`Operation`."""
    if isinstance(item, str):
        item = {"op": item}
    if not isinstance(item, dict) or "op" not in item:
        raise ConfigError(f"{where}: expected a mapping with an 'op' key, got {item!r}")
    name = str(item["op"])
    if name not in OPERATIONS:
        raise ConfigError(f"{where}: unknown operation {name!r} (known: {', '.join(OPERATIONS)})")
    op = OPERATIONS[name]()
    values = {k: v for k, v in item.items() if k not in ("op", "select")}
    try:
        apply_dict(op, values)
    except ConfigError as err:
        raise ConfigError(f"{where} ({name}): {str(err).replace('config key', 'option')}") from None
    op.select = _queries(item.get("select"), negatives, f"{where} ({name}) select")
    return op


def parse_script(data: dict, source: str = "<script>", check: bool = True) -> EditScript:
    """A parsed YAML mapping -> an :class:`EditScript` (errors name ``source``), checked unless ``check=False``
    (the caller adds to it, e.g. command-line queries, and checks it then)."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: an edit script is a mapping with select / operations keys")
    known = ("select", "negatives", "selection", "operations")
    unknown = [k for k in data if k not in known]
    if unknown:
        raise ConfigError(f"{source}: unknown key(s) {unknown} (known: {', '.join(known)})")
    negs = label_list(data.get("negatives"))
    try:
        selection = SelectionConfig()
        apply_dict(selection, data.get("selection") or {}, prefix="selection.")
        select = _queries(data.get("select"), negs, "select")
        raw_ops = data.get("operations") or []
        if not isinstance(raw_ops, list):
            raise ConfigError("operations: expected a list of {op: NAME, ...} mappings")
        operations = [parse_operation(it, negs, f"operation {i + 1}") for i, it in enumerate(raw_ops)]
    except ConfigError as err:
        raise ConfigError(f"{source}: {err}") from None
    script = EditScript(select, selection, operations, source)
    return script.check() if check else script


def load_script(path: str | Path, check: bool = True) -> EditScript:
    """Read an edit script YAML file (and check it unless ``check=False``)."""
    return parse_script(load_yaml(path), str(path), check)

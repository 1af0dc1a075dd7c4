"""Every file reader on bad input: a one-line ``DffError`` that names the file, never a generic exception or data
that loads silently wrong. Property-based tests (hypothesis) mutate a small valid input written here (a PLY and
its sidecar, a transforms.json scene, COLMAP binary and text models) and check that each mutation either loads
valid data or fails cleanly; plain tests pin each known-bad case to a ``DataError`` naming the file."""

import json
import math
import struct

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dff_gs.data import load_scene
from tests.examples import make_colmap, make_ply, make_transforms
from dff_gs.core.errors import CheckpointError, DataError, DffError
from dff_gs.core.utils import as_rgb
from dff_gs.io.ply import load_ply, sidecar_path

W, H = 8, 6
FLIP = np.diag([1.0, -1.0, -1.0, 1.0])
FUZZ = settings(max_examples=300, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


# ---------------------------------------------------------------------------------------- valid inputs


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    """Undistorted copies (a mutation may add lens distortion) go to this test's folder."""
    monkeypatch.setenv("DFF_GS_CACHE", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def bases(tmp_path_factory):
    """The valid inputs, written once (each test restores what it mutates)."""
    root = tmp_path_factory.mktemp("readers")
    return {"ply": make_ply(root / "ply"), "transforms": make_transforms(root / "transforms"),
            "colmap_bin": make_colmap(root / "colmap_bin", True), "colmap_txt": make_colmap(root / "colmap_txt", False)}


# ------------------------------------------------------------------------------------------ validity


def assert_valid_scene(scene):
    imgs, cams = as_rgb(scene.images), scene.cameras
    assert imgs.ndim == 4 and imgs.shape[0] > 0 and imgs.shape[-1] == 3
    assert bool(torch.isfinite(imgs).all()) and 0 <= float(imgs.min()) and float(imgs.max()) <= 1
    assert len(cams) == imgs.shape[0] and (cams.width, cams.height) == (imgs.shape[2], imgs.shape[1])
    assert bool(torch.isfinite(cams.Ks).all()) and bool(torch.isfinite(cams.viewmats).all())
    assert bool((cams.Ks[:, 0, 0] > 0).all()) and bool((cams.Ks[:, 1, 1] > 0).all())
    for t in (scene.bounds, scene.points, scene.point_colors, scene.depths):
        assert t is None or bool(torch.isfinite(t).all())


def assert_valid_model(model, meta):
    assert isinstance(meta, dict) and model.num_gaussians > 0
    for k, v in model.params.items():
        assert bool(torch.isfinite(v).all()), k
    assert bool((model.params["quats"].norm(dim=-1) > 0).all())
    if model.decoder is not None:
        assert model.decoder.weight.shape == (model.decoder.out_features, model.feature_dim)
        assert bool(torch.isfinite(model.decoder.weight).all() and torch.isfinite(model.decoder.bias).all())


def loads_or_fails_cleanly(read, check):
    """``read()`` either returns valid data or raises a one-line ``DffError`` (nothing else)."""
    try:
        out = read()
    except DffError as err:
        assert "\n" not in str(err), str(err)
        return
    if isinstance(out, tuple):
        check(*out)
    else:
        check(out)


def mutated(path, data: bytes, read, check):
    """``path`` holds ``data`` while ``read`` runs, then its own bytes again."""
    original = path.read_bytes()
    path.write_bytes(data)
    try:
        loads_or_fails_cleanly(read, check)
    finally:
        path.write_bytes(original)


# ------------------------------------------------------------------------------------------ mutations

INTERESTING = [0, 1, 7, 255, 2 ** 31 - 1, 2 ** 32 - 1, 2 ** 40, 2 ** 63 - 1, 2 ** 64 - 1]
byte_edits = st.lists(st.tuples(st.sampled_from(["flip", "truncate", "insert", "delete", "int4", "int8"]),
                                st.integers(0, 1 << 16), st.binary(min_size=1, max_size=12),
                                st.sampled_from(INTERESTING)), min_size=1, max_size=3)


def apply_bytes(data: bytes, edits, lo: int = 0) -> bytes:
    b = bytearray(data)
    for op, pos, blob, val in edits:
        pos = lo + pos % (len(b) - lo + 1) if len(b) > lo else len(b)
        if op == "flip":
            b[pos:pos + len(blob)] = blob[:max(0, len(b) - pos)]
        elif op == "truncate":
            del b[pos:]
        elif op == "insert":
            b[pos:pos] = blob
        elif op == "delete":
            del b[pos:pos + len(blob)]
        else:
            size = 4 if op == "int4" else 8
            b[pos:pos + size] = (val % (1 << (8 * size))).to_bytes(size, "little")
    return bytes(b)


junk = st.recursive(
    st.none() | st.booleans() | st.integers(-(2 ** 70), 2 ** 70) | st.floats(allow_nan=True, allow_infinity=True)
    | st.sampled_from(["wide", "128px", "mm", "", "nan", "-1", "\u00e9\x00", 0, -1, 0.0, -0.5, 1e308])
    | st.text(max_size=6),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=8)


@st.composite
def json_edits(draw, obj):
    """``obj`` (a JSON value) with one to three edits: a value replaced by junk, a key or item deleted, a key
    added; each edit's place found by a random walk down from the root."""
    obj = json.loads(json.dumps(obj))
    for _ in range(draw(st.integers(1, 3))):
        parent, key, node = None, None, obj
        while isinstance(node, (dict, list)) and node and (parent is None or draw(st.booleans())):
            k = draw(st.sampled_from(sorted(node) if isinstance(node, dict) else range(len(node))))
            parent, key, node = node, k, node[k]
        if parent is None:
            continue
        op = draw(st.sampled_from(["replace", "replace", "delete", "add"]))
        if op == "replace":
            parent[key] = draw(junk)
        elif op == "delete":
            del parent[key]
        elif isinstance(parent, dict):
            parent[draw(st.sampled_from(["fl_x", "w", "h", "cx", "camera_angle_y", "k4", "decoder", "version",
                                         "format", "mask_path", "ply_file_path", "aabb", "ignore_label"]))] = draw(junk)
        else:
            parent.insert(0, draw(junk))
    return obj


tokens = st.sampled_from(["nan", "inf", "-inf", "0", "-1", "1e400", "abc", "99999999999999999999", "1.5",
                          "PINHOLE", "FOV", "#", "\u00e9"]) | st.text(max_size=5).filter(lambda t: t.strip() != "")


@st.composite
def text_edits(draw, data: bytes):
    """COLMAP text: tokens replaced, lines deleted or repeated, bytes that are not UTF-8 (or byte-level edits)."""
    if draw(st.integers(0, 5)) == 0:
        return apply_bytes(data, draw(byte_edits))
    lines = data.decode().split("\n")
    for _ in range(draw(st.integers(1, 3))):
        i = draw(st.integers(0, len(lines) - 1))
        op = draw(st.sampled_from(["token", "token", "delete", "repeat", "latin1"]))
        tok = lines[i].split(" ")
        if op == "token":
            tok[draw(st.integers(0, len(tok) - 1))] = draw(tokens)
            lines[i] = " ".join(tok)
        elif op == "delete" and len(lines) > 1:
            del lines[i]
        elif op == "repeat":
            lines.insert(i, lines[i])
        else:
            lines[i] += "\udcff"
    return "\n".join(lines).encode("utf-8", errors="surrogateescape")


@st.composite
def ply_edits(draw, data: bytes):
    """Header edits (vertex count, a property renamed / dropped / retyped, the format), special floats written
    into one vertex (NaN, inf, all-zero rotation), or byte-level edits."""
    end = data.index(b"end_header\n") + len(b"end_header\n")
    header, body = data[:end].decode().split("\n"), bytearray(data[end:])
    props = [i for i, ln in enumerate(header) if ln.startswith("property")]
    names = [header[i].split()[-1] for i in props]
    op = draw(st.sampled_from(["count", "prop", "format", "value", "zero_rot", "bytes", "body_bytes"]))
    if op == "count":
        i = next(i for i, ln in enumerate(header) if ln.startswith("element vertex"))
        header[i] = f"element vertex {draw(st.sampled_from([0, 1, 5, 7, 2 ** 31, 2 ** 40, -1]))}"
    elif op == "prop":
        i = draw(st.sampled_from(props))
        header[i] = draw(st.sampled_from([
            header[i].replace(header[i].split()[-1], draw(st.sampled_from(["semantic_2", "semantic_01", "f_rest_9",
                                                                          "rot_9", "x", "junk"]))),
            "", f"property double {header[i].split()[-1]}", f"property uchar {header[i].split()[-1]}",
            f"property list uchar float {header[i].split()[-1]}"]))
        header = [ln for ln in header if ln != ""] + [""]
    elif op == "format":
        i = next(i for i, ln in enumerate(header) if ln.startswith("format"))
        header[i] = draw(st.sampled_from(["format ascii 1.0", "format binary_big_endian 1.0", "format x 1.0"]))
    elif op in ("value", "zero_rot"):
        row = draw(st.integers(0, len(body) // (4 * len(names)) - 1))
        cols = ([names.index(f"rot_{j}") for j in range(4)] if op == "zero_rot"
                else [draw(st.integers(0, len(names) - 1))])
        val = 0.0 if op == "zero_rot" else draw(st.sampled_from([math.nan, math.inf, -math.inf, 1e38, 0.0, 1e-40]))
        for c in cols:
            struct.pack_into("<f", body, 4 * (row * len(names) + c), val)
    elif op == "bytes":
        return apply_bytes(data, draw(byte_edits))
    else:
        return apply_bytes(data, draw(byte_edits), lo=end)
    return "\n".join(header).encode() + bytes(body)


# ------------------------------------------------------------------------------- property-based tests


@FUZZ
@given(data=st.data())
def test_fuzz_ply(bases, data):
    ply = bases["ply"]
    mutated(ply, data.draw(ply_edits(ply.read_bytes())), lambda: load_ply(ply), assert_valid_model)


@FUZZ
@given(data=st.data())
def test_fuzz_sidecar(bases, data):
    ply = bases["ply"]
    side = sidecar_path(ply)
    text = json.dumps(data.draw(json_edits(json.loads(side.read_text())))).encode()
    if data.draw(st.integers(0, 7)) == 0:
        text = apply_bytes(text, data.draw(byte_edits))
    mutated(side, text, lambda: load_ply(ply), assert_valid_model)


@FUZZ
@given(data=st.data())
def test_fuzz_transforms(bases, data):
    path = bases["transforms"]
    text = json.dumps(data.draw(json_edits(json.loads(path.read_text())))).encode()
    if data.draw(st.integers(0, 7)) == 0:
        text = apply_bytes(text, data.draw(byte_edits))
    mutated(path, text, lambda: load_scene(path.parent, format="transforms"), assert_valid_scene)


@FUZZ
@given(data=st.data(), part=st.sampled_from(["cameras.bin", "images.bin", "points3D.bin"]))
def test_fuzz_colmap_binary(bases, data, part):
    path = bases["colmap_bin"] / part
    mutated(path, apply_bytes(path.read_bytes(), data.draw(byte_edits)),
            lambda: load_scene(path.parents[2], format="colmap"), assert_valid_scene)


@FUZZ
@given(data=st.data(), part=st.sampled_from(["cameras.txt", "images.txt", "points3D.txt"]))
def test_fuzz_colmap_text(bases, data, part):
    path = bases["colmap_txt"] / part
    mutated(path, data.draw(text_edits(path.read_bytes())),
            lambda: load_scene(path.parents[2], format="colmap"), assert_valid_scene)


def test_valid_inputs_load(bases):
    assert_valid_model(*load_ply(bases["ply"]))
    for name in ("transforms", "colmap_bin", "colmap_txt"):
        root = bases[name].parent if name == "transforms" else bases[name].parents[1]
        scene = load_scene(root)
        assert_valid_scene(scene)
        assert scene.num_views == 3


# ------------------------------------------------------------------------- known-bad cases, one each


def expect_error(read, names, cls=DataError):
    """``read()`` raises ``cls`` with a one-line message that names the file ``names``."""
    with pytest.raises(cls) as err:
        read()
    msg = str(err.value)
    assert str(names) in msg and "\n" not in msg, msg
    return msg


def edit_sidecar(side, fn):
    meta = json.loads(side.read_text())
    out = fn(meta)
    side.write_text(json.dumps(out if isinstance(out, list) else meta))


SIDECAR_CASES = {
    "a list": lambda m: [m],
    "lacks in": lambda m: m["decoder"].pop("in"),
    "lacks out": lambda m: m["decoder"].pop("out"),
    "lacks weight": lambda m: m["decoder"].pop("weight"),
    "lacks bias": lambda m: m["decoder"].pop("bias"),
    "decoder not an object": lambda m: m.update(decoder=[1, 2]),
    "weight wrong shape": lambda m: m["decoder"].update(weight=[row[:2] for row in m["decoder"]["weight"]]),
    "weight not numeric": lambda m: m["decoder"]["weight"][1].__setitem__(0, "x"),
    "bias wrong shape": lambda m: m["decoder"].update(bias=m["decoder"]["bias"][:-1]),
    "bias not numeric": lambda m: m["decoder"].update(bias=[None] * 4),
    "out not an int": lambda m: m["decoder"].update(out="4"),
    "in mismatch": lambda m: m["decoder"].update(**{"in": 5}),
    "unknown format": lambda m: m.update(format="gsplat"),
    "unknown version": lambda m: m.update(version=2),
    "version a string": lambda m: m.update(version="1"),
    "scene a number": lambda m: m.update(scene=5),
    "teacher a string": lambda m: m.update(teacher="labels"),
    "scene_options a list": lambda m: m.update(scene_options=[1]),
    "edits an object": lambda m: m.update(edits={}),
    "num_gaussians a bool": lambda m: m.update(num_gaussians=True),
}


@pytest.mark.parametrize("case", list(SIDECAR_CASES))
def test_bad_sidecar(tmp_path, case):
    ply = make_ply(tmp_path)
    edit_sidecar(sidecar_path(ply), SIDECAR_CASES[case])
    expect_error(lambda: load_ply(ply), sidecar_path(ply))


def test_sidecar_not_utf8(tmp_path):
    ply = make_ply(tmp_path)
    sidecar_path(ply).write_bytes(b'{"teacher": "\xff\xfe"}')
    expect_error(lambda: load_ply(ply), sidecar_path(ply))


def rewrite_ply(path, rename=None, keep=None, fn=None):
    """Rewrite a PLY's vertices: properties renamed (``{old: new}``), only ``keep`` rows, ``fn(arr)`` applied."""
    from plyfile import PlyData, PlyElement

    ply = PlyData.read(str(path))
    arr = ply["vertex"].data.copy()
    if rename:
        arr.dtype.names = [rename.get(n, n) for n in arr.dtype.names]
    if keep is not None:
        arr = arr[keep]
    if fn is not None:
        fn(arr)
    PlyData([PlyElement.describe(arr, "vertex")], text=False, byte_order="<", comments=ply.comments).write(str(path))


def zero_rotation(arr):
    for i in range(4):
        arr[f"rot_{i}"][2] = 0.0


PLY_CASES = {
    "semantic gap": ({"rename": {"semantic_1": "semantic_5"}}, "semantic_"),
    "f_rest gap": ({"rename": {"f_rest_4": "f_rest_11"}}, "f_rest_"),
    "no vertices": ({"keep": slice(0, 0)}, "no Gaussians"),
    "zero quaternion": ({"fn": zero_rotation}, "rotation"),
}


@pytest.mark.parametrize("case", list(PLY_CASES))
def test_bad_ply(tmp_path, case):
    ply = make_ply(tmp_path)
    kwargs, words = PLY_CASES[case]
    rewrite_ply(ply, **kwargs)
    assert words in expect_error(lambda: load_ply(ply), ply)


def test_ply_non_finite_still_refused(tmp_path):
    ply = make_ply(tmp_path)
    rewrite_ply(ply, fn=lambda a: a["opacity"].__setitem__(1, np.inf))
    expect_error(lambda: load_ply(ply), ply, CheckpointError)


def test_ply_list_property(tmp_path):
    ply = make_ply(tmp_path)
    data = ply.read_bytes()
    ply.write_bytes(data.replace(b"property float x\n", b"property list uchar float x\n", 1))
    expect_error(lambda: load_ply(ply), ply)


def no_focal(m):
    m.pop("camera_angle_x", None)
    for f in m["frames"]:
        f.pop("fl_x", None)
        f.pop("fl_y", None)


def frame1(**kw):
    return lambda m: m["frames"][1].update(**kw)


TRANSFORMS_CASES = {
    "camera_angle_x zero": lambda m: (no_focal(m), m.update(camera_angle_x=0)),
    "camera_angle_x negative": lambda m: (no_focal(m), m.update(camera_angle_x=-0.8)),
    "camera_angle_x string": lambda m: (no_focal(m), m.update(camera_angle_x="wide")),
    "camera_angle_x pi": lambda m: (no_focal(m), m.update(camera_angle_x=math.pi)),
    "camera_angle_y nan": lambda m: m.update(camera_angle_y=math.nan),
    "w with unit": lambda m: m.update(w="128px"),
    "h negative": lambda m: m.update(h=-1),
    "h negative with distortion": lambda m: m.update(h=-1, k1=0.1),
    "w float": lambda m: m.update(w=8.5),
    "w bool": lambda m: m.update(w=True),
    "file_path number": frame1(file_path=3),
    "file_path list": frame1(file_path=["images/1.png"]),
    "depth_path number": frame1(depth_path=7),
    "semantic_path object": frame1(semantic_path={"a": 1}),
    "mask_path list": frame1(mask_path=[1]),
    "depth_scale string": lambda m: m.update(depth_scale="mm"),
    "depth_scale zero": lambda m: m.update(depth_scale=0),
    "fl_x zero": frame1(fl_x=0),
    "fl_x nan": frame1(fl_x=math.nan),
    "fl_x negative": frame1(fl_x=-5.0),
    "fl_y inf": frame1(fl_x=7.0, fl_y=math.inf),
    "cx inf": lambda m: m.update(cx=math.inf),
    "cy minus inf": frame1(cy=-math.inf),
    "cx string": lambda m: m.update(cx="centre"),
    "matrix strings": frame1(transform_matrix=[["1"] * 4] * 4),
    "matrix 4x3": frame1(transform_matrix=[[1.0, 0.0, 0.0]] * 4),
    "matrix ragged": frame1(transform_matrix=[[1.0, 0.0, 0.0, 0.0], [0.0, 1.0]]),
    "matrix none": frame1(transform_matrix=None),
    "matrix huge int": frame1(transform_matrix=[[10 ** 400] * 4] * 4),
    "frames an object": lambda m: m.update(frames={"0": m["frames"][0]}),
    "frames a string": lambda m: m.update(frames="images"),
    "frame a number": lambda m: m["frames"].__setitem__(1, 3),
    "frame a list": lambda m: m["frames"].__setitem__(1, ["images/1.png"]),
    "k1 string": lambda m: m.update(k1="barrel"),
    "k2 nan": lambda m: m.update(k2=math.nan),
    "camera_model list": lambda m: m.update(camera_model=["OPENCV"]),
    "ignore_label string": lambda m: m.update(ignore_label="void"),
    "ignore_label huge": lambda m: m.update(ignore_label=2 ** 70),
    "aabb nan": lambda m: m.update(aabb=[[0, 0, math.nan], [1, 1, 1]]),
    "aabb strings": lambda m: m.update(aabb=[["a"] * 3] * 2),
    "ply_file_path number": lambda m: m.update(ply_file_path=5),
    "a list, not an object": lambda m: [m],
}


@pytest.mark.parametrize("case", list(TRANSFORMS_CASES))
def test_bad_transforms(tmp_path, case):
    path = make_transforms(tmp_path)
    meta = json.loads(path.read_text())
    out = TRANSFORMS_CASES[case](meta)
    path.write_text(json.dumps(out if isinstance(out, list) else meta))
    expect_error(lambda: load_scene(tmp_path), path)


def test_transforms_not_utf8_or_too_deep(tmp_path):
    path = make_transforms(tmp_path)
    path.write_bytes(path.read_bytes()[:-1] + b', "note": "\xff"}')
    expect_error(lambda: load_scene(tmp_path), path)
    path.write_text("[" * 100000 + "]" * 100000)
    expect_error(lambda: load_scene(tmp_path), path)


def test_transforms_distortion_too_strong(tmp_path):
    """A distortion so strong that undistorting leaves no valid pinhole camera (OpenCV gives a focal <= 0 or
    inf): a DataError naming the image, not a scene with a negative focal."""
    path = make_transforms(tmp_path)
    for k1, cy in ((17, -1), (1e300, 3.0)):
        meta = json.loads(path.read_text())
        meta.update(k1=k1, cy=cy)
        path.write_text(json.dumps(meta))
        msg = expect_error(lambda: load_scene(tmp_path), tmp_path / "images")
        assert "undistorted" in msg


def patch(path, offset: int, fmt: str, *values):
    data = bytearray(path.read_bytes())
    struct.pack_into("<" + fmt, data, offset, *values)
    path.write_bytes(bytes(data))


# offsets in the files make_colmap writes: cameras.bin: count, then camera 1 (id i, model i, w Q, h Q, fx fy cx cy d);
# images.bin: count, then image 1 (id i, q 4d, t 3d, camera i, "v0.png\0", 2D point count Q at 79);
# points3D.bin: count, then point 1 (id Q, xyz 3d, rgb 3B, error d, track length Q at 51)
COLMAP_BIN_CASES = {
    "images count": ("images.bin", 0, "Q", 2 ** 40),
    "images 2D point count": ("images.bin", 79, "Q", 2 ** 59),
    "points count": ("points3D.bin", 0, "Q", 2 ** 62),
    "points track length": ("points3D.bin", 51, "Q", 2 ** 61 + 3),
    "cameras count": ("cameras.bin", 0, "Q", 2 ** 64 - 1),
    "unknown camera model id": ("cameras.bin", 12, "i", 99),
    "camera width 0": ("cameras.bin", 16, "Q", 0),
    "camera height huge": ("cameras.bin", 24, "Q", 2 ** 62),
    "camera height not the image's": ("cameras.bin", 24, "Q", 5),
    "focal nan": ("cameras.bin", 32, "d", math.nan),
    "focal zero": ("cameras.bin", 32, "d", 0.0),
    "focal negative": ("cameras.bin", 40, "d", -7.5),
    "focal too large for float32": ("cameras.bin", 32, "d", 1e300),
    "cx inf": ("cameras.bin", 48, "d", math.inf),
    "zero quaternion": ("images.bin", 12, "dddd", 0.0, 0.0, 0.0, 0.0),
    "translation nan": ("images.bin", 44, "d", math.nan),
    "point nan": ("points3D.bin", 16, "d", math.nan),
    "point id too large": ("points3D.bin", 8, "Q", 2 ** 64 - 1),
}


@pytest.mark.parametrize("case", list(COLMAP_BIN_CASES))
def test_bad_colmap_binary(tmp_path, case):
    model_dir = make_colmap(tmp_path, binary=True)
    part, offset, fmt, *values = COLMAP_BIN_CASES[case]
    patch(model_dir / part, offset, fmt, *values)
    expect_error(lambda: load_scene(tmp_path), model_dir / part)


@pytest.mark.parametrize("part", ["cameras.bin", "images.bin", "points3D.bin"])
def test_truncated_colmap_binary(tmp_path, part):
    model_dir = make_colmap(tmp_path, binary=True)
    for cut in (1, 9, 30):
        data = (model_dir / part).read_bytes()
        (model_dir / part).write_bytes(data[:-cut])
        expect_error(lambda: load_scene(tmp_path), model_dir / part)
        (model_dir / part).write_bytes(data)


COLMAP_TXT_CASES = {
    "cameras not utf8": ("cameras.txt", lambda t: t + b"\xff\xfe\n"),
    "images not utf8": ("images.txt", lambda t: t.replace(b"v1.png", b"v1\xe9.png")),
    "points not utf8": ("points3D.txt", lambda t: b"\x80" + t),
    "camera line short": ("cameras.txt", lambda t: t.replace(b"1 PINHOLE 8 6", b"1 PINHOLE 8")),
    "camera width 0": ("cameras.txt", lambda t: t.replace(b"1 PINHOLE 8 6", b"1 PINHOLE 0 6")),
    "camera width negative": ("cameras.txt", lambda t: t.replace(b"1 PINHOLE 8 6", b"1 PINHOLE -8 6")),
    "focal nan": ("cameras.txt", lambda t: t.replace(b"1 PINHOLE 8 6 7.0", b"1 PINHOLE 8 6 nan")),
    "focal zero": ("cameras.txt", lambda t: t.replace(b"2 SIMPLE_PINHOLE 8 6 6.5", b"2 SIMPLE_PINHOLE 8 6 0")),
    "focal negative": ("cameras.txt", lambda t: t.replace(b"1 PINHOLE 8 6 7.0 7.5", b"1 PINHOLE 8 6 7.0 -7.5")),
    "unknown model": ("cameras.txt", lambda t: t.replace(b"PINHOLE 8 6 7.0", b"PINHOLEX 8 6 7.0")),
    "image id not a number": ("images.txt", lambda t: t.replace(b"\n1 ", b"\nx ", 1)),
    "image quaternion zero": ("images.txt", lambda t: first_image(t, [b"0", b"0", b"0", b"0"])),
    "image quaternion inf": ("images.txt", lambda t: first_image(t, [b"inf"])),
    "image translation nan": ("images.txt", lambda t: first_image(t, [b"1", b"0", b"0", b"0", b"nan"])),
    "point line short": ("points3D.txt", lambda t: t + b"11 1.0 2.0\n"),
    "point colour 300": ("points3D.txt", lambda t: t + b"11 1.0 2.0 3.0 300 0 0 0.0\n"),
    "point id huge": ("points3D.txt", lambda t: t + b"99999999999999999999999 1.0 2.0 3.0 1 2 3 0.0\n"),
    "point nan": ("points3D.txt", lambda t: t + b"11 nan 2.0 3.0 1 2 3 0.0\n"),
}


def first_image(text: bytes, values: list[bytes]) -> bytes:
    """images.txt with the first image's QW QX ... (the tokens after its id) replaced by ``values``."""
    lines = text.split(b"\n")
    tok = lines[1].split(b" ")
    lines[1] = b" ".join([tok[0], *values, *tok[1 + len(values):]])
    return b"\n".join(lines)


@pytest.mark.parametrize("case", list(COLMAP_TXT_CASES))
def test_bad_colmap_text(tmp_path, case):
    model_dir = make_colmap(tmp_path, binary=False)
    part, fn = COLMAP_TXT_CASES[case]
    data = (model_dir / part).read_bytes()
    new = fn(data)
    assert new != data, "the case did not change the file"
    (model_dir / part).write_bytes(new)
    expect_error(lambda: load_scene(tmp_path), model_dir / part)

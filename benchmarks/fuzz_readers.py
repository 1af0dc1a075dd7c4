"""Fuzz every file reader: random mutations of a small valid input, each one read in-process, one table.

Readers: ``ply`` (a 3DGS PLY, :func:`dff_gs.io.ply.load_ply`), ``sidecar`` (its ``X.dff.json``), ``transforms``
(a nerfstudio / Blender ``transforms.json`` scene), ``colmap_bin`` and ``colmap_txt`` (COLMAP ``cameras``,
``images``, ``points3D`` models). Each starts from a valid file written here (a tiny scene of three 8x6 images,
a 6-Gaussian PLY) and applies ``--n`` random mutations of one file: byte flips, truncation, insertion, integers
written over counts; JSON values replaced by strings / NaN / inf / 0 / negatives / lists / None / nested junk, or
keys deleted; COLMAP text tokens replaced, lines deleted or repeated, bytes that are not UTF-8.

Configs, through train.py's own path up to the first work (:func:`run_config`: the command line parsed, the
config resolved, ``validate_config``, as :func:`dff_gs.engine.pipeline.run` starts; nothing trains): ``config_yaml``
(a ``--config`` preset: values replaced by junk, huge or non-finite numbers, wrong types, unknown keys, duplicate
keys, another shape, deep nesting, alias bombs, binary bytes) and ``config_args`` (a ``key=value`` command line:
unknown keys, bad / huge / NaN / inf values, keys given twice, flags with bad values). Camera values, through the
scene reading of a training run (:func:`read_scene_as_training`: ``load_scene`` and its checks):
``cameras_transforms`` and ``cameras_colmap`` (text) with an intrinsic or a pose entry set to a huge, tiny, zero,
negative or non-finite value, a frame / image listed twice, two images of one name. For these, ``loaded`` means
accepted and valid, and ``invalid`` also counts what no check bounded (:func:`check_config`,
:func:`check_cameras`: a non-finite or >= 2^31 config number, an implausible focal length or camera centre, a
duplicate accepted without a word); ``usage`` is argparse's own two-line error for a bad option (exit 2).

Every outcome is one of: ``loaded`` (and the data is valid: finite, positive focal, N > 0 ...), ``invalid``
(loaded, but the data is not valid: silently wrong), ``DffError`` (a clean error), a generic exception (by type),
a hang (past ``--timeout`` seconds; ``signal.setitimer`` interrupts it), or a crash (the process killed, e.g. by a
native library's abort: each reader's cases run in a child process, restarted after one). The target: no invalid
loads, no generic exceptions, no hangs, no crashes. Exit status 1 when there is any of those (every generic
exception is listed, with the input that raised it and where). Case ``i`` of a
reader draws its mutation from ``(seed, reader, i)`` alone, so a run is reproducible. The child processes run under
an address-space limit (``--mem_gb``, 8 by default) so that a huge allocation fails fast instead of swapping.

    python benchmarks/fuzz_readers.py [--n 400] [--seed 0] [--timeout 10] [--readers config_yaml,cameras_colmap]
                                      [--show 3]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import os
import random
import resource
import signal
import struct
import sys
import tempfile
import time
import traceback
import warnings
from collections import Counter
from pathlib import Path

import yaml


sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from tests.examples import make_colmap, make_ply, make_transforms  # noqa: E402

FILE_READERS = ("ply", "sidecar", "transforms", "colmap_bin", "colmap_txt")
CONFIG_READERS = ("config_yaml", "config_args")
CAMERA_READERS = ("cameras_transforms", "cameras_colmap")
READERS = FILE_READERS + CONFIG_READERS + CAMERA_READERS
JUNK_VALUES = ["wide", "128px", "", "mm", "nan", float("nan"), float("inf"), -float("inf"), 0, 0.0, -1, -0.5, 1e308,
               -1e308, 5e-324, 2 ** 63, -(2 ** 63), 2 ** 31, True, False, None, [], [1, 2], [[1, 0], [0, 1]],
               [[None] * 4] * 4, [["x"] * 4] * 4, {}, {"a": [None, {"b": float("nan")}]}, [float("nan")] * 4,
               "\u00e9\u0000", 17, 3.5, {"in": 1}]
JUNK_TOKENS = ["nan", "inf", "-inf", "0", "-1", "-0.0", "1e400", "abc", "99999999999999999999", "1.5", "PINHOLE",
               "FOV", "OPENCV", "3", "#", "1e-320", "0x10", "\u00e9"]
INTERESTING_INTS = [0, 1, 2, 3, 7, 255, 0x7FFFFFFF, 0xFFFFFFFF, 2 ** 40, 2 ** 63 - 1, 2 ** 64 - 1]
MAGNITUDES = [1e30, -1e30, 1e38, 1e300, -1e300, 1e10, 1e-30, 0.0, -0.0, -1.0, -7.0, float("nan"), float("inf"),
              -float("inf"), 2 ** 64]
"""Camera values written into a scene: huge, tiny, zero, negative, not finite."""
CONFIG_JUNK = ["", "nan", "NaN", ".nan", "inf", "-inf", ".inf", "-.inf", "1e400", "-1e400", "1e308", "9" * 400,
               str(2 ** 70), str(2 ** 31), "-1", "0", "1.5", "-0.0", "true", "false", "none", "null", "~", "[1, 2",
               "[1, 2, 3]", "[]", "{a: 1}", "abc", "1_000", "0x10", "0o17", "\u0661\u0662", "x" * 10000, "\u00e9",
               "a=b", " 5 ", "5 5", "1e-320", "cuda:99", "cuda:-1", "gsplat", "cpu", "!!python/object:os.system {}",
               "&a [*a]", "*undefined", "'quoted'", "\"5\"", "1e18", "-9223372036854775809", "12:30", "2001-12-14",
               "/nonexistent/dir", "..", "-", "=", "[nan, nan, nan]", "[1e400, 0, 0]", "[0.5, 0.5]"]
"""Values written into configs (YAML scalars as the command line and preset files spell them)."""
CONFIG_TYPOS = ["train.stepz", "train", "train.", ".steps", "x.y.z", "train.steps.x", "", " ", "Train.Steps",
                "model.feature-dim", "data..path", "__class__", "train.__class__", "train.__dict__", "model.0",
                "\u00e9t\u00e9", "steps", "data.path.x", "nerf"]
BASE_CONFIG = {"train": {"steps": 10, "device": "cpu", "log": "none"}, "model": {"feature_dim": 8, "sh_degree": 1},
               "data": {"test_every": 5, "background": [1.0, 1.0, 1.0]}, "strategy": {"max_gaussians": 5000},
               "teacher": {"name": "labels", "noise": 0.1}}
"""The valid preset the YAML mutations start from (the key=value lists spell the same settings)."""


class Hang(BaseException):
    """Raised by the timer inside a reader that ran past its time (a BaseException: no reader catches it)."""


# ------------------------------------------------------------------------------------------ valid inputs


# -------------------------------------------------------------------------------------------- mutations


def mutate_bytes(data: bytes, rng: random.Random, lo: int = 0) -> bytes:
    """One to three byte-level edits at or after offset ``lo``: flips, truncation, insertion, deletion,
    a span repeated, an interesting integer (a count) written over 4 or 8 bytes."""
    b = bytearray(data)
    for _ in range(rng.randint(1, 3)):
        n = len(b)
        pos = rng.randint(min(lo, n), n)
        op = rng.choice(["flip", "flip", "truncate", "insert", "delete", "repeat", "int", "int"])
        if op == "flip" and pos < n:
            for _ in range(rng.randint(1, 4)):
                b[rng.randint(min(lo, n - 1), n - 1)] = rng.randrange(256)
        elif op == "truncate":
            del b[pos:]
        elif op == "insert":
            b[pos:pos] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 16)))
        elif op == "delete":
            del b[pos:pos + rng.randint(1, 16)]
        elif op == "repeat":
            b[pos:pos] = b[pos:pos + rng.randint(1, 64)]
        elif op == "int":
            size = rng.choice([4, 8])
            val = rng.choice(INTERESTING_INTS + [rng.getrandbits(8 * size)]) % (1 << (8 * size))
            b[pos:pos + size] = val.to_bytes(size, "little")
    return bytes(b)


def _json_path(obj, rng: random.Random) -> tuple:
    """A random walk down from the root (each key of an object as likely as any other, however big its value):
    the path of the value it stops at."""
    path = ()
    while isinstance(obj, (dict, list)) and obj and (not path or rng.random() < 0.6):
        k = rng.choice(list(obj)) if isinstance(obj, dict) else rng.randrange(len(obj))
        path, obj = path + (k,), obj[k]
    return path


def mutate_json(obj, rng: random.Random):
    """One to three edits of a JSON value: a value replaced by junk, a key or item deleted, a junk key added."""
    obj = json.loads(json.dumps(obj))
    for _ in range(rng.randint(1, 3)):
        path = _json_path(obj, rng)
        junk = json.loads(json.dumps(rng.choice(JUNK_VALUES)))
        if not path:
            obj = junk if rng.random() < 0.1 else obj
            continue
        parent = obj
        for k in path[:-1]:
            parent = parent[k]
        op = rng.choice(["replace", "replace", "replace", "delete", "add"])
        if op == "replace":
            parent[path[-1]] = junk
        elif op == "delete":
            del parent[path[-1]]
        elif isinstance(parent, dict):
            parent[rng.choice(["fl_x", "w", "h", "cx", "camera_angle_y", "k4", "decoder", "version", "format",
                               "mask_path", "ply_file_path", "aabb", "ignore_label", "x"])] = junk
        else:
            parent.insert(rng.randint(0, len(parent)), junk)
    return obj


def json_text(obj, rng: random.Random) -> bytes:
    """A mutated JSON object as bytes; now and then with byte-level damage too."""
    text = json.dumps(mutate_json(obj, rng)).encode()
    return mutate_bytes(text, rng) if rng.random() < 0.15 else text


def mutate_text(data: bytes, rng: random.Random) -> bytes:
    """COLMAP text: tokens replaced, lines deleted / repeated / swapped, or bytes that are not UTF-8."""
    if rng.random() < 0.15:
        return mutate_bytes(data, rng)
    lines = data.decode().split("\n")
    for _ in range(rng.randint(1, 3)):
        i = rng.randrange(len(lines))
        op = rng.choice(["token", "token", "token", "delete", "repeat", "swap", "latin1"])
        tok = lines[i].split(" ")
        if op == "token" and tok:
            tok[rng.randrange(len(tok))] = rng.choice(JUNK_TOKENS)
            lines[i] = " ".join(tok)
        elif op == "delete":
            del lines[i]
        elif op == "repeat":
            lines.insert(i, lines[i])
        elif op == "swap":
            j = rng.randrange(len(lines))
            lines[i], lines[j] = lines[j], lines[i]
        else:
            lines[i] = lines[i] + "\udcff"
        if not lines:
            lines = [""]
    return "\n".join(lines).encode("utf-8", errors="surrogateescape")


def mutate_ply(data: bytes, rng: random.Random) -> bytes:
    """A PLY: header edits (vertex count, a property renamed / dropped / retyped, the format), special floats
    (NaN, inf, all-zero rotations) written into the body, or byte-level damage."""
    end = data.index(b"end_header\n") + len(b"end_header\n")
    header, body = data[:end].decode().split("\n"), data[end:]
    op = rng.choice(["count", "prop", "prop", "format", "body", "zero_rot", "bytes", "bytes_body"])
    props = [i for i, ln in enumerate(header) if ln.startswith("property")]
    if op == "count":
        i = next(i for i, ln in enumerate(header) if ln.startswith("element vertex"))
        header[i] = f"element vertex {rng.choice([0, 1, 5, 7, 100, 2 ** 31, 2 ** 40, -1])}"
    elif op == "prop":
        i = rng.choice(props)
        kind = rng.choice(["rename", "drop", "type", "list"])
        name = header[i].split()[-1]
        if kind == "rename":
            new = rng.choice(["semantic_7", "semantic_2", "f_rest_99", "rot_9", "opacity", "x", "junk"])
            header[i] = header[i].replace(name, new)
        elif kind == "drop":
            del header[i]
        elif kind == "type":
            header[i] = f"property {rng.choice(['double', 'uchar', 'int', 'short'])} {name}"
        else:
            header[i] = f"property list uchar float {name}"
    elif op == "format":
        i = next(i for i, ln in enumerate(header) if ln.startswith("format"))
        header[i] = rng.choice(["format ascii 1.0", "format binary_big_endian 1.0", "format binary_little_endian 2"])
    elif op in ("body", "zero_rot"):
        n_props = len(props)
        rows = len(body) // (4 * n_props)
        arr = bytearray(body)
        row = rng.randrange(max(rows, 1))
        names = [header[i].split()[-1] for i in props]
        cols = ([names.index(f"rot_{j}") for j in range(4)] if op == "zero_rot"
                else [rng.randrange(n_props)])
        val = 0.0 if op == "zero_rot" else rng.choice([float("nan"), float("inf"), -float("inf"), 1e38, 0.0])
        for c in cols:
            struct.pack_into("<f", arr, 4 * (row * n_props + c), val)
        body = bytes(arr)
    elif op == "bytes":
        return mutate_bytes(data, rng)
    else:
        return mutate_bytes(data, rng, lo=end)
    return "\n".join(header).encode() + body


def config_keys() -> list[str]:
    """Every key of the training config, dotted (``train.steps``, ...)."""
    from dff_gs.core.config import to_dict
    from dff_gs.train.config import Config

    def leaves(d: dict, prefix: str = "") -> list[str]:
        return [k for name, v in d.items()
                for k in (leaves(v, f"{prefix}{name}.") if isinstance(v, dict) else [f"{prefix}{name}"])]

    return leaves(to_dict(Config()))


def _set(tree: dict, key: str, value) -> None:
    *sections, name = key.split(".")
    for part in sections:
        tree = tree.setdefault(part, {}) if isinstance(tree.get(part, {}), dict) else tree
    tree[name] = value


def _yaml_bomb(rng: random.Random, where: str) -> str:
    """A billion-laughs document: anchors each listing the previous one 9 or 10 times, the last named at
    ``where`` (a key), the anchors defined before it under a known or an unknown key."""
    levels, width = rng.randint(3, 9), rng.choice([9, 10])
    anchors = ["&a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    anchors += [f"&a{i} [{', '.join([f'*a{i - 1}'] * width)}]" for i in range(1, levels + 1)]
    holder = rng.choice(["data:\n  background", "anchors", "train:\n  export"])
    return f"{holder}: [{', '.join(anchors)}]\n{where}: *a{levels}\n"


def _deep_yaml(rng: random.Random) -> str:
    depth = rng.choice([50, 1000, 10000, 100000])
    kind = rng.choice(["list", "map", "block"])
    if kind == "list":
        return "train:\n  steps: " + "[" * depth + "]" * depth + "\n"
    if kind == "map":
        return "model: " + "{a: " * depth + "1" + "}" * depth + "\n"
    depth = min(depth, 3000)
    return "".join(f"{' ' * i}k{i}:\n" for i in range(depth)) + " " * depth + "v: 1\n"


def mutate_yaml(data: bytes, rng: random.Random) -> bytes:
    """A YAML preset: values replaced by junk, huge or non-finite numbers, wrong types; unknown keys; duplicate
    keys; the shape changed (a list, a scalar, several documents, tags); deep nesting; an alias bomb; bytes that
    are not text, or byte-level damage."""
    op = rng.choice(["value", "value", "huge", "key", "dup", "dup", "shape", "deep", "bomb", "binary", "bytes",
                     "text"])
    if op == "bytes":
        return mutate_bytes(data, rng)
    if op == "binary":
        return rng.choice([bytes(rng.randrange(256) for _ in range(rng.randint(1, 512))),
                           b"\x89PNG\r\n\x1a\n" + bytes(rng.randrange(256) for _ in range(64)), b"\x00" * 64,
                           b"\xff\xfe" + data.decode().encode("utf-16-le"), b"\xe9t\xe9: 1\n" + data])
    if op == "deep":
        return _deep_yaml(rng).encode()
    if op == "bomb":
        return _yaml_bomb(rng, rng.choice(["train:\n  steps", "model", "data:\n  background", "x", "train:\n  device",
                                           "teacher:\n  name"])).encode()
    tree = json.loads(json.dumps(BASE_CONFIG))
    keys = config_keys()
    raw, extra = {}, []  # placeholder -> YAML text written verbatim; lines appended
    for _ in range(rng.randint(1, 3)):
        key = rng.choice(keys)
        if op == "value" and rng.random() < 0.3:
            _set(tree, key, json.loads(json.dumps(rng.choice(JUNK_VALUES))))
        elif op in ("value", "huge"):
            token = f"__raw{len(raw)}__"
            raw[token] = rng.choice(CONFIG_JUNK if op == "value" else
                                    ["1e400", "-1e400", ".nan", ".inf", "-.inf", "9" * 400, "1e308", str(2 ** 64),
                                     "1e18", "1.0e+30"])
            _set(tree, key, token)
        elif op == "dup":  # a key of the preset given again: in its section, or in a second copy of the section
            section = rng.choice(list(BASE_CONFIG))
            name = rng.choice(list(BASE_CONFIG[section]) + [k.split(".")[1] for k in keys if k.startswith(section)])
            value = rng.choice(CONFIG_JUNK[:24] + ["1", "2", "0.5", "cpu", "none", "[0, 0, 0]"])
            if rng.random() < 0.5:
                extra.append(f"{section}:\n  {name}: {value}")
            else:
                token = f"__raw{len(raw)}__"
                raw[token] = f"{value}\n  {name}: {rng.choice(['1', '3', 'cpu', '0.5'])}"
                tree[section][name] = token
        elif op == "key":
            choice = rng.randrange(5)
            if choice == 0:
                _set(tree, rng.choice(CONFIG_TYPOS) or "x", 1)
            elif choice == 1:  # a section given as a value
                tree[rng.choice(list(BASE_CONFIG))] = rng.choice([5, "train", None, [1, 2], True])
            elif choice == 2:  # a value given as a section
                _set(tree, key, {"x": 1})
            elif choice == 3:
                extra.append(rng.choice(["1: 2", "? [a, b]\n: 1", "null: 3", "true: x", "~: 1", "1.5: x"]))
            else:
                tree[rng.choice(["train", "model"])][rng.choice(["", " ", "0", "steps ", "STEPS"])] = 1
        elif op == "shape":
            return rng.choice([b"- 1\n- 2\n", b"42\n", b"", b"---\n", b"~\n", b"train: {steps: 5}\n---\nmodel: {}\n",
                               b"!!python/object/apply:os.system [echo hi]\n", b"train: !!binary aGk=\n",
                               b"train: &a {steps: *a}\n", b"train: !!set {steps}\n", b"%YAML 9.9\n---\ntrain: {}\n",
                               b"train:\n\tsteps: 5\n", b'"just a string"\n', b"train: [steps, 5]\n"])
        else:  # text: a BOM, CRLF, a NUL, a 1 MB value, tabs
            base = yaml.safe_dump(tree, sort_keys=False)
            return rng.choice(["\ufeff" + base, base.replace("\n", "\r\n"), base.replace("steps", "st\x00eps"),
                               base + f"out: {'x' * 1_000_000}\n", base.replace("  ", "\t")]).encode()
    text = yaml.safe_dump(tree, sort_keys=False, allow_unicode=True)
    for token, value in raw.items():
        text = text.replace(f"'{token}'", value).replace(token, value)
    return (text + "".join(line + "\n" for line in extra)).encode("utf-8", errors="surrogatepass")


def base_args() -> list[str]:
    """The key=value list of :data:`BASE_CONFIG`."""
    return [f"{s}.{k}={json.dumps(v) if isinstance(v, list) else v}" for s, d in BASE_CONFIG.items()
            for k, v in d.items()]


def mutate_args(data: bytes, rng: random.Random) -> bytes:
    """A train.py command line (JSON list of its arguments): unknown keys, bad / huge / non-finite values, a key
    given twice, a flag with a bad value, an argument without ``=``."""
    args = json.loads(data)
    keys = config_keys()
    for _ in range(rng.randint(1, 3)):
        op = rng.choice(["value", "value", "value", "huge", "unknown", "dup", "dup", "flag", "noequals"])
        key = rng.choice(keys)
        if op == "value":
            args.insert(rng.randint(0, len(args)), f"{key}={rng.choice(CONFIG_JUNK)}")
        elif op == "huge":
            value = rng.choice(["1e400", "-1e400", "nan", "inf", "-inf", "1e308", "9" * 400, str(2 ** 64), "1e18",
                                str(2 ** 31), "1e30"])
            args.append(f"{key}={value}")
        elif op == "unknown":
            args.append(f"{rng.choice(CONFIG_TYPOS)}={rng.choice(['1', 'x', ''])}")
        elif op == "dup":
            i = rng.randrange(len(args)) if args and rng.random() < 0.5 else None
            again = (args[i].split("=", 1)[0] if i is not None and "=" in args[i] else key)
            args.append(f"{again}={rng.choice(CONFIG_JUNK[:24] + ['1', '2', '0.5', 'cpu', 'none'])}")
        elif op == "flag":
            flag = rng.choice(["--steps", "--device", "--backend", "--teacher", "--backbone", "--export", "--up",
                               "--lift-steps", "--config", "--resume", "--init-ply"])
            args += [flag, rng.choice(CONFIG_JUNK[:30] + ["/nonexistent/run", "/dev/null", "/", "/proc/self/mem"])]
        else:
            args.append(rng.choice(["train.steps", "steps:5", "train.steps 5", "x", "--", "-", "--steps=", "--nope"]))
    return json.dumps(args).encode()


def mutate_cameras_json(data: bytes, rng: random.Random) -> bytes:
    """A transforms.json scene's cameras: an intrinsic (global or a frame's), a translation, a rotation entry or a
    whole pose set to a huge / tiny / zero / negative / non-finite value; a frame listed twice; two frames naming
    one image (with and without its extension)."""
    meta = json.loads(data)
    frames = meta["frames"]
    for _ in range(rng.randint(1, 2)):
        op = rng.choice(["intrinsic", "intrinsic", "translation", "translation", "rotation", "pose", "dup_frame",
                         "dup_name"])
        frame = rng.choice(frames)
        if op == "intrinsic":
            where = meta if rng.random() < 0.5 else frame
            where[rng.choice(["fl_x", "fl_y", "cx", "cy", "camera_angle_x", "camera_angle_y", "w", "h"])] = (
                rng.choice(MAGNITUDES))
        elif op == "translation":
            frame["transform_matrix"][rng.randrange(3)][3] = rng.choice(MAGNITUDES)
        elif op == "rotation":
            frame["transform_matrix"][rng.randrange(3)][rng.randrange(3)] = rng.choice(MAGNITUDES)
        elif op == "pose":
            scale = rng.choice(MAGNITUDES)
            frame["transform_matrix"] = [[v * scale for v in row[:3]] + [row[3]] for row in frame["transform_matrix"]]
        elif op == "dup_frame":
            frames.insert(rng.randint(0, len(frames)), json.loads(json.dumps(frame)))
        else:
            other = rng.choice([f for f in frames if f is not frame] or frames)
            name = frame["file_path"]
            other["file_path"] = rng.choice([name, name.rsplit(".", 1)[0] if "." in name else name + ".png"])
    return json.dumps(meta, allow_nan=True).encode()


def _number_text(rng: random.Random) -> str:
    v = rng.choice(MAGNITUDES)
    return repr(v) if isinstance(v, float) else str(v)


def mutate_cameras_colmap(path: Path, data: bytes, rng: random.Random) -> bytes:
    """A COLMAP text model's cameras: a camera's size or a parameter (focal, principal point) or an image's
    rotation / translation set to a huge / tiny / zero / negative / non-finite value; an image listed twice (its
    lines repeated, or again under a new id); two images of one name."""
    lines = data.decode().rstrip("\n").split("\n")
    rows = lambda: [i for i, ln in enumerate(lines) if not ln.startswith("#")]  # noqa: E731
    if path.name == "cameras.txt":
        i = rng.choice(rows())
        tok = lines[i].split(" ")
        k = rng.randrange(2, len(tok))
        sizes = ["0", "-8", str(2 ** 64), "99999999"]  # width / height: whole numbers
        tok[k] = rng.choice(sizes) if k < 4 and rng.random() < 0.5 else _number_text(rng)
        lines[i] = " ".join(tok)
        return ("\n".join(lines) + "\n").encode()
    for _ in range(rng.randint(1, 2)):
        heads = rows()[::2]  # images.txt: an image's line, then its points' line
        i = rng.choice(heads)
        tok = lines[i].split(" ")
        op = rng.choice(["pose", "pose", "dup_lines", "dup_new_id", "dup_name"])
        if op == "pose":
            tok[rng.randrange(1, 8)] = _number_text(rng)
            lines[i] = " ".join(tok)
        elif op == "dup_lines":
            lines[i:i] = lines[i:i + 2]
        elif op == "dup_new_id":
            lines += [" ".join([str(100 + i)] + tok[1:]), lines[i + 1]]
        else:
            j = rng.choice(heads)
            other = lines[j].split(" ")
            other[-1] = tok[-1]
            lines[j] = " ".join(other)
    return ("\n".join(lines) + "\n").encode()


# ---------------------------------------------------------------------------------------- validity checks


def check_scene(scene) -> str | None:
    """Why a loaded scene is not valid data (None when it is)."""
    import torch

    from dff_gs.core.utils import as_rgb

    cams, imgs = scene.cameras, as_rgb(scene.images)
    if imgs.ndim != 4 or imgs.shape[0] == 0 or imgs.shape[-1] != 3:
        return f"images of shape {list(imgs.shape)}"
    if not bool(torch.isfinite(imgs).all()) or float(imgs.min()) < 0 or float(imgs.max()) > 1:
        return "image values outside [0, 1]"
    if len(cams) != imgs.shape[0] or cams.width != imgs.shape[2] or cams.height != imgs.shape[1]:
        return "camera count / size differ from the images"
    K = cams.Ks
    if not (bool(torch.isfinite(K).all()) and bool(torch.isfinite(cams.viewmats).all())):
        return "non-finite intrinsics or poses"
    if not (bool((K[:, 0, 0] > 0).all()) and bool((K[:, 1, 1] > 0).all())):
        return f"non-positive focal {K[:, 0, 0].tolist()} {K[:, 1, 1].tolist()}"
    for name in ("bounds", "points", "point_colors", "depths"):
        t = getattr(scene, name)
        if t is not None and not bool(torch.isfinite(t).all()):
            return f"non-finite {name}"
    return None


def check_ply(result) -> str | None:
    import torch

    model, meta = result
    if not isinstance(meta, dict):
        return f"metadata is a {type(meta).__name__}"
    if model.num_gaussians <= 0:
        return "no Gaussians"
    for k, v in model.params.items():
        if not bool(torch.isfinite(v).all()):
            return f"non-finite {k}"
    if bool((model.params["quats"].norm(dim=-1) == 0).any()):
        return "an all-zero quaternion"
    dec = model.decoder
    if dec is not None and (dec.weight.shape != (dec.out_features, model.feature_dim) or dec.out_features < 1
                            or not bool(torch.isfinite(dec.weight).all() and torch.isfinite(dec.bias).all())):
        return "a decoder of the wrong shape or with non-finite values"
    return None


def yaml_duplicates(text: bytes) -> list[str]:
    """The keys a YAML document gives twice in one mapping (dotted), by its node tree; [] when it does not read."""
    found = []

    def walk(node, prefix: str, depth: int) -> None:
        if depth > 50:
            return
        if isinstance(node, yaml.MappingNode):
            seen = set()
            for k, v in node.value:
                name = f"{prefix}{k.value}" if isinstance(k, yaml.ScalarNode) else f"{prefix}?"
                if name in seen:
                    found.append(name)
                seen.add(name)
                walk(v, name + ".", depth + 1)

    try:
        walk(yaml.compose(text.decode("utf-8"), Loader=yaml.SafeLoader), "", 0)
    except (yaml.YAMLError, UnicodeDecodeError, RecursionError, ValueError):
        return []
    return found


def args_duplicates(argv: list[str]) -> list[str]:
    """The ``key=value`` keys a command line gives twice."""
    keys = [a.split("=", 1)[0].strip() for a in argv if "=" in a and not a.startswith("-")]
    return sorted({k for k in keys if keys.count(k) > 1})


def run_config(argv: list[str]) -> tuple:
    """``train.py argv`` up to the first work, as :func:`dff_gs.engine.pipeline.run` starts: the command line parsed,
    the config resolved (preset, overrides, a resumed run's own) and checked, ``batch_views`` resolved, the method
    chosen. (config, what it printed or warned)."""
    from dff_gs.cli.train import build_parser, resolve_config
    from dff_gs.core.distributed import env_world_size, resolve_batch_views
    from dff_gs.engine.pipeline import method_of
    from dff_gs.engine.validate import validate_config

    said = io.StringIO()
    with contextlib.redirect_stdout(said), contextlib.redirect_stderr(said), \
            warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cfg = resolve_config(build_parser().parse_intermixed_args(argv))
        validate_config(cfg)
        resolve_batch_views(cfg, env_world_size())
        method_of(cfg)
    return cfg, said.getvalue() + "".join(f"{w.category.__name__}: {w.message}\n" for w in caught)


def check_config(out) -> str | None:
    """Why an accepted config is not valid: a number that is not finite or a count of 2^31 or more that no
    bound refused (a later allocator / overflow traceback, or a run that never ends), or a key given twice without
    a word."""
    from dff_gs.core.config import to_dict

    cfg, said, dups = out

    def leaves(d: dict, prefix: str = ""):
        for k, v in d.items():
            yield from leaves(v, f"{prefix}{k}.") if isinstance(v, dict) else [(f"{prefix}{k}", v)]

    for key, value in leaves(to_dict(cfg)):
        for v in value if isinstance(value, list) else [value]:
            if isinstance(v, float) and not math.isfinite(v):
                return f"{key}={v}: accepted"
            if isinstance(v, (int, float)) and not isinstance(v, bool) and abs(v) >= 2 ** 31:
                return f"{key}={v:.4g}: accepted, no bound refuses it"
    silent = [k for k in dups if k.rsplit(".", 1)[-1] not in said]
    return f"{silent[0]} given twice: accepted without a word" if silent else None


def read_scene_as_training(path: Path) -> tuple:
    """The scene at ``path`` as a training run reads it (:func:`dff_gs.engine.common.load_run_scene`: the
    format's loader and its checks, the training split): (scene, what it printed or warned)."""
    from dff_gs.core.config import apply_overrides
    from dff_gs.engine.common import load_run_scene
    from dff_gs.train.config import Config

    cfg = apply_overrides(Config(), [f"data.path={path}", "train.device=cpu"])
    said = io.StringIO()
    with contextlib.redirect_stdout(said), contextlib.redirect_stderr(said), \
            warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        scene = load_run_scene(cfg, progress=False)[1]
    return scene, said.getvalue() + "".join(f"{w.category.__name__}: {w.message}\n" for w in caught)


PLAUSIBLE_FOCAL = (1e-3, 1e6)
"""Focal lengths, in units of the image's longer side, that a camera can have (the fuzz writes 1e-30 .. 1e300)."""
PLAUSIBLE_CENTRE = 1e8
"""A camera centre farther than this from the origin is a broken value (the example scenes' are ~4 away)."""


def check_cameras(out) -> str | None:
    """Why a scene read as training reads it is not valid: :func:`check_scene`, a focal length or camera centre
    of an implausible magnitude (:data:`PLAUSIBLE_FOCAL`, :data:`PLAUSIBLE_CENTRE`), an image listed twice
    without a word."""
    import torch

    scene, said = out
    why = check_scene(scene)
    if why:
        return why
    cams, side = scene.cameras, max(scene.width, scene.height)
    focal = torch.cat([cams.Ks[:, 0, 0], cams.Ks[:, 1, 1]]).double() / side
    if not bool(((focal >= PLAUSIBLE_FOCAL[0]) & (focal <= PLAUSIBLE_FOCAL[1])).all()):
        return f"focal lengths of {focal.min().item():.3g} .. {focal.max().item():.3g} image sides accepted"
    R, t = cams.viewmats[:, :3, :3].double(), cams.viewmats[:, :3, 3].double()
    centres = -(R.transpose(1, 2) @ t[..., None])[..., 0]
    if not bool(torch.isfinite(centres).all()) or float(centres.abs().max()) > PLAUSIBLE_CENTRE:
        return f"a camera centre {float(centres.abs().max()):.3g} from the origin accepted"
    names = [Path(n).stem for n in scene.image_names]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice and not any(n in said for n in twice):
        return f"image {twice[0]} listed twice: loaded without a word"
    return None


# -------------------------------------------------------------------------------------------- the runs


def targets(base: Path):
    """Per reader: (the files a mutation may edit, the mutation of one file's bytes, the reader, the check)."""
    from dff_gs.data import colmap, transforms
    from dff_gs.io.ply import load_ply

    ply = make_ply(base / "ply")
    tjson = make_transforms(base / "transforms")
    cbin = make_colmap(base / "colmap_bin", binary=True)
    ctxt = make_colmap(base / "colmap_txt", binary=False)
    side = ply.with_name("point_cloud.dff.json")
    preset, argv = base / "config" / "preset.yaml", base / "config" / "args.json"
    preset.parent.mkdir()
    preset.write_text(yaml.safe_dump(BASE_CONFIG, sort_keys=False))
    argv.write_text(json.dumps(base_args()))
    out = ["--out", str(base / "config" / "run")]
    cam_json = make_transforms(base / "cameras_transforms", w=16, h=12)  # trainable: SSIM's 11-px window fits
    cam_txt = make_colmap(base / "cameras_colmap", binary=False, w=16, h=12)
    return {
        "ply": ([ply], lambda p, d, r: mutate_ply(d, r), lambda: load_ply(ply), check_ply),
        "sidecar": ([side], lambda p, d, r: json_text(json.loads(d), r), lambda: load_ply(ply), check_ply),
        "transforms": ([tjson], lambda p, d, r: json_text(json.loads(d), r),
                       lambda: transforms.load(tjson.parent), check_scene),
        "colmap_bin": ([cbin / f for f in ("cameras.bin", "images.bin", "points3D.bin")],
                       lambda p, d, r: mutate_bytes(d, r), lambda: colmap.load(cbin.parent.parent), check_scene),
        "colmap_txt": ([ctxt / f for f in ("cameras.txt", "images.txt", "points3D.txt")],
                       lambda p, d, r: mutate_text(d, r), lambda: colmap.load(ctxt.parent.parent), check_scene),
        "config_yaml": ([preset], lambda p, d, r: mutate_yaml(d, r),
                        lambda: (*run_config(["--config", str(preset), *out]), yaml_duplicates(preset.read_bytes())),
                        check_config),
        "config_args": ([argv], lambda p, d, r: mutate_args(d, r),
                        lambda: (*run_config([*json.loads(argv.read_text()), *out]),
                                 args_duplicates(json.loads(argv.read_text()))), check_config),
        "cameras_transforms": ([cam_json], lambda p, d, r: mutate_cameras_json(d, r),
                               lambda: read_scene_as_training(cam_json.parent), check_cameras),
        "cameras_colmap": ([cam_txt / f for f in ("cameras.txt", "images.txt")], mutate_cameras_colmap,
                           lambda: read_scene_as_training(cam_txt.parent.parent), check_cameras),
    }


def _alarm(signum, frame):
    raise Hang()


def where_raised(err: BaseException) -> str:
    """``file:line`` where ``err`` was raised, and the last line of dff_gs that led there when that differs."""
    frames = traceback.extract_tb(err.__traceback__)
    last = frames[-1]
    ours = [f for f in frames if "/dff_gs/" in f.filename.replace("\\", "/")]
    text = f"{Path(last.filename).name}:{last.lineno}"
    if ours and ours[-1] is not last:
        text += f" via {ours[-1].filename.rsplit('/dff_gs/', 1)[-1]}:{ours[-1].lineno}"
    return text


def run_case(read, check, timeout: float) -> tuple[str, str]:
    """(outcome, detail): outcome is loaded | invalid | DffError | hang | the exception's type name."""
    from dff_gs.core.errors import DffError

    signal.setitimer(signal.ITIMER_REAL, timeout)
    try:
        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out = read()
        signal.setitimer(signal.ITIMER_REAL, 0)
        why = check(out)
        return ("invalid", why) if why else ("loaded", "")
    except Hang:
        return "hang", f"over {timeout} s"
    except DffError as err:
        return "DffError", str(err)
    except SystemExit as err:  # argparse's own usage line and error line (a bad option), exit status 2
        return ("usage", "") if err.code == 2 else ("SystemExit", f"exit status {err.code!r}")
    except BaseException as err:  # what we count
        if isinstance(err, KeyboardInterrupt):
            raise
        message = " ".join(str(err).split())
        return type(err).__name__, f"{message:.120} ({where_raised(err)})"
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)


def what_changed(original: bytes, data: bytes, limit: int = 200) -> str:
    """The part of a mutated input that differs from the original: the lines (a JSON list: the items) it does not
    share with it, else its start; at most ``limit`` characters of their repr."""
    try:
        before, after = json.loads(original), json.loads(data)
        parts = [a for a in after if a not in before] if isinstance(after, list) else None
    except (ValueError, UnicodeDecodeError, TypeError):
        parts = None
    if parts is None:
        known = set(original.split(b"\n"))
        parts = [ln for ln in data.split(b"\n") if ln not in known] or [data]
    text = repr(parts if len(parts) > 1 else parts[0])
    return text if len(text) <= limit else text[:limit] + "..."


def worker(name: str, start: int, n: int, seed: int, timeout: float) -> None:
    """Cases ``start..n-1`` of one reader, one JSON line each on stdout: ``[case, file, outcome, detail]``.
    Case ``i`` draws its mutation from its own seed, so a worker restarted after a crash goes on where it was."""
    signal.signal(signal.SIGALRM, _alarm)
    with tempfile.TemporaryDirectory(prefix="dff_fuzz_") as tmp:
        os.environ["DFF_GS_CACHE"] = str(Path(tmp) / "cache")  # undistorted copies stay in the temp folder
        files, mutate, read, check = targets(Path(tmp))[name]
        originals = {p: p.read_bytes() for p in files}
        run_case(read, check, 10 * timeout)  # the valid input once: imports and caches warm before the clock runs
        for i in range(start, n):
            rng = random.Random(f"{seed}-{name}-{i}")
            path = rng.choice(files)
            data = mutate(path, originals[path], rng)
            path.write_bytes(data)
            try:
                outcome, detail = run_case(read, check, timeout)
            finally:
                path.write_bytes(originals[path])
            if outcome not in CLEAN:  # what to reproduce it from
                detail += f" <- {what_changed(originals[path], data)}"
            print(json.dumps([i, path.name, outcome, detail]), flush=True)


def fuzz(name: str, n: int, seed: int, timeout: float, mem_gb: float) -> dict:
    """Run the cases of one reader in a child process (restarted after a hard crash, which is counted)."""
    import subprocess

    counts, examples, multiline, long_lines, i = Counter(), {}, 0, 0, 0
    while i < n:
        cmd = [sys.executable, __file__, "--worker", name, "--start", str(i), "--n", str(n), "--seed", str(seed),
               "--timeout", str(timeout), "--mem_gb", str(mem_gb)]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        for line in proc.stdout.splitlines():
            i, fname, outcome, detail = json.loads(line)
            i += 1
            counts[outcome] += 1
            multiline += outcome == "DffError" and "\n" in detail
            long_lines += outcome == "DffError" and len(detail) > LONG_MESSAGE
            if outcome not in ("loaded", "DffError", "usage"):
                examples.setdefault(outcome, []).append(f"{fname}: {detail}")
        if proc.returncode != 0 and i < n:  # the case in progress took the process down
            counts["crash"] += 1
            tail = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
            examples.setdefault("crash", []).append(f"case {i}: exit {proc.returncode}: {tail[:120]}")
            i += 1
    return {"counts": counts, "examples": examples, "multiline": multiline, "long": long_lines}


CLEAN = ("loaded", "DffError", "usage")
NOT_GENERIC = (*CLEAN, "invalid", "hang", "crash")
LONG_MESSAGE = 300
"""A one-line error longer than this many characters quotes too much of the input."""


def generic_kinds(counts: Counter) -> dict:
    """The generic exceptions among a reader's outcomes: {type name: count}."""
    return {k: v for k, v in counts.items() if k not in NOT_GENERIC}


def table(results: dict, n: int) -> str:
    """One row a reader. Configs: "loaded" = accepted, "usage" = argparse's own error (a bad option)."""
    rows = [("| reader | mutations | loaded (valid) | one-line errors (DffError) | usage errors (argparse) | "
             "loaded but invalid | generic exceptions (by type) | hangs | crashes |"),
            "|---|---|---|---|---|---|---|---|---|"]
    for name, r in results.items():
        c = r["counts"]
        generic = generic_kinds(c)
        gen = ", ".join(f"{k} {v}" for k, v in sorted(generic.items(), key=lambda kv: (-kv[1], kv[0])))
        rows.append(f"| {name} | {n} | {c['loaded']} | {c['DffError']} | {c['usage']} | {c['invalid']} | "
                    f"{sum(generic.values())}{f' ({gen})' if gen else ''} | {c['hang']} | {c['crash']} |")
    return "\n".join(rows)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=400, help="mutations per reader")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--timeout", type=float, default=10.0, help="seconds per case before it counts as a hang")
    ap.add_argument("--readers", default=",".join(READERS), help=f"comma-separated subset of {','.join(READERS)}")
    ap.add_argument("--show", type=int, default=3, help="examples printed per kind of bad outcome")
    ap.add_argument("--mem_gb", type=float, default=8.0, help="address-space limit, so a huge allocation fails fast")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--start", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        limit = int(args.mem_gb * 2 ** 30)
        resource.setrlimit(resource.RLIMIT_AS, (limit, resource.getrlimit(resource.RLIMIT_AS)[1]))
        worker(args.worker, args.start, args.n, args.seed, args.timeout)
        return 0
    names = [r for r in args.readers.split(",") if r]
    unknown = sorted(set(names) - set(READERS))
    if unknown:
        ap.error(f"unknown readers {unknown} (known: {', '.join(READERS)})")
    results = {}
    for name in names:
        t0 = time.perf_counter()
        results[name] = fuzz(name, args.n, args.seed, args.timeout, args.mem_gb)
        print(f"{name}: {args.n} mutations in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    print(f"python benchmarks/fuzz_readers.py --n {args.n} --seed {args.seed} --timeout {args.timeout}\n")
    print(table(results, args.n))
    bad = 0
    for name, r in results.items():
        for kind, ex in sorted(r["examples"].items()):
            bad += len(ex)
            shown = ex if kind in generic_kinds(r["counts"]) else ex[:args.show]  # every generic one is listed
            for line in shown:
                print(f"  {name} {kind}: {line}")
        if r["multiline"]:
            print(f"  {name}: {r['multiline']} DffError messages span more than one line")
        if r["long"]:
            print(f"  {name}: {r['long']} DffError messages are longer than {LONG_MESSAGE} characters")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())

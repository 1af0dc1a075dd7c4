"""Fuzz every file reader: random mutations of a small valid input, each one read in-process, one table.

Readers: ``ply`` (a 3DGS PLY, :func:`dff_gs.io.ply.load_ply`), ``sidecar`` (its ``X.dff.json``), ``transforms``
(a nerfstudio / Blender ``transforms.json`` scene), ``colmap_bin`` and ``colmap_txt`` (COLMAP ``cameras``,
``images``, ``points3D`` models). Each starts from a valid file written here (a tiny scene of three 8x6 images,
a 6-Gaussian PLY) and applies ``--n`` random mutations of one file: byte flips, truncation, insertion, integers
written over counts; JSON values replaced by strings / NaN / inf / 0 / negatives / lists / None / nested junk, or
keys deleted; COLMAP text tokens replaced, lines deleted or repeated, bytes that are not UTF-8.

Every outcome is one of: ``loaded`` (and the data is valid: finite, positive focal, N > 0 ...), ``invalid``
(loaded, but the data is not valid: silently wrong), ``DffError`` (a clean error), a generic exception (by type),
a hang (past ``--timeout`` seconds; ``signal.setitimer`` interrupts it), or a crash (the process killed, e.g. by a
native library's abort: each reader's cases run in a child process, restarted after one). The target: no invalid
loads, no generic exceptions, no hangs, no crashes. Exit status 1 when there is any of those. Case ``i`` of a
reader draws its mutation from ``(seed, reader, i)`` alone, so a run is reproducible. The child processes run under
an address-space limit (``--mem_gb``, 8 by default) so that a huge allocation fails fast instead of swapping.

    python benchmarks/fuzz_readers.py [--n 400] [--seed 0] [--timeout 10] [--readers ply,transforms] [--show 3]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
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


sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from dff_gs.data.examples import make_colmap, make_ply, make_transforms  # noqa: E402

READERS = ("ply", "sidecar", "transforms", "colmap_bin", "colmap_txt")
JUNK_VALUES = ["wide", "128px", "", "mm", "nan", float("nan"), float("inf"), -float("inf"), 0, 0.0, -1, -0.5, 1e308,
               -1e308, 5e-324, 2 ** 63, -(2 ** 63), 2 ** 31, True, False, None, [], [1, 2], [[1, 0], [0, 1]],
               [[None] * 4] * 4, [["x"] * 4] * 4, {}, {"a": [None, {"b": float("nan")}]}, [float("nan")] * 4,
               "\u00e9\u0000", 17, 3.5, {"in": 1}]
JUNK_TOKENS = ["nan", "inf", "-inf", "0", "-1", "-0.0", "1e400", "abc", "99999999999999999999", "1.5", "PINHOLE",
               "FOV", "OPENCV", "3", "#", "1e-320", "0x10", "\u00e9"]
INTERESTING_INTS = [0, 1, 2, 3, 7, 255, 0x7FFFFFFF, 0xFFFFFFFF, 2 ** 40, 2 ** 63 - 1, 2 ** 64 - 1]


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


# ---------------------------------------------------------------------------------------- validity checks


def check_scene(scene) -> str | None:
    """Why a loaded scene is not valid data (None when it is)."""
    import torch

    cams, imgs = scene.cameras, scene.images
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
    return {
        "ply": ([ply], lambda p, d, r: mutate_ply(d, r), lambda: load_ply(ply), check_ply),
        "sidecar": ([side], lambda p, d, r: json_text(json.loads(d), r), lambda: load_ply(ply), check_ply),
        "transforms": ([tjson], lambda p, d, r: json_text(json.loads(d), r),
                       lambda: transforms.load(tjson.parent), check_scene),
        "colmap_bin": ([cbin / f for f in ("cameras.bin", "images.bin", "points3D.bin")],
                       lambda p, d, r: mutate_bytes(d, r), lambda: colmap.load(cbin.parent.parent), check_scene),
        "colmap_txt": ([ctxt / f for f in ("cameras.txt", "images.txt", "points3D.txt")],
                       lambda p, d, r: mutate_text(d, r), lambda: colmap.load(ctxt.parent.parent), check_scene),
    }


def _alarm(signum, frame):
    raise Hang()


def run_case(read, check, timeout: float) -> tuple[str, str]:
    """(outcome, detail): outcome is loaded | invalid | DffError | hang | the exception's type name."""
    from dff_gs.errors import DffError

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
    except BaseException as err:  # what we count
        if isinstance(err, KeyboardInterrupt):
            raise
        tb = traceback.extract_tb(err.__traceback__)[-1]
        return type(err).__name__, f"{err!s:.120} ({Path(tb.filename).name}:{tb.lineno})"
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)


def worker(name: str, start: int, n: int, seed: int, timeout: float) -> None:
    """Cases ``start..n-1`` of one reader, one JSON line each on stdout: ``[case, file, outcome, detail]``.
    Case ``i`` draws its mutation from its own seed, so a worker restarted after a crash goes on where it was."""
    signal.signal(signal.SIGALRM, _alarm)
    with tempfile.TemporaryDirectory(prefix="dff_fuzz_") as tmp:
        os.environ["DFF_GS_CACHE"] = str(Path(tmp) / "cache")  # undistorted copies stay in the temp folder
        files, mutate, read, check = targets(Path(tmp))[name]
        originals = {p: p.read_bytes() for p in files}
        for i in range(start, n):
            rng = random.Random(f"{seed}-{name}-{i}")
            path = rng.choice(files)
            path.write_bytes(mutate(path, originals[path], rng))
            try:
                outcome, detail = run_case(read, check, timeout)
            finally:
                path.write_bytes(originals[path])
            print(json.dumps([i, path.name, outcome, detail]), flush=True)


def fuzz(name: str, n: int, seed: int, timeout: float, mem_gb: float) -> dict:
    """Run the cases of one reader in a child process (restarted after a hard crash, which is counted)."""
    import subprocess

    counts, examples, multiline, i = Counter(), {}, 0, 0
    while i < n:
        cmd = [sys.executable, __file__, "--worker", name, "--start", str(i), "--n", str(n), "--seed", str(seed),
               "--timeout", str(timeout), "--mem_gb", str(mem_gb)]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        for line in proc.stdout.splitlines():
            i, fname, outcome, detail = json.loads(line)
            i += 1
            counts[outcome] += 1
            multiline += outcome == "DffError" and "\n" in detail
            if outcome not in ("loaded", "DffError"):
                examples.setdefault(outcome, []).append(f"{fname}: {detail}")
        if proc.returncode != 0 and i < n:  # the case in progress took the process down
            counts["crash"] += 1
            tail = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
            examples.setdefault("crash", []).append(f"case {i}: exit {proc.returncode}: {tail[:120]}")
            i += 1
    return {"counts": counts, "examples": examples, "multiline": multiline}


def table(results: dict, n: int) -> str:
    rows = [("| reader | mutations | loaded (valid) | clean errors (DffError) | loaded but invalid | "
             "generic exceptions (by type) | hangs | crashes |"), "|---|---|---|---|---|---|---|---|"]
    for name, r in results.items():
        c = r["counts"]
        generic = {k: v for k, v in c.items() if k not in ("loaded", "DffError", "invalid", "hang", "crash")}
        gen = ", ".join(f"{k} {v}" for k, v in sorted(generic.items(), key=lambda kv: (-kv[1], kv[0])))
        rows.append(f"| {name} | {n} | {c['loaded']} | {c['DffError']} | {c['invalid']} | "
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
            for line in ex[:args.show]:
                print(f"  {name} {kind}: {line}")
        if r["multiline"]:
            print(f"  {name}: {r['multiline']} DffError messages span more than one line")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())

"""Edits: selection cleanup, operations (transforms, recolour, compose), edit scripts, edit.py and
python -m dff_gs.render end to end on tiny hand-built models, and the errors bad input raises."""

import hashlib
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from dff_gs.edit import SelectionConfig, cleanup_mask, ops
from dff_gs.edit.color import apply_color_matrix, dc_colors, hue_matrix, sh_bound
from dff_gs.edit.script import load_script, parse_script
from dff_gs.core.geometry import Similarity, axis_angle_matrix, matrix_to_quat, quat_multiply, quat_to_matrix
from dff_gs.core.errors import ConfigError
from dff_gs.core.gaussians import GaussianModel
from dff_gs.io.ply import load_ply, save_ply
from dff_gs.core.sh import eval_sh

ROOT = Path(__file__).resolve().parents[1]
NAMES = ["sofa", "chair", "wall"]
STD_PROPS = ["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2"]
TAIL = ["opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"]


def blobs(n_per=40, sh_degree=1, feature_dim=0, seed=0):
    """Three clusters in front of an identity camera (sofa left, chair right, wall behind), random SH."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.tensor([[-0.6, 0.0, 3.0], [0.6, 0.0, 3.0], [0.0, 0.0, 5.0]])
    labels = torch.arange(3).repeat_interleave(n_per)
    means = centres[labels] + 0.08 * torch.randn(3 * n_per, 3, generator=g)
    model = GaussianModel.from_points(means, torch.rand(3 * n_per, 3, generator=g), sh_degree=sh_degree,
                                      feature_dim=feature_dim, init_opacity=0.9)
    with torch.no_grad():
        model.params["scales"].fill_(math.log(0.12))
        model.params["shN"].copy_(0.2 * torch.randn(model.params["shN"].shape, generator=g))
        model.params["quats"].copy_(torch.randn(3 * n_per, 4, generator=g))
    return model, labels


def minilm_model():
    """``blobs`` whose features are the MiniLM embeddings of their class names (a 'labels' teacher run)."""
    from dff_gs.teachers.text import encode_minilm

    model, labels = blobs()
    emb = encode_minilm(NAMES)
    return GaussianModel({**{k: v.detach() for k, v in model.params.items()}, "features": emb[labels]}, 1), labels


def write_scene(root: Path, n=3, w=40, h=30):
    """A transforms.json scene whose view 0 is the identity OpenCV camera (so it sees ``blobs``)."""
    (root / "images").mkdir(parents=True)
    frames = []
    for i in range(n):
        Image.fromarray(np.full((h, w, 3), 128, np.uint8)).save(root / f"images/{i:04d}.png")
        c2w = np.diag([1.0, -1.0, -1.0, 1.0])  # OpenCV identity in the OpenGL convention
        c2w[0, 3] = 0.1 * i
        frames.append({"file_path": f"images/{i:04d}.png", "transform_matrix": c2w.tolist()})
    fl = 0.5 * w / math.tan(0.6)
    (root / "transforms.json").write_text(json.dumps({"fl_x": fl, "fl_y": fl, "w": w, "h": h, "frames": frames}))
    return root


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ------------------------------------------------------------------------------------------- transforms
def test_quaternions_compose_like_matrices():
    g = torch.Generator().manual_seed(1)
    a, b = torch.randn(5, 4, generator=g), torch.randn(5, 4, generator=g)
    torch.testing.assert_close(quat_to_matrix(quat_multiply(a, b)), quat_to_matrix(a) @ quat_to_matrix(b),
                               atol=1e-5, rtol=1e-5)
    R = axis_angle_matrix([1.0, 2.0, -0.5], 73.0)
    torch.testing.assert_close(quat_to_matrix(matrix_to_quat(R)), R, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(axis_angle_matrix([0, 0, 1], 90.0) @ torch.tensor([1.0, 0, 0]),
                               torch.tensor([0.0, 1.0, 0.0]), atol=1e-6, rtol=0)


@pytest.mark.parametrize("degree", [1, 3])
def test_rotate_moves_means_orientations_and_view_dependent_colour(degree):
    model, labels = blobs(sh_degree=degree)
    mask = labels == 0
    res = ops.rotate(model, mask, axis=[0.3, 1.0, 0.2], degrees=50.0)
    R = axis_angle_matrix([0.3, 1.0, 0.2], 50.0)
    c = ops.selection_center(model, mask)
    old, new = model.params, res.model.params
    torch.testing.assert_close(new["means"][mask], (old["means"][mask] - c) @ R.T + c, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(quat_to_matrix(new["quats"][mask]), R @ quat_to_matrix(old["quats"][mask]),
                               atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(new["scales"], old["scales"])
    assert torch.equal(new["means"][~mask], old["means"][~mask]) and torch.equal(res.mask, mask)
    # colour seen from direction R d after the turn == colour seen from d before
    d = F.normalize(torch.randn(mask.sum(), 3, generator=torch.Generator().manual_seed(2)), dim=-1)
    before = eval_sh(degree, model.get_sh().detach()[mask], d)
    after = eval_sh(degree, res.model.get_sh().detach()[mask], d @ R.T)
    torch.testing.assert_close(after, before, atol=1e-4, rtol=1e-4)
    assert not torch.allclose(eval_sh(degree, res.model.get_sh().detach()[mask], d), before, atol=1e-3)


def test_scale_translate_and_bad_transforms():
    model, labels = blobs()
    mask = labels == 1
    c = ops.selection_center(model, mask)
    res = ops.scale(model, mask, 2.0)
    torch.testing.assert_close(res.model.params["means"][mask], 2 * (model.params["means"][mask] - c) + c)
    torch.testing.assert_close(res.model.params["scales"][mask], model.params["scales"][mask] + math.log(2.0))
    moved = ops.translate(model, mask, [0.0, 0.5, 0.0]).model
    torch.testing.assert_close(moved.params["means"][mask], model.params["means"][mask] + torch.tensor([0, 0.5, 0]))
    for bad in (lambda: ops.translate(model, mask, [float("nan"), 0, 0]),
                lambda: ops.rotate(model, mask, [0, 0, 0], 10.0),
                lambda: ops.rotate(model, mask, [0, 0, 1], float("inf")),
                lambda: ops.scale(model, mask, 0.0),
                lambda: ops.scale(model, mask, float("nan")),
                lambda: Similarity.from_matrix([[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, -1, 0], [0, 0, 0, 1]])):
        with pytest.raises(ConfigError):
            bad()
    with pytest.raises(ConfigError, match="empty"):
        ops.delete(model, torch.zeros(model.num_gaussians, dtype=torch.bool))


# ------------------------------------------------------------------------------------------- recolour
def test_recolor_keeps_view_dependence_and_hits_the_target():
    model, labels = blobs(sh_degree=2)
    with torch.no_grad():
        model.params["shN"].mul_(0.25)  # view dependence of a trained scene's size: most colours stay displayable
    mask = labels == 0
    d = F.normalize(torch.randn(mask.sum(), 3, generator=torch.Generator().manual_seed(3)), dim=-1)
    colour = lambda m: eval_sh(2, m.get_sh().detach()[mask], d) + 0.5  # noqa: E731
    res = ops.recolor(model, mask, hue=120.0)
    # where the mapped colour is displayable in every direction, c(d) -> M c(d) exactly; elsewhere it is kept
    # within [0, 1] (clamp_displayable), so that 8-bit viewers show what our renderer shows
    mapped0, mappedN = apply_color_matrix(model.params["sh0"].detach()[mask], model.params["shN"].detach()[mask],
                                          hue_matrix(120.0))
    bound = sh_bound(mappedN)
    fine = ((dc_colors(mapped0) >= bound) & (dc_colors(mapped0) <= 1 - bound) & (bound <= 0.5)).all(-1)
    assert 0 < int(fine.sum()) < int(mask.sum()) and res.info["clamped_to_displayable"] == int((~fine).sum())
    expected = colour(model) @ hue_matrix(120.0).T
    torch.testing.assert_close(colour(res.model)[fine], expected[fine], atol=1e-5, rtol=1e-5)
    assert colour(res.model)[~fine].min() >= -1e-6 and colour(res.model)[~fine].max() <= 1 + 1e-6
    assert torch.equal(res.model.params["sh0"][~mask], model.params["sh0"][~mask])
    target = [0.6, 0.2, 0.1]  # the selection's mean colour becomes the target (the brightest clipped at 1)
    tinted = ops.recolor(model, mask, color=target).model
    torch.testing.assert_close(dc_colors(tinted.params["sh0"].detach()[mask]).mean(0), torch.tensor(target),
                               atol=0.05, rtol=0)
    flat = ops.recolor(model, mask, color="#ff0000", shading=False).model
    b = sh_bound(flat.params["shN"].detach()[mask])  # pure red, moved inside by the kept view-dependent part
    red = torch.tensor([1.0, 0.0, 0.0]).expand(int(mask.sum()), 3)
    torch.testing.assert_close(dc_colors(flat.params["sh0"].detach()[mask]),
                               torch.minimum(torch.maximum(red, b), 1 - b), atol=1e-5, rtol=0)
    with pytest.raises(ConfigError):
        ops.recolor(model, mask, color="not a colour")
    with pytest.raises(ConfigError):
        ops.recolor(model, mask)


# ------------------------------------------------------------------------------------------- selection
def test_cleanup_drops_floaters_and_grows_into_overlapping_gaussians():
    g = torch.Generator().manual_seed(4)
    obj = torch.randn(300, 3, generator=g) * 0.15  # the object: a dense blob
    bg = torch.rand(600, 3, generator=g) * 4 - 2  # background filling the box
    bg = bg[(bg.norm(dim=1) > 0.6)]
    floaters = torch.tensor([[1.5, 1.5, 1.5], [1.52, 1.5, 1.5], [1.5, 1.53, 1.5], [-1.5, 1.4, -1.2]])
    means = torch.cat([obj, bg, floaters])
    model = GaussianModel.from_points(means, sh_degree=0, init_opacity=0.9)
    N, n_obj, n_bg = len(means), len(obj), len(bg)
    probs = torch.zeros(N)
    probs[:n_obj] = 0.9
    probs[n_obj + n_bg:] = 0.9  # wrongly confident floaters
    missed = torch.arange(0, n_obj, 7)
    probs[missed] = 0.3  # object Gaussians under the threshold, inside the object
    mask = probs > 0.5
    cleaned, stats = cleanup_mask(model, probs, mask, SelectionConfig())
    truth = torch.zeros(N, dtype=torch.bool)
    truth[:n_obj] = True
    assert not cleaned[n_obj + n_bg:].any(), "floaters stayed selected"
    assert cleaned[missed].float().mean() > 0.9, "the object's missed Gaussians were not grown into"
    assert not cleaned[n_obj:n_obj + n_bg].any() and cleaned[:n_obj].float().mean() > 0.97
    assert stats["thresholded"] == int(mask.sum()) and stats["selected"] == int(cleaned.sum()) and stats["grown"] > 0
    raw, _ = cleanup_mask(model, probs, mask, SelectionConfig(cleanup=False))
    assert torch.equal(raw, mask)
    with pytest.raises(ConfigError):
        SelectionConfig(threshold=1.5).validate()


# ------------------------------------------------------------------------------------------- ops
def test_delete_extract_duplicate():
    model, labels = blobs(feature_dim=4)
    mask = labels == 0
    d = ops.delete(model, mask)
    assert d.model.num_gaussians == 80 and not d.mask.any()
    torch.testing.assert_close(d.model.params["means"], model.params["means"][~mask])
    e = ops.extract(model, mask)
    assert e.model.num_gaussians == 40 and e.mask.all()
    torch.testing.assert_close(e.model.params["features"], model.params["features"][mask])
    dup = ops.duplicate(model, mask, offset=[0.0, 1.0, 0.0])
    assert dup.model.num_gaussians == 160 and dup.mask[120:].all() and not dup.mask[:120].any()
    torch.testing.assert_close(dup.model.params["means"][120:], model.params["means"][mask] + torch.tensor([0, 1.0, 0]))
    torch.testing.assert_close(dup.model.params["sh0"][120:], model.params["sh0"][mask])
    assert model.num_gaussians == 120  # inputs untouched
    with pytest.raises(ConfigError, match="empty scene"):
        ops.delete(model, torch.ones(120, dtype=torch.bool))


def test_compose_handles_sh_degree_and_feature_mismatches():
    scene, _ = blobs(sh_degree=1, feature_dim=4)
    scene.decoder = torch.nn.Linear(4, 6)
    other, _ = blobs(n_per=5, sh_degree=3, feature_dim=4, seed=1)
    other.decoder = torch.nn.Linear(4, 6)
    with torch.no_grad():
        other.decoder.load_state_dict(scene.decoder.state_dict())
    res = ops.compose(scene, other, Similarity.build(offset=[0, 0, 1.0]))
    assert res.model.sh_degree == 3 and res.model.num_gaussians == 135 and res.mask[120:].all()
    torch.testing.assert_close(res.model.params["shN"][:120, :3], scene.params["shN"])
    assert (res.model.params["shN"][:120, 3:] == 0).all() and any("SH degrees differ" in n for n in res.info["notes"])
    torch.testing.assert_close(res.model.params["means"][120:], other.params["means"] + torch.tensor([0, 0, 1.0]))
    torch.testing.assert_close(res.model.params["features"][120:], other.params["features"])
    plain, _ = blobs(n_per=5, feature_dim=0)  # a plain 3DGS model: zero features, said so
    res = ops.compose(scene, plain)
    assert (res.model.params["features"][120:] == 0).all() and "no features" in res.info["notes"][0]
    with pytest.raises(ConfigError, match="no features"):
        ops.compose(scene, plain, features="error")
    alien, _ = blobs(n_per=5, feature_dim=3)  # another feature space and no teacher known
    with pytest.raises(ConfigError, match="not the same feature space"):
        ops.compose(scene, alien)
    assert ops.compose(scene, alien, features="zero").model.num_gaussians == 135
    zeroed = ops.compose(scene, other, features="zero")  # "zero" even where the features could be copied
    assert (zeroed.model.params["features"][120:] == 0).all()
    # same teacher, different decoders: re-encoded so that they decode to the same teacher features
    same = {"teacher": {"name": "labels", "text_model": "minilm"}}
    other2, _ = blobs(n_per=5, sh_degree=1, feature_dim=4, seed=2)
    other2.decoder = torch.nn.Linear(4, 6)
    res = ops.compose(scene, other2, model_meta=same, other_meta=same)
    with torch.no_grad():
        want = other2.decode(other2.params["features"])
        got = res.model.decode(res.model.params["features"][120:])
    assert (got - want).norm() < (scene.decode(other2.params["features"]) - want).norm()


# ------------------------------------------------------------------------------------------- scripts
def test_edit_scripts_parse_and_reject_bad_input(tmp_path):
    script = load_script(ROOT / "configs" / "edit_example.yaml")
    assert script.select and [op.name for op in script.operations]
    s = parse_script({"select": [{"text": "chair"}, {"cluster": "8:3"}, {"click": [0, 5, 6]}],
                      "negatives": "stool", "selection": {"threshold": 0.6},
                      "operations": [{"op": "recolor", "hue": 30}, {"op": "translate", "offset": [1, 0, 0]},
                                     {"op": "delete", "select": {"text": "sofa"}}]}, "s.yaml")
    assert s.selection.threshold == 0.6 and s.select[0].negatives == ("stool",) and s.select[1].value == (8, 3)
    assert s.operations[2].select[0].value == "sofa"
    bad = [({"select": ["chair"], "operations": [{"op": "explode"}]}, "unknown operation 'explode'"),
           ({"select": ["chair"], "operations": [{"op": "translate", "ofset": [1, 0, 0]}]}, "ofset"),
           ({"select": ["chair"], "operations": [{"op": "translate", "offset": [float("nan"), 0, 0]}]}, "not finite"),
           ({"select": ["chair"], "operations": [{"op": "scale", "factor": -1}]}, "scale must be > 0"),
           ({"operations": [{"op": "delete"}]}, "needs a selection"),
           ({"select": ["chair"], "operations": [{"op": "delete"}, {"op": "recolor", "hue": 3}]}, "needs a selection"),
           ({"select": [{"text": "chair", "click": [0, 1, 1]}], "operations": ["delete"]}, "exactly one"),
           ({"select": ["chair"], "operatons": []}, "unknown key"),
           ({"select": ["chair"], "operations": [{"op": "compose"}]}, "needs source")]
    for data, msg in bad:
        with pytest.raises(ConfigError, match=msg) as err:
            parse_script(data, "bad.yaml")
        assert "bad.yaml" in str(err.value)
    p = tmp_path / "x.yaml"
    p.write_text("select: [chair]\noperations: [{op: explode}]\n")
    with pytest.raises(ConfigError, match="x.yaml.*explode"):
        load_script(p)
    p.write_text("select: [chair]\noperations: [{op: rotate, axis: [0, 0, 1], degrees: .inf}]\n")
    with pytest.raises(ConfigError, match="x.yaml.*rotate.*not finite"):
        load_script(p)
    with pytest.raises(ConfigError, match="not found"):
        load_script(tmp_path / "missing.yaml")


# ------------------------------------------------------------------------------------------- CLI
def run_edit(*args):
    from dff_gs.cli.edit import main

    return main([str(a) for a in args] + ["--quiet"])


def test_edit_cli_end_to_end_and_the_result_reads_back(saved, tmp_path, capsys):
    from plyfile import PlyData

    ply, labels = saved
    before = digest(ply)
    out = tmp_path / "out" / "edited.ply"
    assert run_edit(ply, "--text", "couch", "--op", "recolor", "--color", "1,0,0", "--op", "translate",
                    "--offset", 0, 0.3, 0, "--out", out, "--views", 1, "--export", "splat,ply", "--up", "y") == 0
    printed = capsys.readouterr().out
    assert "exported" in printed and (out.parent / "edited.splat").stat().st_size == 32 * 120
    assert (out.parent / "edited.plain.ply").is_file()
    assert run_edit(ply, "--text", "couch", "--op", "delete", "--out", out.with_name("x.ply"), "--export", "spz") == 2
    assert "--export='spz': not an export format" in capsys.readouterr().err
    assert "selected 40 Gaussians" in printed and "recolor" in printed
    summary = json.loads(out.with_name("edited.edit.json").read_text())
    assert summary["selection"]["selected"] == 40
    assert [s["op"] for s in summary["operations"]] == ["recolor", "translate"]
    assert len(summary["renders"]) == 1 and Path(summary["renders"][0]).is_file()
    panel = np.asarray(Image.open(summary["renders"][0]))
    assert panel.shape[0] == 30 and panel.shape[1] == 2 * 40 + 2
    # reads back into dff_gs, features kept ...
    model, meta = load_ply(out)
    orig, _ = load_ply(ply)
    assert model.num_gaussians == 120 and model.feature_dim == orig.feature_dim
    torch.testing.assert_close(model.params["features"], orig.params["features"])
    moved = orig.params["means"][labels == 0] + torch.tensor([0, .3, 0])
    torch.testing.assert_close(model.params["means"][labels == 0], moved)
    assert meta["teacher"]["name"] == "labels" and meta["edits"][-1]["operations"][0]["op"] == "recolor"
    # ... and into a plain 3DGS reader: the standard properties first, in order
    vert = PlyData.read(str(out))["vertex"]
    names = [p.name for p in vert.properties]
    n_rest = 3 * 3
    assert names[:9 + n_rest + 8] == STD_PROPS + [f"f_rest_{i}" for i in range(n_rest)] + TAIL
    xyz = np.stack([vert["x"], vert["y"], vert["z"]], 1)
    np.testing.assert_allclose(xyz, model.params["means"].detach().numpy(), atol=1e-6)
    # a second edit queries the edited model again
    out2 = tmp_path / "out2.ply"
    assert run_edit(out, "--text", "chair", "--op", "delete", "--out", out2, "--views", 0) == 0
    assert load_ply(out2)[0].num_gaussians == 80
    assert digest(ply) == before


def test_edit_cli_refuses_to_overwrite(saved, tmp_path, capsys):
    ply, _ = saved
    before = digest(ply)
    out = tmp_path / "e.ply"
    args = [ply, "--text", "sofa", "--op", "delete", "--views", 0]
    assert run_edit(*args, "--out", out) == 0
    stamp = digest(out)
    assert run_edit(*args[:2], "chair", *args[3:], "--out", out) == 2
    assert "exists" in capsys.readouterr().err and digest(out) == stamp
    assert run_edit(*args[:2], "chair", *args[3:], "--out", out, "--force") == 0 and digest(out) != stamp
    assert run_edit(*args, "--out", ply, "--force") == 2
    assert "refusing to overwrite the input" in capsys.readouterr().err and digest(ply) == before


def test_edit_outputs_are_one_set_with_one_writer(saved, tmp_path, capsys):

    from dff_gs.core.errors import DataError

    ply, _ = saved
    out = tmp_path / "e.ply"
    args = [ply, "--text", "sofa", "--op", "delete", "--views", 2, "--split", "all", "--out", out]
    from dff_gs.io.lock import OutputLock

    with OutputLock(tmp_path / ".e.ply.lock", "another edit"):  # another writer holds the output
        assert run_edit(*args) == 2
    assert "is writing it now" in capsys.readouterr().err and not out.exists()
    assert run_edit(*args) == 0 and not (tmp_path / ".e.ply.lock").exists()
    first_sidecar = out.with_name("e.dff.json").read_text()
    summary = json.loads(out.with_name("e.edit.json").read_text())
    assert summary["write_id"] == json.loads(first_sidecar)["write_id"]
    assert len(list((tmp_path / "e_renders").iterdir())) == 2
    assert run_edit(*args[:-5], 1, "--split", "all", "--out", out, "--force") == 0
    assert len(list((tmp_path / "e_renders").iterdir())) == 1  # no PNG of the first edit left among the new
    load_ply(out)
    out.with_name("e.dff.json").write_text(first_sidecar)  # a write cut short: new PLY, old sidecar
    with pytest.raises(DataError, match="e.dff.json.*another write"):
        load_ply(out)
    (tmp_path / "dir.ply").mkdir()
    assert run_edit(*args[:-1], tmp_path / "dir.ply", "--force") == 2
    assert "is a folder" in capsys.readouterr().err


def test_edit_cli_bad_input(saved, tmp_path, capsys):
    ply, _ = saved
    before = digest(ply)
    out = tmp_path / "never.ply"
    # a query that selects nothing: said so, nothing written, non-zero exit
    assert run_edit(ply, "--text", "banana", "--op", "delete", "--out", out) == 2
    err = capsys.readouterr().err
    assert "selects no Gaussians" in err and "banana" in err and str(ply) in err
    # an unreadable PLY
    junk = tmp_path / "junk.ply"
    junk.write_bytes(b"ply\nformat binary_little_endian 1.0\nthis is not a header\n\x00\x01")
    assert run_edit(junk, "--text", "sofa", "--op", "delete", "--out", out) == 2
    assert "junk.ply" in capsys.readouterr().err
    # a non-finite transform
    assert run_edit(ply, "--text", "sofa", "--op", "translate", "--offset", "nan", 0, 0, "--out", out) == 2
    assert "not finite" in capsys.readouterr().err
    # an edit script with an unknown operation
    script = tmp_path / "bad.yaml"
    script.write_text("select: [sofa]\noperations:\n  - op: delete\n  - op: vaporize\n")
    assert run_edit(ply, "--script", script, "--out", out) == 2
    err = capsys.readouterr().err
    assert "bad.yaml" in err and "vaporize" in err and "known:" in err
    # a click outside the image
    assert run_edit(ply, "--click", 0, 400, 3, "--op", "delete", "--out", out) == 2
    assert "outside" in capsys.readouterr().err
    # a click on a PLY without features (a plain 3DGS one)
    plain = tmp_path / "plain.ply"
    scene_of = json.loads(ply.with_suffix(".dff.json").read_text())["scene"]
    save_ply(blobs(n_per=4)[0], plain, metadata={"scene": scene_of})
    assert run_edit(plain, "--click", 0, 3, 3, "--op", "delete", "--out", out) == 2
    assert "carries no features" in capsys.readouterr().err
    # deleting every Gaussian would leave nothing to write
    assert run_edit(ply, "--text", "sofa", "--threshold", 0, "--no-cleanup", "--op", "delete", "--out", out) == 2
    assert "empty scene" in capsys.readouterr().err
    assert not any(p.exists() for p in (out, out.with_name("never.dff.json"), out.with_name("never.edit.json")))
    assert digest(ply) == before


def test_edit_cli_script_with_compose_and_several_queries(saved, tmp_path):
    ply, labels = saved
    plain = tmp_path / "plain.ply"
    blob, _ = blobs(n_per=4, sh_degree=0)
    save_ply(blob, plain)
    script = tmp_path / "s.yaml"
    script.write_text("select: [{text: sofa}, {text: chair}]\noperations:\n"
                      "  - {op: duplicate, offset: [0, 0, 2]}\n"
                      "  - {op: compose, source: plain.ply, offset: [0, 1, 0]}\n")
    out = tmp_path / "c.ply"
    assert run_edit(ply, "--script", script, "--out", out, "--views", 0) == 0
    summary = json.loads((tmp_path / "c.edit.json").read_text())
    assert summary["selection"]["selected"] == 80 and summary["num_gaussians_after"] == 120 + 80 + 12
    assert any("no features" in n for n in summary["notes"])
    assert load_ply(out)[0].num_gaussians == 212
    # a script without select: takes the command line's queries
    bare = tmp_path / "bare.yaml"
    bare.write_text("operations:\n  - {op: delete}\n")
    assert run_edit(ply, "--text", "sofa", "--script", bare, "--out", tmp_path / "d.ply", "--views", 0) == 0
    assert load_ply(tmp_path / "d.ply")[0].num_gaussians == 80


def test_scene_options_travel_with_the_ply(saved, tmp_path):
    """An edited PLY moved out of its run folder still opens the scene as the run did (sidecar scene_options)."""
    from dff_gs.engine.runs import run_scene_options

    ply, _ = saved
    model, meta = load_ply(ply)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "config.yaml").write_text("data:\n  downscale: 2\n  test_every: 4\n  format: auto\n")
    src = save_ply(model, run_dir / "point_cloud.ply",
                   metadata={**meta, "scene_options": {"downscale": 2, "test_every": 4, "format": "auto"}})
    assert run_scene_options(src) == {"downscale": 2, "test_every": 4, "format": "auto"}
    moved = tmp_path / "elsewhere" / "e.ply"
    assert run_edit(src, "--text", "sofa", "--op", "delete", "--out", moved, "--views", 0) == 0
    assert run_scene_options(moved) == {"downscale": 2, "test_every": 4, "format": "auto"}
    assert run_scene_options(ply) == {}  # neither a run folder nor recorded options


# ------------------------------------------------------------------------------------------- render CLI
def test_render_cli_plain_3dgs_and_segmentation(saved, tmp_path, capsys):
    from dff_gs.cli.render import main

    ply, _ = saved
    scene = tmp_path / "scene"
    plain = tmp_path / "plain.ply"
    save_ply(blobs(sh_degree=0)[0], plain)
    plain.with_name("plain.dff.json").unlink()  # a PLY as any 3DGS trainer writes it: no sidecar
    assert main([str(plain), "--data", str(scene), "--split", "all", "--out", str(tmp_path / "r"), "--quiet"]) == 0
    files = sorted(p.name for p in (tmp_path / "r").iterdir())
    assert files == ["0000.png", "0001.png", "0002.png"]
    img = np.asarray(Image.open(tmp_path / "r" / "0000.png"))
    assert img.shape == (30, 40, 3) and img.std() > 5  # the blobs are in view
    assert main([str(plain), "--data", str(scene), "--out", str(tmp_path / "r"), "--quiet"]) == 2  # exists
    assert "exists" in capsys.readouterr().err
    assert main([str(plain), "--out", str(tmp_path / "r2"), "--quiet"]) == 2  # no scene known
    assert "--data" in capsys.readouterr().err
    # our PLY: the scene comes from the sidecar; --text adds segmentation PNGs of the test view
    assert main([str(ply), "--text", "sofa", "--out", str(tmp_path / "s"), "--quiet"]) == 0
    assert (tmp_path / "s" / "0000.png").is_file() and (tmp_path / "s" / "segmentation" / "0000.png").is_file()
    assert not (tmp_path / "s" / "0001.png").exists()  # only the test split (view 0 of 3)
    assert main([str(plain), "--data", str(scene), "--text", "sofa", "--out", str(tmp_path / "t"), "--quiet"]) == 2
    assert "no teacher" in capsys.readouterr().err


def test_cluster_and_click_queries_select_through_the_edit_api(saved, tmp_path, capsys):
    from dff_gs.edit import select_gaussians
    from dff_gs.query import QueryContext, QuerySpec, kmeans, gaussian_features

    ply, labels = saved
    model, meta = load_ply(ply)
    ctx = QueryContext(model, meta, source=str(ply))
    clusters, _ = kmeans(gaussian_features(model), 3)
    cid = int(clusters[labels == 1][0])
    sel = select_gaussians(ctx, [QuerySpec("cluster", (3, cid))])
    assert torch.equal(sel.mask, labels == 1)
    # a click on the sofa blob (left of the centre of view 0) unioned with the cluster of the chair
    cams = ctx.scene().cameras
    uv, _ = cams.project(torch.tensor([[-0.6, 0.0, 3.0]]))
    x, y = (int(v) for v in uv[0, 0])
    both = select_gaussians(ctx, [QuerySpec("cluster", (3, cid)), QuerySpec("click", (0, x, y))])
    assert torch.equal(both.mask, labels != 2) and len(both.queries) == 2
    # edit.py --click: the object grouped in 3D; --no-grouping: Eq. 5 on the click's feature. Both take the sofa
    for extra in ([], ["--no-grouping"]):
        out = tmp_path / f"click{len(extra)}.ply"
        assert run_edit(ply, "--click", 0, x, y, *extra, "--op", "delete", "--out", out) == 0
        summary = json.loads(out.with_suffix(".edit.json").read_text())
        assert ("grouped" in json.dumps(summary)) == (not extra)
        assert load_ply(out)[0].num_gaussians == int((labels != 0).sum())
    # the labels teacher encodes no image patches: a clear error, nothing written
    crop = tmp_path / "crop.png"
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(crop)
    assert run_edit(ply, "--patch", crop, "--op", "delete", "--out", tmp_path / "p.ply") == 2
    assert "patches" in capsys.readouterr().err and not (tmp_path / "p.ply").exists()


def test_lifted_selection_takes_gaussians_drawn_inside_the_object(tmp_path):
    """Sofa Gaussians carrying the chair's feature (ambiguous features, as distillation leaves some) are missed by
    their own p(sofa) but drawn among sofa pixels: the lifted and combined modes take them, and nothing else."""
    from dff_gs.edit import select_gaussians
    from dff_gs.query import QueryContext, QuerySpec

    model, labels = minilm_model()
    sofa = (labels == 0).nonzero()[:, 0]
    odd = sofa[::5]  # every fifth sofa Gaussian
    with torch.no_grad():
        model.params["features"][odd] = model.params["features"][labels == 1][0]
    scene = write_scene(tmp_path / "scene", n=3)
    ply = save_ply(model, tmp_path / "m.ply", metadata={"teacher": {"name": "labels", "text_model": "minilm",
                                                                    "class_names": NAMES}, "scene": str(scene)})
    m, meta = load_ply(ply)
    ctx = QueryContext(m, meta, source=str(ply))
    got = {mode: select_gaussians(ctx, [QuerySpec("text", "sofa")], SelectionConfig(mode=mode)).mask
           for mode in ("gaussian", "lifted", "combined")}
    assert got["gaussian"][odd].float().mean() < 0.2  # their own feature says chair
    for mode in ("lifted", "combined"):
        assert got[mode][odd].float().mean() > 0.8, mode
        assert not got[mode][labels != 0].any(), mode
    # without a scene (a bare PLY) the combined mode falls back to each Gaussian's own feature
    bare = QueryContext(m, {k: v for k, v in meta.items() if k != "scene"}, source=str(ply))
    sel = select_gaussians(bare, [QuerySpec("text", "sofa")], SelectionConfig(mode="combined"))
    assert torch.equal(sel.mask, got["gaussian"]) and "no scene" in sel.stats["mode"]


def test_delete_fill_covers_what_the_deletion_reveals(saved, tmp_path, capsys):
    """The sofa blob has nothing behind it: deleting it leaves a hole, --fill covers it with new Gaussians
    (coloured and placed from the inpainted surroundings); without cameras --fill says what it needs."""
    from dff_gs.query import QueryContext, render_values

    ply, labels = saved
    out = tmp_path / "filled.ply"
    assert run_edit(ply, "--text", "sofa", "--op", "delete", "--fill", "--out", out, "--views", 0) == 0
    summary = json.loads(out.with_suffix(".edit.json").read_text())
    fill = summary["operations"][0]["fill"]
    assert fill["hole_pixels"] > 0 and fill["new_gaussians"] > 0
    model, meta = load_ply(out)
    assert model.num_gaussians == int((labels != 0).sum()) + fill["new_gaussians"]
    cams = QueryContext(model, meta, source=str(out)).scene().cameras[[0]]
    uv, _ = cams.project(torch.tensor([[-0.6, 0.0, 3.0]]))  # where the sofa was
    x, y = (int(v) for v in uv[0, 0])
    deleted = ops.delete(load_ply(ply)[0], labels == 0).model
    for m, covered in ((deleted, False), (model, True)):
        _, alpha = render_values(m, cams, torch.ones(m.num_gaussians, 1))
        assert (alpha[0, y - 2:y + 3, x - 2:x + 3, 0].mean() > 0.5) == covered
    # a bare PLY names no scene: no cameras to fill from
    bare = tmp_path / "bare.ply"
    save_ply(load_ply(ply)[0], bare, metadata={"teacher": meta["teacher"]})
    capsys.readouterr()
    assert run_edit(bare, "--text", "sofa", "--op", "delete", "--fill", "--out", tmp_path / "b.ply") == 2
    assert "--data SCENE" in capsys.readouterr().err and not (tmp_path / "b.ply").exists()
    assert run_edit(ply, "--text", "sofa", "--op", "extract", "--fill", "--out", tmp_path / "c.ply") == 2

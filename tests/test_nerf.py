"""The NeRF-DFF backbone: encodings, volume rendering, occupancy skipping, training, queries, render-time
edits, run folders and their bad-input errors, and the backbone benchmark on a tiny budget."""

import json
import math

import pytest
import torch
import torch.nn.functional as F

from dff_gs import query as Q
from dff_gs.core.config import apply_overrides
from dff_gs.core.errors import ConfigError, DataError
from dff_gs.nerf.batches import sample_maps
from dff_gs.nerf.config import NerfConfig
from dff_gs.nerf.encodings import FrequencyEncoding, HashEncoding, SHEncoding
from dff_gs.nerf.model import NerfModel
from dff_gs.nerf.occupancy import OccupancyGrid
from dff_gs.nerf.renderer import distortion_loss, render_weights
from dff_gs.core.geometry import ray_aabb
from dff_gs.nerf.sampler import sample_pdf, stratified_edges
from dff_gs.train.config import Config
from dff_gs.core.features import resample_maps

TINY_NERF = [  # a small field: the whole file stays fast on two CPU cores
    "nerf.hash_levels=6", "nerf.hash_log2_size=12", "nerf.hash_max_res=64", "nerf.feature_levels=4",
    "nerf.feature_log2_size=10", "nerf.feature_max_res=32", "nerf.hidden=32", "nerf.batch_rays=512",
    "nerf.coarse_samples=24", "nerf.fine_samples=8", "nerf.occ_resolution=24", "nerf.occ_update_every=4",
    "nerf.occ_warmup=8", "nerf.lr_warmup=0", "nerf.chunk=4096",
]



def tiny_cfg(scene, out, cache, *extra):
    cfg = Config()
    apply_overrides(cfg, [f"data.path={scene}", "data.test_every=5", f"out={out}", "teacher.name=labels",
                          f"teacher.cache_dir={cache}", "train.backbone=nerf", "train.steps=30", "train.device=cpu",
                          "train.checkpoint_every=0", "train.eval_every=15", "train.num_render_views=1",
                          *TINY_NERF, *extra])
    return cfg


@pytest.fixture(scope="module")
def nerf_run(tiny_scene, tmp_path_factory):
    """A tiny NeRF run folder (labels teacher) shared by the query / edit / loader tests."""
    from dff_gs.engine.pipeline import run

    root = tmp_path_factory.mktemp("nerf")
    metrics = run(tiny_cfg(tiny_scene, root / "run", root / "cache"), progress=False)
    return root / "run", metrics


# ----------------------------------------------------------------------------------------------- encodings
def naive_hash_encoding(enc: HashEncoding, x: torch.Tensor) -> torch.Tensor:
    """Reference: loop over levels and the 8 corners with int64 arithmetic, autograd through indexing."""
    outs, offset = [], 0
    T = 2**enc.log2_size
    for res in enc.resolutions:
        rows = min(T, (res + 1) ** 3)
        xs = x * res
        p0 = xs.floor().long()
        f = xs - p0
        acc = 0
        for c in range(8):
            bit = torch.tensor([c & 1, (c >> 1) & 1, (c >> 2) & 1])
            p = p0 + bit
            if (res + 1) ** 3 <= T:
                idx = p[:, 0] + p[:, 1] * (res + 1) + p[:, 2] * (res + 1) ** 2
            else:
                idx = (p[:, 0] ^ (p[:, 1] * 2654435761) ^ (p[:, 2] * 805459861)) % (2**32) % T
            w = torch.where(bit.bool(), f, 1 - f).prod(-1, keepdim=True)
            acc = acc + w * enc.table[:, offset + idx].t()
        outs.append(acc)
        offset += rows
    return torch.cat(outs, -1)


def test_hash_encoding_matches_reference_forward_and_gradients():
    torch.manual_seed(0)
    enc = HashEncoding(levels=5, features=2, log2_size=8, base_res=2, max_res=40)  # dense and hashed levels
    with torch.no_grad():
        enc.table.normal_()
    x = torch.rand(300, 3)
    out = enc(x)
    assert out.shape == (300, 10) and enc.out_dim == 10
    ref = naive_hash_encoding(enc, x)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
    g = torch.randn_like(out)
    (grad,) = torch.autograd.grad((out * g).sum(), enc.table)
    (grad_ref,) = torch.autograd.grad((ref * g).sum(), enc.table)
    torch.testing.assert_close(grad, grad_ref, atol=1e-5, rtol=1e-5)
    (sparse,) = torch.autograd.grad(enc(x[:3]).sum(), enc.table)
    assert 0 < int((sparse.abs().sum(0) > 0).sum()) <= 3 * 8 * 5  # only the rows of 8 corners x 5 levels


def test_hash_encoding_interpolates_table_rows_at_vertices():
    enc = HashEncoding(levels=1, features=2, log2_size=12, base_res=4, max_res=4)  # one dense 5^3 level
    with torch.no_grad():
        enc.table.copy_(torch.arange(enc.table.numel(), dtype=torch.float32).reshape(2, -1))
    ijk = torch.tensor([[1, 2, 3], [0, 0, 0], [3, 1, 2]])
    out = enc(ijk.float() / 4)
    idx = ijk[:, 0] + 5 * ijk[:, 1] + 25 * ijk[:, 2]
    torch.testing.assert_close(out, enc.table[:, idx].t().detach())


def test_other_encodings_shapes():
    assert FrequencyEncoding(3, 4)(torch.rand(7, 3)).shape == (7, 27)
    from dff_gs.core.sh import eval_sh

    d = F.normalize(torch.randn(5, 3), dim=-1)
    for bands in (2, 3, 4):  # the Gaussians' SH basis: coefficients = identity give the basis itself
        torch.testing.assert_close(SHEncoding(bands)(d), eval_sh(bands - 1, torch.eye(bands**2), d))
    assert SHEncoding(1)(d).shape == (5, 1)


# ----------------------------------------------------------------------------------------------- rendering
def test_weights_sum_at_most_one_and_match_the_analytic_case():
    sigma, L, n = 0.7, 3.0, 64
    t = torch.linspace(0, L, n + 1)
    deltas = (t[1:] - t[:-1])[None]
    w, trans = render_weights(torch.full((1, n), sigma), deltas)
    # constant density: T(t) = exp(-sigma t), total opacity 1 - exp(-sigma L)
    torch.testing.assert_close(trans[0], torch.exp(-sigma * t[:-1]))
    torch.testing.assert_close(w.sum(), torch.tensor(1 - math.exp(-sigma * L)))
    rand_w, _ = render_weights(torch.rand(100, 32) * 50, torch.rand(100, 32))
    assert (rand_w >= 0).all() and (rand_w.sum(-1) <= 1 + 1e-6).all()
    # a wall at t = 2: everything lands on the first interval inside it
    step = torch.zeros(1, n)
    step[0, (t[:-1] >= 2).nonzero()[0]] = 1e4
    w, _ = render_weights(step, deltas)
    assert float(w.sum()) == pytest.approx(1.0, abs=1e-5) and float(w.max()) == pytest.approx(1.0, abs=1e-5)


def test_ray_box_pdf_resampling_and_distortion():
    o = torch.tensor([[0.0, 0.0, 0.0], [5.0, 5.0, 5.0]])
    d = torch.tensor([[1.0, 0.0, 0.0], [1.0, 0.0, 0.0]])
    tn, tf, hit = ray_aabb(o, d, torch.tensor([[-1.0, -1, -1], [2.0, 1, 1]]), near=0.1)
    assert hit.tolist() == [True, False] and float(tn[0]) == pytest.approx(0.1) and float(tf[0]) == pytest.approx(2.0)
    edges = stratified_edges(torch.zeros(4), torch.full((4,), 4.0), 8, jitter=True)
    assert (edges[:, 1:] >= edges[:, :-1]).all() and (edges[:, 0] == 0).all() and (edges[:, -1] == 4).all()
    w = torch.zeros(4, 8)
    w[:, 5] = 1.0  # all weight in [2.5, 3.0)
    fine = sample_pdf(stratified_edges(torch.zeros(4), torch.full((4,), 4.0), 8), w, 16, jitter=False)
    assert (fine[:, 1:] >= fine[:, :-1]).all()
    inner = fine[:, 1:-1]
    assert ((inner >= 2.0) & (inner <= 3.5)).float().mean() > 0.9  # the bin (and its blurred neighbours)
    compact = torch.zeros(1, 8)
    compact[0, 3] = 1.0
    spread = torch.full((1, 8), 1 / 8)
    e = stratified_edges(torch.zeros(1), torch.ones(1), 8)
    near, far = torch.zeros(1), torch.ones(1)
    assert distortion_loss(compact, e, near, far) < distortion_loss(spread, e, near, far)


def test_teacher_sampling_matches_bilinear_upsampling():
    maps = torch.randn(3, 6, 8, 5)
    up = resample_maps(maps, 24, 32)
    v, y, x = torch.randint(3, (200,)), torch.randint(24, (200,)), torch.randint(32, (200,))
    torch.testing.assert_close(sample_maps(maps, v, x, y, 24, 32), up[v, y, x], atol=1e-5, rtol=1e-5)


def test_occupancy_grid_skips_empty_space():
    aabb = torch.tensor([[-1.0, -1, -1], [1.0, 1, 1]])
    grid = OccupancyGrid(aabb, resolution=16)
    centre = torch.tensor([0.5, 0.0, 0.0])

    def ball(x):  # density only inside a small ball
        return ((x - centre).norm(dim=-1) < 0.2).float() * 100.0

    grid.update(ball, threshold=1.0, warmup=True)
    assert 0 < grid.occupied_fraction < 0.05
    assert bool(grid.query(centre[None])[0]) and not bool(grid.query(torch.tensor([[-0.6, 0.0, 0.0]]))[0])
    assert not bool(grid.query(torch.tensor([[3.0, 0.0, 0.0]]))[0])  # outside the box
    # rays through the box evaluate the field only at the few samples inside occupied cells
    cfg = NerfConfig(hash_levels=4, hash_log2_size=10, hash_max_res=32, coarse_samples=32, fine_samples=8,
                     occ_resolution=16, feature_dim=0)
    model = NerfModel(cfg, aabb)
    model.occupancy.load_state_dict(grid.state_dict())
    calls = []
    original = model.field.density

    def counting(x):
        calls.append(len(x))
        return original(x)

    model.field.density = counting
    o = torch.tensor([[-0.99, 0.0, 0.0]]).repeat(64, 1)
    d = F.normalize(torch.tensor([1.0, 0.0, 0.0]) + 0.05 * torch.randn(64, 3), dim=-1)
    with torch.no_grad():
        out = model.render_rays(o, d, with_features=False)
    assert sum(calls) < 0.25 * 64 * (32 + 32 + 8)  # coarse + rendered intervals, most skipped
    assert out.stats["samples_per_ray"] < 0.4 * (32 + 8 + 1)
    # an empty grid renders the background
    model.occupancy.occupied.zero_()
    with torch.no_grad():
        out = model.render_rays(o, d, with_features=False)
    torch.testing.assert_close(out.rgb, torch.ones(64, 3))


def test_mark_invisible_and_prior(tiny_scene):
    from dff_gs.data import load_scene
    from dff_gs.nerf.method import prior_points, scene_box

    scene = load_scene(tiny_scene, test_every=5).split("train")
    grid = OccupancyGrid(scene_box(scene.bounds, 0.05), resolution=24)
    hidden = grid.mark_invisible(scene.cameras)
    assert 0 <= hidden < grid.num_cells
    occupied = grid.init_from_points(prior_points(scene, "depth"), density=10.0)
    assert 0 < occupied < grid.num_cells - hidden
    grid.update(lambda x: torch.full((len(x),), 100.0), threshold=1.0, warmup=True)
    assert int(grid.occupied.sum()) == occupied  # updates carve the prior, never grow past it
    with pytest.raises(ConfigError, match="occ_init"):
        prior_points(scene, "voxels")


# ----------------------------------------------------------------------------------------------- training
def test_tiny_training_lowers_the_loss(tiny_scene, tmp_path):
    from dff_gs.data import load_scene
    from dff_gs.nerf.method import init_occupancy, scene_box
    from dff_gs.nerf.trainer import NerfTrainer
    from dff_gs.teachers.prepare import prepare_teacher

    cfg = tiny_cfg(tiny_scene, tmp_path / "r", tmp_path / "cache", "train.steps=40")
    torch.manual_seed(0)
    scene = load_scene(tiny_scene, test_every=5)
    train = scene.split("train")
    teacher = prepare_teacher(cfg.teacher, scene, torch.device("cpu"), progress=False)
    cfg.nerf.occ_init = "depth"
    model = NerfModel(cfg.nerf, scene_box(scene.bounds, cfg.nerf.aabb_padding), teacher.dim)
    init_occupancy(model, train, cfg)
    trainer = NerfTrainer(cfg, model, train.images, train.cameras, teacher.train_maps, torch.device("cpu"))
    stats = [trainer.train_step() for _ in range(40)]
    first = sum(s["loss_rgb"] for s in stats[:5]) / 5
    last = sum(s["loss_rgb"] for s in stats[-5:]) / 5
    assert last < 0.8 * first
    assert sum(s["loss_feat"] for s in stats[-5:]) < sum(s["loss_feat"] for s in stats[:5])


def test_nerf_run_folder_and_history(nerf_run):
    out, metrics = nerf_run
    for name in ("config.yaml", "checkpoint.pt", "nerf_model.pt", "metrics.json", "history.json"):
        assert (out / name).is_file(), name
    assert list((out / "renders").glob("*.png"))
    saved = json.loads((out / "metrics.json").read_text())
    for key in ("psnr", "ssim", "miou", "accuracy", "teacher_miou", "depth_delta1", "depth_absrel", "train_seconds"):
        assert key in saved and math.isfinite(saved[key]), key
    assert saved["psnr"] > 8
    history = json.loads((out / "history.json").read_text())
    assert [r["step"] for r in history["eval"]] == [15, 30]
    assert all(r["seconds"] > 0 and "psnr" in r and "miou" in r for r in history["eval"])


def test_nerf_resume_continues_exactly(tiny_scene, tmp_path, monkeypatch):
    from dff_gs.nerf.trainer import NerfTrainer
    from dff_gs.engine.pipeline import run

    extra = ("train.steps=8", "train.eval_every=0", "nerf.occ_update_every=3", "nerf.occ_warmup=4")
    # the straight run also logs a comparison image every 4 steps: that must not change what it trains
    run(tiny_cfg(tiny_scene, tmp_path / "full", tmp_path / "cache", *extra, "train.image_every=4"), progress=False)
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(tmp_path / "full" / "tb"), size_guidance={"images": 0})
    events.Reload()
    assert [(e.step, e.width) for e in events.Images("train/comparison")] == [(4, 3 * 48), (8, 3 * 48)]
    original = NerfTrainer.train_step

    def stop_at_5(self):
        stats = original(self)
        if self.step == 5:
            self.stop_requested = True
        return stats

    monkeypatch.setattr(NerfTrainer, "train_step", stop_at_5)
    with pytest.raises(KeyboardInterrupt):
        run(tiny_cfg(tiny_scene, tmp_path / "half", tmp_path / "cache", *extra), progress=False)
    monkeypatch.setattr(NerfTrainer, "train_step", original)
    run(tiny_cfg(tiny_scene, tmp_path / "half", tmp_path / "cache", *extra, f"resume={tmp_path / 'half'}"),
        progress=False)
    a = torch.load(tmp_path / "full" / "nerf_model.pt", weights_only=False)["state"]
    b = torch.load(tmp_path / "half" / "nerf_model.pt", weights_only=False)["state"]
    for k in a:
        assert torch.equal(a[k], b[k]), k  # bit-identical


# ----------------------------------------------------------------------------------------------- queries, edits
def test_queries_on_a_nerf(nerf_run, tiny_scene):
    from dff_gs.data import load_scene
    from dff_gs.nerf import load_nerf
    from dff_gs.query import nerf as NQ
    from dff_gs.backbone import Backbone
    from dff_gs.query import label_probabilities, reference_query_embeddings, text_negatives
    from dff_gs.engine.runs import teacher_from_meta

    model, meta = load_nerf(nerf_run[0])
    assert isinstance(model, Backbone) and model.kind == "nerf"  # 2D queries below are the Gaussians' own code
    teacher = teacher_from_meta(meta)
    names = meta["teacher"]["class_names"]
    cams = load_scene(tiny_scene, test_every=5).split("test").cameras[[0]]
    pts = NQ.field_points(model, max_points=500)
    labels = teacher.encode_text(names)
    p3 = NQ.point_probabilities(model, pts, labels)
    # Eq. 5 at points: a softmax over the dot products of the decoded field features with the labels
    torch.testing.assert_close(p3, label_probabilities(model.point_features(pts), labels), atol=1e-5, rtol=1e-5)
    # a text query against all the other class names is that class's column of the full label set
    sofa = names.index("sofa")
    pt = NQ.text_point_probabilities(model, teacher.encode_text, "sofa", [n for n in names if n != "sofa"], pts)
    torch.testing.assert_close(pt, p3[:, sofa], atol=1e-5, rtol=1e-5)
    # in 2D: the rendered probabilities are Eq. 5 on the rendered decoded features, the segmentation their argmax
    negs = text_negatives(teacher.encode_text, "sofa", names)
    p2 = Q.render_text_probabilities(model, cams, teacher.encode_text, "sofa", negs)
    feats = model.decode(model.render(cams).features)
    queries = teacher.encode_text(["sofa", *negs])
    torch.testing.assert_close(p2, label_probabilities(feats, queries)[..., 0], atol=1e-4, rtol=1e-4)
    seg = Q.render_segmentation(model, cams, labels)
    agree = (seg == label_probabilities(feats, labels).argmax(-1)).float().mean()
    assert agree > 0.99  # equal up to ties of float noise
    # a click is the rendered feature at that pixel; Eq. 5 in 2D agrees with the full render
    f = Q.click_feature(model, cams, 0, 20, 15)
    full = model.decode(model.render(cams).features)[0, 15, 20]
    torch.testing.assert_close(f, full, atol=1e-4, rtol=1e-4)
    ref = Q.render_reference_probabilities(model, cams, f)
    assert ref.shape == (1, cams.height, cams.width) and float(ref[0, 15, 20]) > 0.5
    q = reference_query_embeddings(model.content_features(), f)
    torch.testing.assert_close(NQ.reference_point_probabilities(model, f, pts),
                               label_probabilities(NQ.point_features(model, pts), q)[:, 0])
    with pytest.raises(ConfigError, match="outside"):
        Q.click_feature(model, cams, 0, 999, 0)


def test_render_time_edits_change_the_render(nerf_run, tiny_scene):
    from dff_gs.data import load_scene
    from dff_gs.nerf import load_nerf
    from dff_gs.query import nerf as NQ
    from dff_gs.edit.nerf import SegmentationEdit, render_edit

    model, _ = load_nerf(nerf_run[0])
    cams = load_scene(tiny_scene, test_every=5).split("test").cameras[[0]]
    with torch.no_grad():
        base = model.render(cams, with_features=False)
    mean = F.normalize(NQ.point_features(model, NQ.field_points(model)).mean(0), dim=0)
    everything = torch.stack([mean, -mean])  # every sample is closer to the mean feature than to its opposite
    gone = render_edit(model, cams, SegmentationEdit(everything, "delete"))
    kept = render_edit(model, cams, SegmentationEdit(everything, "extract"))
    assert float(gone.alpha.mean()) < 0.05 and float(base.alpha.mean()) > 0.5
    torch.testing.assert_close(kept.rgb, base.rgb, atol=1e-4, rtol=1e-4)
    red = render_edit(model, cams, SegmentationEdit(everything, "recolor", color=[1.0, 0.0, 0.0]))
    assert float(red.rgb[..., 0].mean()) > float(base.rgb[..., 0].mean()) + 0.1
    # a partial selection (a click's own feature against the mean) removes part of the view
    f = Q.click_feature(model, cams, 0, 20, 15)
    part = render_edit(model, cams, SegmentationEdit(torch.stack([f, mean]), "delete"))
    assert 0.01 < float((part.rgb - base.rgb).abs().mean()) and float(part.alpha.mean()) > float(gone.alpha.mean())
    with pytest.raises(ConfigError, match="recolor"):
        SegmentationEdit(everything, "recolor")
    with pytest.raises(ConfigError, match="unknown NeRF edit"):
        SegmentationEdit(everything, "melt")


def test_a_nerf_run_opens_as_a_backbone_and_queries_through_the_context(nerf_run, tmp_path):
    """QueryContext on a NeRF: per-primitive queries are Eq. 5 at every occupied cell (the 3D query of
    nerf/query.py), clusters and clicks work, Gaussian-only paths refuse in one line; save / load round-trips."""
    from dff_gs.backbone import Backbone
    from dff_gs.edit import EditScript, apply_script
    from dff_gs.edit.script import Delete
    from dff_gs.query import nerf as NQ
    from dff_gs.engine.runs import load_backbone

    out = nerf_run[0]
    ctx = Q.QueryContext.open(out)
    assert ctx.kind == "nerf" and isinstance(ctx.backbone, Backbone) and ctx.model is ctx.backbone
    pts = NQ.field_points(ctx.model, max_points=10**9)
    assert torch.equal(ctx.model.primitive_points(), pts)
    negs = Q.text_negatives(ctx.teacher.encode_text, "sofa", ctx.class_names)
    p, info = Q.query_probabilities(ctx, Q.QuerySpec("text", "sofa"))
    want = NQ.text_point_probabilities(ctx.model, ctx.teacher.encode_text, "sofa", negs, pts)
    assert info["negatives"] == negs and torch.equal(p, want)
    p_click, _ = Q.query_probabilities(ctx, Q.QuerySpec("click", (0, 20, 15)), grouping=object())  # no 3D grouping
    f = Q.click_feature(ctx.model, ctx.scene().cameras, 0, 20, 15)
    torch.testing.assert_close(p_click, NQ.reference_point_probabilities(ctx.model, f, pts))
    p_cluster, _ = Q.query_probabilities(ctx, Q.QuerySpec("cluster", (3, 1)))
    labels, _ = Q.kmeans(ctx.primitive_features(), 3)
    assert p_cluster.shape == (len(pts),)
    assert float(p_cluster[labels == 1].mean()) > float(p_cluster[labels != 1].mean())
    with pytest.raises(ConfigError, match="an edit needs Gaussians and this is a NeRF run.*--op delete"):
        apply_script(ctx, EditScript(select=[Q.QuerySpec("text", "sofa")], operations=[Delete()]))
    # save / load on the interface: the model file reads back as the same backbone
    saved = ctx.backbone.save(tmp_path / "copy" / "nerf_model.pt", ctx.meta)
    again, meta = load_backbone(saved)
    assert meta == ctx.meta and meta["scene_options"]["test_every"] == 5  # a NeRF run records its scene options
    for k, v in ctx.model.state_dict().items():
        assert torch.equal(v, again.state_dict()[k]), k


def test_the_query_command_on_a_nerf_run(nerf_run, tmp_path, capsys):
    from dff_gs.cli.query import main

    out = nerf_run[0]
    assert main([str(out), "--text", "sofa", "--out", str(tmp_path / "seg")]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["query"] == "sofa" and summary["occupied_cells"] > 0 and "selected_cells" in summary
    assert json.loads((tmp_path / "seg" / "selection.json").read_text()) == summary
    assert len(list((tmp_path / "seg").glob("*.png"))) == 2  # the tiny room's two test views
    assert main([str(out), "--labels", "floor,wall,sofa"]) == 0
    counts = json.loads(capsys.readouterr().out)["cells_per_label"]
    assert sum(counts.values()) == summary["occupied_cells"]
    assert main([str(out), "--cluster", "3"]) == 0
    assert sum(json.loads(capsys.readouterr().out)["clusters"]) == summary["occupied_cells"]
    # a render-time edit of everything that is not the mean feature's opposite leaves an empty (background) view
    assert main([str(out), "--click", "0", "20", "15", "--op", "recolor", "--color", "0,1,0", "--threshold", "0",
                 "--out", str(tmp_path / "green")]) == 0
    capsys.readouterr()
    from PIL import Image
    import numpy as np

    img = np.asarray(Image.open(next((tmp_path / "green").glob("*.png"))))
    assert img[..., 1].mean() > img[..., 0].mean() + 50  # every sample recoloured green
    for bad, msg in ((["--labels", "a,b", "--op", "delete", "--out", "x"], "one query"),
                     (["--text", "sofa", "--op", "delete"], "give --out")):
        assert main([str(out), *bad]) == 2 and msg in capsys.readouterr().err


# ----------------------------------------------------------------------------------------------- bad input
def test_nerf_run_refused_by_gaussian_tools_and_back(nerf_run, tmp_path):
    from dff_gs.core.gaussians import GaussianModel
    from dff_gs.io.ply import save_ply
    from dff_gs.nerf import load_nerf
    from dff_gs.cli.query import main as query_main
    from dff_gs.cli.render import main as render_main
    from dff_gs.engine.runs import load_model

    out = nerf_run[0]
    for path in (out, out / "nerf_model.pt", out / "checkpoint.pt"):
        with pytest.raises(DataError, match="this is a NeRF run.*needs Gaussians"):
            load_model(path)
    from dff_gs.cli.edit import main as edit_main

    assert edit_main([str(out), "--text", "sofa", "--op", "delete", "--out", str(tmp_path / "e.ply"), "--quiet"]) == 2
    assert not (tmp_path / "e.ply").exists()
    assert render_main([str(out), "--out", str(tmp_path / "r"), "--quiet"]) == 0  # any backbone renders
    assert len(list((tmp_path / "r").glob("*.png"))) == 2  # the tiny room's two test views
    # a query's segmentation: Eq. 5 on the rendered features, as the query command renders it
    assert render_main([str(out), "--out", str(tmp_path / "r2"), "--text", "sofa", "--quiet"]) == 0
    assert query_main([str(out), "--text", "sofa", "--out", str(tmp_path / "q")]) == 0
    seg = sorted(f.read_bytes() for f in (tmp_path / "r2" / "segmentation").glob("*.png"))
    assert len(seg) == 2 and seg == sorted(f.read_bytes() for f in (tmp_path / "q").glob("*.png"))
    assert render_main([str(out), "--out", str(tmp_path / "r3"), "--cluster", "3:1", "--quiet"]) == 2
    gs = GaussianModel.random(torch.tensor([[0.0, 0, 0], [1, 1, 1]]), 50, feature_dim=4)
    save_ply(gs, tmp_path / "gs" / "point_cloud.ply")
    for path in (tmp_path / "gs", tmp_path / "gs" / "point_cloud.ply"):
        with pytest.raises(DataError, match="Gaussian"):
            load_nerf(path)
    with pytest.raises(DataError, match="no such"):
        load_nerf(tmp_path / "missing")


def test_a_nerf_model_file_round_trips_and_a_newer_one_is_refused(tmp_path):
    from dff_gs.core.errors import CheckpointError
    from dff_gs.nerf import load_nerf

    cfg = NerfConfig(field="mlp", pe_frequencies=2, mlp_width=8, mlp_depth=1, hidden=8, coarse_samples=4,
                     fine_samples=2, occ_resolution=4)
    model = NerfModel(cfg, torch.tensor([[-1.0, -1, -1], [1, 1, 1]]), teacher_dim=3)
    f = model.save(tmp_path / "nerf_model.pt", {"scene": "room"})
    again, meta = load_nerf(f)
    assert meta == {"scene": "room"}
    assert all(torch.equal(v, again.state_dict()[k]) for k, v in model.state_dict().items())
    torch.save(dict(torch.load(f, weights_only=False), version=2), f)
    with pytest.raises(CheckpointError, match="nerf_model.pt: unknown NeRF model version 2 .*newer dff_gs"):
        load_nerf(f)


def test_unknown_backbone_names_the_valid_ones(tiny_scene, tmp_path):
    from dff_gs.engine.pipeline import run

    with pytest.raises(ConfigError, match=r"train.backbone='mlp': must be one of gs \| nerf"):
        run(tiny_cfg(tiny_scene, tmp_path / "x", tmp_path / "cache", "train.backbone=mlp"), progress=False)
    with pytest.raises(ConfigError, match="nerf.field"):
        run(tiny_cfg(tiny_scene, tmp_path / "y", tmp_path / "cache", "nerf.field=voxels"), progress=False)
    with pytest.raises(ConfigError, match="patch_size=4.*ssim_lambda"):  # patches smaller than the SSIM window
        run(tiny_cfg(tiny_scene, tmp_path / "z", tmp_path / "cache", "nerf.patch_size=4"), progress=False)


def test_mlp_variant_renders(tiny_scene):
    cfg = NerfConfig(field="mlp", pe_frequencies=4, mlp_width=32, mlp_depth=2, hidden=32, coarse_samples=8,
                     fine_samples=4, occ_resolution=8)
    model = NerfModel(cfg, torch.tensor([[-1.0, -1, -1], [1, 1, 1]]), teacher_dim=6)
    o, d = torch.zeros(10, 3), F.normalize(torch.randn(10, 3), dim=-1)
    out = model.render_rays(o, d)
    assert out.rgb.shape == (10, 3) and out.features.shape == (10, 16) and model.decode(out.features).shape == (10, 6)
    out.rgb.sum().backward()
    assert model.field.density_mlp[0].weight.grad is not None


# ----------------------------------------------------------------------------------------------- benchmark
def test_bench_tiny_budget_writes_every_key(tiny_scene, tmp_path):
    from dff_gs.cli import bench

    out = tmp_path / "bench"
    rc = bench.main(["--data", str(tiny_scene), "--gs-steps", "6", "--nerf-steps", "6", "--gs-eval-every", "3",
                     "--nerf-eval-every", "3", "--out", str(out), "--in-process", "--quiet", "--fps-views", "1",
                     "--device", "cpu", "data.test_every=5", f"teacher.cache_dir={tmp_path / 'cache'}",
                     "model.init_points=1500", "train.backend=torch", "train.checkpoint_every=0", *TINY_NERF])
    assert rc == 0
    report = json.loads((out / "bench.json").read_text())
    for b in ("gs", "nerf"):
        for key in ("psnr", "ssim", "miou", "accuracy", "train_seconds", "render_fps", "query_ms", "peak_mem_mb",
                    "model_mb"):
            assert key in report[b] and report[b][key] is not None and math.isfinite(report[b][key]), (b, key)
        assert len(report[b]["eval_history"]) >= 2
    assert "time_to_nerf_psnr" in report["gs"]
    assert set(report["comparison"]["met"]) == {"time_to_nerf_psnr", "render_speedup", "miou"}
    for key in ("cpu", "cores", "torch", "device"):
        assert report["machine"][key] is not None
    for name in ("bench.md", "psnr_vs_time.png", "miou_vs_time.png"):
        assert (out / name).is_file(), name
    assert "time_to_nerf_psnr" not in report["nerf"]

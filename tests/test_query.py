"""Queries (paper Eq. 5): text with negatives, label sets, patch/click references, clusters, CLI."""

import json

import pytest
import torch
import torch.nn.functional as F

from dff_gs import query as Q
from dff_gs.core.cameras import Cameras, intrinsics_from_fov
from dff_gs.core.errors import ConfigError
from dff_gs.core.gaussians import GaussianModel

EMB = {  # a toy text space: "couch" is a paraphrase of "sofa"
    "sofa": [1.0, 0.0, 0.0, 0.0], "couch": [0.95, 0.05, 0.0, 0.0], "chair": [0.0, 1.0, 0.0, 0.0],
    "wall": [0.0, 0.0, 1.0, 0.0], "object": [0.3, 0.3, 0.3, 0.8], "things": [0.2, 0.2, 0.2, 0.9],
    "stuff": [0.1, 0.1, 0.1, 1.0], "texture": [0.0, 0.0, 0.2, 1.0],
}


def encode(texts):
    return F.normalize(torch.tensor([EMB[t] for t in texts]), dim=-1)


def toy_model():
    """Three clusters of Gaussians in front of a camera whose features are the sofa / chair / wall embeddings."""
    g = torch.Generator().manual_seed(0)
    centres = torch.tensor([[-0.6, 0.0, 3.0], [0.6, 0.0, 3.0], [0.0, 0.0, 5.0]])
    labels = torch.arange(3).repeat_interleave(40)
    means = centres[labels] + 0.08 * torch.randn(120, 3, generator=g)
    model = GaussianModel.from_points(means, torch.rand(120, 3, generator=g), sh_degree=0, feature_dim=4,
                                      init_opacity=0.9)
    feats = encode(["sofa", "chair", "wall"])[labels] + 0.05 * torch.randn(120, 4, generator=g)
    with torch.no_grad():
        model.params["features"].copy_(feats)
        model.params["scales"].fill_(torch.log(torch.tensor(0.12)))
    return model, labels


def camera():
    K = intrinsics_from_fov(1.2, 40, 30)
    return Cameras(torch.eye(4)[None], K[None], 40, 30)


def test_eq5_probabilities_sum_to_one_and_follow_dot_products():
    f = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    q = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.7, 0.7]])
    p = Q.label_probabilities(f, q)
    assert torch.allclose(p.sum(-1), torch.ones(2))
    assert p[0].argmax() == 0 and p[1].argmax() == 1
    with pytest.raises(ConfigError):
        Q.label_probabilities(f, torch.ones(3, 5))


def test_text_query_selects_its_object_and_a_paraphrase_does_too():
    model, labels = toy_model()
    for text in ("sofa", "couch"):
        negs = Q.text_negatives(encode, text, ["sofa", "chair", "wall"])
        assert "sofa" not in negs and "chair" in negs  # a paraphrase is not its own competitor
        sel = Q.select(Q.text_probabilities(model, encode, text, negs))
        assert torch.equal(sel.mask, labels == 0), text
    sel = Q.select(Q.text_probabilities(model, encode, "chair", Q.text_negatives(encode, "chair", ["sofa", "wall"])))
    assert torch.equal(sel.mask, labels == 1)


def test_label_set_segmentation_and_clusters():
    model, labels = toy_model()
    seg = Q.segment_gaussians(model, encode(["sofa", "chair", "wall"]))
    assert torch.equal(seg, labels)
    clusters, centroids = Q.kmeans(Q.gaussian_features(model), 3)
    assert centroids.shape == (3, 4)
    for c in range(3):  # each k-means cluster is one object
        assert len(clusters[labels == c].unique()) == 1
    with pytest.raises(ConfigError):
        Q.kmeans(Q.gaussian_features(model), 0)


def test_click_and_reference_queries():
    model, labels = toy_model()
    cams = camera()
    uv, _ = cams.project(torch.tensor([[-0.6, 0.0, 3.0]]))
    x, y = (int(v) for v in uv[0, 0])
    ref = Q.click_feature(model, cams, 0, x, y, backend="torch")
    sel = Q.select(Q.reference_probabilities(model, ref, k=3))
    assert (sel.mask == (labels == 0)).float().mean() > 0.95
    for bad in [(0, 40, 3), (0, -1, 3), (0, 3, 30), (1, 3, 3)]:
        with pytest.raises(ConfigError):
            Q.click_feature(model, cams, *bad, backend="torch")
    cover = Q.render_selection(model, cams, labels == 0, backend="torch")
    assert cover.shape == (1, 30, 40) and cover[0, y, x] > 0.5 and cover[0, y, 40 - 1 - x] < 0.5


def test_bad_queries():
    model, _ = toy_model()
    with pytest.raises(ConfigError, match="empty"):
        Q.text_probabilities(model, encode, "  ", ["wall"])
    with pytest.raises(ConfigError):
        Q.query_embeddings(torch.ones(4), None)
    bare = GaussianModel.from_points(torch.rand(5, 3), sh_degree=0)
    with pytest.raises(ConfigError, match="no features"):
        Q.gaussian_features(bare)
    with pytest.raises(ConfigError):
        Q.patch_feature(object(), torch.rand(8, 8, 3))


@pytest.mark.parametrize("kind, value, msg, cli", [
    ("text", "   ", "the query text is empty", ["--text", "   "]), ("patch", "", "patch query", ["--patch", ""]),
    ("click", (0, 1), "three integers", None), ("click", (0, 1.5, 2), "three integers", None),
    ("cluster", (3, 3), "0 <= ID < K", ["--cluster", "3:3"]), ("cluster", (0, None), "K >= 1", ["--cluster", "0"]),
    ("cluster", (3, -1), "0 <= ID < K", ["--cluster", "3:-1"]), ("cluster", (True, 0), "K >= 1", None),
    ("colour", "red", "unknown query kind", None),
])
def test_a_query_is_checked_in_one_place_wherever_it_comes_from(kind, value, msg, cli, tmp_path, capsys):
    """QuerySpec refuses a bad query, and so do the command line (before any model is read) and an edit script,
    with its words."""
    from dff_gs.cli.query import main
    from dff_gs.edit.script import parse_query

    with pytest.raises(ConfigError, match=msg):
        Q.QuerySpec(kind, value)
    if cli is not None:
        assert main([str(tmp_path / "never-read.ply"), *cli]) == 2
        assert msg in capsys.readouterr().err
    if kind in ("text", "click") or (cli is not None and kind == "cluster" and value[1] is not None):
        with pytest.raises(ConfigError, match=f"select: .*{msg}"):
            parse_query({kind: list(value) if isinstance(value, tuple) else value})
    assert Q.QuerySpec("cluster", (3, None)).value == (3, None)  # K alone: the whole clustering


def test_query_cli_on_a_saved_model(tmp_path, capsys):
    """The CLI with the real offline text model: a model whose features are MiniLM embeddings."""
    from dff_gs.io.ply import save_ply
    from dff_gs.cli.query import main
    from dff_gs.teachers.text import encode_minilm

    model, labels = toy_model()
    names = ["sofa", "chair", "wall"]
    emb = encode_minilm(names)
    model = GaussianModel({**{k: v.detach() for k, v in model.params.items()},
                           "features": emb[labels]}, sh_degree=0)
    save_ply(model, tmp_path / "m.ply", metadata={"teacher": {"name": "labels", "degrade": True,
                                                              "text_model": "minilm", "class_names": names}})
    assert main([str(tmp_path / "m.ply"), "--text", "couch"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["selected"] == 40 and "sofa" not in out["negatives"]
    assert main([str(tmp_path / "m.ply"), "--text", ""]) == 2
    assert main([str(tmp_path / "nope.ply"), "--text", "sofa"]) == 2

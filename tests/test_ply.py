"""3DGS PLY export / import: round trip, the exact 3DGS vertex layout, interoperability with plain 3DGS
readers and files, and clear errors (naming the file) for missing, truncated, incomplete and non-finite data."""

import json

import numpy as np
import pytest
import torch
from plyfile import PlyData, PlyElement

from dff_gs.core.errors import CheckpointError, DataError
from dff_gs.core.gaussians import GaussianModel
from dff_gs.io.ply import load_ply, save_ply

C0 = 0.28209479177387814


def make_model(N=7, sh_degree=3, D=4, decoder_dim=6, seed=0) -> GaussianModel:
    g = torch.Generator().manual_seed(seed)
    K = (sh_degree + 1) ** 2
    # distinct SH values: shN[n, k, c] = 1000 n + 100 c + (k + 1), i.e. coefficient index k + 1 of channel c
    n, k, c = torch.meshgrid(torch.arange(N), torch.arange(K - 1), torch.arange(3), indexing="ij")
    params = {
        "means": torch.randn(N, 3, generator=g),
        "quats": torch.randn(N, 4, generator=g),
        "scales": torch.randn(N, 3, generator=g) - 3.0,
        "opacities": torch.randn(N, generator=g),
        "sh0": torch.randn(N, 1, 3, generator=g),
        "shN": (1000 * n + 100 * c + k + 1).float(),
        "features": torch.randn(N, D, generator=g),
    }
    model = GaussianModel(params, sh_degree, decoder_dim=decoder_dim)
    if model.decoder is not None:
        with torch.no_grad():
            model.decoder.weight.copy_(torch.randn(model.decoder.weight.shape, generator=g))
            model.decoder.bias.copy_(torch.randn(model.decoder.bias.shape, generator=g))
    return model


def expected_names(sh_degree: int, D: int) -> list[str]:
    n_rest = 3 * ((sh_degree + 1) ** 2 - 1)
    return (["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2"]
            + [f"f_rest_{i}" for i in range(n_rest)]
            + ["opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"]
            + [f"semantic_{i}" for i in range(D)])


def test_round_trip(tmp_path):
    model = make_model()
    path = save_ply(model, tmp_path / "out" / "point_cloud.ply",
                    metadata={"teacher": {"name": "clip"}, "iteration": 30})
    assert path == tmp_path / "out" / "point_cloud.ply" and path.is_file()
    side = tmp_path / "out" / "point_cloud.dff.json"
    assert side.is_file()
    assert sorted(p.name for p in path.parent.iterdir()) == ["point_cloud.dff.json", "point_cloud.ply"]  # no temps
    meta_file = json.loads(side.read_text())
    assert meta_file["sh_degree"] == 3 and meta_file["feature_dim"] == 4 and meta_file["num_gaussians"] == 7

    loaded, meta = load_ply(path)
    assert meta["teacher"] == {"name": "clip"} and meta["iteration"] == 30
    assert loaded.sh_degree == 3 and loaded.feature_dim == 4 and loaded.num_gaussians == 7
    for k, v in model.params.items():
        assert loaded.params[k].shape == v.shape, k
        assert torch.equal(loaded.params[k], v.detach()), k
    assert loaded.decoder is not None and loaded.output_dim == 6
    assert torch.equal(loaded.decoder.weight, model.decoder.weight.detach())
    assert torch.equal(loaded.decoder.bias, model.decoder.bias.detach())


@pytest.mark.parametrize("sh_degree,D", [(0, 0), (1, 3), (3, 0)])
def test_round_trip_other_shapes(tmp_path, sh_degree, D):
    model = make_model(N=5, sh_degree=sh_degree, D=D, decoder_dim=None)
    path = save_ply(model, tmp_path / "point_cloud.ply")
    loaded, meta = load_ply(path)
    assert loaded.sh_degree == sh_degree and loaded.feature_dim == D and loaded.decoder is None
    assert meta["decoder"] is None
    for k, v in model.params.items():
        assert torch.equal(loaded.params[k], v.detach()), k


def test_vertex_layout(tmp_path):
    N, deg, D = 7, 3, 4
    model = make_model(N=N, sh_degree=deg, D=D)
    path = save_ply(model, tmp_path / "point_cloud.ply")
    ply = PlyData.read(str(path))
    assert [e.name for e in ply.elements] == ["vertex"]
    assert ply.byte_order == "<" and not ply.text
    vert = ply["vertex"]
    assert [p.name for p in vert.properties] == expected_names(deg, D)
    dtypes = [p.val_dtype for p in vert.properties]
    assert all(t in ("f4", "float32", "float") for t in dtypes), dtypes
    assert vert.count == N
    with open(path, "rb") as f:
        head = f.read(200)
    assert head.startswith(b"ply\nformat binary_little_endian 1.0\n")
    # f_rest is channel-major: f_rest_0..K-2 are red coefficients 1..K-1, then green, then blue
    K = (deg + 1) ** 2
    for n in range(N):
        rest = [float(vert[f"f_rest_{i}"][n]) for i in range(3 * (K - 1))]
        for c in range(3):
            assert rest[c * (K - 1):(c + 1) * (K - 1)] == [1000 * n + 100 * c + k for k in range(1, K)]
    p = model.params
    np.testing.assert_array_equal(vert["f_dc_1"], p["sh0"][:, 0, 1].detach().numpy())
    np.testing.assert_array_equal(vert["rot_0"], p["quats"][:, 0].detach().numpy())  # w first, unnormalised
    np.testing.assert_array_equal(vert["scale_2"], p["scales"][:, 2].detach().numpy())  # log scales
    np.testing.assert_array_equal(vert["semantic_3"], p["features"][:, 3].detach().numpy())
    for name in ("nx", "ny", "nz"):
        assert (vert[name] == 0).all()


def test_plain_3dgs_reader_understands_our_file(tmp_path):
    """A reader that knows only the 3DGS layout (what viewers do) gets the same Gaussians."""
    model = make_model()
    path = save_ply(model, tmp_path / "point_cloud.ply")
    v = PlyData.read(str(path))["vertex"]
    xyz = np.stack([v["x"], v["y"], v["z"]], 1)
    opacity = 1.0 / (1.0 + np.exp(-np.asarray(v["opacity"], np.float64)))
    scales = np.exp(np.stack([v[f"scale_{i}"] for i in range(3)], 1).astype(np.float64))
    rots = np.stack([v[f"rot_{i}"] for i in range(4)], 1).astype(np.float64)
    rots /= np.linalg.norm(rots, axis=1, keepdims=True)
    dc_rgb = np.stack([v[f"f_dc_{i}"] for i in range(3)], 1) * C0 + 0.5
    extra = sorted((p.name for p in v.properties if p.name.startswith("f_rest_")), key=lambda s: int(s[7:]))
    rest = np.stack([v[n] for n in extra], 1).reshape(len(xyz), 3, -1)  # 3DGS: [N, 3, K-1]
    np.testing.assert_allclose(xyz, model.get_means().detach().numpy(), rtol=0, atol=0)
    np.testing.assert_allclose(opacity, model.get_opacities().detach().double().numpy(), rtol=1e-6)
    np.testing.assert_allclose(scales, model.get_scales().detach().double().numpy(), rtol=1e-6)
    np.testing.assert_allclose(rots, model.get_quats().detach().double().numpy(), atol=1e-6)
    np.testing.assert_allclose(dc_rgb, (model.params["sh0"][:, 0] * C0 + 0.5).detach().numpy(), rtol=1e-6)
    np.testing.assert_array_equal(rest, model.params["shN"].transpose(1, 2).detach().numpy())


def write_plain_3dgs(path, N=5, degree=3, seed=0, drop=(), nan_at=None):
    """A PLY as the original 3DGS code writes it (no semantic_*, no sidecar)."""
    rng = np.random.default_rng(seed)
    names = expected_names(degree, 0)
    names = [n for n in names if n not in drop]
    arr = np.empty(N, dtype=[(n, "f4") for n in names])
    for n in names:
        arr[n] = rng.standard_normal(N).astype(np.float32)
    if nan_at is not None:
        arr[nan_at][0] = np.nan
    PlyData([PlyElement.describe(arr, "vertex")], text=False, byte_order="<").write(str(path))
    return arr


def test_plain_3dgs_file_loads(tmp_path):
    path = tmp_path / "point_cloud.ply"
    arr = write_plain_3dgs(path, N=5, degree=3)
    model, meta = load_ply(path)
    assert meta == {}
    assert model.sh_degree == 3 and model.feature_dim == 0 and model.decoder is None and model.num_gaussians == 5
    p = {k: v.detach().numpy() for k, v in model.params.items()}
    np.testing.assert_array_equal(p["means"], np.stack([arr["x"], arr["y"], arr["z"]], 1))
    np.testing.assert_array_equal(p["opacities"], arr["opacity"])
    np.testing.assert_array_equal(p["quats"], np.stack([arr[f"rot_{i}"] for i in range(4)], 1))
    np.testing.assert_array_equal(p["scales"], np.stack([arr[f"scale_{i}"] for i in range(3)], 1))
    np.testing.assert_array_equal(p["sh0"][:, 0], np.stack([arr[f"f_dc_{i}"] for i in range(3)], 1))
    # channel-major f_rest: f_rest_0..14 are red's 15 higher coefficients
    for c in range(3):
        for k in range(15):
            np.testing.assert_array_equal(p["shN"][:, k, c], arr[f"f_rest_{c * 15 + k}"])
    assert p["features"].shape == (5, 0)


def test_missing_file(tmp_path):
    path = tmp_path / "nope" / "point_cloud.ply"
    with pytest.raises(DataError, match="nope"):
        load_ply(path)


@pytest.mark.parametrize("cut", ["half", "mid_header", "header_only", "one_byte_short", "empty"])
def test_truncated_file(tmp_path, cut):
    path = save_ply(make_model(N=50), tmp_path / "point_cloud.ply")
    data = path.read_bytes()
    header_end = data.index(b"end_header\n") + len(b"end_header\n")
    keep = {"half": len(data) // 2, "mid_header": header_end // 2, "header_only": header_end,
            "one_byte_short": len(data) - 1, "empty": 0}[cut]
    path.write_bytes(data[:keep])
    with pytest.raises(DataError) as err:
        load_ply(path)
    assert str(path) in str(err.value)
    assert isinstance(err.value, ValueError)


def test_missing_opacity(tmp_path):
    path = tmp_path / "point_cloud.ply"
    write_plain_3dgs(path, drop=("opacity",))
    with pytest.raises(DataError) as err:
        load_ply(path)
    assert str(path) in str(err.value) and "opacity" in str(err.value)


def test_nan_in_file(tmp_path):
    path = tmp_path / "point_cloud.ply"
    write_plain_3dgs(path, nan_at="scale_1")
    with pytest.raises(CheckpointError) as err:
        load_ply(path)
    assert str(path) in str(err.value) and isinstance(err.value, ValueError)


def test_nan_in_model_refused_on_save(tmp_path):
    model = make_model()
    with torch.no_grad():
        model.params["means"][2, 1] = float("nan")
    path = tmp_path / "point_cloud.ply"
    with pytest.raises(CheckpointError) as err:
        save_ply(model, path)
    assert str(path) in str(err.value)
    assert list(tmp_path.iterdir()) == []


def test_failed_write_leaves_nothing(tmp_path, monkeypatch):
    """Atomic write: an error while writing leaves neither the PLY nor a temporary file, and an existing PLY
    is kept as it was."""
    path = tmp_path / "point_cloud.ply"
    old = save_ply(make_model(seed=1), path).read_bytes()

    def boom(self, stream):
        with open(stream, "wb") as f:
            f.write(b"ply\npartial")
        raise OSError("disk full")

    monkeypatch.setattr(PlyData, "write", boom)
    with pytest.raises(OSError, match="disk full"):
        save_ply(make_model(seed=2), path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["point_cloud.dff.json", "point_cloud.ply"]
    assert path.read_bytes() == old


def test_overwrite_leaves_no_temp_files(tmp_path):
    path = tmp_path / "point_cloud.ply"
    save_ply(make_model(seed=1), path)
    save_ply(make_model(seed=2, D=2, decoder_dim=None), path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["point_cloud.dff.json", "point_cloud.ply"]
    loaded, meta = load_ply(path)
    assert loaded.feature_dim == 2 and loaded.decoder is None and meta["decoder"] is None
    assert torch.equal(loaded.params["means"], make_model(seed=2).params["means"].detach())

"""Fréchet distance against hand computations; EfficientNet-Lite0 weights and features; the
TorchScript Inception path with a stand-in module."""
from pathlib import Path

import numpy as np
import pytest
import torch

from cai.eval import features, lite0
from cai.imageio import load_rgb

DEFAULT_NORMALS = Path(__file__).resolve().parents[2] / "cai" / "data" / "default" / "normals" / "images"


# ----------------------------------------------------------------------------- Fréchet distance
def reference_fd(mu1, s1, mu2, s2):
    """|mu1 - mu2|^2 + tr(S1) + tr(S2) - 2 tr((S1^1/2 S2 S1^1/2)^1/2), with symmetric eigen-roots."""
    def psd_sqrt(a):
        w, v = np.linalg.eigh(a)
        return (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    r1 = psd_sqrt(s1)
    cross = psd_sqrt(r1 @ s2 @ r1)
    d = np.asarray(mu1) - np.asarray(mu2)
    return float(d @ d + np.trace(s1) + np.trace(s2) - 2 * np.trace(cross))


def test_fd_one_dimension_by_hand():
    # N(0, 4) vs N(3, 1): 9 + 4 + 1 - 2 * sqrt(4) = 10
    assert features.frechet_distance([0.0], [[4.0]], [3.0], [[1.0]]) == pytest.approx(10.0)


def test_fd_diagonal_by_hand():
    mu1, mu2 = np.array([1.0, 2.0, 0.0]), np.array([0.0, 0.0, 0.0])
    v1, v2 = np.array([1.0, 4.0, 9.0]), np.array([4.0, 1.0, 9.0])
    expected = 1 + 4 + np.sum(v1 + v2 - 2 * np.sqrt(v1 * v2))  # 5 + (1 + 1 + 0) = 7
    assert expected == 7
    assert features.frechet_distance(mu1, np.diag(v1), mu2, np.diag(v2)) == pytest.approx(7.0)


@pytest.mark.parametrize("seed", range(4))
def test_fd_matches_eigen_reference(seed):
    rng = np.random.default_rng(seed)
    a, b = rng.normal(size=(5, 5)), rng.normal(size=(5, 5))
    s1, s2 = a @ a.T + 0.1 * np.eye(5), b @ b.T + 0.1 * np.eye(5)
    mu1, mu2 = rng.normal(size=5), rng.normal(size=5)
    got = features.frechet_distance(mu1, s1, mu2, s2)
    assert got == pytest.approx(reference_fd(mu1, s1, mu2, s2), rel=1e-8)
    assert got == pytest.approx(features.frechet_distance(mu2, s2, mu1, s1), rel=1e-8)  # symmetric


def test_fd_of_feature_sets():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(50, 4))
    assert features.frechet_distance_features(x, x) == pytest.approx(0.0, abs=1e-8)
    shift = np.array([1.0, -2.0, 0.5, 0.0])
    assert features.frechet_distance_features(x, x + shift) == pytest.approx(shift @ shift, rel=1e-6)
    # fewer samples than dimensions (singular covariances) still gives a finite, ~0 self-distance
    y = rng.normal(size=(5, 20))
    assert abs(features.frechet_distance_features(y, y)) < 1e-4


def test_feature_stats_checks():
    with pytest.raises(ValueError, match="at least 2"):
        features.feature_stats(np.zeros((1, 3)))
    with pytest.raises(ValueError, match=r"\(N, D\)"):
        features.feature_stats(np.zeros(3))
    with pytest.raises(ValueError, match="NaN"):
        features.feature_stats(np.array([[0.0, np.nan], [1.0, 1.0]]))
    with pytest.raises(ValueError, match="must both be"):
        features.frechet_distance([0, 0], np.eye(2), [0, 0, 0], np.eye(3))


# ----------------------------------------------------------------------------- EfficientNet-Lite0
def test_lite0_state_dict_matches_the_shipped_file_exactly():
    state = torch.load(lite0.weights_path(), map_location="cpu", weights_only=True)
    model = lite0.EfficientNetLite0()
    ours = model.state_dict()
    assert set(ours) == set(state)
    assert all(ours[k].shape == state[k].shape for k in state)
    model.load_state_dict(state, strict=True)  # raises on any mismatch
    loaded = lite0.load_lite0()
    assert not any(p.requires_grad for p in loaded.parameters()) and not loaded.training


def test_same_padding_output_sizes():
    model = lite0.load_lite0()
    x = torch.zeros(1, 3, 161, 97)
    feats = model.pyramid(x, (2, 4, 8, 16, 32))
    assert [tuple(f.shape[-2:]) for f in feats] == [(81, 49), (41, 25), (21, 13), (11, 7), (6, 4)]
    assert [f.shape[1] for f in feats] == [16, 24, 40, 112, 320]
    with pytest.raises(ValueError, match="strides"):
        model.pyramid(x, (3,))


@pytest.fixture(scope="module")
def lite0_features():
    return features.Lite0Features(size=160)


def test_lite0_features_deterministic_and_shaped(lite0_features):
    ims = [load_rgb(p)[0] for p in sorted(DEFAULT_NORMALS.glob("*.png"))]
    a, b = lite0_features(ims), lite0_features(ims[::-1])[::-1]
    assert a.shape == (6, 1280) and a.dtype == np.float64
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)  # batch order does not matter
    grey = lite0_features([ims[0][..., 0]])
    np.testing.assert_allclose(grey, lite0_features([np.repeat(ims[0][..., :1], 3, axis=2)]), rtol=1e-6)


def test_lite0_features_tell_textures_apart(lite0_features):
    """Two crops of one photograph are nearest neighbours, and fabric crops are closer to fabric
    than to pavement (ImageNet features behave sanely on real textures)."""
    files = sorted(DEFAULT_NORMALS.glob("*.png"))  # fabric_01-03, pavement_01-03
    crops = [c for p in files for im in [load_rgb(p)[0]] for c in (im[:128, :128], im[128:, 128:])]
    f = lite0_features(crops)
    f /= np.linalg.norm(f, axis=1, keepdims=True)
    sim = f @ f.T
    np.fill_diagonal(sim, -np.inf)
    assert np.array_equal(sim.argmax(axis=1), np.arange(12) ^ 1)
    kind = np.array([0] * 6 + [1] * 6)
    same, off = kind[:, None] == kind[None, :], ~np.eye(12, dtype=bool)
    assert sim[same & off].mean() > sim[~same].mean() + 0.1
    # shuffling pixels destroys the texture: far from the original
    rng = np.random.default_rng(0)
    shuffled = rng.permutation(crops[0].reshape(-1, 3)).reshape(crops[0].shape)
    g = lite0_features([shuffled])[0]
    assert float(g @ f[0] / np.linalg.norm(g)) < sim[0, 1] - 0.1


def test_lite0_rejects_bad_images(lite0_features):
    with pytest.raises(ValueError, match="uint8"):
        lite0_features([np.zeros((8, 8, 3), np.float32)])
    with pytest.raises(ValueError, match="no image"):
        lite0_features([])


# ----------------------------------------------------------------------------- Inception (stand-in)
class _FakeInception(torch.nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.proj = torch.nn.Linear(3, dim)

    def forward(self, x: torch.Tensor, return_features: bool = False) -> torch.Tensor:
        assert x.shape[-1] == 299 and x.shape[-2] == 299
        return self.proj(x.mean(dim=(2, 3)) / 255.0)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # torch.jit.script, used here to make the stand-in
def test_inception_from_local_torchscript(tmp_path):
    path = tmp_path / "inception.pt"
    torch.jit.script(_FakeInception(2048)).save(str(path))
    extractor = features.InceptionFeatures(path)
    rng = np.random.default_rng(0)
    ims = [rng.integers(0, 255, (40, 50, 3), dtype=np.uint8) for _ in range(3)]
    out = extractor(ims)
    assert out.shape == (3, 2048)
    np.testing.assert_allclose(out, extractor(ims))
    bad = tmp_path / "bad.pt"
    torch.jit.script(_FakeInception(10)).save(str(bad))
    with pytest.raises(ValueError, match="2048"):
        features.InceptionFeatures(bad)(ims)
    with pytest.raises(FileNotFoundError, match="never downloaded"):
        features.InceptionFeatures(tmp_path / "missing.pt")

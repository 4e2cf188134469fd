"""Tests for cai.foreground (the foreground mask m(.) of CAI)."""

from __future__ import annotations

import socket
import urllib.request
from pathlib import Path

import numpy as np
import pytest

import cai.foreground as F
from cai.foreground import (
    OBJECT_CATEGORIES,
    TEXTURE_CATEGORIES,
    ForegroundUnavailable,
    RembgForeground,
    default_foreground_kind,
    foreground_all,
    foreground_threshold,
    make_foreground,
)

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


# ----------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------


def disk_mask(h, w, cy, cx, r):
    yy, xx = np.mgrid[:h, :w]
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= r**2


def iou(a, b):
    return np.logical_and(a, b).sum() / np.logical_or(a, b).sum()


def bright_disk_image(seed=0, h=180, w=240):
    """Bright disk (off-centre) on a dark noisy background; returns (img, disk)."""
    rng = np.random.default_rng(seed)
    disk = disk_mask(h, w, 100, 140, 50)
    img = rng.normal(40, 12, size=(h, w, 3))
    img[disk] = rng.normal(200, 12, size=(int(disk.sum()), 3))
    return np.clip(img, 0, 255).astype(np.uint8), disk


def noise_texture(seed=0, h=160, w=200):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)


def red_disk_image(seed=0, h=200, w=260):
    rng = np.random.default_rng(seed)
    disk = disk_mask(h, w, 90, 150, 60)
    img = rng.normal(70, 8, size=(h, w, 3))
    img[disk] = (220, 30, 30)
    return np.clip(img, 0, 255).astype(np.uint8), disk


def write_model(path: Path, weight, bias, sigmoid: bool = True) -> Path:
    """Tiny rembg-compatible ONNX model: 1x3x320x320 -> 1x1x320x320.

    A 1x1 Conv (per-pixel ``weight . rgb + bias`` on rembg's normalised input),
    optionally followed by a Sigmoid.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = np.asarray(weight, dtype=np.float32).reshape(1, 3, 1, 1)
    b = np.asarray([bias], dtype=np.float32)
    nodes = [helper.make_node("Conv", ["input", "W", "B"], ["logits" if sigmoid else "mask"])]
    if sigmoid:
        nodes.append(helper.make_node("Sigmoid", ["logits"], ["mask"]))
    graph = helper.make_graph(
        nodes,
        "tiny_saliency",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 320, 320])],
        [helper.make_tensor_value_info("mask", TensorProto.FLOAT, [1, 1, 320, 320])],
        initializer=[numpy_helper.from_array(w, "W"), numpy_helper.from_array(b, "B")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def write_red_model(path: Path) -> Path:
    """sigmoid(4*(R - G) - 4): close to 1 on strongly red pixels, ~0 elsewhere."""
    return write_model(path, [4.0, -4.0, 0.0], -4.0)


class NetworkAttempt(AssertionError):
    pass


@pytest.fixture
def no_network(monkeypatch):
    """Make every download/network entry point rembg could use raise."""

    def boom(*args, **kwargs):
        raise NetworkAttempt(f"network access attempted: {args[:2]!r}")

    import pooch

    monkeypatch.setattr(pooch, "retrieve", boom)
    monkeypatch.setattr(urllib.request, "urlopen", boom)
    monkeypatch.setattr(socket.socket, "connect", boom)
    monkeypatch.setattr(socket, "create_connection", boom)
    try:
        import requests.sessions

        monkeypatch.setattr(requests.sessions.Session, "request", boom)
    except ImportError:  # pragma: no cover
        pass


@pytest.fixture
def model_dir(tmp_path):
    d = tmp_path / "models"
    write_red_model(d / "u2net.onnx")
    return d


@pytest.fixture(autouse=True)
def isolated_homes(monkeypatch, tmp_path):
    """Keep rembg/our default model lookup away from the real home folders."""
    monkeypatch.delenv("U2NET_HOME", raising=False)
    monkeypatch.setenv("REMBG_HOME", str(tmp_path / "rembg_home"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))


# ----------------------------------------------------------------------------
# constants, "all"
# ----------------------------------------------------------------------------


def test_category_sets():
    assert TEXTURE_CATEGORIES == {"carpet", "grid", "leather", "tile", "wood"}
    assert len(OBJECT_CATEGORIES) == 10 and "hazelnut" in OBJECT_CATEGORIES
    assert not TEXTURE_CATEGORIES & OBJECT_CATEGORIES


@pytest.mark.parametrize("shape", [(7, 11, 3), (7, 11)])
def test_foreground_all(shape):
    m = foreground_all(np.zeros(shape, np.uint8))
    assert m.shape == (7, 11) and m.dtype == bool and m.all()


# ----------------------------------------------------------------------------
# input validation, purity
# ----------------------------------------------------------------------------

BAD_IMAGES = [
    np.zeros((8, 8, 3), np.float32),
    np.zeros((8, 8, 3), np.uint16),
    np.zeros((8, 8, 4), np.uint8),
    np.zeros((8, 8, 1), np.uint8),
    np.zeros((8,), np.uint8),
    np.zeros((2, 8, 8, 3), np.uint8),
    np.zeros((0, 8, 3), np.uint8),
    [[0, 1], [2, 3]],
]


@pytest.mark.parametrize("fn", [foreground_all, foreground_threshold])
@pytest.mark.parametrize("bad", BAD_IMAGES, ids=[f"bad{i}" for i in range(len(BAD_IMAGES))])
def test_bad_images_rejected(fn, bad):
    with pytest.raises(ValueError, match="image"):
        fn(bad)


def test_rembg_bad_image_rejected(model_dir, no_network):
    fg = RembgForeground(model_dir=model_dir)
    with pytest.raises(ValueError, match="image"):
        fg(np.zeros((8, 8, 3), np.float64))
    with pytest.raises(ValueError, match="image"):
        fg(np.zeros((8, 8, 4), np.uint8))


def test_no_input_mutation_and_determinism(model_dir, no_network):
    img, _ = red_disk_image()
    gray = img[:, :, 0].copy()
    rembg_fg = RembgForeground(model_dir=model_dir)
    for fn in (foreground_all, foreground_threshold, rembg_fg):
        for x in (img, gray):
            before = x.copy()
            a = fn(x)
            b = fn(x)
            np.testing.assert_array_equal(x, before)
            np.testing.assert_array_equal(a, b)
            assert a.dtype == bool and a.shape == x.shape[:2]
            assert not np.shares_memory(a, x)


# ----------------------------------------------------------------------------
# "threshold"
# ----------------------------------------------------------------------------


def test_threshold_bright_disk():
    img, disk = bright_disk_image()
    m, info = foreground_threshold(img, return_info=True)
    assert m.dtype == bool and m.shape == disk.shape
    assert not info["fallback"]
    assert iou(m, disk) > 0.9
    assert info["coverage"] == pytest.approx(m.mean())


def test_threshold_dark_object_on_light_background():
    img, disk = bright_disk_image(seed=3)
    m = foreground_threshold(255 - img)
    assert iou(m, disk) > 0.9


def test_threshold_grayscale():
    img, disk = bright_disk_image(seed=1)
    gray = img[:, :, 1].copy()
    m, info = foreground_threshold(gray, return_info=True)
    assert m.shape == gray.shape and m.dtype == bool
    assert not info["fallback"]
    assert iou(m, disk) > 0.9


def test_threshold_removes_speckles_and_keeps_two_objects():
    rng = np.random.default_rng(5)
    h, w = 200, 300
    a = disk_mask(h, w, 100, 80, 40)
    b = disk_mask(h, w, 100, 220, 35)
    img = np.full((h, w, 3), 30, np.uint8)
    img[a | b] = 210
    hole = disk_mask(h, w, 100, 80, 8)
    img[hole] = 30  # a background-coloured hole inside object a
    outside = ~(a | b | hole)
    ys, xs = rng.integers(5, 193, size=(2, 40))
    keep = outside[ys, xs] & outside[ys + 3, xs + 3]
    ys, xs = ys[keep], xs[keep]
    for y, x in zip(ys, xs):  # small bright 4x4 specks on the background
        img[y : y + 4, x : x + 4] = 255
    m = foreground_threshold(img)
    assert iou(m, a | b) > 0.9
    assert not m[ys + 1, xs + 1].any()
    assert m[hole].all()


@pytest.mark.parametrize("seed", [0, 1])
def test_threshold_texture_falls_back_to_all(seed):
    img = noise_texture(seed)
    m, info = foreground_threshold(img, return_info=True)
    assert m.all() and m.dtype == bool and m.shape == img.shape[:2]
    assert info["fallback"] and info["reason"]
    assert foreground_threshold(img[:, :, 0].copy()).all()


def test_threshold_uniform_and_tiny_objects_fall_back():
    flat = np.full((64, 64, 3), 128, np.uint8)
    m, info = foreground_threshold(flat, return_info=True)
    assert m.all() and info["fallback"]
    dot = np.zeros((200, 200), np.uint8)
    dot[100:103, 100:103] = 255  # 9 px < 1 % of the image
    m, info = foreground_threshold(dot, return_info=True)
    assert m.all() and info["fallback"]
    assert "covers" in info["reason"] or "border" in info["reason"]


def test_threshold_info_off_by_default():
    img, _ = bright_disk_image()
    assert isinstance(foreground_threshold(img), np.ndarray)


# ----------------------------------------------------------------------------
# "rembg" with a tiny local model
# ----------------------------------------------------------------------------


def test_rembg_segments_red_disk_offline(model_dir, no_network):
    img, disk = red_disk_image()
    fg = RembgForeground(model="u2net", model_dir=model_dir)
    m = fg(img)
    assert m.dtype == bool and m.shape == disk.shape
    assert iou(m, disk) > 0.8
    assert fg.model_path == model_dir / "u2net.onnx"


def test_rembg_binarises_soft_mask_at_128(tmp_path, no_network):
    # linear model (output = normalised R), image = horizontal red ramp 0..255:
    # rembg min-max normalises the map, so the mask is R >= ~128, the right half
    write_model(tmp_path / "u2net.onnx", [1.0, 0.0, 0.0], 0.0, sigmoid=False)
    img = np.zeros((64, 256, 3), np.uint8)
    img[:, :, 0] = np.arange(256, dtype=np.uint8)[None, :]
    m = RembgForeground(model_dir=tmp_path)(img)
    cols = m.mean(axis=0)
    assert abs(m.mean() - 0.5) < 0.03
    assert (cols[:120] == 0).all() and (cols[136:] == 1).all()


def test_rembg_grayscale_input(model_dir, no_network):
    img, _ = red_disk_image()
    gray = img[:, :, 0].copy()
    m = RembgForeground(model_dir=model_dir)(gray)
    assert m.shape == gray.shape and m.dtype == bool


def test_rembg_session_created_once(model_dir, no_network, monkeypatch):
    import onnxruntime

    created = []
    real = onnxruntime.InferenceSession

    def counting(*args, **kwargs):
        created.append(args[0] if args else kwargs.get("path_or_bytes"))
        return real(*args, **kwargs)

    monkeypatch.setattr(onnxruntime, "InferenceSession", counting)
    fg = RembgForeground(model_dir=model_dir)
    session = fg.session
    img, disk = red_disk_image()
    for seed in range(3):
        assert iou(fg(red_disk_image(seed)[0]), disk) > 0.8
    assert fg.session is session
    assert created == [str((model_dir / "u2net.onnx").resolve())]


def test_rembg_uses_u2net_home(model_dir, no_network, monkeypatch):
    monkeypatch.setenv("U2NET_HOME", str(model_dir))
    fg = RembgForeground()
    assert fg.model_path == model_dir / "u2net.onnx"
    img, disk = red_disk_image()
    assert iou(fg(img), disk) > 0.8


def test_rembg_missing_model_raises_before_download(tmp_path, no_network):
    missing = tmp_path / "nowhere"
    with pytest.raises(ForegroundUnavailable) as exc:
        RembgForeground(model="u2net", model_dir=missing)
    msg = str(exc.value)
    assert str(missing / "u2net.onnx") in msg
    assert "U2NET_HOME" in msg and "threshold" in msg


def test_rembg_missing_model_default_dir(no_network, tmp_path):
    # HOME is redirected by the autouse fixture, U2NET_HOME is unset
    with pytest.raises(ForegroundUnavailable, match=r"\.u2net"):
        RembgForeground()


def test_rembg_corrupt_model_file(tmp_path, no_network):
    (tmp_path / "u2net.onnx").write_bytes(b"not an onnx model")
    with pytest.raises(ForegroundUnavailable, match="could not load"):
        RembgForeground(model_dir=tmp_path)


def test_rembg_other_model_name(tmp_path, no_network):
    write_red_model(tmp_path / "u2netp.onnx")
    img, disk = red_disk_image()
    assert iou(RembgForeground(model="u2netp", model_dir=tmp_path)(img), disk) > 0.8


@pytest.mark.parametrize("model", ["", "sam", "u2net_custom", "no_such_model", "a/b"])
def test_rembg_unsupported_model_names(tmp_path, no_network, model):
    if model and "/" not in model:
        write_red_model(tmp_path / f"{model}.onnx")
    with pytest.raises(ValueError, match="model"):
        RembgForeground(model=model, model_dir=tmp_path)


def test_no_network_guard_is_effective(tmp_path, no_network, monkeypatch):
    """rembg's own lookup WOULD download here; the guard must catch it."""
    from rembg.sessions.u2net import U2netSession

    monkeypatch.setenv("U2NET_HOME", str(tmp_path / "empty"))
    with pytest.raises(NetworkAttempt):
        U2netSession.download_models()


# ----------------------------------------------------------------------------
# selection
# ----------------------------------------------------------------------------


def test_default_foreground_kind():
    for c in TEXTURE_CATEGORIES:
        assert default_foreground_kind(c) == "all"
        assert default_foreground_kind(c.upper()) == "all"
    for c in OBJECT_CATEGORIES:
        assert default_foreground_kind(c) == "rembg"
    assert default_foreground_kind("some_new_part") == "rembg"
    assert default_foreground_kind(None) == "rembg"
    with pytest.raises(ValueError, match="category"):
        default_foreground_kind(3)


def test_make_foreground_auto_texture(tmp_path, model_dir):
    fg = make_foreground("auto", category="grid", model_dir=model_dir)
    assert fg.kind == "all" and "texture" in fg.note
    assert fg(noise_texture()).all()


def test_make_foreground_auto_object_without_model(tmp_path, no_network):
    missing = tmp_path / "empty"
    fg = make_foreground("auto", category="hazelnut", model_dir=missing)
    assert fg.kind == "threshold"
    assert "rembg" in fg.note and str(missing / "u2net.onnx") in fg.note
    img, disk = bright_disk_image()
    assert iou(fg(img), disk) > 0.9


def test_make_foreground_auto_object_with_model(model_dir, no_network):
    fg = make_foreground("auto", category="hazelnut", model_dir=model_dir)
    assert fg.kind == "rembg" and isinstance(fg.backend, RembgForeground)
    assert "hazelnut" in fg.note
    img, disk = red_disk_image()
    assert iou(fg(img), disk) > 0.8


def test_make_foreground_explicit_kinds(tmp_path, model_dir, no_network):
    img, disk = bright_disk_image()
    assert make_foreground("all", category="hazelnut").kind == "all"
    fg = make_foreground("threshold", category="grid")
    assert fg.kind == "threshold" and iou(fg(img), disk) > 0.9
    assert make_foreground("rembg", model_dir=model_dir).kind == "rembg"
    with pytest.raises(ForegroundUnavailable):
        make_foreground("rembg", category="hazelnut", model_dir=tmp_path / "empty")


@pytest.mark.parametrize("kind", ["", "AUTO", "u2net", None, "otsu"])
def test_make_foreground_bad_kind(kind):
    with pytest.raises(ValueError, match="kind"):
        make_foreground(kind)


def test_import_is_lazy():
    import subprocess
    import sys

    # compare against the bare package so edits to cai/__init__.py do not count
    code = (
        "import sys, cai; heavy = ('rembg', 'onnxruntime', 'pooch');"
        "before = {m for m in heavy if m in sys.modules};"
        "import cai.foreground;"
        "print(sorted({m for m in heavy if m in sys.modules} - before))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# ----------------------------------------------------------------------------
# real data
# ----------------------------------------------------------------------------


@pytest.mark.shared_data
@pytest.mark.skipif(not SHARED_DATA.is_dir(), reason=f"{SHARED_DATA} is absent")
def test_threshold_on_real_hazelnut():
    from PIL import Image

    files = sorted((SHARED_DATA / "mvtec_ad" / "hazelnut" / "train" / "good").glob("*.jpg"))
    assert len(files) >= 4
    for f in files[:: max(1, len(files) // 5)]:
        img = np.asarray(Image.open(f).convert("RGB"))
        m, info = foreground_threshold(img, return_info=True)
        h, w = m.shape
        assert m.shape == img.shape[:2]
        assert not info["fallback"], (f.name, info)
        assert 0.15 <= m.mean() <= 0.70, (f.name, m.mean())
        assert m[h // 2, w // 2], f.name


@pytest.mark.shared_data
@pytest.mark.skipif(not SHARED_DATA.is_dir(), reason=f"{SHARED_DATA} is absent")
def test_threshold_on_real_texture_falls_back():
    from PIL import Image

    files = sorted((SHARED_DATA / "mvtec_ad" / "grid" / "train" / "good").glob("*.png"))
    assert files
    for f in files[:3]:
        img = np.asarray(Image.open(f))
        m, info = foreground_threshold(img, return_info=True)
        assert info["fallback"] and m.all(), (f.name, info)


@pytest.mark.parametrize("seed", range(6))
def test_fill_holes_matches_scipy(seed):
    from scipy import ndimage

    from cai.engine.foreground import fill_holes
    rng = np.random.default_rng(seed)
    mask = rng.random((40, 50)) < (0.3 + 0.1 * seed)  # from sparse specks to mostly foreground
    mask[5:30, 5:30] = True
    mask[10:20, 12:18] = False  # a hole
    mask[0, 20:30] = False  # background touching the border stays background
    assert (fill_holes(mask) == ndimage.binary_fill_holes(mask)).all()
    assert not fill_holes(np.zeros((4, 5), bool)).any() and fill_holes(np.ones((4, 5), bool)).all()

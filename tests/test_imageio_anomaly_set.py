import io

import cv2
import datasets
import numpy as np
import pytest
from PIL import Image

from cai.anomaly_set import AnomalySetError, load_anomaly_set, prepare_patterns
from cai.imageio import BadInput, encode_png, load_mask, load_rgb, resize_image
from cai.targets import TargetError, load_target


def _png(array, mode=None):
    buf = io.BytesIO()
    Image.fromarray(array, mode).save(buf, format="PNG")
    return buf.getvalue()


def test_load_rgb_modes():
    grey = np.arange(64, dtype=np.uint8).reshape(8, 8)
    rgb, is_grey = load_rgb(_png(grey))
    assert rgb.shape == (8, 8, 3) and is_grey and (rgb[..., 2] == grey).all()
    deep = (grey.astype(np.uint16) * 257)
    rgb16, is_grey16 = load_rgb(_png(deep))
    assert is_grey16 and (rgb16[..., 0] == grey).all()  # 16-bit scaled to 8-bit exactly
    rgba = np.dstack([np.full((8, 8, 3), (10, 20, 30), np.uint8), np.full((8, 8), 128, np.uint8)])
    out, is_grey_rgba = load_rgb(_png(rgba))
    assert out.shape == (8, 8, 3) and not is_grey_rgba and tuple(out[0, 0]) == (10, 20, 30)
    with pytest.raises(BadInput) as err:
        load_rgb(b"not an image")
    assert err.value.reason == "corrupt_image"


def test_resize_image_one_rule_hand_computed():
    a = np.array([[0, 4, 8, 12], [4, 8, 12, 16], [100, 100, 0, 0], [100, 100, 0, 0]], np.uint8)
    assert resize_image(a, (4, 4)) is a  # already at size: the same array
    # shrinking both sides: INTER_AREA, the mean of each 2 x 2 block
    assert resize_image(a, (2, 2)).tolist() == [[4, 12], [100, 0]]
    # one side grows: the enlarging interpolation, for every image of the project
    up = resize_image(a, (8, 2))
    assert up.shape == (8, 2)
    ref_linear = np.rint(np.interp((np.arange(8) + 0.5) / 2 - 0.5, np.arange(4), a[:, :2].mean(1).astype(float)))
    assert np.abs(up[:, 0].astype(int) - ref_linear).max() <= 1
    nearest = resize_image(a, (8, 8), enlarge=cv2.INTER_NEAREST)
    assert (nearest[::2, ::2] == a).all() and (nearest[1::2, 1::2] == a).all()
    rgb = np.dstack([a, a, a])
    assert resize_image(rgb, (2, 2)).shape == (2, 2, 3)


@pytest.mark.parametrize("values", [(0, 255), (0, 1), (0, 2)])
@pytest.mark.parametrize("channels", [1, 3])
def test_load_mask_binary_forms(values, channels):
    m = np.zeros((10, 12), np.uint8)
    m[2:5, 3:9] = values[1]
    arr = m if channels == 1 else np.dstack([m] * 3)
    out = load_mask(_png(arr), (10, 12))
    assert out.dtype == bool and out.sum() == 18


def test_load_mask_rejects():
    m = np.zeros((10, 12), np.uint8)
    with pytest.raises(BadInput, match="empty") as err:
        load_mask(_png(m))
    assert err.value.reason == "empty_mask"
    m[1, 1] = 255
    with pytest.raises(BadInput) as err:
        load_mask(_png(m), (12, 10))
    assert err.value.reason == "mask_size_mismatch"
    m[2, 2] = 100
    with pytest.raises(BadInput) as err:
        load_mask(_png(m))
    assert err.value.reason == "mask_not_binary"
    with pytest.raises(BadInput) as err:
        load_mask(b"junk")
    assert err.value.reason == "corrupt_mask"


def test_encode_png_lossless_and_deterministic():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (9, 7, 3), dtype=np.uint8)
    enc = encode_png(a)
    assert enc["path"] is None and enc == encode_png(a.copy())
    assert (np.asarray(Image.open(io.BytesIO(enc["bytes"]))) == a).all()
    with pytest.raises(ValueError):
        encode_png(a.astype(np.float32))


def _anomaly_ds(n=3, class_label=False):
    rng = np.random.default_rng(1)
    images, masks = [], []
    for i in range(n):
        img = rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)
        m = np.zeros((40, 50), np.uint8)
        m[10:20, 5 + i : 30] = 255
        images.append(Image.fromarray(img))
        masks.append(Image.fromarray(m))
    feature = datasets.ClassLabel(names=["pits", "crack", "stain"]) if class_label else datasets.Value("string")
    return datasets.Dataset.from_dict(
        {"image": images, "mask": masks, "anomaly_class": [1, 2, 1] if class_label else ["crack", "stain", "crack"],
         "source": ["a", "b", "a"]},
        features=datasets.Features({"image": datasets.Image(), "mask": datasets.Image(), "anomaly_class": feature,
                                    "source": datasets.Value("string")}))


@pytest.mark.parametrize("class_label", [False, True])
def test_prepare_patterns_crops_and_filters(class_label):
    ds = _anomaly_ds(class_label=class_label)
    patterns, report = prepare_patterns(ds, classes={"crack"}, exclude_sources=())
    assert len(patterns) == 2 and set(patterns["anomaly_class"]) == {"crack"}
    assert report["not_selected_class"] == 1
    row = patterns[0]
    assert row["long_side"] == 25  # mask cols 5..29
    assert np.asarray(row["pattern_mask"]).shape == np.asarray(row["pattern_image"]).shape[:2]
    patterns, report = prepare_patterns(ds, exclude_sources=["a"])
    assert list(patterns["source"]) == ["b"] and report["excluded_sources"] == {"a": 2}
    with pytest.raises(AnomalySetError):
        prepare_patterns(ds, exclude_sources=["a", "b"])


def test_load_anomaly_set_forms(tmp_path):
    ds = _anomaly_ds()
    ds.save_to_disk(str(tmp_path / "saved"))
    assert len(load_anomaly_set(str(tmp_path / "saved"))) == 3
    ds.remove_columns("source").save_to_disk(str(tmp_path / "nosource"))
    with pytest.raises(AnomalySetError, match="source"):
        load_anomaly_set(str(tmp_path / "nosource"))


def test_hf_target(tmp_path):
    rng = np.random.default_rng(2)
    images = [Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)) for _ in range(2)]
    datasets.Dataset.from_dict({"image": images}).save_to_disk(str(tmp_path / "normals"))
    normals, name = load_target("hf", str(tmp_path / "normals"))
    assert len(normals) == 2 and name == "normals" and normals["normal_index"] == [0, 1]
    with pytest.raises(TargetError):
        load_target("folder", str(tmp_path / "missing"))
    with pytest.raises(TargetError, match="category"):
        load_target("mvtec", str(tmp_path))


def test_shipped_refined_masks_of_the_embedded_sample_are_current(tmp_path):
    """The first demo run takes the embedded sample's refined masks from the package instead of
    solving (and compiling) the Poisson problems: they must be what the current code computes."""
    from cai.anomaly_set import (SHIPPED_REFINED, cached_patterns, ensure_refined_masks, pattern_bank,
                                 shipped_refined_file)
    from cai.engine.refine import refine_defect_mask
    from cai.targets import DEFAULT_SAMPLE

    path, patterns, _ = cached_patterns(load_anomaly_set(str(DEFAULT_SAMPLE / "anomalies")), cache=tmp_path)
    shipped = shipped_refined_file(path)
    hint = 'python -c "from cai.anomaly_set import write_default_refined; write_default_refined()"'
    assert shipped.is_file(), f"no refined masks shipped for this code and sample ({shipped}); run {hint}"
    assert sorted(p.name for p in SHIPPED_REFINED.rglob("*.npz")) == [shipped.name]  # no stale copies
    bank = pattern_bank(patterns)
    with np.load(shipped) as npz:
        assert sorted(npz.files, key=int) == [str(i) for i in range(len(bank.long_sides))]
        for i in range(len(bank.long_sides)):
            assert (npz[str(i)] == refine_defect_mask(*bank.load(i))).all(), f"pattern {i} is stale; run {hint}"
    target = ensure_refined_masks(path)  # copied, not recomputed
    assert target.parent == tmp_path / shipped.parent.name and target.read_bytes() == shipped.read_bytes()

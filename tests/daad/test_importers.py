"""Importers: tiny fixtures written in each public layout, plus counts on the real data in ../shared."""
import csv
import hashlib
import io
from collections import Counter

import numpy as np
import pytest
import scipy.io
from PIL import Image

from cai.imageio import load_rgb
from cai.layouts import IMPORTERS, LayoutError, iter_source
from cai.layouts._common import apply_orientation, read_header
from daad_tools.records import SOURCE_KINDS, RawAnomaly

ORIENTATION = 0x0112


# --------------------------------------------------------------------------- fixture writers
def save(path, array, exif_orientation=None, **kwargs):
    """Write ``array`` as an image file (format from the suffix), making folders."""
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(np.asarray(array))
    if exif_orientation is not None:
        exif = Image.Exif()
        exif[ORIENTATION] = exif_orientation
        kwargs["exif"] = exif.tobytes()
    image.save(path, **kwargs)
    return path


def photo(rows=12, cols=16, seed=0, rgb=True):
    rng = np.random.default_rng(seed)
    shape = (rows, cols, 3) if rgb else (rows, cols)
    return rng.integers(40, 120, shape, dtype=np.uint8)


def box(rows=12, cols=16, r=(2, 5), c=(3, 7), value=255, dtype=np.uint8):
    mask = np.zeros((rows, cols), dtype)
    mask[r[0]:r[1], c[0]:c[1]] = value
    return mask


def corrupt(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x89PNG\r\n\x1a\n this is not a png")
    return path


def records(layout, root, **options):
    stats = {}
    out = list(iter_source(layout, root, stats=stats, **options))
    return out, stats


def check_contract(recs, root):
    """What every importer promises, whatever the layout."""
    keys = [(r.original_file, r.component) for r in recs]
    assert keys == sorted(keys) and len(set(keys)) == len(keys)
    for r in recs:
        assert isinstance(r, RawAnomaly)
        assert r.image_path.is_absolute() and r.image_path.is_file()
        assert (root / r.original_file).resolve() == r.image_path.resolve()
        assert not r.original_file.startswith("/") and "\\" not in r.original_file
        assert r.source_kind in SOURCE_KINDS
        if r.mask is not None:
            assert r.mask.dtype == bool and r.mask.ndim == 2
            assert r.mask.shape == read_header(r.image_path).display_shape


# --------------------------------------------------------------------------- registry
def test_registry_has_every_layout_with_its_constants():
    assert set(IMPORTERS) == {"pairs", "mvtec", "kolektor", "neu_seg", "crackforest", "supervisely", "visa",
                              "ksdd2", "magnetic_tile", "btad", "dagm", "own_photos",
                              "labelme", "coco", "cvat", "suffix_pairs"}
    for name, module in IMPORTERS.items():
        assert callable(module.iter_anomalies), name
        assert isinstance(module.SOURCE, str) and module.SOURCE, name
        assert isinstance(module.LICENSE, str) and module.LICENSE, name
        assert isinstance(module.SOURCE_DOMAIN, str), name
        assert module.SOURCE_KIND in SOURCE_KINDS, name
    assert IMPORTERS["own_photos"].SOURCE_KIND == "photograph"


def test_unknown_layout_names_the_known_ones(tmp_path):
    with pytest.raises(ValueError, match="known layouts: .*mvtec"):
        iter_source("nope", tmp_path)


@pytest.mark.parametrize("layout", sorted(IMPORTERS))
def test_wrong_layout_raises_naming_the_expected_layout(layout, tmp_path):
    (tmp_path / "stray").mkdir()
    with pytest.raises(LayoutError, match="expected layout"):
        iter_source(layout, tmp_path)  # raised at call time, not on the first next()
    with pytest.raises(LayoutError, match="does not exist"):
        iter_source(layout, tmp_path / "missing")


# --------------------------------------------------------------------------- mask forms (pairs)
MASK_FORMS = {
    "L_0_255": (box(), "png", []),
    "L_0_1": (box(value=1), "png", []),
    "class_index_0_3": (box(value=3), "png", []),
    "uint16_0_65535": (box(value=65535, dtype=np.uint16), "png", []),
    "rgb_equal_channels": (np.repeat(box(value=2)[..., None], 3, axis=2), "png", []),
    "rgba_equal_channels": (np.dstack([box()] * 3 + [np.full((12, 16), 255, np.uint8)]), "png", []),
    "rgb_colour_coded": (np.dstack([box(), box(r=(2, 4)) // 2, np.zeros((12, 16), np.uint8)]), "png",
                         ["mask_colour_coded"]),
    "bmp_0_255": (box(), "bmp", []),
}


@pytest.mark.parametrize("form", sorted(MASK_FORMS))
def test_pairs_reads_every_mask_form_as_the_same_bool_mask(form, tmp_path):
    array, ext, notes = MASK_FORMS[form]
    save(tmp_path / "images" / "a.jpg", photo())
    save(tmp_path / "masks" / f"a.{ext}", array)
    recs, stats = records("pairs", tmp_path, source="demo", label="stain", domain="fabric")
    check_contract(recs, tmp_path)
    (r,) = recs
    np.testing.assert_array_equal(r.mask, box() > 0)
    assert r.notes == notes
    assert (r.source, r.original_label, r.source_domain, r.original_file) == ("demo", "stain", "fabric", "images/a.jpg")
    assert stats["yielded"] == 1


def test_pairs_multi_value_soft_and_palette_masks(tmp_path):
    multi = box(value=1)
    multi[3, 4] = 2  # KolektorSDD-like stray value
    soft = (np.linspace(0, 255, 12 * 16).reshape(12, 16)).astype(np.uint8)  # many values: JPEG-like
    palette = Image.fromarray(box(value=1)).convert("P")
    for stem in "abc":
        save(tmp_path / "images" / f"{stem}.png", photo(seed=ord(stem)))
    save(tmp_path / "masks" / "a.png", multi)
    save(tmp_path / "masks" / "b.png", soft)
    palette.save(tmp_path / "masks" / "c.png")
    a, b, c = records("pairs", tmp_path)[0]
    np.testing.assert_array_equal(a.mask, box() > 0)
    assert a.notes == ["mask_multi_value"]
    np.testing.assert_array_equal(b.mask, soft > 127.5)
    assert b.notes == ["mask_soft_binarized"]
    np.testing.assert_array_equal(c.mask, box() > 0)
    assert c.source == "folder_pairs" and c.original_label == "anomaly"


def test_pairs_bad_masks_do_not_crash_and_unpaired_images_are_counted(tmp_path):
    for stem in ("corrupt", "empty", "good", "nomask", "small"):
        save(tmp_path / "images" / f"{stem}.png", photo())
    corrupt(tmp_path / "masks" / "corrupt.png")
    save(tmp_path / "masks" / "empty.png", np.zeros((12, 16), np.uint8))
    save(tmp_path / "masks" / "good_m.png", box())
    save(tmp_path / "masks" / "small.png", box(rows=6, cols=8))
    (tmp_path / "labels.csv").write_text("stem,label\ngood,crack\n")
    recs, stats = records("pairs", tmp_path, mask_suffix="_m")
    assert [r.original_file for r in recs] == ["images/good.png"]
    assert recs[0].original_label == "crack"
    recs, stats = records("pairs", tmp_path)
    check_contract(recs, tmp_path)
    by = {r.original_file.split("/")[1]: r for r in recs}
    assert sorted(by) == ["corrupt.png", "empty.png", "small.png"]
    assert by["corrupt.png"].mask is None and by["corrupt.png"].notes == ["mask_unreadable"]
    assert by["small.png"].mask is None and by["small.png"].notes[0].startswith("mask_size_mismatch:6x8!=12x16")
    assert not by["empty.png"].mask.any() and by["empty.png"].notes == ["mask_empty"]
    assert stats["skipped_no_mask"] == 2 and stats["yielded"] == 3
    assert stats["notes"] == {"mask_unreadable": 1, "mask_size_mismatch": 1, "mask_empty": 1}


# --------------------------------------------------------------------------- EXIF orientation
@pytest.mark.parametrize("orientation", range(1, 9))
def test_apply_orientation_matches_pillow_exif_transpose(orientation):
    array = photo(5, 7, seed=orientation)
    buffer = io.BytesIO()
    exif = Image.Exif()
    exif[ORIENTATION] = orientation
    Image.fromarray(array).save(buffer, format="PNG", exif=exif.tobytes())
    decoded, _ = load_rgb(buffer.getvalue())
    np.testing.assert_array_equal(apply_orientation(array, orientation), decoded)


def _exif_jpeg_fixture(root, orientation=6):
    """A 20x40 (rows x cols) stored JPEG with a bright block at rows 2:8, cols 28:36, tagged."""
    image = np.full((20, 40, 3), 30, np.uint8)
    image[2:8, 28:36] = 250
    save(root / "images" / "phone.jpg", image, exif_orientation=orientation, quality=95)
    return box(20, 40, r=(2, 8), c=(28, 36))


def test_exif_rotated_jpeg_gets_its_stored_mask_rotated_the_same_way(tmp_path):
    stored_mask = _exif_jpeg_fixture(tmp_path)
    save(tmp_path / "masks" / "phone.png", stored_mask)
    (r,), _ = records("own_photos", tmp_path)
    decoded, _ = load_rgb(r.image_path)
    assert decoded.shape[:2] == (40, 20) and r.mask.shape == (40, 20)
    assert r.notes == ["mask_exif_transposed:6"]
    grey = decoded.mean(axis=2)
    assert grey[r.mask].mean() > 200 and grey[~r.mask].mean() < 60  # mask sits on the bright block
    assert r.mask.sum() == stored_mask.astype(bool).sum()


def test_mask_already_in_display_orientation_is_kept(tmp_path):
    stored_mask = _exif_jpeg_fixture(tmp_path)
    save(tmp_path / "masks" / "phone.png", np.rot90(stored_mask, k=-1))
    (r,), _ = records("own_photos", tmp_path)
    assert r.notes == ["mask_display_orientation"]
    grey = load_rgb(r.image_path)[0].mean(axis=2)
    assert grey[r.mask].mean() > 200


def test_ambiguous_flip_follows_the_mask_orientation_option(tmp_path):
    image = np.full((10, 10, 3), 30, np.uint8)
    image[1:3, 6:9] = 250
    save(tmp_path / "images" / "sq.png", image, exif_orientation=2)  # mirrored, same size either way
    save(tmp_path / "masks" / "sq.png", box(10, 10, r=(1, 3), c=(6, 9)))
    (stored,), _ = records("own_photos", tmp_path)
    (display,), _ = records("own_photos", tmp_path, mask_orientation="display")
    grey = load_rgb(stored.image_path)[0].mean(axis=2)
    assert stored.notes == ["mask_exif_transposed:2"] and grey[stored.mask].mean() > 200
    assert display.notes == [] and grey[display.mask].mean() < 60


# --------------------------------------------------------------------------- own photos
def test_own_photos_yield_photos_without_masks_as_none(tmp_path):
    save(tmp_path / "images" / "a.jpg", photo())
    save(tmp_path / "images" / "b.png", photo(seed=1))
    save(tmp_path / "masks" / "a.png", box())
    (tmp_path / "labels.csv").write_text("stem,label\nb,scratch\n")
    recs, stats = records("own_photos", tmp_path, label="crack", license="CC-BY-4.0")
    check_contract(recs, tmp_path)
    assert [(r.original_file, r.original_label, r.mask is None) for r in recs] == [
        ("images/a.jpg", "crack", False), ("images/b.png", "scratch", True)]
    assert recs[1].notes == ["mask_missing"]
    assert {r.source_kind for r in recs} == {"photograph"} and recs[0].license == "CC-BY-4.0"
    assert stats["yielded"] == 2


# --------------------------------------------------------------------------- VisA
def _visa_fixture(root, with_csv=True):
    rows = [("object", "split", "label", "image", "mask")]
    for obj, names in (("candle", ["000", "001", "002"]), ("pcb1", ["000"])):
        base = root / obj / "Data"
        save(base / "Images" / "Normal" / "0000.JPG", photo(seed=9))
        rows.append((obj, "train", "normal", f"{obj}/Data/Images/Normal/0000.JPG", ""))
        for k, name in enumerate(names):
            save(base / "Images" / "Anomaly" / f"{name}.JPG", photo(seed=k))
            rows.append((obj, "test", "anomaly", f"{obj}/Data/Images/Anomaly/{name}.JPG",
                         f"{obj}/Data/Masks/Anomaly/{name}.png"))
    masks = root / "candle" / "Data" / "Masks" / "Anomaly"
    save(masks / "000.png", box())
    save(masks / "001.png", np.repeat(box(r=(0, 2), value=2)[..., None], 3, axis=2))  # 3-channel class index
    corrupt(masks / "002.png")
    save(root / "pcb1" / "Data" / "Masks" / "Anomaly" / "000.png", box(c=(0, 1), value=1))
    (root / "candle" / "image_anno.csv").write_text(
        "image,label,mask\n"
        "candle/Data/Images/Normal/0000.JPG,normal,\n"
        "candle/Data/Images/Anomaly/000.JPG,different colour spot,candle/Data/Masks/Anomaly/000.png\n"
        'candle/Data/Images/Anomaly/001.JPG,"melt, scratch",candle/Data/Masks/Anomaly/001.png\n')
    if with_csv:
        (root / "split_csv").mkdir()
        with open(root / "split_csv" / "1cls.csv", "w", newline="") as f:
            csv.writer(f).writerows(rows)


@pytest.mark.parametrize("with_csv", [True, False])
def test_visa(tmp_path, with_csv):
    _visa_fixture(tmp_path, with_csv)
    recs, stats = records("visa", tmp_path)
    check_contract(recs, tmp_path)
    assert [(r.original_file, r.original_label, r.source_domain) for r in recs] == [
        ("candle/Data/Images/Anomaly/000.JPG", "different colour spot", "candle"),
        ("candle/Data/Images/Anomaly/001.JPG", "melt, scratch", "candle"),
        ("candle/Data/Images/Anomaly/002.JPG", "anomaly", "candle"),
        ("pcb1/Data/Images/Anomaly/000.JPG", "anomaly", "pcb1")]
    assert [None if r.mask is None else int(r.mask.sum()) for r in recs] == [12, 8, None, 3]
    assert recs[2].notes == ["mask_unreadable"]
    assert stats["skipped_normal"] == 2 and stats["yielded"] == 4
    assert {r.source for r in recs} == {"visa"} and {r.license for r in recs} == {"CC-BY-4.0"}
    only_pcb, _ = records("visa", tmp_path, objects="pcb1")
    assert [r.original_file for r in only_pcb] == ["pcb1/Data/Images/Anomaly/000.JPG"]


def test_visa_split_csv_decides_what_is_an_anomaly(tmp_path):
    _visa_fixture(tmp_path)
    text = (tmp_path / "split_csv" / "1cls.csv").read_text()
    text = text.replace("test,anomaly,candle/Data/Images/Anomaly/001.JPG", "test,normal,candle/Data/Images/Anomaly/001.JPG")
    (tmp_path / "split_csv" / "1cls.csv").write_text(text)
    recs, stats = records("visa", tmp_path)
    assert "candle/Data/Images/Anomaly/001.JPG" not in [r.original_file for r in recs]
    assert stats["skipped_normal"] == 3


# --------------------------------------------------------------------------- KolektorSDD2
def test_ksdd2_skips_empty_ground_truth_as_normal(tmp_path):
    save(tmp_path / "train" / "10000.png", photo(seed=1))
    save(tmp_path / "train" / "10000_GT.png", box())
    save(tmp_path / "train" / "10001.png", photo(seed=2))
    save(tmp_path / "train" / "10001_GT.png", np.zeros((12, 16), np.uint8))
    save(tmp_path / "test" / "20000.png", photo(seed=3))
    save(tmp_path / "test" / "20000_GT.png", np.dstack([box(value=1)] * 3))  # 3-channel {0,1}
    save(tmp_path / "test" / "20001.png", photo(seed=4))
    save(tmp_path / "test" / "20001_GT.png", box(rows=13))
    recs, stats = records("ksdd2", tmp_path)
    check_contract(recs, tmp_path)
    assert [r.original_file for r in recs] == ["test/20000.png", "test/20001.png", "train/10000.png"]
    assert [None if r.mask is None else int(r.mask.sum()) for r in recs] == [12, None, 12]
    assert recs[1].notes[0].startswith("mask_size_mismatch")
    assert stats["skipped_normal"] == 1 and stats["images"] == 4
    assert {r.source for r in recs} == {"kolektorsdd2"}


# --------------------------------------------------------------------------- Magnetic Tile
def test_magnetic_tile(tmp_path):
    save(tmp_path / "MT_Blowhole" / "Imgs" / "exp1_num_1.jpg", photo(seed=1, rgb=False))
    save(tmp_path / "MT_Blowhole" / "Imgs" / "exp1_num_1.png", box())
    save(tmp_path / "MT_Crack" / "Imgs" / "exp2_num_2.jpg", photo(seed=2, rgb=False))
    save(tmp_path / "MT_Crack" / "Imgs" / "exp2_num_2.png", np.dstack([box(r=(0, 1))] * 3))
    save(tmp_path / "MT_Crack" / "Imgs" / "exp2_num_3.jpg", photo(seed=3, rgb=False))  # mask missing
    save(tmp_path / "MT_Crack" / "Imgs" / "exp2_num_4.jpg", photo(seed=4, rgb=False))
    save(tmp_path / "MT_Crack" / "Imgs" / "exp2_num_4.png", np.zeros((12, 16), np.uint8))  # empty: yielded
    save(tmp_path / "MT_Free" / "Imgs" / "exp0_num_9.jpg", photo(seed=5, rgb=False))
    save(tmp_path / "MT_Free" / "Imgs" / "exp0_num_9.png", np.zeros((12, 16), np.uint8))
    recs, stats = records("magnetic_tile", tmp_path)
    check_contract(recs, tmp_path)
    assert [(r.original_file, r.original_label) for r in recs] == [
        ("MT_Blowhole/Imgs/exp1_num_1.jpg", "Blowhole"), ("MT_Crack/Imgs/exp2_num_2.jpg", "Crack"),
        ("MT_Crack/Imgs/exp2_num_3.jpg", "Crack"), ("MT_Crack/Imgs/exp2_num_4.jpg", "Crack")]
    assert [None if r.mask is None else int(r.mask.sum()) for r in recs] == [12, 4, None, 0]
    assert recs[2].notes == ["mask_missing"] and recs[3].notes == ["mask_empty"]
    assert stats["skipped_normal"] == 1


# --------------------------------------------------------------------------- BTAD
def test_btad(tmp_path):
    save(tmp_path / "01" / "test" / "ko" / "0000.bmp", photo(seed=1))
    save(tmp_path / "01" / "ground_truth" / "ko" / "0000.png", box())
    save(tmp_path / "01" / "test" / "ok" / "0000.bmp", photo(seed=2))
    save(tmp_path / "03" / "test" / "ko" / "0007.png", photo(seed=3))
    save(tmp_path / "03" / "ground_truth" / "ko" / "0007.png", box(value=1, c=(0, 2)))
    save(tmp_path / "03" / "test" / "ko" / "0008.png", photo(seed=4))
    corrupt(tmp_path / "03" / "ground_truth" / "ko" / "0008.png")
    recs, stats = records("btad", tmp_path)
    check_contract(recs, tmp_path)
    assert [(r.original_file, r.source_domain, r.original_label) for r in recs] == [
        ("01/test/ko/0000.bmp", "01", "ko"), ("03/test/ko/0007.png", "03", "ko"), ("03/test/ko/0008.png", "03", "ko")]
    assert [None if r.mask is None else int(r.mask.sum()) for r in recs] == [12, 6, None]
    assert recs[2].notes == ["mask_unreadable"] and stats["skipped_normal"] == 1
    assert len(records("btad", tmp_path, products=["01"])[0]) == 1
    with pytest.raises(LayoutError, match="02"):
        iter_source("btad", tmp_path, products=["02"])


# --------------------------------------------------------------------------- DAGM 2007
def test_dagm(tmp_path):
    grey = photo(rgb=False)
    train = tmp_path / "Class1" / "Train"
    save(train / "0001.PNG", grey)
    save(train / "0002.PNG", grey)  # no label: normal
    save(train / "Label" / "0001_label.PNG", box())
    (train / "Label" / "Labels.txt").write_text("1\n1\t1\t0001.PNG\t0\t0001_label.PNG\n2\t0\t0002.PNG\t0\t0\n")
    test = tmp_path / "Class1" / "Test"
    save(test / "0003.PNG", grey)  # Labels.txt says defective but the label file is missing
    (test / "Label").mkdir()
    (test / "Label" / "Labels.txt").write_text("1\n3\t1\t0003.PNG\t0\t0003_label.PNG\n")
    other = tmp_path / "Class2" / "Train"
    save(other / "0004.PNG", grey)
    save(other / "Label" / "0004_label.PNG", box(value=255, r=(0, 1)))
    (other / "Label" / "Labels.txt").write_text("1\n4\t0\t0004.PNG\t0\t0\n")
    recs, stats = records("dagm", tmp_path)
    check_contract(recs, tmp_path)
    assert [(r.original_file, r.original_label) for r in recs] == [
        ("Class1/Test/0003.PNG", "Class1"), ("Class1/Train/0001.PNG", "Class1"), ("Class2/Train/0004.PNG", "Class2")]
    assert [None if r.mask is None else int(r.mask.sum()) for r in recs] == [None, 12, 4]
    assert recs[0].notes == ["mask_missing"] and recs[2].notes == ["labels_txt_flag_0"]
    assert stats["skipped_normal"] == 1 and {r.source for r in recs} == {"dagm2007"}


# --------------------------------------------------------------------------- small fixtures of the real layouts
def test_mvtec_fixture_skips_good_and_flags_a_missing_mask(tmp_path):
    save(tmp_path / "wood" / "test" / "good" / "000.png", photo())
    save(tmp_path / "wood" / "test" / "hole" / "000.png", photo(seed=1))
    save(tmp_path / "wood" / "ground_truth" / "hole" / "000_mask.png", box())
    save(tmp_path / "wood" / "test" / "hole" / "001.png", photo(seed=2))
    save(tmp_path / "nut" / "test" / "colour" / "00.jpg", photo(seed=3))
    save(tmp_path / "nut" / "ground_truth" / "colour" / "00_mask.png", box(value=1))
    recs, stats = records("mvtec", tmp_path)
    check_contract(recs, tmp_path)
    assert [(r.original_file, r.original_label, r.source_domain) for r in recs] == [
        ("nut/test/colour/00.jpg", "colour", "nut"), ("wood/test/hole/000.png", "hole", "wood"),
        ("wood/test/hole/001.png", "hole", "wood")]
    assert recs[2].mask is None and recs[2].notes == ["mask_missing"]
    assert stats["skipped_normal"] == 1
    assert len(records("mvtec", tmp_path, categories=["wood"])[0]) == 2
    with pytest.raises(LayoutError, match="tile"):
        iter_source("mvtec", tmp_path, categories=["tile"])


def test_kolektor_fixture(tmp_path):
    multi = box(value=1)
    multi[2, 3] = 2
    save(tmp_path / "kos01" / "Part0.jpg", photo(rgb=False))
    save(tmp_path / "kos01" / "Part0_label.png", multi)
    save(tmp_path / "kos01" / "Part1.jpg", photo(seed=1, rgb=False))
    save(tmp_path / "kos01" / "Part1_label.png", np.zeros((12, 16), np.uint8))
    stats = {}
    recs = list(iter_source("kolektor", tmp_path, stats=stats))
    check_contract(recs, tmp_path)
    assert [r.original_file for r in recs] == ["kos01/Part0.jpg"] and recs[0].mask.sum() == 12
    assert recs[0].notes == ["mask_multi_value"]
    assert stats["skipped_normal"] == 1 and stats["images"] == 2


def test_neu_seg_fixture_one_row_per_class(tmp_path):
    root = tmp_path / "data"
    labels = np.zeros((12, 16), np.uint8)
    labels[0:2, 0:3] = 1
    labels[5:9, 5:6] = 3
    save(root / "JPEGImages" / "000001.jpg", photo())
    save(root / "SegmentationClass" / "000001.png", labels)
    save(root / "JPEGImages" / "000002.jpg", photo(seed=2))
    save(root / "SegmentationClass" / "000002.png", np.zeros((12, 16), np.uint8))
    save(root / "JPEGImages" / "000003.jpg", photo(seed=3))
    (tmp_path / "labels.txt").write_text("__ignore__\n_background_\nInclusions\nPatches\nScratches\nothers\n")
    recs, stats = records("neu_seg", root)
    check_contract(recs, root)
    assert [(r.original_file, r.component, r.original_label, int(r.mask.sum())) for r in recs] == [
        ("JPEGImages/000001.jpg", 1, "Inclusions", 6), ("JPEGImages/000001.jpg", 3, "Scratches", 4)]
    assert stats["skipped_empty"] == 1 and stats["skipped_no_mask"] == 1


def _write_cfd_mat(path, segmentation, annotators=1):
    path.parent.mkdir(parents=True, exist_ok=True)
    struct = {"Segmentation": segmentation, "Boundaries": (segmentation > 1).astype(np.uint8)}
    value = struct if annotators == 1 else np.array([[struct] * annotators], dtype=object)
    scipy.io.savemat(path, {"groundTruth": value})


def test_crackforest_fixture_decodes_segmentation(tmp_path):
    seg = np.ones((12, 16), np.uint8)
    seg[4, 2:12] = 2
    seg[8:10, 8:10] = 3  # a BSDS region that is not crack
    save(tmp_path / "image" / "001.jpg", photo())
    _write_cfd_mat(tmp_path / "groundTruth" / "001.mat", seg)
    save(tmp_path / "image" / "002.jpg", photo(seed=2))
    seg2 = np.ones((12, 16), np.uint8)
    seg2[0:3, 0] = 2
    _write_cfd_mat(tmp_path / "groundTruth" / "002.mat", seg2, annotators=2)
    save(tmp_path / "image" / "003.jpg", photo(seed=3))
    (tmp_path / "groundTruth" / "003.mat").write_bytes(b"MATLAB 5.0 MAT-file, broken")
    save(tmp_path / "image" / "201.jpg", photo(seed=4))  # no ground truth
    recs, stats = records("crackforest", tmp_path)
    check_contract(recs, tmp_path)
    assert [r.original_file for r in recs] == ["image/001.jpg", "image/002.jpg", "image/003.jpg"]
    np.testing.assert_array_equal(recs[0].mask, seg == 2)
    assert recs[0].notes == ["extra_segments:3"]
    np.testing.assert_array_equal(recs[1].mask, seg2 == 2)
    assert recs[1].notes == ["annotators:2"]
    assert recs[2].mask is None and recs[2].notes[0].startswith("mask_unreadable")
    assert stats["skipped_no_mask"] == 1
    assert records("crackforest", tmp_path, crack_values=(2, 3))[0][0].mask.sum() == 14


def test_supervisely_fixture(tmp_path):
    (tmp_path / "meta.json").write_text('{"classes": [{"title": "crack0"}, {"title": "crack"}]}')
    save(tmp_path / "ds" / "img" / "a.jpg", photo())
    save(tmp_path / "ds" / "masks_machine" / "a.png", np.dstack([box(value=2)] * 3))
    save(tmp_path / "ds" / "img" / "b.png", photo(seed=1))
    save(tmp_path / "ds" / "masks_machine" / "b.png", np.zeros((12, 16, 3), np.uint8))
    recs, stats = records("supervisely", tmp_path)
    check_contract(recs, tmp_path)
    assert [(r.original_file, r.component, r.original_label, int(r.mask.sum()), r.notes) for r in recs] == [
        ("ds/img/a.jpg", 2, "crack", 12, []), ("ds/img/b.png", 0, "", 0, ["mask_empty"])]
    recs, _ = records("supervisely", tmp_path, class_titles={2: "fissure"})
    assert recs[0].original_label == "fissure"


def test_iteration_is_deterministic(tmp_path):
    _visa_fixture(tmp_path)
    first = [(r.original_file, r.original_label, r.notes) for r in iter_source("visa", tmp_path)]
    second = [(r.original_file, r.original_label, r.notes) for r in iter_source("visa", tmp_path)]
    assert first == second


# --------------------------------------------------------------------------- real data (../shared/data)
SHARED_SOURCES = {
    "mvtec": ("mvtec_ad", {}),
    "kolektor": ("ksdd/data", {}),
    "neu_seg": ("sources/neu_seg/U-Net/data_wenjian", {}),
    "crackforest": ("sources/crackforest", {}),
    "supervisely": ("sources/cracks_mixed", {}),
    "pairs": ("sources/fabric_hsst/dataset_samples",
              dict(masks="annotations", source="fabric_hsst", license="Apache-2.0", label="stain", domain="fabric")),
}


def shared_records(shared_data, layout):
    subdir, options = SHARED_SOURCES[layout]
    stats = {}
    recs = list(iter_source(layout, shared_data / subdir, stats=stats, **options))
    check_contract(recs, (shared_data / subdir).resolve())
    return recs, stats


@pytest.mark.shared_data
def test_real_mvtec(shared_data):
    recs, stats = shared_records(shared_data, "mvtec")
    assert Counter(r.source_domain for r in recs) == {"grid": 11, "hazelnut": 17, "carpet": 17}
    assert Counter(r.original_label for r in recs if r.source_domain == "grid") == {
        "bent": 3, "broken": 2, "glue": 2, "metal_contamination": 2, "thread": 2}
    assert {r.original_label for r in recs if r.source_domain != "grid"} == {"colour", "color"}
    assert stats["skipped_normal"] == 9  # test/good: grid 3 + hazelnut 6
    assert all(r.mask is not None and r.mask.any() and not r.notes for r in recs)
    assert {r.mask.shape for r in recs} == {(1024, 1024), (512, 512)}


@pytest.mark.shared_data
def test_real_kolektor(shared_data):
    recs, stats = shared_records(shared_data, "kolektor")
    assert len(recs) == 52 and stats["skipped_normal"] == 35 and stats["images"] == 87
    assert all(r.mask.any() for r in recs)
    assert [r.original_file for r in recs if r.notes] == ["kos20/Part4.jpg"]  # the stray 2
    assert {r.mask.shape[1] for r in recs} == {500}


@pytest.mark.shared_data
def test_real_neu_seg_one_row_per_class_present(shared_data):
    recs, stats = shared_records(shared_data, "neu_seg")
    masks = sorted((shared_data / SHARED_SOURCES["neu_seg"][0] / "SegmentationClass").glob("*.png"))
    expected = sum(int((np.unique(np.asarray(Image.open(p))) > 0).sum()) for p in masks)
    assert len(masks) == 1341 and len(recs) == expected == 1614
    assert Counter(r.original_label for r in recs) == {"Inclusions": 539, "Patches": 542, "Scratches": 533}
    assert all(r.mask.shape == (200, 200) and r.mask.any() and r.component in (1, 2, 3) for r in recs)
    assert stats["skipped_empty"] == 0


@pytest.mark.shared_data
def test_real_crackforest(shared_data):
    recs, stats = shared_records(shared_data, "crackforest")
    assert len(recs) == 118 and stats["skipped_no_mask"] == 37  # images 201-208, 301-329 have no .mat
    assert all(r.mask.shape == (320, 480) and r.mask.any() for r in recs)
    assert stats["notes"] == {"extra_segments": 22}


@pytest.mark.shared_data
def test_real_cracks_mixed(shared_data):
    recs, stats = shared_records(shared_data, "supervisely")
    assert len(recs) == 256 and stats["notes"] == {"mask_empty": 11}
    empty = sorted(r.image_path.stem for r in recs if not r.mask.any())
    assert empty == ["201", "204", "205", "206", "207", "208",
                     "Im_GT_AIGLE_RN_F03bor", "Im_GT_AIGLE_RN_F09bor", "Im_noGT_AIGLE_RN_12cor",
                     "Im_noGT_TEMPEST2_80aor", "Im_noGT_TEMPEST2_84aor"]
    assert Counter((r.original_label, r.component) for r in recs) == {("crack", 2): 245, ("", 0): 11}
    assert len({r.mask.shape for r in recs}) > 5  # many sizes, each checked against its image


@pytest.mark.shared_data
def test_real_fabric_pairs(shared_data):
    recs, stats = shared_records(shared_data, "pairs")
    assert len(recs) == 26 and stats["notes"] == {"mask_empty": 1}
    assert {r.mask.shape for r in recs} == {(512, 512)}


@pytest.mark.shared_data
def test_real_crackforest_mat_matches_the_cracks_mixed_annotation(shared_data):
    """The CFD photos are byte-identical in cracks_mixed, annotated independently (thin .mat crack
    lines vs wide polygons): the decoded .mat crack pixels must fall inside the polygons, and a
    wrongly oriented decode must not."""
    cfd, _ = shared_records(shared_data, "crackforest")
    mixed = {r.original_file.split("/")[-1]: r for r in shared_records(shared_data, "supervisely")[0]}
    inside, flipped = [], []
    for r in cfd:
        other = mixed[r.original_file.split("/")[-1]]
        digest = [hashlib.sha256(p.read_bytes()).hexdigest() for p in (r.image_path, other.image_path)]
        assert digest[0] == digest[1]
        inside.append((r.mask & other.mask).sum() / r.mask.sum())
        flipped.append((r.mask[::-1, ::-1] & other.mask).sum() / r.mask.sum())
    assert len(inside) == 118
    assert np.median(inside) > 0.99 and sum(f > 0.8 for f in inside) >= 110
    assert np.median(flipped) < 0.5

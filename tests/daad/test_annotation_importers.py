"""Annotation-tool importers (labelme, COCO, CVAT for images 1.1) and suffix_pairs: fixtures written
in the tools' own file shapes, RLE decoders against an independent encoder written here, and the two
real sources in ../shared (BSData pitting, road potholes)."""
import base64
import io
import json
from collections import Counter

import numpy as np
import pytest
from PIL import Image

from cai.layouts import IMPORTERS, LayoutError, iter_source
from cai.layouts._shapes import (circle_mask, decode_coco_rle, decode_cvat_rle, ellipse_mask, polygon_mask,
                                          rectangle_mask)
from tests.daad.test_importers import check_contract, photo, save


# --------------------------------------------------------------------------- independent encoders
def rle_counts(mask, order):
    """Run lengths (starting with background) of a bool mask flattened in ``order`` ("F" or "C")."""
    flat = np.asarray(mask, bool).ravel(order=order).astype(np.int8)
    counts, current, run = [], 0, 0
    for v in flat:
        if v == current:
            run += 1
        else:
            counts.append(run)
            current, run = v, 1
    counts.append(run)
    return counts


def coco_string(counts):
    """pycocotools' compressed RLE string of ``counts`` (the encoding described in its maskApi.c)."""
    out = []
    for i, x in enumerate(counts):
        if i > 2:
            x -= counts[i - 2]
        more = True
        while more:
            c = x & 0x1F
            x >>= 5
            more = (x != -1) if (c & 0x10) else (x != 0)
            if more:
                c |= 0x20
            out.append(chr(c + 48))
    return "".join(out)


def random_mask(shape, seed):
    rng = np.random.default_rng(seed)
    mask = rng.random(shape) < 0.3
    mask[: shape[0] // 2, : shape[1] // 3] = True  # long runs too (multi-character values)
    return mask


# --------------------------------------------------------------------------- shapes and RLE
def test_polygon_rectangle_circle_known_pixels():
    square = polygon_mask([(1, 1), (4, 1), (4, 3), (1, 3)], (6, 7))
    assert np.argwhere(square).min(0).tolist() == [1, 1] and np.argwhere(square).max(0).tolist() == [3, 4]
    assert square.sum() == 12
    edge = polygon_mask([1, 1, 5, 1, 5, 4, 1, 4], (6, 7), convention="edge")  # COCO flat list, pixel edges
    assert edge.sum() == 12 and edge[1:4, 1:5].all()
    assert np.array_equal(rectangle_mask((4, 3), (1, 1), (6, 7)), square)  # corners in any order
    disk = circle_mask((10, 10), (13, 10), (21, 21))
    rr, cc = np.mgrid[:21, :21]
    inside = (rr - 10) ** 2 + (cc - 10) ** 2 <= 9
    assert np.array_equal(disk, inside)
    thin = polygon_mask([(0, 2), (6, 2)], (5, 7))  # a degenerate polygon keeps the pixels it passes
    assert thin[2].all() and thin.sum() == 7


def test_rotated_ellipse_is_elongated_along_the_rotated_axis():
    flat = ellipse_mask((20, 20), (12, 3), (41, 41))
    upright = ellipse_mask((20, 20), (12, 3), (41, 41), angle=90)
    assert np.ptp(np.argwhere(flat)[:, 1]) > 20 and np.ptp(np.argwhere(flat)[:, 0]) < 8
    assert np.array_equal(upright, flat.T)
    assert np.array_equal(ellipse_mask((5, 5), (0, 0), (11, 11)), np.eye(11, dtype=bool) & (np.arange(11) == 5))


@pytest.mark.parametrize("shape,seed", [((1, 1), 0), ((7, 5), 1), ((40, 33), 2), ((64, 64), 3)])
def test_coco_rle_compressed_and_uncompressed_roundtrip(shape, seed):
    mask = random_mask(shape, seed)
    counts = rle_counts(mask, "F")
    assert np.array_equal(decode_coco_rle({"size": list(shape), "counts": counts}), mask)
    assert np.array_equal(decode_coco_rle({"size": list(shape), "counts": coco_string(counts)}), mask)
    assert np.array_equal(decode_coco_rle({"size": list(shape), "counts": coco_string(counts).encode()}), mask)


def test_coco_rle_known_string_and_errors():
    # 3 x 2 image, column-major runs 1 background, 2 defect, 3 background -> "1" "2" "3" = chr(48 + n)
    mask = decode_coco_rle({"size": [3, 2], "counts": "123"})
    assert mask.astype(int).tolist() == [[0, 0], [1, 0], [1, 0]]
    with pytest.raises(ValueError, match="sum to"):
        decode_coco_rle({"size": [3, 2], "counts": [1, 2]})
    with pytest.raises(ValueError, match="invalid character"):
        decode_coco_rle({"size": [3, 2], "counts": "1 3"})
    with pytest.raises(ValueError, match="size"):
        decode_coco_rle({"counts": [6]})


def test_cvat_rle_row_major_in_its_box():
    crop = random_mask((5, 9), 4)
    rle = ", ".join(map(str, rle_counts(crop, "C")))
    mask = decode_cvat_rle(rle, left=3, top=2, width=9, height=5, shape=(10, 14))
    assert np.array_equal(mask[2:7, 3:12], crop) and mask.sum() == crop.sum()
    with pytest.raises(ValueError, match="not inside"):
        decode_cvat_rle(rle, left=8, top=2, width=9, height=5, shape=(10, 14))
    with pytest.raises(ValueError, match="sum to"):
        decode_cvat_rle("1, 2", left=0, top=0, width=9, height=5, shape=(10, 14))


# --------------------------------------------------------------------------- labelme
def labelme_doc(image_path, shapes, size=(24, 32), image_data=None):
    return {"version": "5.4.1", "flags": {}, "shapes": [
        {"label": label, "points": points, "group_id": None, "shape_type": kind, "flags": {}}
        for label, kind, points in shapes],
        "imagePath": image_path, "imageData": image_data, "imageHeight": size[0], "imageWidth": size[1]}


def write_json(path, doc):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc))
    return path


def test_labelme_bsdata_shape_nulled_image_data(tmp_path):
    """label/<name>.json beside data/<name>.jpg, imageData null (as the real BSData export)."""
    root = tmp_path / "bs"
    save(root / "data" / "a.png", photo(24, 32, 0))
    save(root / "data" / "b.png", photo(24, 32, 1))
    save(root / "data" / "normal.png", photo(24, 32, 2))
    write_json(root / "label" / "a.json", labelme_doc("a.png", [
        ("Pitting", "polygon", [[2, 2], [8, 2], [8, 6], [2, 6]]),
        ("Pitting", "rectangle", [[20, 10], [25, 14]]),
        ("scratch", "circle", [[15, 18], [17, 18]]),
        ("Pitting", "linestrip", [[0, 0], [5, 5]]),
        ("Pitting", "point", [[3, 3]])]))
    write_json(root / "label" / "b.json", labelme_doc("b.png", [("Pitting", "polygon", [[1, 1], [3, 1], [3, 3]])]))
    write_json(root / "label" / "normal.json", labelme_doc("normal.png", []))
    write_json(root / "label" / "orphan.json", labelme_doc("missing.png", [("Pitting", "polygon", [[1, 1], [3, 3], [1, 3]])]))
    (root / "label" / "broken.json").write_text("{not json")
    stats = {}
    recs = list(iter_source("labelme", root, labels="label", images="data", stats=stats))
    check_contract(recs, root.resolve())
    assert [(r.original_file, r.original_label, r.component) for r in recs] == [
        ("data/a.png", "Pitting", 1), ("data/a.png", "scratch", 2), ("data/b.png", "Pitting", 0)]
    pitting = recs[0].mask
    assert pitting[2:7, 2:9].all() and pitting[10:15, 20:26].all()
    assert pitting.sum() == 5 * 7 + 5 * 6  # no pixel from the linestrip or the point
    assert recs[1].mask[18, 15] and recs[1].mask.sum() < 20
    assert stats["skipped_normal"] == 1 and stats["skipped_no_image"] == 1 and stats["skipped_bad_json"] == 1
    assert stats["shapes_skipped"] == {"linestrip": 1, "point": 1}
    assert stats["yielded"] == 3


def test_labelme_embedded_image_data_is_used_and_cached(tmp_path):
    root = tmp_path / "lm"
    buf = io.BytesIO()
    Image.fromarray(photo(24, 32, 5)).save(buf, format="PNG")
    doc = labelme_doc("gone/elsewhere.png", [("dent", "polygon", [[4, 4], [10, 4], [10, 9], [4, 9]])],
                      image_data=base64.b64encode(buf.getvalue()).decode())
    write_json(root / "x.json", doc)
    cache = tmp_path / "cache"
    recs = list(iter_source("labelme", root, cache_dir=cache))
    assert len(recs) == 1 and recs[0].original_file == "x.json"
    assert recs[0].image_path.parent.parent == cache and recs[0].image_path.read_bytes() == buf.getvalue()
    assert recs[0].mask[4:10, 4:11].all() and recs[0].mask.sum() == 6 * 7
    again = list(iter_source("labelme", root, cache_dir=cache))
    assert again[0].image_path == recs[0].image_path and len(list(cache.rglob("*.png"))) == 1


def test_labelme_size_mismatch_and_bad_shapes_are_notes(tmp_path):
    root = tmp_path / "lm"
    save(root / "p.png", photo(24, 32, 0))
    write_json(root / "p.json", labelme_doc("p.png", [("dent", "polygon", [[1, 1], [5, 1], [5, 5]]),
                                                      ("dent", "polygon", [["a", 1]]),
                                                      ("dent", "circle", [[1, 1]])], size=(20, 32)))
    (rec,) = iter_source("labelme", root)
    assert rec.mask is None and any(n.startswith("mask_size_mismatch") for n in rec.notes)
    assert rec.notes.count("shape_invalid:dent") == 2


def test_labelme_same_stem_fallback_and_layout_error(tmp_path):
    root = tmp_path / "lm"
    save(root / "img" / "q.jpg", photo(24, 32, 0), quality=95)
    write_json(root / "q.json", labelme_doc("", [("dent", "rectangle", [[1, 1], [4, 4]])]))
    (rec,) = iter_source("labelme", root, images="img")
    assert rec.original_file == "img/q.jpg" and rec.mask.sum() == 16
    with pytest.raises(LayoutError, match="labelme|missing"):
        list(iter_source("labelme", tmp_path / "nope"))


# --------------------------------------------------------------------------- COCO
def coco_doc():
    full = random_mask((24, 32), 7)
    return full, {
        "info": {"description": "fixture"}, "licenses": [],
        "images": [{"id": 1, "file_name": "sub/a.png", "height": 24, "width": 32},
                    {"id": 2, "file_name": "b.png", "height": 24, "width": 32},
                    {"id": 3, "file_name": "normal.png", "height": 24, "width": 32},
                    {"id": 4, "file_name": "missing.png", "height": 24, "width": 32}],
        "categories": [{"id": 1, "name": "dent", "supercategory": ""}, {"id": 2, "name": "rust", "supercategory": ""}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 1, "iscrowd": 0, "area": 12.0, "bbox": [1, 1, 4, 3],
             "segmentation": [[1, 1, 5, 1, 5, 4, 1, 4]]},
            {"id": 2, "image_id": 1, "category_id": 2, "iscrowd": 1, "area": 0, "bbox": [0, 0, 32, 24],
             "segmentation": {"size": [24, 32], "counts": coco_string(rle_counts(full, "F"))}},
            {"id": 3, "image_id": 2, "category_id": 1, "iscrowd": 0, "area": 0, "bbox": [0, 0, 32, 24],
             "segmentation": {"size": [24, 32], "counts": rle_counts(full, "F")}},
            {"id": 4, "image_id": 2, "category_id": 1, "iscrowd": 0, "area": 6, "bbox": [20, 10, 3, 2]},
            {"id": 5, "image_id": 2, "category_id": 1, "iscrowd": 0, "bbox": [0, 0, 1, 1],
             "segmentation": {"size": [10, 10], "counts": [100]}},
            {"id": 6, "image_id": 99, "category_id": 1, "segmentation": [[0, 0, 1, 0, 1, 1]]},
            {"id": 7, "image_id": 2, "category_id": 42, "segmentation": [[0, 0, 1, 0, 1, 1]]}]}


def test_coco_polygons_rle_bbox_and_counted_skips(tmp_path):
    root = tmp_path / "coco"
    full, doc = coco_doc()
    for name, seed in (("images/sub/a.png", 0), ("images/b.png", 1), ("images/normal.png", 2)):
        save(root / name, photo(24, 32, seed))
    write_json(root / "annotations" / "instances_default.json", doc)
    stats = {}
    recs = list(iter_source("coco", root, stats=stats))
    check_contract(recs, root.resolve())
    assert [(r.original_file, r.original_label, r.component) for r in recs] == [
        ("images/b.png", "dent", 0), ("images/sub/a.png", "dent", 1), ("images/sub/a.png", "rust", 2)]
    b, a_dent, a_rust = recs
    assert a_dent.mask[1:4, 1:5].all() and a_dent.mask.sum() == 12
    assert np.array_equal(a_rust.mask, full) and "crowd" in a_rust.notes
    expected = full.copy()
    expected[10:12, 20:23] = True
    assert np.array_equal(b.mask, expected)
    assert "bbox_only" in b.notes and "segmentation_invalid" in b.notes  # the 10x10 RLE is left out
    assert stats["skipped_normal"] == 1 and stats["skipped_no_image"] == 1 and stats["annotations_orphan"] == 2


def test_coco_layout_errors(tmp_path):
    (tmp_path / "two").mkdir()
    for n in ("a.json", "b.json"):
        (tmp_path / "two" / n).write_text("{}")
    with pytest.raises(LayoutError, match="several JSON"):
        list(iter_source("coco", tmp_path / "two"))
    with pytest.raises(LayoutError, match="'images' and 'annotations'"):
        list(iter_source("coco", tmp_path / "two", annotations="a.json"))


# --------------------------------------------------------------------------- CVAT
CVAT_XML = """<?xml version="1.0" encoding="utf-8"?>
<annotations>
  <version>1.1</version>
  <meta><task><name>fixture</name><labels><label><name>dent</name><type>any</type></label></labels></task></meta>
  <image id="0" name="a.png" width="32" height="24">
    <box label="dent" source="manual" occluded="0" xtl="2.00" ytl="3.00" xbr="6.00" ybr="5.00" z_order="0"></box>
    <polygon label="dent" source="manual" occluded="0" points="10.00,10.00;15.00,10.00;15.00,14.00;10.00,14.00" z_order="0"></polygon>
    <polyline label="dent" source="manual" occluded="0" points="0,0;5,5" z_order="0"></polyline>
    <mask label="rust" source="manual" occluded="0" rle="{rle}" left="20" top="12" width="9" height="5" z_order="0"></mask>
    <ellipse label="rust" source="manual" occluded="0" cx="5" cy="18" rx="2" ry="2" rotation="0" z_order="0"></ellipse>
  </image>
  <image id="1" name="b.png" width="32" height="24">
    <box label="dent" source="manual" occluded="0" xtl="9" ytl="3" xbr="4" ybr="5" z_order="0"></box>
  </image>
  <image id="2" name="normal.png" width="32" height="24"><tag label="ok" source="manual"></tag></image>
  <image id="3" name="missing.png" width="32" height="24"></image>
</annotations>
"""


def test_cvat_box_polygon_mask_ellipse_and_skips(tmp_path):
    root = tmp_path / "cvat"
    for name, seed in (("a.png", 0), ("b.png", 1), ("normal.png", 2)):
        save(root / "images" / name, photo(24, 32, seed))
    crop = random_mask((5, 9), 8)
    (root / "annotations.xml").write_text(CVAT_XML.replace("{rle}", ", ".join(map(str, rle_counts(crop, "C")))))
    stats = {}
    recs = list(iter_source("cvat", root, stats=stats))
    check_contract(recs, root.resolve())
    assert [(r.original_file, r.original_label, r.component) for r in recs] == [
        ("images/a.png", "dent", 1), ("images/a.png", "rust", 2), ("images/b.png", "dent", 0)]
    dent, rust, bad = recs
    assert dent.mask[3:5, 2:6].all() and dent.mask[10:14, 10:15].all() and dent.mask.sum() == 8 + 20
    assert np.array_equal(rust.mask[12:17, 20:29], crop) and rust.mask[18, 5] and rust.mask[:, :10].sum() < 16
    assert bad.mask is None and "shape_invalid:dent" in bad.notes  # box with xbr < xtl
    assert stats["skipped_normal"] == 1 and stats["skipped_no_image"] == 1
    assert stats["shapes_skipped"] == {"polyline": 1, "tag": 1}


def test_cvat_layout_errors(tmp_path):
    (tmp_path / "x").mkdir()
    with pytest.raises(LayoutError, match="annotations.xml not found"):
        list(iter_source("cvat", tmp_path / "x"))
    (tmp_path / "x" / "annotations.xml").write_text("<root/>")
    with pytest.raises(LayoutError, match="not <annotations>"):
        list(iter_source("cvat", tmp_path / "x"))


# --------------------------------------------------------------------------- suffix_pairs
def test_suffix_pairs_same_folder_pairs(tmp_path):
    root = tmp_path / "Dataset"
    for i in (1, 2, 3):
        save(root / f"id{i}" / f"id{i}_RAW.jpg", photo(12, 16, i), quality=95)
    mask = np.zeros((12, 16, 3), np.uint8)
    mask[4:8, 5:9] = 255
    save(root / "id1" / "id1_POTHOLE.png", mask)
    save(root / "id2" / "id2_POTHOLE.png", np.zeros((12, 16, 3), np.uint8))
    stats = {}
    recs = list(iter_source("suffix_pairs", root, image_suffix="_RAW", mask_suffix="_POTHOLE", label="pothole",
                            stats=stats))
    check_contract(recs, root.resolve())
    assert [r.original_file for r in recs] == ["id1/id1_RAW.jpg", "id2/id2_RAW.jpg"]
    assert recs[0].mask.sum() == 16 and recs[0].original_label == "pothole" and "mask_empty" in recs[1].notes
    assert stats["skipped_no_mask"] == 1
    assert len(list(iter_source("suffix_pairs", root, image_suffix="_RAW", mask_suffix="_POTHOLE",
                                empty_is_normal=True))) == 1
    with pytest.raises(LayoutError, match="different"):
        list(iter_source("suffix_pairs", root, image_suffix="_RAW", mask_suffix="_RAW"))


def test_new_importers_registered_with_constants():
    for name in ("labelme", "coco", "cvat", "suffix_pairs"):
        module = IMPORTERS[name]
        assert module.SOURCE and module.LICENSE and module.LAYOUT and callable(module.iter_anomalies)


# --------------------------------------------------------------------------- real sources
@pytest.mark.shared_data
def test_real_bsdata_pitting_labelme(shared_data):
    root = shared_data / "sources" / "bsdata_pitting"
    stats = {}
    recs = list(iter_source("labelme", root, labels="label", images="data", stats=stats))
    check_contract(recs, root.resolve())
    assert len(recs) == 197 and stats["skipped_no_image"] == 0 and stats["skipped_bad_json"] == 0
    assert {r.original_label for r in recs} == {"Pitting"} and all(r.component == 0 for r in recs)
    assert all(r.mask is not None and r.mask.any() and not r.notes for r in recs)
    ratios = np.array([r.mask.mean() for r in recs])
    assert 0.001 < np.median(ratios) < 0.01  # DATA.md: pits are small, median 0.3 % of the image
    # every polygon vertex lies in (or next to) the drawn mask
    doc = json.loads((root / "label" / (recs[0].image_path.stem + ".json")).read_text())
    for shape in doc["shapes"]:
        for x, y in shape["points"]:
            r, c = int(round(y)), int(round(x))
            assert recs[0].mask[max(r - 1, 0):r + 2, max(c - 1, 0):c + 2].any()


@pytest.mark.shared_data
def test_real_road_potholes_suffix_pairs(shared_data):
    root = shared_data / "sources" / "road_potholes" / "Dataset"
    stats = {}
    recs = list(iter_source("suffix_pairs", root, image_suffix="_RAW", mask_suffix="_POTHOLE", label="pothole",
                            stats=stats))
    check_contract(recs, root.resolve())
    assert len(recs) == 200 and stats["skipped_no_mask"] == 0
    assert Counter(r.mask.shape for r in recs) == {(640, 1024): 97, (630, 1024): 103}  # two camera crops
    assert all(r.mask.any() for r in recs)
    assert Counter(n.split(":")[0] for r in recs for n in r.notes) == Counter()

"""Taxonomy: the packaged table, classify/map_records, overrides and validation."""
import csv
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cai.layouts import iter_source
from daad_tools.records import CLASSES, RawAnomaly
from daad_tools.taxonomy import (DEFAULT_PATH, EXCLUDE, TaxonomyError, UnmappedLabel, load_taxonomy,
                                 map_records)


def rec(source, label, original_file="a.png", component=0):
    return RawAnomaly(source=source, original_file=original_file, image_path=Path("/x") / original_file,
                      mask=np.ones((2, 2), bool), original_label=label, component=component)


def write_csv(path, rows, header=("source", "original_label", "anomaly_class", "note")):
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return path


@pytest.fixture(scope="module")
def tax():
    return load_taxonomy()


def test_packaged_table_is_valid_and_readable():
    with open(DEFAULT_PATH, newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["source", "original_label", "anomaly_class", "note"]
    assert {r["anomaly_class"] for r in rows} <= set(CLASSES) | {EXCLUDE}
    assert len({(r["source"], r["original_label"].casefold()) for r in rows}) == len(rows)
    # every judgement call explains itself: all rows but trivial identities carry a note
    unexplained = [r for r in rows if not r["note"] and r["original_label"].casefold() != r["anomaly_class"]]
    assert unexplained == []


@pytest.mark.parametrize("source, label, expected", [
    ("mvtec_ad", "glue", "stain"), ("mvtec_ad", "metal_contamination", "impurity"),
    ("mvtec_ad", "thread", "impurity"), ("mvtec_ad", "broken", "hole"), ("mvtec_ad", "bent", EXCLUDE),
    ("mvtec_ad", "colour", "stain"), ("mvtec_ad", "color", "stain"), ("mvtec_ad", "Color", "stain"),
    ("neu_seg", "Inclusions", "impurity"), ("neu_seg", "Patches", "stain"), ("neu_seg", "Scratches", "scratch"),
    ("kolektorsdd", "defect", "crack"), ("crackforest", "crack", "crack"), ("cracks_mixed", "", "crack"),
    ("fabric_hsst", "stain", "stain"), ("magnetic_tile", "Blowhole", "pits"), ("magnetic_tile", "Break", "hole"),
    ("magnetic_tile", "Crack", "crack"), ("magnetic_tile", "Fray", "abrasion"), ("magnetic_tile", "Uneven", "abrasion"),
    ("visa", "small scratches", "scratch"), ("visa", "different colour spot", "stain"),
    ("visa", "scratch, small scratches", "scratch"),  # several parts, one class
    ("dagm2007", "Class3", EXCLUDE), ("own_photos", "orifice", "orifice"),
])
def test_classify(tax, source, label, expected):
    assert tax.classify(source, label) == expected


@pytest.mark.parametrize("source, label", [
    ("btad", "ko"), ("kolektorsdd2", "defect"), ("visa", "other"), ("visa", "melt, scratch"),
    ("own_photos", "unlabelled"), ("unknown_source", "crack"), ("neu_seg", "others")])
def test_unmapped_label_carries_the_pair(tax, source, label):
    with pytest.raises(UnmappedLabel) as info:
        tax.classify(source, label)
    assert info.value.pairs == [(source, label)]
    assert (info.value.source, info.value.label) == (source, label)
    assert repr(label) in str(info.value)


def test_map_records_error_lists_all_unmapped_pairs_at_once(tax):
    records = [rec("mvtec_ad", "glue"), rec("btad", "ko", "01/a.bmp"), rec("btad", "ko", "01/b.bmp"),
               rec("visa", "other"), rec("neu_seg", "Patches")]
    with pytest.raises(UnmappedLabel) as info:
        map_records(records, tax)
    assert info.value.pairs == [("btad", "ko"), ("visa", "other")]
    assert info.value.counts == {("btad", "ko"): 2, ("visa", "other"): 1}
    assert "'btad'/'ko' (2 record(s))" in str(info.value) and "'visa'/'other'" in str(info.value)


def test_map_records_skip_drops_and_counts(tax):
    records = [rec("mvtec_ad", "glue"), rec("btad", "ko", "01/a.bmp"), rec("btad", "ko", "01/b.bmp"),
               rec("mvtec_ad", "bent"), rec("neu_seg", "Patches", component=2), rec("visa", "other")]
    mapped, report = map_records(iter(records), tax, unmapped="skip")
    assert [(r.source, c) for r, c in mapped] == [("mvtec_ad", "stain"), ("neu_seg", "stain")]
    assert report["unmapped"] == {("btad", "ko"): 2, ("visa", "other"): 1} and report["skipped"] == 3
    assert report["excluded"] == {("mvtec_ad", "bent"): 1}
    assert report["mapped"] == 2 and report["by_class"] == {"stain": 2}
    with pytest.raises(ValueError, match="unmapped"):
        map_records(records, tax, unmapped="ignore")


def test_overrides_win_over_the_table():
    overrides = {
        ("mvtec_ad", "grid/test/glue/000.png"): "impurity",           # original_file
        ("btad", "btad/01/test/ko/0001.bmp"): "scratch",              # row id
        ("neu_seg", "JPEGImages/000005.jpg#Patches@2"): "abrasion",   # row id with label and component
        ("kolektorsdd", "kos01/Part3.jpg"): EXCLUDE,
    }
    tax = load_taxonomy(overrides=overrides)
    records = [rec("mvtec_ad", "glue", "grid/test/glue/000.png"), rec("mvtec_ad", "glue", "grid/test/glue/001.png"),
               rec("btad", "ko", "01/test/ko/0001.bmp"),
               rec("neu_seg", "Patches", "JPEGImages/000005.jpg", 2),
               rec("neu_seg", "Inclusions", "JPEGImages/000005.jpg", 1),
               rec("kolektorsdd", "defect", "kos01/Part3.jpg")]
    mapped, report = map_records(records, tax)
    assert [c for _, c in mapped] == ["impurity", "stain", "scratch", "abrasion", "impurity"]
    assert report["overridden"] == 4 and report["excluded"] == {("kolektorsdd", "defect"): 1}
    assert tax.classify_record(records[0]) == "impurity"
    assert tax.classify("mvtec_ad", "glue") == "stain"  # the table itself is unchanged


def test_invalid_class_in_csv_is_rejected(tmp_path):
    path = write_csv(tmp_path / "t.csv", [("src", "a", "crack", ""), ("src", "b", "dent", "not a DAAD class")])
    with pytest.raises(TaxonomyError, match=r"t\.csv:3.*'dent'"):
        load_taxonomy(path)


@pytest.mark.parametrize("rows, header, match", [
    ([("src", "a", "crack", "")], ("source", "label", "class", "note"), "header"),
    ([("src", "a", "crack", ""), ("src", "A", "stain", "")], None, "maps to 'crack' earlier"),
    ([("", "a", "crack", "")], None, "empty source"),
])
def test_malformed_tables_are_rejected(tmp_path, rows, header, match):
    kwargs = {"header": header} if header else {}
    with pytest.raises(TaxonomyError, match=match):
        load_taxonomy(write_csv(tmp_path / "t.csv", rows, **kwargs))


def test_invalid_override_is_rejected():
    with pytest.raises(TaxonomyError, match="override"):
        load_taxonomy(overrides={("btad", "01/test/ko/0001.bmp"): "dent"})
    with pytest.raises(TaxonomyError, match="override key"):
        load_taxonomy(overrides={"01/test/ko/0001.bmp": "crack"})


def test_wildcard_and_exact_rows_and_later_tables(tmp_path):
    base = write_csv(tmp_path / "base.csv", [("mine", "*", "crack", "single class"), ("mine", "spot", "stain", "")])
    extra = write_csv(tmp_path / "extra.csv", [("mine", "spot", "impurity", "corrected"), ("btad", "ko", "scratch", "")])
    tax = load_taxonomy(base)
    assert tax.classify("mine", "anything") == "crack" and tax.classify("mine", "Spot ") == "stain"
    tax = load_taxonomy([base, extra])
    assert tax.classify("mine", "spot") == "impurity" and tax.classify("btad", "ko") == "scratch"
    assert tax.note("mine", "spot") == "corrected"


def _save(path, array):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def _fixture_sources(tmp_path):
    """Labels the public-layout importers produce on tiny fixtures."""
    image = np.full((8, 8), 90, np.uint8)
    mask = np.zeros((8, 8), np.uint8)
    mask[2:4, 2:5] = 255
    for defect in ("Blowhole", "Break", "Crack", "Fray", "Uneven"):
        _save(tmp_path / "mt" / f"MT_{defect}" / "Imgs" / "a.jpg", image)
        _save(tmp_path / "mt" / f"MT_{defect}" / "Imgs" / "a.png", mask)
    _save(tmp_path / "dagm" / "Class1" / "Train" / "0001.PNG", image)
    _save(tmp_path / "dagm" / "Class1" / "Train" / "Label" / "0001_label.PNG", mask)
    return list(iter_source("magnetic_tile", tmp_path / "mt")) + list(iter_source("dagm", tmp_path / "dagm"))


def test_public_layout_labels_are_mapped(tax, tmp_path):
    mapped, report = map_records(_fixture_sources(tmp_path), tax)
    assert [c for _, c in mapped] == ["pits", "hole", "crack", "abrasion", "abrasion"]
    assert report["excluded"] == {("dagm2007", "Class1"): 1}


@pytest.mark.shared_data
def test_every_label_of_the_real_sources_is_mapped(tax, shared_data):
    sources = [("mvtec", "mvtec_ad", {}), ("kolektor", "ksdd/data", {}),
               ("neu_seg", "sources/neu_seg/U-Net/data_wenjian", {}), ("crackforest", "sources/crackforest", {}),
               ("supervisely", "sources/cracks_mixed", {}),
               ("pairs", "sources/fabric_hsst/dataset_samples",
                dict(masks="annotations", source="fabric_hsst", label="stain"))]
    records = [r for layout, sub, opts in sources for r in iter_source(layout, shared_data / sub, **opts)]
    mapped, report = map_records(records, tax)  # raises UnmappedLabel if any pair is missing
    assert report["unmapped"] == {} and report["excluded"] == {("mvtec_ad", "bent"): 3}
    assert report["by_class"] == {"crack": 118 + 256 + 52, "hole": 2, "impurity": 4 + 539,
                                  "scratch": 533, "stain": 2 + 17 + 17 + 542 + 26}

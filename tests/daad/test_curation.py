"""The one curation-apply path (daad_tools.curation.apply_decisions), without FiftyOne or a build."""
from __future__ import annotations

import numpy as np
import pytest

from daad_tools import qa
from daad_tools.curation import CurationError, Decision, RowFormat, apply_decisions, curated_mask_fields
from daad_tools.mask_fields import mask_fields

H, W = 24, 32
RGB = np.random.default_rng(0).integers(0, 255, (H, W, 3), dtype=np.uint8)


def _box(r0, c0, r1, c1):
    m = np.zeros((H, W), bool)
    m[r0:r1, c0:c1] = True
    return m


FMT = RowFormat(flags="flags", notes=None, class_value=str, image=lambda row: RGB,
                mask_columns=lambda f: {"bbox": f.bbox, "flags": f.flags, "content_hash": f.content_hash})


def _rows():
    return [{"id": i, "anomaly_class": "crack", "flags": list(flags)}
            for i, flags in (("a", []), ("b", ["touches_border", "soft_edges", "border_trimmed", "exact_duplicate",
                                                "refined_mask"]), ("c", ["trivial"]))]


def test_reject_drops_or_keeps_the_row_and_reclass_sets_the_class():
    decisions = {"a": Decision(reject=True), "c": Decision(new_class="stain")}
    rows, changes = apply_decisions(_rows(), decisions, FMT, qa.QAConfig(), drop_rejected=True)
    assert [r["id"] for r in rows] == ["b", "c"] and rows[1]["anomaly_class"] == "stain" and changes == {}
    rows, _ = apply_decisions(_rows(), decisions, FMT, qa.QAConfig(), drop_rejected=False)
    assert [r["id"] for r in rows] == ["a", "b", "c"] and rows[0] == _rows()[0]  # left for the caller


def test_a_curated_mask_recomputes_geometry_keeps_notes_and_set_flags():
    mask = _box(10, 10, 20, 20)
    rows, changes = apply_decisions(_rows(), {"b": Decision(mask=mask.astype(np.uint8) * 7)}, FMT, qa.QAConfig(),
                                    drop_rejected=True)
    b = rows[1]
    # touches_border goes with the old mask, border_trimmed and refined_mask described it too;
    # the importer's soft_edges note and the set-wide exact_duplicate stay
    assert b["flags"] == ["soft_edges", "exact_duplicate"]
    assert b["bbox"] == [10, 10, 20, 20] and b["content_hash"] == qa.content_hash(RGB, mask)
    assert changes["b"].flags_before == _rows()[1]["flags"] and changes["b"].fields.flags == b["flags"]


def test_notes_given_are_used_instead_of_the_flags():
    mask = _box(0, 0, 3, 3)
    got = curated_mask_fields(RGB, mask, ["soft_edges"], qa.QAConfig(), notes=["border_trimmed"])
    assert got == mask_fields(RGB, mask, qa.QAConfig(), [])  # as a source mask without notes
    assert got.flags == ["trivial", "touches_border"]


def test_the_thresholds_come_from_the_config():
    mask = _box(10, 10, 12, 12)  # 4 px
    assert "trivial" in curated_mask_fields(RGB, mask, [], qa.QAConfig()).flags
    assert curated_mask_fields(RGB, mask, [], qa.QAConfig(min_area=1, min_long_side=1)).flags == []


def test_a_mask_of_another_size_is_an_error():
    with pytest.raises(CurationError, match="is 3x2, the image 32x24"):
        apply_decisions(_rows(), {"a": Decision(mask=np.ones((2, 3), bool))}, FMT, qa.QAConfig(), drop_rejected=True)

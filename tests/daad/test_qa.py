import random

import cv2
import numpy as np
import pytest

from daad_tools.qa import (DEFAULT_REJECT, FLAGS, Origin, QAConfig, RowQA, _close_pairs, _pairwise_hamming,
                           content_hash, decide, find_duplicates, hamming, image_hash, mask_stats, note_flags, phash,
                           report_markdown, row_flags)


def _blank(shape=(40, 50)):
    return np.zeros(shape, bool)


def _as(mask, kind):
    return mask if kind == "bool" else mask.astype(np.uint8)


# ----------------------------------------------------------------------------------- per-row flags


@pytest.mark.parametrize("kind", ["bool", "uint8"])
def test_empty_mask_is_empty_and_nothing_else(kind):
    assert row_flags(_as(_blank(), kind)) == ["empty"]


def test_no_mask_is_empty_unless_a_note_says_unreadable():
    assert row_flags(None) == ["empty"]
    assert row_flags(None, notes=["mask_unreadable"]) == ["mask_unreadable"]
    assert row_flags(None, notes=["mask_missing"]) == ["mask_unreadable"]


@pytest.mark.parametrize("kind", ["bool", "uint8"])
def test_trivial_by_long_side_and_by_area(kind):
    m = _blank()
    m[10:12, 10:16] = True  # long side 6 < 8, area 12 < 16
    assert row_flags(_as(m, kind)) == ["trivial"]
    m = _blank()
    m[10, 10:20] = True  # long side 10, area 10 < 16
    assert row_flags(_as(m, kind)) == ["trivial"]
    m = _blank()
    m[10:14, 10:18] = True  # long side 8, area 32: fine
    assert row_flags(_as(m, kind)) == []
    assert row_flags(_as(m, kind), QAConfig(min_long_side=9)) == ["trivial"]
    assert row_flags(_as(m, kind), QAConfig(min_area=33)) == ["trivial"]


@pytest.mark.parametrize("where", [(0, 10), (39, 10), (10, 0), (10, 49)])
def test_touches_border_on_each_side(where):
    m = _blank()
    m[15:25, 15:25] = True
    m[where] = True
    assert "touches_border" in row_flags(m)


def test_covers_most_threshold():
    m = _blank((10, 10))
    m[1:9, 1:8] = True  # 56 %
    assert row_flags(m) == ["covers_most"]
    assert row_flags(m, QAConfig(max_area_ratio=0.6)) == []


def test_many_components_counts_with_the_configured_connectivity():
    m = _blank((60, 60))
    for k in range(11):  # 11 separate 3x3 blobs
        r, c = divmod(k, 4)
        m[2 + 12 * r:5 + 12 * r, 2 + 12 * c:5 + 12 * c] = True
    assert row_flags(m) == ["many_components"]
    assert row_flags(m, QAConfig(max_components=11)) == []
    diag = _blank((30, 30))
    idx = np.arange(2, 28)
    diag[idx, idx] = True  # one 8-connected diagonal = 26 4-connected specks
    assert mask_stats(diag, 8).components == 1
    assert mask_stats(diag, 4).components == 26
    assert "many_components" in row_flags(diag, QAConfig(connectivity=4))


def test_notes_become_flags():
    m = _blank()
    m[10:20, 10:20] = True
    assert row_flags(m, notes=["mask_soft_binarized"]) == ["soft_edges"]
    assert row_flags(m, notes=["mask_size_mismatch:10x10!=40x50", "mask_exif_transposed:6"]) == ["size_mismatch"]
    assert note_flags(["mask_unreadable:ValueError", "unrelated", "soft_edges"]) == ["soft_edges", "mask_unreadable"]


def test_mask_stats_matches_brute_force():
    rng = np.random.default_rng(0)
    for _ in range(20):
        m = rng.random((17, 23)) > 0.93
        s = mask_stats(m)
        rows, cols = np.nonzero(m)
        if rows.size == 0:
            assert s.bbox is None and s.area == 0
            continue
        assert s.bbox == (rows.min(), cols.min(), rows.max() + 1, cols.max() + 1)
        assert s.area == rows.size
        assert s.area_ratio == pytest.approx(rows.size / m.size)
        assert s.touches_border == bool(rows.min() == 0 or cols.min() == 0 or rows.max() == 16 or cols.max() == 22)


def test_bad_masks_are_refused_with_the_argument_named():
    with pytest.raises(ValueError, match="mask"):
        row_flags(np.zeros((4, 4, 3), bool))
    with pytest.raises(ValueError, match="binary"):
        row_flags(np.full((4, 4), 7, np.uint8))
    with pytest.raises(ValueError, match="reject"):
        QAConfig(reject=("nonsense",))
    with pytest.raises(ValueError, match="unknown setting"):
        QAConfig.from_dict({"min_long_sid": 3})


def test_inputs_are_not_changed():
    m = _blank().astype(np.uint8)
    m[3:9, 3:9] = 1
    before = m.copy()
    row_flags(m)
    content_hash(np.zeros((40, 50, 3), np.uint8), m)
    assert np.array_equal(m, before)


# ----------------------------------------------------------------------------------- hashes


def _photo(seed, shape=(120, 160)):
    """A structured test image (shapes on a smooth background), like a real photo to pHash."""
    rng = np.random.default_rng(seed)
    rows, cols = np.mgrid[0:shape[0], 0:shape[1]]
    base = 90 + 60 * np.sin(rows / rng.uniform(8, 30)) * np.cos(cols / rng.uniform(8, 30))
    image = np.stack([base, base * 0.8 + 20, base * 0.6 + 40], axis=2)
    for _ in range(6):
        center = (int(rng.integers(0, shape[1])), int(rng.integers(0, shape[0])))
        cv2.circle(image, center, int(rng.integers(8, 30)), tuple(float(v) for v in rng.uniform(0, 255, 3)), -1)
    return np.clip(image, 0, 255).astype(np.uint8)


def _jpeg(image, quality=85):
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    return cv2.cvtColor(cv2.imdecode(buf, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def test_content_hash_covers_pixels_and_mask():
    image = _photo(0)
    m = _blank(image.shape[:2])
    m[5:9, 5:9] = True
    m2 = m.copy()
    m2[20, 20] = True
    other = image.copy()
    other[0, 0, 0] ^= 1
    assert content_hash(image, m) == content_hash(image.copy(), m.astype(np.uint8))
    assert content_hash(image, m) != content_hash(image, m2)
    assert content_hash(image, m) != content_hash(other, m)
    assert image_hash(image) == image_hash(image.copy()) != image_hash(other)


def test_phash_is_stable_under_reencode_and_brightening_but_not_across_images():
    image = _photo(1)
    brighter = np.clip(image.astype(int) + 12, 0, 255).astype(np.uint8)
    assert hamming(phash(image), phash(_jpeg(image))) <= 2
    assert hamming(phash(image), phash(brighter)) <= 2
    assert hamming(phash(image), phash(cv2.resize(image, (80, 60), interpolation=cv2.INTER_AREA))) <= 2
    assert min(hamming(phash(image), phash(_photo(s))) for s in range(2, 8)) > 6


def test_pairwise_hamming_matches_the_pairwise_definition():
    rng = np.random.default_rng(3)
    hashes = rng.integers(-(2 ** 63), 2 ** 63 - 1, 12, dtype=np.int64)
    dist = _pairwise_hamming(hashes)
    assert np.array_equal(_pairwise_hamming(hashes[:5], hashes), dist[:5])
    pairs = set(_close_pairs(hashes, np.ones(12), 30, 0.1, block=5))
    assert pairs == {(i, j) for i in range(12) for j in range(i + 1, 12) if dist[i, j] <= 30}
    for i in range(12):
        for j in range(12):
            assert dist[i, j] == bin((int(hashes[i]) ^ int(hashes[j])) & (2 ** 64 - 1)).count("1")


# ----------------------------------------------------------------------------------- duplicates


def _origin(key, image, priority=0, passes=True):
    return Origin(key, image_hash(image), phash(image), image.shape[:2], priority, passes)


def test_exact_duplicates_keep_the_first_source_in_priority_then_the_smallest_key():
    image = _photo(4)
    origins = [_origin("crackforest/image/001.jpg", image, priority=1),
               _origin("cracks_mixed/ds/img/001.jpg", image, priority=0),
               _origin("cracks_mixed/ds/img/zz_copy.jpg", image.copy(), priority=0),
               _origin("other/a.png", _photo(5), priority=0)]
    expected = {"crackforest/image/001.jpg": ("exact_duplicate", "cracks_mixed/ds/img/001.jpg"),
                "cracks_mixed/ds/img/zz_copy.jpg": ("exact_duplicate", "cracks_mixed/ds/img/001.jpg")}
    for seed in range(5):  # the decision does not depend on input order
        shuffled = origins[:]
        random.Random(seed).shuffle(shuffled)
        assert find_duplicates(shuffled) == expected


def test_duplicate_keep_rule_prefers_a_copy_that_passes_qa():
    image = _photo(6)
    origins = [_origin("first/a.png", image, priority=0, passes=False),
               _origin("second/a.png", image, priority=1, passes=True)]
    assert find_duplicates(origins) == {"first/a.png": ("exact_duplicate", "second/a.png")}


def test_near_duplicates_reencoded_and_brightened_copies():
    image = _photo(7)
    brighter = np.clip(image.astype(int) + 10, 0, 255).astype(np.uint8)
    origins = [_origin("b/brighter.png", brighter, priority=1), _origin("a/original.png", image, priority=0),
               _origin("c/reencoded.jpg", _jpeg(image, 80), priority=2), _origin("d/unrelated.png", _photo(8))]
    found = find_duplicates(origins)
    assert found == {"b/brighter.png": ("near_duplicate", "a/original.png"),
                     "c/reencoded.jpg": ("near_duplicate", "a/original.png")}
    assert find_duplicates(origins, near_distance=-1) == {}


def test_near_duplicates_need_a_similar_aspect_ratio():
    image = _photo(9, (100, 100))
    wide = cv2.resize(image, (200, 100), interpolation=cv2.INTER_AREA)
    assert hamming(phash(image), phash(wide)) <= 2
    assert find_duplicates([_origin("a/sq.png", image), _origin("a/wide.png", wide)]) == {}


def test_exact_duplicate_of_a_near_duplicate_points_at_the_kept_origin():
    image = _photo(10)
    shifted = np.clip(image.astype(int) + 8, 0, 255).astype(np.uint8)
    origins = [_origin("a/kept.png", image, 0), _origin("b/near.png", shifted, 1), _origin("c/exact.png", shifted, 2)]
    found = find_duplicates(origins)
    assert found["b/near.png"] == ("near_duplicate", "a/kept.png")
    assert found["c/exact.png"] == ("exact_duplicate", "a/kept.png")


def test_origin_keys_must_be_unique():
    image = _photo(11)
    with pytest.raises(ValueError, match="unique"):
        find_duplicates([_origin("a/x.png", image), _origin("a/x.png", image)])


# ----------------------------------------------------------------------------------- decision + report


def _rows():
    return [
        RowQA("s1/a.png", "s1/a.png", "s1", "crack", []),
        RowQA("s1/b.png", "s1/b.png", "s1", "crack", ["empty"]),
        RowQA("s1/c.png", "s1/c.png", "s1", "stain", ["touches_border", "soft_edges"]),
        RowQA("s2/a.png", "s2/a.png", "s2", "crack", ["exact_duplicate"], duplicate_of="s1/a.png"),
        RowQA("s2/d.png", "s2/d.png", "s2", "stain", ["trivial", "touches_border"]),
        RowQA("s2/e.png", "s2/e.png", "s2", "stain", ["image_unreadable"], usable=False),
        RowQA("s2/f.png", "s2/f.png", "s2", "stain", []),
    ]


def test_decide_rejects_by_default_flags_and_reports_ids_and_reasons():
    keep, report = decide(_rows())
    assert keep == [True, False, True, False, False, False, True]
    assert (report["rows"], report["published"], report["rejected"]) == (7, 3, 4)
    rejected = {r["id"]: r for r in report["rejected_rows"]}
    assert set(rejected) == {"s1/b.png", "s2/a.png", "s2/d.png", "s2/e.png"}
    assert rejected["s1/b.png"]["reasons"] == ["empty"]
    assert rejected["s2/a.png"]["reasons"] == ["exact_duplicate"]
    assert rejected["s2/a.png"]["duplicate_of"] == "s1/a.png"
    assert rejected["s2/d.png"]["reasons"] == ["trivial"]
    assert rejected["s2/d.png"]["flags"] == ["trivial", "touches_border"]
    assert report["flags"] == {"empty": 1, "trivial": 1, "touches_border": 2, "soft_edges": 1, "image_unreadable": 1,
                               "exact_duplicate": 1}
    assert report["rejected_by_reason"] == {"empty": 1, "trivial": 1, "image_unreadable": 1, "exact_duplicate": 1}
    assert report["per_source"]["s1"] == {"rows": 3, "published": 2, "rejected": 1,
                                          "flags": {"empty": 1, "touches_border": 1, "soft_edges": 1}}
    assert report["per_class"]["stain"]["published"] == 2 and report["per_class"]["stain"]["rejected"] == 2
    assert set(DEFAULT_REJECT) <= set(FLAGS)


def test_decide_overrides_and_configurable_reject_set():
    cfg = QAConfig(keep_ids=("s1/b.png", "s2/e.png", "nope/x.png"), drop_ids=("s2/f.png",))
    keep, report = decide(_rows(), cfg)
    assert keep == [True, True, True, False, False, False, False]
    assert report["overridden"] == ["s1/b.png"]  # the unreadable image cannot be kept
    assert report["unknown_override_ids"] == ["nope/x.png"]
    assert {r["id"]: r["reasons"] for r in report["rejected_rows"]}["s2/f.png"] == ["manual"]
    keep, _ = decide(_rows(), QAConfig(reject=("touches_border",)))
    assert keep == [True, True, False, True, False, False, True]


def test_markdown_report_lists_every_rejected_row():
    _, report = decide(_rows())
    text = report_markdown(report)
    for row in report["rejected_rows"]:
        assert f"`{row['id']}`" in text
    assert "| exact_duplicate | 1 | 1 |" in text
    assert "`s1/a.png`" in text  # the kept duplicate is named

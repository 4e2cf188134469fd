import json

import numpy as np
import pytest

from cai.engine.config import CAIConfig
from cai.engine.location import select_center, valid_centers
from cai.engine.quota import can_serve, choose_pattern, eligible_patterns, plan_scales
from cai.engine.scale import bbox_long_side, draw_target_ratio, scale_transfer_ratio, scale_type


def test_bbox_long_side_hand_cases():
    m = np.zeros((20, 30), bool)
    m[3:8, 10:12] = True  # 5 rows x 2 cols
    assert bbox_long_side(m) == 5
    m[15, 25] = True  # box rows 3..15 (13), cols 10..25 (16)
    assert bbox_long_side(m) == 16
    assert bbox_long_side(np.eye(7, dtype=np.uint8)) == 7


@pytest.mark.parametrize("bad", [np.zeros((4, 4), bool), np.full((4, 4), 2), np.zeros((2, 2, 2), bool)])
def test_bbox_long_side_rejects(bad):
    with pytest.raises(ValueError):
        bbox_long_side(bad)


@pytest.mark.parametrize("s_a, s_f, ratio, kind", [
    (25, 256, 25 / 256, "trivial"),   # 0.0977
    (26, 256, 26 / 256, "small"),     # 0.1016
    (10, 100, 0.1, "small"),          # lower bound inclusive
    (29, 100, 0.29, "small"),
    (30, 100, 0.3, "medium"),         # boundary belongs to the upper interval
    (69, 100, 0.69, "medium"),
    (70, 100, 0.7, "large"),
    (400, 100, 4.0, "large"),         # big sources are large (and may serve every scale)
])
def test_str_and_scale_type(s_a, s_f, ratio, kind):
    r = scale_transfer_ratio(s_a, s_f)
    assert r == pytest.approx(ratio)
    assert scale_type(r) == kind


def test_str_rejects_non_positive():
    with pytest.raises(ValueError):
        scale_transfer_ratio(0, 10)
    with pytest.raises(ValueError):
        scale_type(float("nan"))


def test_draw_target_ratio_in_interval():
    cfg = CAIConfig()
    for scale, (lo, hi) in (("small", (0.1, 0.3)), ("medium", (0.3, 0.7)), ("large", (0.7, 1.0))):
        draws = [draw_target_ratio(scale, rng, cfg) for rng in range(200)]
        assert min(draws) >= lo and max(draws) < hi


def test_plan_scales_larger_first_and_counts():
    assert plan_scales((4, 3, 3)) == ["large"] * 4 + ["medium"] * 3 + ["small"] * 3
    assert plan_scales((0, 0, 2)) == ["small", "small"]
    with pytest.raises(ValueError):
        plan_scales((1, 2))


def test_can_serve_never_enlarges():
    assert can_serve("large", "large") and can_serve("large", "medium") and can_serve("medium", "small")
    assert not can_serve("small", "medium") and not can_serve("medium", "large")
    assert not can_serve("trivial", "small")


def test_choose_pattern_quota_never_enlarging():
    ratios = np.array([0.05, 0.2, 0.5, 0.9, 3.0])  # trivial, small, medium, large, large
    assert list(eligible_patterns(ratios, "large")) == [3, 4]
    assert list(eligible_patterns(ratios, "medium")) == [2, 3, 4]
    assert list(eligible_patterns(ratios, "small")) == [1, 2, 3, 4]
    rng = np.random.default_rng(0)
    for scale in plan_scales((40, 30, 30)):
        index, r_target, resize = choose_pattern(ratios, scale, rng)
        assert can_serve(scale_type(ratios[index]), scale)
        assert scale_type(r_target) == scale
        assert resize == pytest.approx(r_target / ratios[index])
        # never enlarged to a larger scale type than its own (within its own interval R' may exceed R)
        assert can_serve(scale_type(ratios[index]), scale_type(r_target))
        if scale_type(ratios[index]) != scale:
            assert resize < 1.0
    assert choose_pattern(np.array([0.2, 0.05]), "large", rng) is None


def test_valid_centers_keep_pattern_inside():
    fg = np.ones((20, 30), bool)
    shape = (7, 4)
    centers = valid_centers(fg, shape, margin=2)
    for r, c in centers:
        top, left = r - shape[0] // 2, c - shape[1] // 2
        assert top - 2 >= 0 and left - 2 >= 0
        assert top + shape[0] + 2 <= 20 and left + shape[1] + 2 <= 30
    # and every such position is included
    assert len(centers) == (20 - 7 - 4 + 1) * (30 - 4 - 4 + 1)


def test_select_center_on_foreground_only():
    rng = np.random.default_rng(1)
    fg = np.zeros((64, 64), bool)
    fg[10:30, 40:60] = True
    for _ in range(200):
        r, c = select_center(fg, (9, 5), rng, margin=1)
        assert fg[r, c]
        assert r - 4 - 1 >= 0 and r - 4 + 9 + 1 <= 64
    assert select_center(fg, (70, 3), rng) is None  # larger than the image
    assert select_center(np.zeros((8, 8), bool), (1, 1), rng) is None


def test_select_center_uniform():
    fg = np.zeros((10, 10), bool)
    fg[5, 2] = fg[5, 7] = True
    hits = [select_center(fg, (1, 1), seed)[1] for seed in range(400)]
    assert 150 < hits.count(2) < 250


def test_config_validates():
    with pytest.raises(ValueError):
        CAIConfig(quota=(1, 2))
    with pytest.raises(ValueError):
        CAIConfig(mode="seamless")
    with pytest.raises(ValueError):
        CAIConfig(median_ksize=4)
    assert CAIConfig.from_dict(CAIConfig(quota=(1, 1, 1)).to_dict()) == CAIConfig(quota=(1, 1, 1))


def test_class_draw_gives_each_class_an_equal_share_of_the_slots():
    # 9 patterns of class 0, 1 of class 1, all able to serve any slot
    ratios = np.full(10, 0.9)
    classes = np.array([0] * 9 + [1])
    by_pattern = [choose_pattern(ratios, "small", np.random.default_rng(s))[0] for s in range(4000)]
    by_class = [choose_pattern(ratios, "small", np.random.default_rng(s), CAIConfig(draw="class"), classes)[0]
                for s in range(4000)]
    assert abs(np.mean(np.array(by_pattern) == 9) - 0.1) < 0.02
    assert abs(np.mean(np.array(by_class) == 9) - 0.5) < 0.03
    # within class 0 every pattern is drawn
    assert set(by_class) == set(range(10))
    with pytest.raises(ValueError, match="class codes"):
        choose_pattern(ratios, "small", np.random.default_rng(0), CAIConfig(draw="class"))


def test_class_draw_only_among_classes_that_can_serve_the_slot():
    # class 1's only pattern is too small for a large slot: the large slots all go to class 0
    ratios = np.array([0.9, 0.9, 0.2])
    classes = np.array([0, 0, 1])
    picks = {choose_pattern(ratios, "large", np.random.default_rng(s), CAIConfig(draw="class"), classes)[0]
             for s in range(200)}
    assert picks == {0, 1}


@pytest.mark.parametrize("change", [
    {"quota": (1, 2, 3)}, {"trivial_below": 0.05}, {"small_below": 0.2}, {"medium_below": 0.6}, {"large_max": 0.9},
    {"mode": "paste"}, {"mode": "normal"}, {"threshold": 9}, {"median_ksize": 7}, {"min_component": 1},
    {"region_dilation": 4}, {"mask_margin": 5}, {"max_attempts": 3}, {"mask_rule": "luma"}, {"refine_mask": False},
    {"border": "exclude"}, {"augment": True}, {"gain": (1.0, 2.0)}, {"halo": 2}, {"draw": "class"},
    {"augment_group": "flips"}, {"scale_reference": "long"}, {"scale_reference": "mean"},
    {"scale_reference": "along"}, {"mode_weights": (1.0, 1.0)}])
def test_every_setting_survives_the_dict_round_trip(change):
    """build-synthetic's workers get the settings as CAIConfig.to_dict(): a value to_dict leaves out must come
    back from from_dict (scale_reference "long" came back as the default "along" until this test)."""
    config = CAIConfig(**change)
    assert CAIConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config


def test_every_setting_is_covered_by_the_round_trip_test():
    import dataclasses
    marks = [m for m in test_every_setting_survives_the_dict_round_trip.pytestmark if m.name == "parametrize"]
    covered = {key for change in marks[0].args[1] for key in change}
    assert covered == {f.name for f in dataclasses.fields(CAIConfig)}  # a new setting needs a case above


def test_draw_setting_round_trips_and_keeps_default_fingerprints():
    assert "draw" not in CAIConfig().to_dict()
    assert CAIConfig.from_dict(CAIConfig(draw="class").to_dict()).draw == "class"
    with pytest.raises(ValueError, match="draw"):
        CAIConfig(draw="source")


def test_select_center_draws_the_listed_centre_the_rng_picks():
    """select_center counts centres per row instead of listing them; the reference lists them all
    (valid_centers) and indexes with the same draw: the same centre for every case, None alike."""
    rng = np.random.default_rng(0)
    made = 0
    for _ in range(1500):
        H, W = (int(v) for v in rng.integers(1, 80, 2))
        fg = rng.random((H, W)) < rng.choice([0.01, 0.3, 1.0])
        shape = tuple(int(v) for v in rng.integers(1, 30, 2))
        margin, seed = int(rng.integers(0, 4)), int(rng.integers(10**6))
        centers = valid_centers(fg, shape, margin)
        expected = None if len(centers) == 0 else tuple(int(v) for v in centers[np.random.default_rng(seed).integers(len(centers))])
        assert select_center(fg, shape, seed, margin) == expected
        made += expected is not None
    assert made > 500


def test_foreground_scale_and_along_factor_by_hand():
    from cai.engine.scale import along_factor, foreground_scale
    fg = np.zeros((50, 60), bool)
    fg[5:45, 10:20] = True  # box 40 x 10
    assert foreground_scale(fg) == (40.0, (40, 10)) == foreground_scale(fg, "along")
    assert foreground_scale(fg, "mean") == (20.0, (40, 10))
    with pytest.raises(ValueError, match="empty"):
        foreground_scale(np.zeros((5, 5), bool))
    with pytest.raises(ValueError, match="reference"):
        foreground_scale(fg, "short")
    flat = np.zeros((9, 30), bool)
    flat[4, 2:27] = True
    assert along_factor(flat, (40, 10), "along") == 0.25 and along_factor(flat.T, (40, 10), "along") == 1.0
    assert along_factor(flat, (40, 10), "long") == 1.0 and along_factor(flat, (30, 30), "along") == 1.0
    assert along_factor(np.zeros((3, 3), bool), (40, 10), "along") == 1.0

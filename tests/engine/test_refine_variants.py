"""Mask refinement, source background, and the CAI quality variants (mode mixes, border policy,
augmentation, gain)."""
import numpy as np
import pytest

from cai.engine.config import CAIConfig
from cai.engine.refine import defect_deviation, refine_defect_mask, source_background
from cai.engine.synthesizer import CAISynthesizer, PatternBank, PseudoAnomaly


def _coarse_crack(seed=0):
    rng = np.random.default_rng(seed)
    image = (140 + rng.normal(0, 4, (60, 60))).clip(0, 255).astype(np.uint8)
    crack = np.zeros((60, 60), bool)
    crack[29:31, 10:50] = True
    image[crack] = 90
    coarse = np.zeros((60, 60), bool)
    coarse[20:40, 6:54] = True  # a polygon much wider than the crack
    return image, crack, coarse


def test_source_background_is_the_membrane_through_the_surroundings():
    image = np.tile(np.linspace(50, 150, 40, dtype=np.float32), (30, 1)).astype(np.uint8)
    mask = np.zeros((30, 40), bool)
    mask[10:20, 10:30] = True
    hole = image.copy()
    hole[mask] = 255
    bg = source_background(hole, mask)
    assert np.abs(bg[mask] - image[mask].astype(np.float32)).max() <= 1.0  # a linear ramp is harmonic
    assert (bg[~mask] == hole[~mask]).all()


def test_defect_deviation_is_zero_outside_and_signed_inside():
    image, crack, _ = _coarse_crack()
    dev = defect_deviation(image, crack)
    assert (dev[~crack] == 0).all()
    assert dev[crack].mean() < -40


def test_refinement_recovers_a_thin_crack_inside_a_coarse_polygon():
    image, crack, coarse = _coarse_crack()
    refined = refine_defect_mask(image, coarse)
    assert not (refined & ~coarse).any()
    iou_before = (coarse & crack).sum() / (coarse | crack).sum()
    iou_after = (refined & crack).sum() / (refined | crack).sum()
    assert iou_before < 0.1 and iou_after > 0.7


def test_refinement_keeps_a_mask_when_nothing_stands_out():
    rng = np.random.default_rng(1)
    image = (128 + rng.normal(0, 4, (40, 40))).astype(np.uint8)
    mask = np.zeros((40, 40), bool)
    mask[10:30, 10:30] = True
    assert (refine_defect_mask(image, mask) == mask).all()


def _bank(border_first: bool = True):
    image, crack, coarse = _coarse_crack()
    rgb = np.repeat(image[..., None], 3, axis=2)
    cut = coarse.copy()
    cut[:, :10] = True  # touches the crop's left edge: a border-cut defect
    masks = [cut, coarse] if border_first else [coarse, coarse]
    return PatternBank(long_sides=np.array([54, 48]), anomaly_class=["crack", "crack"], source=["a", "b"],
                       ids=["p0", "p1"], load=lambda i: (rgb, masks[i]))


def _normal():
    rng = np.random.default_rng(3)
    return rng.integers(60, 200, (96, 96, 3), dtype=np.uint8)


def test_config_validates_the_new_settings():
    assert CAIConfig(mode="normal+paste").modes == ("normal", "paste")
    for bad in ({"mode": "normal+normal"}, {"mode": "poisson"}, {"mask_rule": "rgb"}, {"border": "trim"},
                {"gain": (2.0, 1.0)}, {"gain": (0.0, 1.0)}):
        with pytest.raises(ValueError):
            CAIConfig(**bad)
    cfg = CAIConfig(mode="relative", gain=(1.0, 3.0), refine_mask=True)
    assert CAIConfig.from_dict(cfg.to_dict()) == cfg


def test_mode_mix_draws_every_mode_and_is_deterministic():
    cfg = CAIConfig(mode="normal+mixed+paste", quota=(0, 10, 0))
    synth = CAISynthesizer(_bank(False), cfg)
    fg = np.ones((96, 96), bool)
    a = synth.synthesize(_normal(), fg, 0, 1)
    b = CAISynthesizer(_bank(False), cfg).synthesize(_normal(), fg, 0, 1)
    made = [r for r in a if isinstance(r, PseudoAnomaly)]
    assert {r.mode for r in made} == {"normal", "mixed", "paste"}
    assert [r.image.tobytes() for r in made] == [r.image.tobytes() for r in b if isinstance(r, PseudoAnomaly)]


def test_border_exclude_never_draws_border_cut_patterns():
    fg = np.ones((96, 96), bool)
    keep = CAISynthesizer(_bank(), CAIConfig(quota=(0, 10, 0))).synthesize(_normal(), fg, 0, 0)
    excl = CAISynthesizer(_bank(), CAIConfig(quota=(0, 10, 0), border="exclude")).synthesize(_normal(), fg, 0, 0)
    assert "p0" in {r.source_id for r in keep if isinstance(r, PseudoAnomaly)}
    assert {r.source_id for r in excl if isinstance(r, PseudoAnomaly)} == {"p1"}


def test_augmentation_keeps_the_long_side_and_changes_orientation():
    fg = np.ones((96, 96), bool)
    cfg = CAIConfig(quota=(0, 10, 0), augment=True, mode="paste")
    made = [r for r in CAISynthesizer(_bank(False), cfg).synthesize(_normal(), fg, 0, 0)
            if isinstance(r, PseudoAnomaly)]
    shapes = set()
    for r in made:
        rows, cols = np.nonzero(r.placed_mask)
        shapes.add(bool(np.ptp(rows) > np.ptp(cols)))
    assert shapes == {True, False}  # both orientations of the elongated polygon occur


def test_gain_scales_the_injected_change():
    fg = np.ones((96, 96), bool)
    flat = np.full((96, 96, 3), 120, np.uint8)
    base = CAISynthesizer(_bank(False), CAIConfig(quota=(0, 1, 0), mode="relative")).synthesize(flat, fg, 0, 0)[0]
    double = CAISynthesizer(_bank(False), CAIConfig(quota=(0, 1, 0), mode="relative", gain=(2.0, 2.0))
                            ).synthesize(flat, fg, 0, 0)[0]
    assert isinstance(base, PseudoAnomaly) and isinstance(double, PseudoAnomaly)
    assert (base.placed_mask == double.placed_mask).all()
    d1 = base.image.astype(int) - 120
    d2 = double.image.astype(int) - 120
    assert np.abs(d1).max() > 20
    assert np.abs(d2 - 2 * d1).max() <= 1


def test_paste_gain_scales_the_defect_deviation_from_its_own_background():
    from cai.engine.inject import inject_pattern
    image, crack, _ = _coarse_crack()
    rgb = np.repeat(image[..., None], 3, axis=2)
    normal = np.full((80, 80, 3), 200, np.uint8)
    fg = np.ones((80, 80), bool)
    plain = inject_pattern(normal, fg, rgb, crack, (40, 40), CAIConfig(mode="paste"))
    boosted = inject_pattern(normal, fg, rgb, crack, (40, 40), CAIConfig(mode="paste"), gain=1.5)
    placed = plain.placed_mask
    assert (placed == boosted.placed_mask).all() and placed.sum() == crack.sum()
    assert (plain.image[placed] == 90).all()  # paste copies the pixels
    # the crack (90) on its ~140 background: deviation -50 -> -75 at gain 1.5
    expected = source_background(rgb, crack)[crack] + 1.5 * defect_deviation(rgb, crack)[crack]
    assert np.abs(boosted.image[placed].astype(float) - np.rint(expected)).max() <= 1
    assert 60 <= boosted.image[placed].mean() <= 70
    assert (boosted.image[~placed] == 200).all() and boosted.clipped == 0


def test_grow_within_dilates_by_the_radius_and_stays_inside_the_limit():
    from cai.engine.refine import grow_within
    image, crack, coarse = _coarse_crack()
    grown = grow_within(crack, coarse, 3)
    assert grown[26:34, 10:50].all()  # rows 29-30 grown by 3 each way
    assert not grown[:26].any() and not grown[34:].any()
    assert grown[29, 7] and not grown[29, 6 - 1]  # 3 px left of column 10, cut by the limit at column 6
    assert (grown <= coarse).all() and (grown >= crack).all()
    assert (grow_within(crack, coarse, 0) == crack).all()
    assert (grow_within(crack, coarse, 100) == coarse).all()
    with pytest.raises(ValueError, match="radius"):
        grow_within(crack, coarse, -1)


def test_halo_grows_the_refined_mask_of_the_drawn_pattern():
    image, crack, coarse = _coarse_crack()
    bank = PatternBank(load=lambda i: (np.repeat(image[..., None], 3, 2), coarse),
                       long_sides=np.array([48.0]), anomaly_class=np.array(["crack"]), ids=np.array(["p0"]),
                       source=np.array(["s"]))
    plain = CAISynthesizer(bank, CAIConfig())._pattern(0)[1]
    halo = CAISynthesizer(bank, CAIConfig(halo=4))._pattern(0)[1]
    assert plain.sum() < halo.sum() <= coarse.sum() and (halo >= plain).all()
    with pytest.raises(ValueError, match="halo"):
        CAIConfig(halo=-1)
    assert "halo" not in CAIConfig().to_dict() and CAIConfig(halo=2).to_dict()["halo"] == 2
    assert CAIConfig.from_dict(CAIConfig(halo=2).to_dict()).halo == 2

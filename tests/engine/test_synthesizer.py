"""CAISynthesizer end to end on hand-made patterns: scale transfer measured on the placed defect,
quotas, location inside the foreground, masks, determinism and skips."""
import numpy as np
import pytest

from cai.engine.config import CAIConfig
from cai.engine.scale import bbox_long_side
from cai.engine.synthesizer import CAISynthesizer, PatternBank, PseudoAnomaly, Skipped


def _bank(sides=(30, 60, 120, 200)):
    """Square-ish dark blobs on a light background, defect long side = each of ``sides``."""
    crops = []
    for s in sides:
        img = np.full((s + 20, s + 20, 3), 210, np.uint8)
        mask = np.zeros((s + 20, s + 20), bool)
        mask[10:10 + s, 10 + s // 4:10 + s - s // 4] = True  # s rows x s/2 cols: long side s
        img[mask] = 40
        crops.append((img, mask))
    return PatternBank(long_sides=np.array(sides), anomaly_class=["stain"] * len(sides),
                       source=["src"] * len(sides), ids=[f"p{i}" for i in range(len(sides))],
                       load=lambda i: crops[i])


def _normal(shape=(160, 200)):
    rng = np.random.default_rng(1)
    return rng.integers(90, 140, shape + (3,), dtype=np.uint8)


def _fg(shape=(160, 200)):
    fg = np.zeros(shape, bool)
    fg[20:140, 30:170] = True  # long side s_f = 140
    return fg


@pytest.mark.parametrize("mode", ["normal", "paste", "relative"])
def test_placed_defect_long_side_is_r_prime_times_foreground_long_side(mode):
    synth = CAISynthesizer(_bank(), CAIConfig(mode=mode, max_attempts=50))
    fg = np.ones((192, 192), bool)  # the whole image: the placed defect is never cut by the foreground
    s_f = bbox_long_side(fg)
    results = synth.synthesize(_normal((192, 192)), fg, 0, 5)
    made = [r for r in results if isinstance(r, PseudoAnomaly)]
    assert len(made) >= 8
    for r in made:
        lo, hi = synth.config.interval(r.scale)
        assert lo <= r.str_ratio < hi
        measured = bbox_long_side(r.placed_mask)
        # resizing rounds the crop to whole pixels and the mask by area coverage: within 2 px + 3%
        assert abs(measured - r.str_ratio * s_f) <= 2 + 0.03 * r.str_ratio * s_f, (measured, r.str_ratio * s_f)


def test_quota_order_masks_and_foreground():
    synth = CAISynthesizer(_bank(), CAIConfig(quota=(2, 3, 4)))
    fg = _fg()
    results = synth.synthesize(_normal(), fg, 3, 0)
    assert [r.k for r in results] == list(range(9))
    assert [r.scale for r in results] == ["large"] * 2 + ["medium"] * 3 + ["small"] * 4
    for r in results:
        assert isinstance(r, PseudoAnomaly)
        assert r.image.shape == (160, 200, 3) and r.image.dtype == np.uint8
        assert r.mask.dtype == bool and r.mask.any() and not (r.mask & ~fg).any()
        assert not (r.placed_mask & ~fg).any()
        changed = (r.image != _normal()).any(axis=2)
        assert not (changed & ~fg).any()  # nothing outside the foreground changes


def test_same_inputs_same_bytes_and_other_seed_differs():
    a = CAISynthesizer(_bank()).synthesize(_normal(), _fg(), 2, 11)
    b = CAISynthesizer(_bank()).synthesize(_normal(), _fg(), 2, 11)
    c = CAISynthesizer(_bank()).synthesize(_normal(), _fg(), 2, 12)
    assert [r.image.tobytes() for r in a] == [r.image.tobytes() for r in b]
    assert [r.image.tobytes() for r in a] != [r.image.tobytes() for r in c]
    # slot k of normal i draws from default_rng([seed, i, k]) only: one slot alone gives the same result
    one = CAISynthesizer(_bank(), CAIConfig(quota=(1, 0, 0))).synthesize(_normal(), _fg(), 2, 11)[0]
    assert one.image.tobytes() == a[0].image.tobytes()


def test_skips_are_reported_not_raised():
    empty = CAISynthesizer(_bank()).synthesize(_normal(), np.zeros((160, 200), bool), 0, 0)
    assert all(isinstance(r, Skipped) and r.reason == "empty_foreground" for r in empty)
    tiny = _bank(sides=(5, 6))  # R = 5/140 < 0.1: trivial, can serve no slot
    res = CAISynthesizer(tiny).synthesize(_normal(), _fg(), 0, 0)
    assert {r.reason for r in res} == {"no_pattern_for_large", "no_pattern_for_medium", "no_pattern_for_small"}


def test_grey_target_gives_grey_images():
    grey = _normal()[..., 0]
    res = CAISynthesizer(_bank()).synthesize(np.repeat(grey[..., None], 3, axis=2), _fg(), 0, 0, is_grey=True)
    assert all(r.image.shape == (160, 200) for r in res if isinstance(r, PseudoAnomaly))


def _placed_boxes(config, seeds=range(6)):
    synth = CAISynthesizer(_bank(), config)
    fg = np.ones((192, 192), bool)
    boxes = []
    for seed in seeds:
        for r in synth.synthesize(_normal((192, 192)), fg, 0, seed):
            if isinstance(r, PseudoAnomaly):
                rows, cols = np.nonzero(r.placed_mask)
                boxes.append((rows.max() - rows.min() + 1, cols.max() - cols.min() + 1, r.placed_mask, rows, cols))
    return boxes


def test_flips_keep_a_defects_axes_and_the_dihedral_group_turns_them():
    """The bank's defects are twice as tall as wide: with augment_group="flips" every placed defect stays
    tall (and mirror images occur); with the 8-element default some are turned on their side."""
    flips = _placed_boxes(CAIConfig(mode="paste", augment=True, augment_group="flips", max_attempts=50))
    assert len(flips) >= 40 and all(h > w for h, w, *_ in flips)
    dihedral = _placed_boxes(CAIConfig(mode="paste", augment=True, max_attempts=50))
    assert any(w > h for h, w, *_ in dihedral)
    with pytest.raises(ValueError, match="augment_group"):
        CAIConfig(augment_group="rotations")
    assert CAIConfig(augment_group="flips").to_dict()["augment_group"] == "flips"
    assert "augment_group" not in CAIConfig().to_dict()  # fingerprints of default settings unchanged


def test_flips_draw_all_four_axis_keeping_transforms():
    """An L-shaped defect (foot at the bottom right): the four transforms put the foot in four corners."""
    img = np.full((70, 50, 3), 210, np.uint8)
    mask = np.zeros((70, 50), bool)
    mask[5:65, 5:15] = True   # the stem
    mask[55:65, 5:45] = True  # the foot, bottom
    img[mask] = 40
    bank = PatternBank(long_sides=np.array([60]), anomaly_class=["crack"], source=["src"], ids=["L"],
                       load=lambda i: (img, mask))
    synth = CAISynthesizer(bank, CAIConfig(mode="paste", augment=True, augment_group="flips", max_attempts=50))
    corners = set()
    for seed in range(8):
        for r in synth.synthesize(_normal((192, 192)), np.ones((192, 192), bool), 0, seed):
            if isinstance(r, PseudoAnomaly):
                rows, cols = np.nonzero(r.placed_mask)
                h, w = rows.max() - rows.min() + 1, cols.max() - cols.min() + 1
                assert h > w
                foot_low = rows.mean() > rows.min() + h / 2   # mass below the middle: foot at the bottom
                stem_left = cols.mean() < cols.min() + w / 2  # mass left of the middle: stem on the left
                corners.add((foot_low, stem_left))
    assert corners == {(True, True), (True, False), (False, True), (False, False)}


def test_scale_reference_along_sizes_each_defect_to_the_foreground_along_its_long_axis():
    """A tall image, all foreground (240 x 96): with "along" an upright defect's long side is R' x 240
    and one turned on its side R' x 96; with "long" (the paper) both are R' x 240, so a large defect
    fits only upright."""
    shape = (240, 96)
    fg = np.ones(shape, bool)
    along = CAISynthesizer(_bank(), CAIConfig(mode="paste", scale_reference="along", augment=True, max_attempts=50))
    sides = {True: [], False: []}
    for seed in range(6):
        for r in along.synthesize(_normal(shape), fg, 0, seed):
            if isinstance(r, PseudoAnomaly):
                rows, cols = np.nonzero(r.placed_mask)
                h, w = rows.max() - rows.min() + 1, cols.max() - cols.min() + 1
                s_f = 240 if h >= w else 96
                assert abs(max(h, w) - r.str_ratio * s_f) <= 2 + 0.03 * r.str_ratio * s_f, (h, w, r.str_ratio)
                sides[bool(h >= w)].append(r.scale)
    assert "large" in sides[False] and "large" in sides[True]  # turned large defects now fit
    paper = CAISynthesizer(_bank(), CAIConfig(mode="paste", scale_reference="long", augment=True, max_attempts=50))
    for seed in range(6):
        for r in paper.synthesize(_normal(shape), fg, 0, seed):
            if isinstance(r, PseudoAnomaly) and r.scale == "large":
                rows, cols = np.nonzero(r.placed_mask)
                assert rows.max() - rows.min() > cols.max() - cols.min()  # upright only
    # on a square foreground the two references are the same bytes
    sq = np.ones((192, 192), bool)
    a = CAISynthesizer(_bank(), CAIConfig(scale_reference="along")).synthesize(_normal((192, 192)), sq, 1, 3)
    b = CAISynthesizer(_bank(), CAIConfig(scale_reference="long")).synthesize(_normal((192, 192)), sq, 1, 3)
    assert [r.image.tobytes() for r in a] == [r.image.tobytes() for r in b]
    c = CAISynthesizer(_bank(), CAIConfig(scale_reference="mean")).synthesize(_normal((192, 192)), sq, 1, 3)
    assert [r.image.tobytes() for r in c] == [r.image.tobytes() for r in b]
    # "mean": Eq. 1 with s_f = sqrt(240 x 96), whatever the orientation
    mean = CAISynthesizer(_bank(), CAIConfig(mode="paste", scale_reference="mean", max_attempts=50))
    made = [r for seed in range(3) for r in mean.synthesize(_normal(shape), fg, 0, seed) if isinstance(r, PseudoAnomaly)]
    assert len(made) >= 20
    for r in made:
        expected = r.str_ratio * np.sqrt(240 * 96)
        assert abs(bbox_long_side(r.placed_mask) - expected) <= 2 + 0.03 * expected
    with pytest.raises(ValueError, match="scale_reference"):
        CAIConfig(scale_reference="short")
    assert CAIConfig().to_dict()["scale_reference"] == "along"  # the default since round 6
    assert "scale_reference" not in CAIConfig(scale_reference="long").to_dict()  # fingerprints as before


@pytest.mark.parametrize("shape", [(7, 5, 3), (6, 9), (1, 4, 3), (5, 1)])
@pytest.mark.parametrize("dtype", [np.uint8, bool])
def test_pattern_transforms_equal_numpys_rotations_and_flips(shape, dtype):
    """The cv2 transforms give exactly ``np.rot90`` (+ a column flip) and the flipped slices, contiguous."""
    from cai.engine.synthesizer import _flipped, _turned
    a = np.random.default_rng(0).integers(0, 256, shape).astype(np.uint8)
    a = a > 128 if dtype is bool else a
    for t in range(8):
        ref = np.rot90(a, t % 4)[:, ::-1] if t >= 4 else np.rot90(a, t % 4)
        out = _turned(a, t)
        assert out.dtype == a.dtype and out.flags.c_contiguous and np.array_equal(out, ref)
    for t in range(4):
        out = _flipped(a, t)
        assert out.dtype == a.dtype and out.flags.c_contiguous
        assert np.array_equal(out, a[::-1 if t & 2 else 1, ::-1 if t & 1 else 1])


def _modes_drawn(config, seeds=range(40)):
    synth = CAISynthesizer(_bank(), config)
    return [r.mode for seed in seeds for r in synth.synthesize(_normal(), _fg(), 0, seed)
            if isinstance(r, PseudoAnomaly)]


def test_mode_weights_set_the_share_of_each_mode():
    modes = _modes_drawn(CAIConfig(mode="normal+paste", mode_weights=(1, 3)))
    share = modes.count("paste") / len(modes)
    # 400 draws: binomial sd of the share ~0.022 around 0.75
    assert len(modes) == 400 and 0.68 < share < 0.82, share
    assert set(_modes_drawn(CAIConfig(mode="normal+paste", mode_weights=(0, 2)), seeds=range(5))) == {"paste"}
    assert set(_modes_drawn(CAIConfig(mode="normal+paste", mode_weights=(5, 0)), seeds=range(5))) == {"normal"}
    half = _modes_drawn(CAIConfig(mode="normal+paste", mode_weights=(1, 1)))
    assert 0.42 < half.count("paste") / len(half) < 0.58
    mix = _modes_drawn(CAIConfig(mode="normal+mixed+paste"))  # no default share: uniform
    assert all(0.25 < mix.count(m) / len(mix) < 0.42 for m in ("normal", "mixed", "paste"))


def test_the_default_mixture_draws_three_pastes_in_four():
    assert CAIConfig().mode_weights == CAIConfig(mode="normal+paste").mode_weights == (1.0, 3.0)
    assert CAIConfig(mode="normal+mixed+paste").mode_weights is None and CAIConfig(mode="paste").mode_weights is None
    modes = _modes_drawn(CAIConfig())
    assert 0.68 < modes.count("paste") / len(modes) < 0.82
    # the same config as the tenth round's cai+paste75, so the same bytes
    base = CAISynthesizer(_bank()).synthesize(_normal(), _fg(), 0, 3)
    explicit = CAIConfig(mode="normal+paste", mode_weights=(1, 3))
    again = CAISynthesizer(_bank(), explicit).synthesize(_normal(), _fg(), 0, 3)
    assert [r.image.tobytes() for r in base] == [r.image.tobytes() for r in again]


def test_equal_mode_weights_are_the_uniform_draw_byte_for_byte():
    # the uniform draw is one rng.integers per pseudo anomaly (the bytes before the field existed); equal
    # weights take it too, unequal ones one rng.random
    mix = "normal+mixed+paste"
    uniform = CAISynthesizer(_bank(), CAIConfig(mode=mix)).synthesize(_normal(), _fg(), 0, 3)
    equal = CAISynthesizer(_bank(), CAIConfig(mode=mix, mode_weights=(2, 2, 2))).synthesize(_normal(), _fg(), 0, 3)
    assert [r.image.tobytes() for r in uniform] == [r.image.tobytes() for r in equal]
    assert [r.mode for r in uniform] == [r.mode for r in equal]
    unequal = CAISynthesizer(_bank(), CAIConfig(mode=mix, mode_weights=(2, 2, 2.5))).synthesize(_normal(), _fg(), 0, 3)
    assert [r.mode for r in unequal] != [r.mode for r in uniform]


@pytest.mark.parametrize("weights", [(1,), (1, 2, 3), (-1, 2), (0, 0), (float("nan"), 1)])
def test_bad_mode_weights_are_refused(weights):
    with pytest.raises(ValueError, match="mode_weights"):
        CAIConfig(mode="normal+paste", mode_weights=weights)


def test_mode_weights_round_trip_and_old_records_read_as_drawn():
    for c in (CAIConfig(), CAIConfig(mode_weights=(1.0, 1.0)), CAIConfig(mode="normal+mixed+paste"),
              CAIConfig(mode="paste")):
        assert CAIConfig.from_dict(c.to_dict()) == c
    assert CAIConfig().to_dict()["mode_weights"] == [1.0, 3.0]  # a new fingerprint for the new default
    # omitted when None: fingerprints of runs of the other modes stay the same
    assert "mode_weights" not in CAIConfig(mode="normal+mixed+paste").to_dict()
    # a record written before the field existed drew its "normal+paste" uniformly
    old = {k: v for k, v in CAIConfig().to_dict().items() if k != "mode_weights"}
    assert CAIConfig.from_dict(old).mode_weights == (1.0, 1.0)

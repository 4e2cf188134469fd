import dataclasses
from collections import Counter

import cv2
import numpy as np
import pytest

from cai.baselines import (
    DEFAULT_TEXTURE_DIR, SYNTHESIZERS, CAIVariant, CutPasteSynthesizer, DRAEMSynthesizer, NSASynthesizer,
    augment_texture, blend_texture, colour_jitter, make_synthesizer, perlin_mask, perlin_noise, texture_set,
)
from cai.baselines.nsa import _other_index
from cai.engine.config import CAIConfig
from cai.engine.pseudo_mask import dilate
from cai.engine.synthesizer import CAISynthesizer, PatternBank, PseudoAnomaly, Skipped

H = W = 64
CAI_NAMES = [n for n in SYNTHESIZERS if n == "cai" or n.startswith("cai-")]
BASELINE_NAMES = [n for n in SYNTHESIZERS if n not in CAI_NAMES]


def _texture(seed, shape=(H, W)):
    rng = np.random.default_rng(seed)
    x = cv2.GaussianBlur(rng.uniform(0, 255, shape + (3,)).astype(np.float32), (0, 0), 2)
    return np.clip((x - x.mean()) * 4 + 128, 0, 255).astype(np.uint8)


def _pattern(long_side, seed):
    """A dark ellipse (rows: long_side) on a light, slightly noisy crop."""
    rng = np.random.default_rng(seed)
    h, w = long_side + 16, long_side // 2 + 16
    image = (150 + rng.integers(0, 20, (h, w, 3))).astype(np.uint8)
    mask = np.zeros((h, w), np.uint8)
    cv2.ellipse(mask, (w // 2, h // 2), (max(long_side // 4, 1), long_side // 2), 0, 0, 360, 1, -1)
    image[mask.astype(bool)] = 30
    return image, mask.astype(bool)


def _long_side(mask):
    rows, cols = np.nonzero(mask)
    return int(max(np.ptp(rows), np.ptp(cols)) + 1)


def _make_bank(sides):
    patterns = [_pattern(s, i) for i, s in enumerate(sides)]
    return PatternBank([_long_side(m) for _, m in patterns], ["blob"] * len(sides), ["synthetic"] * len(sides),
                       [f"p{i}" for i in range(len(sides))], lambda i: patterns[i])


def _disk(shape=(H, W), radius=20):
    fg = np.zeros(shape, np.uint8)
    cv2.circle(fg, (shape[1] // 2, shape[0] // 2), radius, 1, -1)
    return fg.astype(bool)


FULL = np.ones((H, W), bool)


def _make(name, bank, normals, **kw):
    return make_synthesizer(name, bank=bank, normals=normals, **kw)


def _key(r):
    if isinstance(r, Skipped):
        return ("skipped", r.k, r.reason, r.scale)
    return (r.image.tobytes(), r.image.shape, r.mask.tobytes(), r.placed_mask.tobytes(), r.k, r.anomaly_class,
            r.scale, r.str_ratio, r.resize_ratio, r.center, r.source_id, r.source, r.attempts, r.resamples)


def _changed(a, b):
    d = a != b
    return d.any(axis=2) if d.ndim == 3 else d


# ---------------------------------------------------------------------------------------------
# Every synthesizer
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", SYNTHESIZERS)
def test_results_per_image_and_fields(name, bank, normals):
    synth = _make(name, bank, normals)
    assert synth.name == name
    results = synth.synthesize(normals[0], FULL, 0, 7)
    assert [r.k for r in results] == list(range(10))
    assert all(isinstance(r, PseudoAnomaly) for r in results), [getattr(r, "reason", "") for r in results]
    for r in results:
        assert r.image.dtype == np.uint8 and r.image.shape == (H, W, 3)
        assert r.mask.dtype == bool and r.mask.shape == (H, W) and r.mask.any()
        assert r.placed_mask.dtype == bool and r.placed_mask.shape == (H, W)
        assert 0 <= r.center[0] < H and 0 <= r.center[1] < W
        assert set(r.fidelity) == {"iou", "visible_share", "changed_outside_share"}
        assert r.attempts >= 1 and r.source_id and r.anomaly_class
    assert len(_make(name, bank, normals, per_image=4).synthesize(normals[0], FULL, 0, 7)) == 4


@pytest.mark.parametrize("name", SYNTHESIZERS)
def test_deterministic_per_seed(name, bank, normals):
    a = [_key(r) for r in _make(name, bank, normals).synthesize(normals[1], FULL, 1, 3)]
    b = [_key(r) for r in _make(name, bank, normals).synthesize(normals[1], FULL, 1, 3)]
    c = [_key(r) for r in _make(name, bank, normals).synthesize(normals[1], FULL, 1, 4)]
    assert a == b
    assert a != c


@pytest.mark.parametrize("name", SYNTHESIZERS)
def test_independent_of_call_order(name, bank, normals):
    together = _make(name, bank, normals)
    runs = {i: together.synthesize(normals[i], FULL, i, 5) for i in (2, 0, 1)}
    alone = _make(name, bank, normals).synthesize(normals[1], FULL, 1, 5)
    assert [_key(r) for r in alone] == [_key(r) for r in runs[1]]
    if name in BASELINE_NAMES:  # no quota: slot k does not depend on how many slots there are
        first = _make(name, bank, normals, per_image=3).synthesize(normals[1], FULL, 1, 5)
        assert [_key(r) for r in first] == [_key(r) for r in alone[:3]]


# how far pixel changes may reach beyond placed_mask, and the mask beyond placed_mask
_REACH = {name: (3, 3) for name in CAI_NAMES}  # Poisson region = placed dilated by 2 (+1 closing); margin 3
_REACH.update({name: (0, 0) for name in BASELINE_NAMES})


@pytest.mark.parametrize("name", SYNTHESIZERS)
@pytest.mark.parametrize("object_target", [False, True])
def test_changes_confined_to_mask_and_foreground(name, object_target, bank, normals):
    fg = _disk() if object_target else FULL
    results = _make(name, bank, normals).synthesize(normals[2], fg, 2, 11)
    made = [r for r in results if isinstance(r, PseudoAnomaly)]
    assert len(made) >= 5
    change_reach, mask_reach = _REACH[name]
    for r in made:
        changed = _changed(r.image, normals[2])
        assert changed.any()
        assert not (changed & ~dilate(r.placed_mask, change_reach)).any()
        assert not (r.mask & ~dilate(r.placed_mask, mask_reach)).any()
        if name in ("cutpaste", "cutpaste-scar", "draem"):
            assert not (changed & ~r.mask).any()
        if name != "cai-no-ils":
            assert not (changed & ~fg).any() and not (r.mask & ~fg).any() and not (r.placed_mask & ~fg).any()


@pytest.mark.parametrize("name", SYNTHESIZERS)
@pytest.mark.parametrize("form", ["rgb-equal", "2d"])
def test_grey_in_grey_out(name, form, bank, normals):
    grey2d = cv2.cvtColor(normals[0], cv2.COLOR_RGB2GRAY)
    normal = np.repeat(grey2d[..., None], 3, axis=2) if form == "rgb-equal" else grey2d
    results = _make(name, bank, normals).synthesize(normal, FULL, 0, 2, is_grey=True)
    made = [r for r in results if isinstance(r, PseudoAnomaly)]
    assert len(results) == 10 and len(made) >= 8
    for r in made:
        assert r.image.shape == (H, W) and r.image.dtype == np.uint8
        assert r.mask.any()
        assert not (_changed(r.image, grey2d) & ~dilate(r.placed_mask, _REACH[name][0])).any()


@pytest.mark.parametrize("name", SYNTHESIZERS)
def test_empty_foreground_skips_every_slot(name, bank, normals):
    results = _make(name, bank, normals).synthesize(normals[0], np.zeros((H, W), bool), 0, 0)
    assert len(results) == 10
    assert all(isinstance(r, Skipped) and r.reason == "empty_foreground" for r in results)


@pytest.mark.parametrize("name", BASELINE_NAMES)
def test_baselines_reject_bad_inputs(name, bank, normals):
    synth = _make(name, bank, normals)
    with pytest.raises(ValueError, match="foreground"):
        synth.synthesize(normals[0], np.ones((H, W + 1), bool), 0, 0)
    with pytest.raises(ValueError, match="uint8"):
        synth.synthesize(normals[0].astype(np.float32), FULL, 0, 0)


# ---------------------------------------------------------------------------------------------
# CutPaste
# ---------------------------------------------------------------------------------------------
def _find_block(image, block):
    """All (row, col) where ``block`` occurs in ``image`` (brute force)."""
    h, w = block.shape[:2]
    return [(r, c) for r in range(image.shape[0] - h + 1) for c in range(image.shape[1] - w + 1)
            if np.array_equal(image[r:r + h, c:c + w], block)]


def test_cutpaste_mask_is_the_pasted_rectangle_cut_from_the_same_image(normals):
    synth = CutPasteSynthesizer(jitter=0.0)
    for r in synth.synthesize(normals[3], FULL, 3, 1):
        rows, cols = np.nonzero(r.mask)
        r0, r1, c0, c1 = rows.min(), rows.max() + 1, cols.min(), cols.max() + 1
        assert r.mask.sum() == (r1 - r0) * (c1 - c0)  # a filled rectangle
        assert np.array_equal(r.mask, r.placed_mask)
        assert not _changed(r.image, normals[3])[~r.mask].any()
        area = (r1 - r0) * (c1 - c0) / (H * W)
        assert 0.02 - 0.01 <= area <= 0.15 + 0.01
        assert 0.3 / 1.3 <= (r1 - r0) / (c1 - c0) <= 3.3 * 1.3
        block = r.image[r0:r1, c0:c1]
        sources = _find_block(normals[3], block)
        assert sources and any(s != (r0, c0) for s in sources)  # cut elsewhere in the same image
        assert r.source_id == "self" and r.anomaly_class == "cutpaste" and r.resize_ratio == 1.0


def test_cutpaste_on_object_pastes_only_inside_it(normals):
    fg = _disk()
    for r in CutPasteSynthesizer(jitter=0.0).synthesize(normals[0], fg, 0, 9):
        assert r.mask.any() and not (r.mask & ~fg).any()
        assert np.array_equal(r.image[~fg], normals[0][~fg])


def test_cutpaste_scar_is_thin():
    normal = _texture(5, (256, 256))
    for r in CutPasteSynthesizer(variant="scar").synthesize(normal, np.ones((256, 256), bool), 0, 0):
        assert 10 <= r.mask.sum() <= 2 * 16 * 25
        n, _ = cv2.connectedComponents(r.mask.astype(np.uint8), connectivity=8)
        assert n == 2  # one piece
        assert r.anomaly_class == "cutpaste-scar"


def test_colour_jitter():
    patch = _texture(1, (8, 8))
    assert np.array_equal(colour_jitter(patch, 0, 0.0), patch)
    out = colour_jitter(patch, 0, 0.1)
    assert out.shape == patch.shape and out.dtype == np.uint8 and not np.array_equal(out, patch)
    assert np.array_equal(out, colour_jitter(patch, 0, 0.1))
    grey = patch[..., 0]
    assert colour_jitter(grey, 1, 0.1).shape == grey.shape
    with pytest.raises(ValueError, match="strength"):
        colour_jitter(patch, 0, 0.9)


# ---------------------------------------------------------------------------------------------
# NSA
# ---------------------------------------------------------------------------------------------
def test_other_index_never_the_image_itself():
    rng = np.random.default_rng(0)
    draws = Counter(_other_index(4, 2, rng) for _ in range(400))
    assert set(draws) == {0, 1, 3}
    assert set(_other_index(4, 9, rng) for _ in range(200)) == {0, 1, 2, 3}  # not one of the normals


@pytest.mark.parametrize("mode", ["normal", "mixed"])
def test_nsa_patch_comes_from_another_normal(mode):
    flat0, flat1 = np.full((H, W, 3), 90, np.uint8), np.full((H, W, 3), 160, np.uint8)
    textured = _texture(3)
    normals = [flat0, flat1, textured]
    synth = NSASynthesizer(normals, mode=mode)
    # a flat target changes only under a textured patch, and the only textured image is normal 2
    for r in synth.synthesize(flat0, FULL, 0, 1):
        assert isinstance(r, PseudoAnomaly) and r.source_id == "normal:2"
        assert r.image[r.mask].std() > 5  # texture came in
    for r in synth.synthesize(textured, FULL, 2, 1):
        if isinstance(r, PseudoAnomaly):
            assert r.source_id in ("normal:0", "normal:1")


def test_nsa_inputs_and_loader_form(normals):
    with pytest.raises(ValueError, match="two normal"):
        NSASynthesizer([normals[0]])
    with pytest.raises(ValueError, match="count"):
        NSASynthesizer(lambda i: normals[i])
    a = NSASynthesizer(normals).synthesize(normals[1], FULL, 1, 0)
    b = make_synthesizer("nsa-n", normals=(lambda i: normals[i], len(normals))).synthesize(normals[1], FULL, 1, 0)
    assert [_key(r) for r in a] == [_key(r) for r in b]
    for r in a:
        assert r.mask.sum() <= r.placed_mask.sum()
        assert 0.7 * 0.9 <= r.resize_ratio <= 1.3 * 1.1


# ---------------------------------------------------------------------------------------------
# DRAEM
# ---------------------------------------------------------------------------------------------
def test_blend_texture_opacity():
    image, texture = _texture(0), _texture(1)
    mask = _disk()
    assert np.array_equal(blend_texture(image, texture, mask, 0.0), image)
    full = blend_texture(image, texture, mask, 1.0)
    assert np.array_equal(full[mask], texture[mask]) and np.array_equal(full[~mask], image[~mask])
    half = blend_texture(image, texture, mask, 0.5)
    expected = np.rint((image.astype(float) + texture) / 2)
    assert np.array_equal(half[mask], expected[mask]) and np.array_equal(half[~mask], image[~mask])
    with pytest.raises(ValueError, match="opacity"):
        blend_texture(image, texture, mask, 1.5)
    with pytest.raises(ValueError, match="texture shape"):
        blend_texture(image, texture[:10], mask, 0.5)


def _perlin_reference(shape, scales, seed):
    """Brute-force gradient noise: one pixel at a time, corners and fade written out."""
    (Hn, Wn), (sr, sc) = shape, scales
    angles = np.random.default_rng(seed).uniform(0, 2 * np.pi, (sr + 1, sc + 1))
    out = np.zeros(shape)
    fade = lambda t: 6 * t ** 5 - 15 * t ** 4 + 10 * t ** 3  # noqa: E731
    for r in range(Hn):
        for c in range(Wn):
            y, x = r * sr / Hn, c * sc / Wn
            i, j = int(np.floor(y)), int(np.floor(x))
            dots = {}
            for di in (0, 1):
                for dj in (0, 1):
                    a = angles[i + di, j + dj]
                    dots[di, dj] = np.sin(a) * (y - i - di) + np.cos(a) * (x - j - dj)
            u, v = fade(y - i), fade(x - j)
            top = dots[0, 0] + v * (dots[0, 1] - dots[0, 0])
            bottom = dots[1, 0] + v * (dots[1, 1] - dots[1, 0])
            out[r, c] = np.sqrt(2) * (top + u * (bottom - top))
    return out


@pytest.mark.parametrize("shape, scales", [((32, 32), (4, 2)), ((37, 50), (1, 8)), ((16, 16), (16, 16))])
def test_perlin_noise_matches_reference(shape, scales):
    noise = perlin_noise(shape, scales, rng=3)
    assert noise.shape == shape
    np.testing.assert_allclose(noise, _perlin_reference(shape, scales, 3), atol=1e-12)


def test_perlin_noise_properties():
    n = perlin_noise((64, 64), (4, 8), rng=0)
    assert np.array_equal(n, perlin_noise((64, 64), (4, 8), rng=0))
    assert not np.array_equal(n, perlin_noise((64, 64), (4, 8), rng=1))
    assert np.abs(n).max() <= 1.0 and n.std() > 0.05
    np.testing.assert_allclose(n[::16, ::8], 0.0, atol=1e-12)  # zero on lattice points
    with pytest.raises(ValueError, match="scales"):
        perlin_noise((8, 8), (0, 2))


def test_perlin_mask():
    m = perlin_mask((64, 48), rng=5)
    assert m.shape == (64, 48) and m.dtype == bool
    assert np.array_equal(m, perlin_mask((64, 48), rng=5))
    assert not perlin_mask((32, 32), rng=0, threshold=1.0).any()  # |noise| <= 1
    assert perlin_mask((32, 32), rng=0, threshold=-1.01, rotate=False).all()
    shares = [perlin_mask((64, 64), rng=s).mean() for s in range(30)]
    assert 0 < np.mean(shares) < 0.3


def test_augment_texture():
    t = _texture(2)
    out, ops = augment_texture(t, rng=4)
    assert out.shape == t.shape and out.dtype == np.uint8 and len(set(ops)) == 3
    again, ops2 = augment_texture(t, rng=4)
    assert np.array_equal(out, again) and ops == ops2
    assert np.array_equal(augment_texture(t, rng=4, n_ops=0)[0], t)
    assert augment_texture(t[..., 0], rng=1, n_ops=10)[0].shape == (H, W)


def test_texture_set_default_and_folder(tmp_path):
    default = texture_set()
    assert len(default.ids) == len(list(DEFAULT_TEXTURE_DIR.glob("*.png"))) > 0
    assert default.load(0).dtype == np.uint8 and default.load(0).ndim == 3
    cv2.imwrite(str(tmp_path / "a.png"), _texture(0))
    both = texture_set(tmp_path)
    assert len(both.ids) == len(default.ids) + 1 and both.ids[-1] == f"{tmp_path.name}/a.png"
    assert texture_set(tmp_path, include_default=False).ids == [f"{tmp_path.name}/a.png"]
    with pytest.raises(ValueError, match="not a folder"):
        texture_set(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no texture image"):
        texture_set(tmp_path / "empty", include_default=False)


def test_draem_uses_given_textures_and_mask_is_perlin_mask():
    texture = np.full((20, 30, 3), 250, np.uint8)
    synth = DRAEMSynthesizer(textures=[texture], n_ops=0)
    normal = np.full((H, W, 3), 10, np.uint8)
    for r in synth.synthesize(normal, FULL, 0, 0):
        assert r.source_id == "texture:array:0" and np.array_equal(r.mask, r.placed_mask)
        values = r.image[r.mask][:, 0].astype(float)  # (1 - o) * 10 + o * 250, o in (0.2, 1]
        assert values.min() >= 10 + 0.2 * 240 - 1 and values.max() <= 250
        assert np.all(r.image[~r.mask] == 10)


# ---------------------------------------------------------------------------------------------
# CAI ablations and the factory
# ---------------------------------------------------------------------------------------------
def test_default_cai_unchanged_by_the_hooks(bank, normals):
    fg = _disk()
    ref = CAISynthesizer(bank).synthesize(normals[0], fg, 0, 1)
    for synth in (make_synthesizer("cai", bank=bank), CAIVariant(bank, variant="x")):
        assert [_key(r) for r in synth.synthesize(normals[0], fg, 0, 1)] == [_key(r) for r in ref]
    # the named variants keep the settings they were measured with
    measured = CAIConfig(mode="normal", refine_mask=False, augment=False, mask_rule="luma")
    ref_n = CAISynthesizer(bank, measured).synthesize(normals[0], fg, 0, 1)
    assert [_key(r) for r in make_synthesizer("cai-n", bank=bank).synthesize(normals[0], fg, 0, 1)] == \
        [_key(r) for r in ref_n]


def test_cai_no_stm_keeps_pattern_size(bank, normals):
    synth = make_synthesizer("cai-no-stm", bank=bank)
    fitting = [i for i, s in enumerate(bank.long_sides) if s <= H - 8 - 2]
    seen = set()
    for seed in range(3):
        for r in synth.synthesize(normals[0], FULL, 0, seed):
            i = int(r.source_id[1:])
            seen.add(i)
            if i in fitting:
                assert r.resize_ratio == 1.0
                assert _long_side(r.placed_mask) == bank.long_sides[i]  # placed at its own size
            else:  # the 90 px pattern is shrunk to fit the 64 px image
                assert r.resize_ratio < 1.0 and _long_side(r.placed_mask) <= H
            assert r.scale in ("trivial", "small", "medium", "large")
    assert len(seen) >= 5
    ratios = [r.resize_ratio for r in make_synthesizer("cai-n", bank=bank).synthesize(normals[0], FULL, 0, 0)]
    assert any(abs(x - 1) > 0.05 for x in ratios)  # scale matching does resize


@pytest.mark.parametrize("name, quota", [("cai-622", (6, 2, 2)), ("cai-262", (2, 6, 2)), ("cai-226", (2, 2, 6)),
                                         ("cai-433", (4, 3, 3)), ("cai-n", (4, 3, 3))])
def test_cai_scale_mixes(name, quota, bank, normals):
    results = make_synthesizer(name, bank=bank).synthesize(normals[0], FULL, 0, 0)
    assert Counter(r.scale for r in results) == dict(zip(("large", "medium", "small"), quota))
    made = [r for r in results if isinstance(r, PseudoAnomaly)]
    cfg = CAIConfig()
    for r in made:
        lo, hi = cfg.interval(r.scale)
        assert lo <= r.str_ratio < hi


def test_cai_quota_spread_over_per_image(bank):
    assert make_synthesizer("cai-622", bank=bank, per_image=5).config.quota == (3, 1, 1)
    assert make_synthesizer("cai-n", bank=bank, per_image=4).config.quota == (2, 1, 1)
    assert make_synthesizer("cai-m", bank=bank, config=CAIConfig(quota=(1, 1, 1)), per_image=3).config.quota == (1, 1, 1)
    assert make_synthesizer("cai-m", bank=bank).config.mode == "mixed"
    assert make_synthesizer("cai-paste", bank=bank, config=CAIConfig(mode="mixed")).config.mode == "paste"


def test_cai_no_ils_places_outside_the_object(bank):
    shape = (96, 96)
    fg = _disk(shape, radius=14)
    normal = _texture(7, shape)
    no_ils = make_synthesizer("cai-no-ils", bank=bank)
    ils = make_synthesizer("cai-n", bank=bank)
    outside = 0
    for seed in range(3):
        for r in no_ils.synthesize(normal, fg, 0, seed):
            if isinstance(r, PseudoAnomaly):
                outside += bool((r.placed_mask & ~fg).any() and (_changed(r.image, normal) & ~fg).any())
        for r in ils.synthesize(normal, fg, 0, seed):
            if isinstance(r, PseudoAnomaly):
                assert not (r.placed_mask & ~fg).any() and not (_changed(r.image, normal) & ~fg).any()
    assert outside >= 10


def test_make_synthesizer_errors(bank, normals):
    with pytest.raises(ValueError, match="unknown synthesizer 'patchcore'"):
        make_synthesizer("patchcore")
    for name in CAI_NAMES:
        with pytest.raises(ValueError, match="PatternBank"):
            make_synthesizer(name)
    for name in ("nsa-n", "nsa-m"):
        with pytest.raises(ValueError, match="normal images"):
            make_synthesizer(name)
    with pytest.raises(ValueError, match="count"):
        make_synthesizer("nsa-n", normals=lambda i: normals[i])
    with pytest.raises(ValueError, match="per_image"):
        make_synthesizer("cutpaste", per_image=0)
    assert isinstance(make_synthesizer("draem"), DRAEMSynthesizer)
    assert make_synthesizer("cutpaste", config=CAIConfig(threshold=9, max_attempts=3)).max_attempts == 3


def test_cai_modifiers_apply_in_order_on_the_variant_base(bank):
    default = CAIConfig()
    assert make_synthesizer("cai", bank=bank).config == dataclasses.replace(default, quota=(4, 3, 3))
    # a named variant starts from the settings it was measured with, then each modifier in order
    c = make_synthesizer("cai-paste+refine+aug", bank=bank).config
    assert (c.mode, c.refine_mask, c.augment, c.mask_rule) == ("paste", True, True, "luma")
    assert make_synthesizer("cai-n+chmask+luma", bank=bank).config.mask_rule == "luma"
    assert make_synthesizer("cai+noborder", bank=bank).config.border == "exclude"
    assert make_synthesizer("cai+gain3", bank=bank).config.gain == (1.0, 3.0)
    c = make_synthesizer("cai+npmix", bank=bank).config
    assert (c.mode, c.refine_mask, c.augment) == ("normal+paste", default.refine_mask, default.augment)
    assert c.mode_weights == (1.0, 1.0)  # measured with the uniform draw (fourth round)
    # the shares: the default's ¾, the eighth-to-tenth rounds' ½; a modifier or variant that sets another
    # mode gets that mode's default (none for a single mode); the named mixtures were measured uniform
    assert default.mode_weights == (1.0, 3.0)
    assert make_synthesizer("cai+paste50", bank=bank).config == dataclasses.replace(
        default, mode_weights=(1.0, 1.0), quota=(4, 3, 3))
    assert make_synthesizer("cai+paste75", bank=bank).config == dataclasses.replace(default, quota=(4, 3, 3))
    assert make_synthesizer("cai+paste", bank=bank).config.mode_weights is None
    assert make_synthesizer("cai-np", bank=bank).config.mode_weights == (1.0, 1.0)
    assert make_synthesizer("cai-mix", bank=bank).config.mode_weights is None
    assert make_synthesizer("cai+noaug", bank=bank).config == dataclasses.replace(default, augment=False,
                                                                                   quota=(4, 3, 3))
    assert make_synthesizer("cai+flips+att100", bank=bank).config == dataclasses.replace(
        default, augment=True, augment_group="flips", max_attempts=100, quota=(4, 3, 3))
    c = make_synthesizer("cai+rel", bank=bank).config
    assert (c.mode, c.refine_mask, c.augment, c.mask_rule) == ("relative", default.refine_mask, default.augment,
                                                               default.mask_rule)
    # scale-mix modifiers keep the default's settings and spread the mix over per_image
    for mods, quota in (("q622", (6, 2, 2)), ("q262", (2, 6, 2)), ("q226", (2, 2, 6)), ("q433", (4, 3, 3))):
        c = make_synthesizer(f"cai+{mods}", bank=bank).config
        assert c.quota == quota and (c.mode, c.refine_mask, c.augment) == (default.mode, default.refine_mask,
                                                                          default.augment)
    assert make_synthesizer("cai+q622", bank=bank, per_image=5).config.quota == (3, 1, 1)
    with pytest.raises(ValueError, match=r"unknown modifier\(s\) \['q999'\]"):
        make_synthesizer("cai+q999", bank=bank)
    with pytest.raises(ValueError, match="cai-\\* synthesizers only"):
        make_synthesizer("draem+refine")


def test_cai_class_balanced_draw_evens_out_the_classes(normals):
    # 7 patterns of class "a", 1 of class "b", all of one size: by pattern "b" gets ~1/8 of the slots,
    # drawn by class ~1/2
    patterns = [_pattern(40, i) for i in range(8)]
    bank = PatternBank([_long_side(m) for _, m in patterns], ["a"] * 7 + ["b"], ["synthetic"] * 8,
                       [f"p{i}" for i in range(8)], lambda i: patterns[i])
    share = {}
    for name in ("cai", "cai+classbal"):
        synth = make_synthesizer(name, bank=bank)
        made = [r for seed in range(12) for r in synth.synthesize(normals[0], FULL, 0, seed)
                if isinstance(r, PseudoAnomaly)]
        share[name] = np.mean([r.anomaly_class == "b" for r in made])
    assert make_synthesizer("cai+classbal", bank=bank).config.draw == "class"
    assert share["cai"] < 0.25 and 0.35 < share["cai+classbal"] < 0.65


def test_cai_scale_mix_modifier_follows_its_quota(bank, normals):
    results = make_synthesizer("cai+q226", bank=bank).synthesize(normals[0], FULL, 0, 0)
    assert Counter(r.scale for r in results) == {"large": 2, "medium": 2, "small": 6}

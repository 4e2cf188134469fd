import numpy as np
import pytest

from cai.engine.config import CAIConfig
from cai.engine.inject import inject_pattern, match_colour_mode, resize_pattern
from cai.engine.pseudo_mask import mask_fidelity, pseudo_mask


def _square(shape=(40, 40), box=(slice(10, 20), slice(12, 22))):
    m = np.zeros(shape, bool)
    m[box] = True
    return m


def test_pseudo_mask_threshold_is_strict():
    n = np.full((40, 40), 100, np.uint8)
    placed = _square()
    for delta, expected in ((7, 0), (8, 100), (30, 100)):
        inj = n.copy()
        inj[placed] = 100 + delta
        assert pseudo_mask(n, inj, placed, threshold=7, median_ksize=1).sum() == expected


def test_pseudo_mask_bounded_by_placed_mask_margin():
    n = np.full((60, 60), 100, np.uint8)
    placed = _square((60, 60), (slice(20, 30), slice(20, 30)))
    inj = n.copy()
    inj[5:55, 5:55] = 30  # big change far beyond the defect
    inj[placed] = 200
    m = pseudo_mask(n, inj, placed, margin=3, median_ksize=3)
    rows, cols = np.nonzero(m)
    assert rows.min() >= 17 and rows.max() <= 32 and cols.min() >= 17 and cols.max() <= 32
    assert m[placed].mean() > 0.95  # the 3x3 median only rounds the corners


def test_pseudo_mask_ignores_smooth_shift_but_keeps_defect():
    # a smooth brightness ramp around a thin dark line (what a Poisson membrane adds) and the line
    n = np.full((80, 80), 120, np.uint8)
    placed = np.zeros((80, 80), bool)
    placed[39:42, 25:55] = True
    ramp = np.linspace(0, 25, 80)[None, :].repeat(80, 0)  # up to 25 grey levels, no detail
    inj = n + ramp
    inj[placed] -= 40  # the visible defect
    inj = np.clip(inj, 0, 255).astype(np.uint8)
    m = pseudo_mask(n, inj, placed, median_ksize=1, margin=3)
    assert m[39:42, 27:53].all()
    assert m.sum() <= placed.sum() + 20
    raw = np.abs(inj.astype(int) - n) > 7
    raw_near = raw & (np.abs(np.arange(80) - 40)[:, None] <= 4) & (np.abs(np.arange(80) - 40)[None, :] <= 18)
    assert raw_near.sum() > 2 * m.sum()  # the raw |diff| would have marked the shifted surroundings


def test_pseudo_mask_median_removes_specks_and_rgb_works():
    n = np.full((40, 40, 3), 90, np.uint8)
    placed = _square()
    inj = n.copy()
    inj[15, 15] = 250  # isolated speck
    assert not pseudo_mask(n, inj, placed).any()  # dropped as a component under 5 px
    assert not pseudo_mask(n, inj, placed, median_ksize=7, min_component=1).any()
    assert pseudo_mask(n, inj, placed, median_ksize=1, min_component=1).sum() == 1
    inj[12:14, 12:18] = 250  # a thin 2-px line survives speck removal (a 7x7 median would erase it)
    assert pseudo_mask(n, inj, placed)[12:14, 12:18].all()
    assert not pseudo_mask(n, inj, placed, median_ksize=7, min_component=1).any()


def test_pseudo_mask_validates():
    n = np.zeros((10, 10), np.uint8)
    with pytest.raises(ValueError, match="injected"):
        pseudo_mask(n, np.zeros((9, 10), np.uint8), np.zeros((10, 10), bool))
    with pytest.raises(ValueError, match="placed_mask"):
        pseudo_mask(n, n, np.full((10, 10), 3))
    with pytest.raises(ValueError, match="median_ksize"):
        pseudo_mask(n, n, np.zeros((10, 10), bool), median_ksize=4)


def test_mask_fidelity_values():
    n = np.full((40, 40), 100, np.uint8)
    placed = _square()
    inj = n.copy()
    inj[placed] = 160
    m = pseudo_mask(n, inj, placed, median_ksize=1)
    fid = mask_fidelity(n, inj, m, placed)
    assert fid["iou"] == pytest.approx(1.0)
    assert fid["visible_share"] == pytest.approx(1.0)
    assert fid["changed_outside_share"] == 0.0


def test_resize_pattern_sizes_and_thin_lines():
    img = np.zeros((100, 50, 3), np.uint8)
    mask = np.zeros((100, 50), bool)
    mask[:, 24:27] = True  # a 3-px line
    small_img, small_mask = resize_pattern(img, mask, 0.2)
    assert small_img.shape == (20, 10, 3) and small_mask.shape == (20, 10)
    assert small_mask.any(axis=1).all()  # the thin line survives shrinking
    big_img, big_mask = resize_pattern(img, mask, 2.0)
    assert big_mask.shape == (200, 100)
    with pytest.raises(ValueError):
        resize_pattern(img, mask, 0)
    with pytest.raises(ValueError):
        resize_pattern(img, mask[:-1], 0.5)


def test_match_colour_mode():
    rgb = np.zeros((5, 5, 3), np.uint8)
    rgb[..., 0] = 200
    grey = match_colour_mode(rgb, True)
    assert grey.shape == (5, 5) and grey.dtype == np.uint8
    assert match_colour_mode(grey, False).shape == (5, 5, 3)
    assert match_colour_mode(rgb, False) is rgb


@pytest.mark.parametrize("mode", ["normal", "mixed", "paste"])
def test_inject_pattern_changes_only_the_region_inside_foreground(mode):
    rng = np.random.default_rng(0)
    normal = rng.integers(100, 140, (64, 64, 3), dtype=np.uint8)
    fg = np.ones((64, 64), bool)
    fg[:, 40:] = False
    pattern = np.full((20, 20, 3), 128, np.uint8)
    pmask = np.zeros((20, 20), bool)
    pmask[5:15, 8:12] = True
    pattern[pmask] = 20
    before = normal.copy()
    res = inject_pattern(normal, fg, pattern, pmask, (32, 39), CAIConfig(mode=mode))
    assert np.array_equal(normal, before)
    changed = np.any(res.image != normal, axis=2)
    assert not changed[~res.region].any()
    assert not changed[~fg].any()
    assert res.placed_mask.sum() == 30  # defect columns 37..40; column 40 is outside the foreground
    assert res.image[res.placed_mask].mean() < 80  # the dark defect is visible
    m = pseudo_mask(normal, res.image, res.placed_mask)
    assert m[res.placed_mask].mean() > 0.8  # a 3x3 median rounds the ends of the 3-px line


def test_inject_pattern_validates():
    normal = np.zeros((32, 32, 3), np.uint8)
    fg = np.ones((32, 32), bool)
    with pytest.raises(ValueError, match="colour mode"):
        inject_pattern(normal, fg, np.zeros((4, 4), np.uint8), np.ones((4, 4), bool), (10, 10))
    with pytest.raises(ValueError, match="empty"):
        inject_pattern(normal, fg, np.zeros((4, 4, 3), np.uint8), np.zeros((4, 4), bool), (10, 10))
    with pytest.raises(ValueError, match="foreground"):
        inject_pattern(normal, fg[:-1], np.zeros((4, 4, 3), np.uint8), np.ones((4, 4), bool), (10, 10))


def test_channel_rule_marks_an_isoluminant_coloured_stain_that_luma_misses():
    from cai.engine.pseudo_mask import grey, pseudo_mask
    normal = np.zeros((40, 40, 3), np.uint8)
    normal[...] = (120, 120, 120)
    placed = np.zeros((40, 40), bool)
    placed[12:28, 10:30] = True
    injected = normal.copy()
    # a reddish stain whose luma equals the grey background's: 0.299 R + 0.587 G + 0.114 B = 120
    stain = np.array([180, 89, 120 + (120 - 0.299 * 180 - 0.587 * 89 - 0.114 * 120) / 0.114], float)
    injected[placed] = np.rint(stain).astype(np.uint8)
    assert abs(float(grey(injected)[20, 20]) - 120) < 1.0
    assert not pseudo_mask(normal, injected, placed, rule="luma").any()
    mask = pseudo_mask(normal, injected, placed, rule="channel")
    assert (mask == placed).all()


def test_relative_mode_adds_the_defects_own_contrast_and_keeps_target_texture():
    from cai.engine.config import CAIConfig
    from cai.engine.inject import inject_pattern
    rng = np.random.default_rng(0)
    normal = (100 + rng.integers(-5, 6, (48, 48))).astype(np.uint8)
    pattern = np.full((20, 20), 200, np.uint8)  # light background
    mask = np.zeros((20, 20), bool)
    mask[9:11, 3:17] = True
    pattern[mask] = 160  # a crack 40 levels darker than its own background
    out = inject_pattern(normal, np.ones((48, 48), bool), pattern, mask, (24, 24), CAIConfig(mode="relative"))
    diff = out.image.astype(int) - normal.astype(int)
    assert (diff[out.placed_mask] == -40).all()  # exactly the defect's deviation, target texture kept
    assert (diff[~out.placed_mask] == 0).all()
    paste = inject_pattern(normal, np.ones((48, 48), bool), pattern, mask, (24, 24), CAIConfig(mode="paste"))
    assert (paste.image[paste.placed_mask] == 160).all()
    doubled = inject_pattern(normal, np.ones((48, 48), bool), pattern, mask, (24, 24), CAIConfig(mode="relative"),
                             gain=2.0)
    assert ((doubled.image.astype(int) - normal)[doubled.placed_mask] == -80).all()


@pytest.mark.parametrize("rule", ["luma", "channel"])
@pytest.mark.parametrize("near_border", [False, True])
def test_detail_change_window_equals_the_whole_image_computation(rule, near_border):
    """detail_change works on a window around the change; the reference blurs the whole image (same
    normalised convolution, written out here), and must give the same floats everywhere."""
    import cv2

    from cai.engine.pseudo_mask import detail_change, raw_change
    rng = np.random.default_rng(3 + near_border)
    normal = rng.integers(60, 200, (120, 150, 3), dtype=np.uint8)
    injected = normal.copy()
    placed = np.zeros((120, 150), bool)
    r, c = (2, 3) if near_border else (50, 60)
    placed[r:r + 20, c:c + 30] = True
    injected[placed] = rng.integers(0, 256, (int(placed.sum()), 3), dtype=np.uint8)
    injected[r + 25:r + 28, c:c + 40] += 9  # changed pixels outside the placed defect
    injected[r + 40, c + 5] = normal[r + 40, c + 5][[1, 0, 2]]  # channels swapped: luma may not change
    d = raw_change(normal, injected, rule)
    outside = (~placed).astype(np.float32)
    o3 = outside[..., None] if d.ndim == 3 else outside
    num = cv2.GaussianBlur(np.ascontiguousarray(d * o3), (0, 0), 6.0, borderType=cv2.BORDER_REPLICATE)
    den = cv2.GaussianBlur(outside, (0, 0), 6.0, borderType=cv2.BORDER_REPLICATE)
    den = den[..., None] if d.ndim == 3 else den
    ref = np.abs(d - np.where(den > 1e-3, num / np.maximum(den, 1e-3), 0.0))
    ref = ref.max(axis=2) if ref.ndim == 3 else ref
    got = detail_change(normal, injected, placed, rule=rule)
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-6)  # the blur over zeros leaves ~1e-11
    assert got.dtype == np.float32 and (got[:, 130:] == 0).all()


def test_luma_is_the_same_whatever_the_blas_kernel():
    """grey() is R*wr, + G*wg, + B*wb, each step rounded once to float32 (exact rational reference), so it
    does not depend on a BLAS kernel; grey pixels whose luma was 7 +- 1 ulp apart made masks machine-dependent."""
    from fractions import Fraction

    from cai.engine.pseudo_mask import grey

    rng = np.random.default_rng(0)
    pixels = np.concatenate([np.repeat(np.arange(256, dtype=np.uint8)[:, None], 3, axis=1),
                             rng.integers(0, 256, (2000, 3), dtype=np.uint8)])
    w = [Fraction(float(v)) for v in np.array([0.299, 0.587, 0.114], np.float32)]

    def to_f32(q):  # the exact value must be a float64 (no double rounding), then one rounding to float32
        assert Fraction(float(q)) == q
        return Fraction(float(np.float32(float(q))))

    want = []
    for r, g, b in pixels.tolist():
        t = to_f32(r * w[0])
        t = to_f32(g * w[1] + t)
        want.append(float(to_f32(b * w[2] + t)))
    got = grey(pixels[None])[0]
    assert got.dtype == np.float32 and got.tolist() == want
    # pointwise: a window's luma is the whole image's there (a BLAS product could round a window otherwise)
    img = rng.integers(0, 256, (37, 53, 3), dtype=np.uint8)
    assert np.array_equal(grey(img)[5:30, 7:40], grey(img[5:30, 7:40]))

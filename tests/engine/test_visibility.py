import numpy as np
import pytest
from scipy import ndimage

from cai.engine.visibility import (contrast, is_novel, nearest_window_distance, novelty, stands_out,
                                   texture_contrasts, texture_novelties, window_inside)


def _square(shape=(40, 40), box=(slice(15, 25), slice(15, 25))):
    mask = np.zeros(shape, bool)
    mask[box] = True
    return mask


def _ring(mask):
    """Pixels at Euclidean distance 2 < d <= 5 from the mask, by scipy's exact distance transform."""
    d = ndimage.distance_transform_edt(~mask)
    return (d > 2) & (d <= 5)


def test_contrast_is_mask_mean_minus_ring_mean_hand_computed():
    mask = _square()
    image = np.full((40, 40), 100, np.uint8)
    image[mask] = 160
    assert contrast(image, mask) == pytest.approx(60.0)
    rgb = np.repeat(image[..., None], 3, axis=2)
    assert contrast(rgb, mask) == pytest.approx(60.0, abs=1e-3)  # luma of grey RGB is the grey level


def test_contrast_ring_matches_an_exact_distance_reference():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (40, 40)).astype(np.uint8)
    mask = _square()
    ring = _ring(mask)
    want = image[mask].mean() - image[ring].mean()
    assert contrast(image, mask) == pytest.approx(want, abs=1.5)  # disk rasterisation differs at a few pixels


def test_contrast_is_nan_without_mask_or_ring():
    assert np.isnan(contrast(np.zeros((8, 8), np.uint8), np.zeros((8, 8), bool)))
    assert np.isnan(contrast(np.zeros((8, 8), np.uint8), np.ones((8, 8), bool)))


def test_texture_contrasts_of_a_flat_image_are_zero_and_stay_in_the_foreground():
    flat = np.full((60, 60), 90, np.uint8)
    mask = _square((60, 60), (slice(5, 10), slice(5, 10)))
    values = texture_contrasts(flat, mask, np.ones((60, 60), bool), np.random.default_rng(1))
    assert values.shape == (16,) and np.all(values == 0)
    # a foreground smaller than the footprint leaves no placement
    small = np.zeros((60, 60), bool)
    small[:8, :8] = True
    assert texture_contrasts(flat, mask, small, np.random.default_rng(1)).size == 0
    assert texture_contrasts(flat, np.zeros((60, 60), bool), np.ones((60, 60), bool), np.random.default_rng(1)).size == 0


def test_texture_contrasts_equal_the_contrast_of_the_moved_mask():
    """Brute force: the same draws, the mask moved there, :func:`contrast` on the whole image; placements
    whose footprint leaves the foreground are dropped."""
    rng = np.random.default_rng(3)
    normal = rng.integers(0, 255, (64, 80), dtype=np.uint8)
    mask = np.zeros((64, 80), bool)
    mask[30:33, 20:40] = True  # a 3 x 20 scratch
    fg = np.ones((64, 80), bool)
    fg[:, 70:] = False  # placements reaching the right edge leave the part
    got = texture_contrasts(normal, mask, fg, np.random.default_rng(7), n=40)
    draw = np.random.default_rng(7)
    h, w = 3 + 10, 20 + 10  # the footprint: mask bbox + the 5 px ring on each side
    tops, lefts = draw.integers(0, 64 - h + 1, 40), draw.integers(0, 80 - w + 1, 40)
    want = []
    for top, left in zip(tops, lefts):
        if left + w > 70:
            continue
        moved = np.zeros_like(mask)
        moved[top + 5:top + 8, left + 5:left + 25] = True
        want.append(abs(contrast(normal, moved)))
    assert len(want) >= 5
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-4)


def test_stands_out_for_a_strong_defect_and_not_for_texture():
    rng = np.random.default_rng(5)
    normal = np.clip(rng.normal(128, 10, (64, 64)), 0, 255).astype(np.uint8)
    mask = _square((64, 64), (slice(28, 36), slice(28, 36)))
    fg = np.ones((64, 64), bool)
    strong = normal.copy()
    strong[mask] = 30
    assert stands_out(normal, strong, mask, fg, np.random.default_rng(0)) is True
    # the same texture moved in (a patch of the normal image itself): no contrast beyond the texture's
    same = normal.copy()
    same[mask] = normal[4:12, 4:12][np.ones((8, 8), bool)]
    assert stands_out(normal, same, mask, fg, np.random.default_rng(0)) is False
    assert stands_out(normal, strong, np.zeros((64, 64), bool), fg, np.random.default_rng(0)) is None
    with pytest.raises(ValueError, match="quantile"):
        stands_out(normal, strong, mask, fg, np.random.default_rng(0), quantile=1.0)


def _brute_nearest(luma, window, top, left):
    """Every placement by two loops; those within half the window's size of (top, left) in both axes skipped."""
    h, w = window.shape
    best = np.inf
    for y in range(luma.shape[0] - h + 1):
        for x in range(luma.shape[1] - w + 1):
            if top - h // 2 <= y <= top + h // 2 and left - w // 2 <= x <= left + w // 2:
                continue
            best = min(best, float(((luma[y:y + h, x:x + w] - window) ** 2).mean()))
    return best


@pytest.mark.parametrize("top,left,h,w", [(10, 12, 7, 9), (0, 0, 5, 5), (25, 30, 6, 3)])
def test_nearest_window_distance_matches_a_brute_force(top, left, h, w):
    rng = np.random.default_rng(top + left)
    luma = rng.integers(0, 256, (32, 40)).astype(np.float32)
    window = luma[top:top + h, left:left + w] + rng.normal(0, 5, (h, w)).astype(np.float32)
    got = nearest_window_distance(luma, window, top, left)
    assert got == pytest.approx(_brute_nearest(luma, window, top, left), rel=1e-4)


def test_nearest_window_distance_is_nan_when_every_placement_overlaps_its_own():
    luma = np.zeros((10, 10), np.float32)
    assert np.isnan(nearest_window_distance(luma, np.zeros((8, 8), np.float32), 1, 1))


def _lattice(size=96, period=8):
    y, x = np.mgrid[:size, :size]
    return np.where((y % period < 2) | (x % period < 2), 220, 40).astype(np.uint8)


def test_a_broken_period_is_novel_and_a_moved_patch_of_noise_is_not():
    grid = _lattice()
    fg = np.ones(grid.shape, bool)
    mask = _square(grid.shape, (slice(40, 52), slice(40, 52)))
    broken = grid.copy()
    broken[40:52, 40:52] = grid[43:55, 45:57]  # shifted by (3, 5): the lattice no longer lines up
    value, null = novelty(grid, broken, mask, fg, np.random.default_rng(0))
    assert np.all(null == 0) and value > 100  # every ordinary window repeats exactly one period away
    assert is_novel(grid, broken, mask, fg, np.random.default_rng(0)) is True
    whole = grid.copy()
    whole[40:52, 40:52] = grid[48:60, 48:60]  # moved by whole periods: nothing changes
    assert is_novel(grid, whole, mask, fg, np.random.default_rng(0)) is False
    # a stochastic texture: a patch of it moved elsewhere passes about as often as the 10 % tail
    passed = 0
    for seed in range(30):
        rng = np.random.default_rng(seed)
        noise = np.clip(rng.normal(128, 20, (64, 64)), 0, 255).astype(np.uint8)
        moved = noise.copy()
        moved[26:38, 26:38] = noise[2:14, 2:14]
        m = _square((64, 64), (slice(26, 38), slice(26, 38)))
        passed += bool(is_novel(noise, moved, m, np.ones((64, 64), bool), rng))
        dark = noise.copy()
        dark[m] = 20
        assert is_novel(noise, dark, m, np.ones((64, 64), bool), rng) is True
    assert passed <= 8


def test_texture_novelties_stay_in_the_foreground_and_is_novel_reports_what_it_cannot_measure():
    rng = np.random.default_rng(2)
    normal = rng.integers(0, 256, (48, 48)).astype(np.uint8)
    fg = np.zeros((48, 48), bool)
    fg[:, :24] = True
    got = texture_novelties(normal, (6, 6), fg, np.random.default_rng(4), n=30)
    draw = np.random.default_rng(4)
    tops, lefts = draw.integers(0, 43, 30), draw.integers(0, 43, 30)
    luma = normal.astype(np.float32)  # grey input: luma is the image
    want = [nearest_window_distance(luma, luma[t:t + 6, l:l + 6], int(t), int(l))
            for t, l in zip(tops, lefts) if l + 6 <= 24]
    np.testing.assert_allclose(got, want, rtol=1e-5)
    assert texture_novelties(normal, (60, 6), fg, np.random.default_rng(4)).size == 0
    mask = _square((48, 48), (slice(20, 26), slice(5, 11)))
    assert is_novel(normal, normal, np.zeros((48, 48), bool), fg, np.random.default_rng(0)) is None
    assert is_novel(normal, normal, mask, np.zeros((48, 48), bool), np.random.default_rng(0)) is None
    with pytest.raises(ValueError, match="quantile"):
        is_novel(normal, normal, mask, fg, np.random.default_rng(0), quantile=0.0)
    with pytest.raises(ValueError, match="factor"):
        is_novel(normal, normal, mask, fg, np.random.default_rng(0), factor=0.5)


def test_is_novel_with_a_factor_and_the_maximum_compares_with_the_null_by_hand():
    rng = np.random.default_rng(8)
    normal = np.clip(rng.normal(128, 20, (64, 64)), 0, 255).astype(np.uint8)
    fg = np.ones((64, 64), bool)
    mask = _square((64, 64), (slice(26, 34), slice(26, 34)))
    for level in (20, 60, 90, 110):
        changed = normal.copy()
        changed[mask] = level
        value, null = novelty(normal, changed, mask, fg, np.random.default_rng(1))
        for q, f in [(0.9, 1.0), (1.0, 1.0), (1.0, 2.0), (0.5, 3.0)]:
            assert is_novel(normal, changed, mask, fg, np.random.default_rng(1), quantile=q, factor=f) == bool(
                value > f * np.quantile(null, q))


def test_window_inside_checks_the_bounding_box_grown_by_the_margin():
    fg = np.zeros((40, 40), bool)
    fg[10:30, 10:30] = True
    mask = _square((40, 40), (slice(15, 20), slice(15, 20)))
    assert window_inside(mask, fg)  # box 11..23 in both axes
    assert not window_inside(mask, fg, margin=6)  # box 9..25 leaves the foreground
    edge = _square((40, 40), (slice(26, 29), slice(15, 20)))
    assert not window_inside(edge, fg)  # 4 px below row 28 is outside
    assert window_inside(_square((40, 40), (slice(0, 3), slice(0, 3))), np.ones((40, 40), bool))  # cut to the image
    assert not window_inside(np.zeros((40, 40), bool), fg)

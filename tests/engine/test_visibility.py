import numpy as np
import pytest
from scipy import ndimage

from cai.engine.visibility import contrast, stands_out, texture_contrasts


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

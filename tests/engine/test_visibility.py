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


def test_texture_contrasts_equal_the_contrast_of_the_moved_mask_on_the_whole_image():
    """Each value is |contrast| of the mask moved to the drawn place, computed on the full image."""
    image = np.random.default_rng(2).integers(0, 256, (50, 50)).astype(np.uint8)
    mask = np.zeros((50, 50), bool)
    mask[20:30, 20] = True
    mask[25, 18:23] = True
    values = texture_contrasts(image, mask, np.ones((50, 50), bool), np.random.default_rng(3), n=12)
    rows, cols = np.nonzero(mask)
    h, w = rows.max() - rows.min() + 11, cols.max() - cols.min() + 11  # bbox + 5 px pad each side
    rng = np.random.default_rng(3)
    tops, lefts = rng.integers(0, 50 - h + 1, 12), rng.integers(0, 50 - w + 1, 12)
    want = [abs(contrast(image, np.roll(mask, (top + 5 - rows.min(), left + 5 - cols.min()), axis=(0, 1))))
            for top, left in zip(tops, lefts)]
    np.testing.assert_allclose(values, want, atol=1e-4)


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

"""Injection location selection (ILS, Eq. 2 of Wang, Hu et al. 2025)."""
from __future__ import annotations

import numpy as np

from ._checks import as_bool_mask


def valid_centers(foreground, pattern_shape, margin: int = 0) -> np.ndarray:
    """Foreground pixels at which a pattern can be centred with its bounding box inside the image.

    A pattern of shape (h, w) centred at (r, c) covers rows ``r - h // 2`` to ``r - h // 2 + h``
    (half-open) and likewise for columns; with ``margin`` m that box grown by m pixels on every
    side must lie inside the image.

    Parameters
    ----------
    foreground : (H, W) bool ndarray
        Target foreground m(I_n).
    pattern_shape : (int, int)
        (h, w) of the resized pattern's bounding box.
    margin : int
        Extra pixels kept free around the box (room for the Poisson region and its boundary).

    Returns
    -------
    (N, 2) int64 ndarray
        (row, col) of every valid centre, in row-major order; empty when none exists.
    """
    window, r_lo, c_lo = _center_window(foreground, pattern_shape, margin)
    rows, cols = np.nonzero(window)
    return np.stack([rows + r_lo, cols + c_lo], axis=1).astype(np.int64)


def _center_window(foreground, pattern_shape, margin):
    """(the foreground where a centre keeps the grown box inside the image, its first row, first col)."""
    foreground = as_bool_mask(foreground, "foreground")
    h, w = (int(v) for v in pattern_shape)
    if h < 1 or w < 1:
        raise ValueError(f"pattern_shape must be positive, got {pattern_shape}")
    if margin < 0:
        raise ValueError(f"margin must be >= 0, got {margin}")
    H, W = foreground.shape
    # r - h//2 - margin >= 0 and r - h//2 + h + margin <= H
    r_lo, r_hi = h // 2 + margin, H - h + h // 2 - margin  # inclusive bounds
    c_lo, c_hi = w // 2 + margin, W - w + w // 2 - margin
    if r_lo > r_hi or c_lo > c_hi:
        return np.zeros((0, 0), bool), r_lo, c_lo
    return foreground[r_lo : r_hi + 1, c_lo : c_hi + 1], r_lo, c_lo


def select_center(foreground, pattern_shape, rng=None, margin: int = 0):
    """Draw the injection centre uniformly among the valid centres (Eq. 2).

    Returns
    -------
    (int, int) or None
        (row, col) of the centre, or None when no foreground pixel admits the pattern (the caller
        resamples the pattern or its scale and counts it).

    Example
    -------
    >>> fg = np.zeros((8, 8), bool); fg[4, 4] = True
    >>> select_center(fg, (3, 3), rng=0)
    (4, 4)
    >>> select_center(fg, (9, 3), rng=0) is None
    True
    """
    # the same draw as ``valid_centers(...)[rng.integers(len(...))]`` without listing every centre:
    # count the valid centres per row, then find the drawn one's row and column
    window, r_lo, c_lo = _center_window(foreground, pattern_shape, margin)
    per_row = np.count_nonzero(window, axis=1)
    before = np.cumsum(per_row)
    total = int(before[-1]) if len(before) else 0
    if total == 0:
        return None
    index = int(np.random.default_rng(rng).integers(total))
    row = int(np.searchsorted(before, index, side="right"))
    col = int(np.flatnonzero(window[row])[index - (before[row] - per_row[row])])
    return row + r_lo, col + c_lo

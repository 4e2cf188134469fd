"""Input checks shared by the engine stages (private)."""
from __future__ import annotations

import numpy as np


def as_bool_mask(mask, name: str, ndim: int = 2) -> np.ndarray:
    """Return ``mask`` as a bool array; accept bool or 0/1 integers, reject anything else.

    Raises ValueError naming ``name`` when the array is not ``ndim``-dimensional or not binary.
    """
    mask = np.asarray(mask)
    if mask.ndim != ndim:
        raise ValueError(f"{name} must be a {ndim}-D array, got shape {mask.shape}")
    if mask.dtype == bool:
        return mask
    if not np.issubdtype(mask.dtype, np.integer) and not np.issubdtype(mask.dtype, np.floating):
        raise ValueError(f"{name} must be bool or 0/1 numbers, got dtype {mask.dtype}")
    if mask.size and not np.isin(mask, (0, 1)).all():
        raise ValueError(f"{name} must be binary (bool or 0/1), got values outside {{0, 1}}")
    return mask.astype(bool)


def check_image(image, name: str) -> np.ndarray:
    """Return ``image`` as a (H, W) or (H, W, C) array; raise ValueError naming ``name`` otherwise."""
    image = np.asarray(image)
    if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] not in (1, 3)):
        raise ValueError(f"{name} must have shape (H, W) or (H, W, 3), got {image.shape}")
    if image.size == 0:
        raise ValueError(f"{name} is empty")
    return image


def bbox(mask: np.ndarray) -> tuple[int, int, int, int]:
    """(row0, col0, row1, col1), half-open, of the True pixels of a non-empty (H, W) bool mask."""
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        raise ValueError("mask is empty")
    return int(rows[0]), int(cols[0]), int(rows[-1]) + 1, int(cols[-1]) + 1

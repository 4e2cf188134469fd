"""Helpers shared by the baseline synthesizers (private)."""
from __future__ import annotations

import numpy as np

from ..engine._checks import as_bool_mask, check_image
from ..engine.pseudo_mask import mask_fidelity
from ..engine.synthesizer import PseudoAnomaly, Skipped


def _slot_rng(seed: int, normal_index: int, k: int) -> np.random.Generator:
    return np.random.default_rng([seed, normal_index, k])


def _prepare(normal, foreground, is_grey: bool):
    """Checked (H, W[, 3]) uint8 target (channel 0 when grey) and (H, W) bool foreground."""
    normal = check_image(normal, "normal")
    if normal.dtype != np.uint8:
        raise ValueError(f"normal must be uint8, got {normal.dtype}")
    if normal.ndim == 3 and (is_grey or normal.shape[2] == 1):
        normal = normal[..., 0]
    foreground = as_bool_mask(foreground, "foreground")
    if foreground.shape != normal.shape[:2]:
        raise ValueError(f"foreground shape {foreground.shape} differs from image shape {normal.shape[:2]}")
    return normal, foreground


def _resamples() -> dict:
    return {"location": 0, "empty_mask": 0, "vanished": 0}


def _check_positive_int(value, name: str) -> int:
    if int(value) != value or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def _box_slices(center, shape):
    """Row and column slices of a (h, w) box centred at (row, col) as :func:`select_center` places it."""
    (r, c), (h, w) = center, shape
    top, left = r - h // 2, c - w // 2
    return slice(top, top + h), slice(left, left + w)


def _made(normal, image, mask, placed, k, anomaly_class, str_ratio, resize_ratio, center, source_id, source,
          attempt, resamples, threshold) -> PseudoAnomaly:
    return PseudoAnomaly(
        image=image, mask=mask, placed_mask=placed, k=k, anomaly_class=anomaly_class, scale="",
        str_ratio=float(str_ratio), resize_ratio=float(resize_ratio), center=(int(center[0]), int(center[1])),
        source_id=source_id, source=source, attempts=attempt,
        fidelity=mask_fidelity(normal, image, mask, placed, threshold=threshold), resamples=resamples)


class SlotSynthesizer:
    """``synthesize`` for baselines whose slot k of normal image ``normal_index`` is
    ``self._one(normal, foreground, normal_index, k, rng)`` and whose ``per_image`` attribute sets
    the number of slots (CutPaste, DRAEM, GLASS-LAS, NSA)."""

    def synthesize(self, normal, foreground, normal_index: int, seed: int, is_grey: bool = False):
        """``per_image`` pseudo anomalies of one normal image (see the class docstring).

        Parameters
        ----------
        normal : (H, W, 3) or (H, W) uint8 ndarray
        foreground : (H, W) bool ndarray
        normal_index, seed : int
            Slot k draws from ``np.random.default_rng([seed, normal_index, k])``.
        is_grey : bool
            Grey target: channel 0 is used, images come back (H, W).

        Returns
        -------
        list of PseudoAnomaly or Skipped, length ``per_image``; all ``Skipped(k, "empty_foreground")``
        when the foreground is empty
        """
        normal, foreground = _prepare(normal, foreground, is_grey)
        if not foreground.any():
            return [Skipped(k, "empty_foreground") for k in range(self.per_image)]
        return [self._one(normal, foreground, normal_index, k, _slot_rng(seed, normal_index, k))
                for k in range(self.per_image)]

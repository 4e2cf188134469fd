"""Natural Synthetic Anomalies (Schlüter et al., ECCV 2022): a patch of another normal image,
Poisson-blended."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

import cv2
import numpy as np

from ..engine._checks import as_bool_mask, bbox, check_image
from ..engine.inject import match_colour_mode
from ..engine.location import select_center
from ..engine.poisson import poisson_blend
from ..engine.scale import bbox_long_side
from ..engine.synthesizer import Skipped
from ._common import SlotSynthesizer, _box_slices, _check_positive_int, _made, _resamples


def _half_side(bounds, side: int, rng) -> int:
    """Half-side in [round(bounds[0] * side), round(bounds[1] * side)) (NSA's draw), at least 2."""
    low = max(2, round(bounds[0] * side))
    return int(rng.integers(low, max(low + 1, round(bounds[1] * side))))


def _other_index(count: int, normal_index: int, rng) -> int:
    """Uniform index in ``range(count)`` other than ``normal_index`` (any when it is out of range)."""
    if 0 <= normal_index < count:
        j = int(rng.integers(count - 1))
        return j + (j >= normal_index)
    return int(rng.integers(count))


@dataclass
class NSASynthesizer(SlotSynthesizer):
    """Natural Synthetic Anomalies (Schlüter et al. 2022), Normal or Mixed gradient Poisson blending.

    Per slot: another normal image ``j != normal_index`` of the same target is drawn; a rectangle
    with half-sides uniform in ``half_width`` x the image sides is cut from it at a centre drawn in
    the *target's* foreground (normals of one target are roughly aligned; source foregrounds are
    not available), resized by ``clip(N(1, 0.5), *resize_bounds)`` and Poisson-blended
    (:func:`cai.engine.poisson.poisson_blend`, ``mode``) at another centre in the foreground, the region
    being the patch rectangle less its 1-pixel rim, within the foreground. The mask is NSA's binary
    label: channel-maximum ``|blended - normal| > threshold``, median-filtered (``median_ksize``),
    within the region; specks under ``min_component`` pixels are dropped. An empty mask is redrawn.
    One patch per pseudo anomaly (NSA may paste several).

    Attributes
    ----------
    normals : sequence of (H, W[, 3]) uint8 ndarray, or callable i -> ndarray
        The target's normal images, indexed like the ``normal_index`` passed to :meth:`synthesize`
        (so that the image itself is excluded). A source is made grey for a grey target and, at another
        size, resized to the target's.
    count : int or None
        Number of normals; required when ``normals`` is a callable. At least 2.
    mode : {"normal", "mixed"}
    per_image, max_attempts : int
    half_width : (float, float)
        Bounds of the patch half-sides as a share of the image sides (NSA's ``width_bounds_pct``
        default 0.03-0.4).
    resize_bounds : (float, float)
        Clip range of the patch resize factor (NSA: 0.7-1.3); (1, 1) disables resizing.
    threshold : int
        Grey-level change the label needs (NSA's ``tol``; here CAI's 7 by default).
    median_ksize, min_component : int
        Label cleaning (NSA: median 5).
    """

    normals: Sequence[np.ndarray] | Callable[[int], np.ndarray]
    count: int | None = None
    mode: str = "normal"
    per_image: int = 10
    half_width: tuple[float, float] = (0.03, 0.4)
    resize_bounds: tuple[float, float] = (0.7, 1.3)
    threshold: int = 7
    median_ksize: int = 5
    min_component: int = 5
    max_attempts: int = 20
    _load: Callable[[int], np.ndarray] = field(init=False, repr=False)

    def __post_init__(self):
        if self.mode not in ("normal", "mixed"):
            raise ValueError(f"mode must be 'normal' or 'mixed', got {self.mode!r}")
        if callable(self.normals):
            if self.count is None:
                raise ValueError("count is required when normals is a callable i -> image")
            self._load = self.normals
        else:
            if self.count is None:
                self.count = len(self.normals)
            elif self.count != len(self.normals):
                raise ValueError(f"count {self.count} differs from len(normals) {len(self.normals)}")
            self._load = self.normals.__getitem__
        if int(self.count) != self.count or self.count < 2:
            raise ValueError(f"NSA needs at least two normal images (the patch comes from another one), "
                             f"got {self.count}")
        _check_positive_int(self.per_image, "per_image")
        _check_positive_int(self.max_attempts, "max_attempts")
        if not 0 < self.half_width[0] <= self.half_width[1] <= 0.5:
            raise ValueError(f"half_width must satisfy 0 < low <= high <= 0.5, got {self.half_width}")
        if not 0 < self.resize_bounds[0] <= self.resize_bounds[1]:
            raise ValueError(f"resize_bounds must satisfy 0 < low <= high, got {self.resize_bounds}")
        if self.median_ksize < 1 or self.median_ksize % 2 == 0:
            raise ValueError(f"median_ksize must be a positive odd integer, got {self.median_ksize}")

    @property
    def name(self) -> str:
        return "nsa-n" if self.mode == "normal" else "nsa-m"

    def _source(self, j: int, normal):
        src = check_image(self._load(j), f"normals[{j}]")
        if src.dtype != np.uint8:
            raise ValueError(f"normals[{j}] must be uint8, got {src.dtype}")
        src = match_colour_mode(src, normal.ndim == 2)
        if src.shape[:2] != normal.shape[:2]:
            H, W = normal.shape[:2]
            src = cv2.resize(src, (W, H), interpolation=cv2.INTER_AREA)
        return src

    def _one(self, normal, foreground, normal_index, k, rng):
        H, W = foreground.shape
        resamples = _resamples()
        for attempt in range(1, self.max_attempts + 1):
            j = _other_index(int(self.count), normal_index, rng)
            hh, hw = (_half_side(self.half_width, side, rng) for side in (H, W))
            src_center = select_center(foreground, (2 * hh, 2 * hw), rng)
            if src_center is None:
                resamples["location"] += 1
                continue
            patch = self._source(j, normal)[_box_slices(src_center, (2 * hh, 2 * hw))]
            scale = float(np.clip(rng.normal(1.0, 0.5), *self.resize_bounds))
            h = int(np.clip(round(scale * 2 * hh), 3, H - 2))
            w = int(np.clip(round(scale * 2 * hw), 3, W - 2))
            if (h, w) != patch.shape[:2]:
                patch = cv2.resize(patch, (w, h), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
            center = select_center(foreground, (h, w), rng, margin=1)
            if center is None:
                resamples["location"] += 1
                continue
            box = _box_slices(center, (h, w))
            placed = np.zeros((H, W), bool)
            placed[box] = True
            placed &= foreground
            region = np.zeros((H, W), bool)
            region[box[0].start + 1: box[0].stop - 1, box[1].start + 1: box[1].stop - 1] = True  # less the rim
            region &= foreground
            if not region.any():
                resamples["vanished"] += 1
                continue
            image = nsa_blend(normal, patch, center, region, self.mode)
            mask = _difference_label(normal, image, region, self.threshold, self.median_ksize, self.min_component)
            if not mask.any():
                resamples["empty_mask"] += 1
                continue
            return _made(normal, image, mask, placed, k, self.name, max(h, w) / bbox_long_side(foreground),
                         h / (2 * hh), center, f"normal:{j}", "normal", attempt, resamples, self.threshold)
        return Skipped(k, "max_attempts", "", resamples)


def nsa_blend(normal, patch, center, region, mode: str = "normal") -> np.ndarray:
    """Poisson-blend a patch into a normal image on ``region`` (one NSA patch).

    Parameters
    ----------
    normal : (H, W) or (H, W, 3) uint8 ndarray
    patch : (h, w) or (h, w, 3) uint8 ndarray, in the colour mode of ``normal``
    center : (int, int)
        (row, col) of the patch centre; the patch covers rows ``row - h // 2`` to
        ``row - h // 2 + h`` and must lie inside the image.
    region : (H, W) bool ndarray
        Pixels solved for; must lie inside the patch box, off the 1-pixel image border.
    mode : {"normal", "mixed"}
        Guidance field of :func:`cai.engine.poisson.poisson_blend`.

    Returns
    -------
    (H, W[, 3]) uint8 ndarray
        ``normal`` outside ``region``, the rounded, clipped Poisson solution inside.
    """
    normal = check_image(normal, "normal")
    patch = check_image(patch, "patch")
    region = as_bool_mask(region, "region")
    if patch.ndim != normal.ndim:
        raise ValueError("patch must be in the colour mode of normal")
    box = _box_slices(center, patch.shape[:2])
    H, W = normal.shape[:2]
    if box[0].start < 0 or box[1].start < 0 or box[0].stop > H or box[1].stop > W:
        raise ValueError(f"center {center} puts the patch outside the image")
    inside = np.zeros((H, W), bool)
    inside[box] = True
    if region.shape != (H, W) or (region & ~inside).any():
        raise ValueError("region must be an (H, W) mask inside the patch box")
    source = normal.copy()
    source[box] = patch
    r0, c0, r1, c1 = bbox(region)
    win = (slice(max(r0 - 1, 0), r1 + 1), slice(max(c0 - 1, 0), c1 + 1))
    out = normal.copy()
    blended = poisson_blend(normal[win], source[win], region[win], mode=mode)
    out[win] = np.where(region[win][(...,) + (None,) * (normal.ndim - 2)],
                        np.clip(np.rint(blended), 0, 255).astype(np.uint8), normal[win])
    return out


def _difference_label(normal, image, region, threshold, median_ksize, min_component):
    """NSA's binary label: channel-max |image - normal| > threshold, median-cleaned, in ``region``."""
    diff = np.abs(image.astype(np.int16) - normal.astype(np.int16))
    if diff.ndim == 3:
        diff = diff.max(axis=2)
    changed = (diff > threshold).astype(np.uint8) * 255
    if median_ksize > 1:
        changed = cv2.medianBlur(changed, median_ksize)
    mask = (changed > 0) & region
    if min_component > 1 and mask.any():
        _, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
        keep = stats[:, cv2.CC_STAT_AREA] >= min_component
        keep[0] = False
        mask = keep[labels]
    return mask

"""Pattern resizing, colour-mode matching and Poisson injection of one placed pattern (Eq. 3)."""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from ._checks import as_bool_mask, bbox, check_image
from .config import CAIConfig
from .poisson import poisson_blend
from .pseudo_mask import dilate
from .refine import defect_deviation


def resize_pattern(image, mask, ratio: float):
    """Resize a pattern crop and its mask by ``ratio`` (r = R' / R).

    Parameters
    ----------
    image : (h, w) or (h, w, 3) uint8 ndarray
        Source crop around the defect.
    mask : (h, w) bool ndarray
        Defect mask in the crop.
    ratio : float
        Positive resize factor.

    Returns
    -------
    image : (h', w'[, 3]) uint8 ndarray
        Area-averaged when shrinking, bilinear when enlarging.
    mask : (h', w') bool ndarray
        Area coverage >= 0.5 when enlarging, >= 0.25 when shrinking (keeps thin cracks).
        May be empty when the defect vanishes at this size.
    """
    image = check_image(image, "image")
    mask = as_bool_mask(mask, "mask")
    if mask.shape != image.shape[:2]:
        raise ValueError(f"mask shape {mask.shape} differs from image shape {image.shape[:2]}")
    if not np.isfinite(ratio) or ratio <= 0:
        raise ValueError(f"ratio must be positive, got {ratio}")
    h, w = mask.shape
    size = (max(1, round(w * ratio)), max(1, round(h * ratio)))  # cv2 wants (width, height)
    shrink = ratio < 1
    interp = cv2.INTER_AREA if shrink else cv2.INTER_LINEAR
    out_image = cv2.resize(image, size, interpolation=interp)
    coverage = cv2.resize(mask.astype(np.float32), size, interpolation=interp)
    return out_image, coverage >= (0.25 if shrink else 0.5)


def match_colour_mode(pattern, target_is_grey: bool) -> np.ndarray:
    """Return the pattern in the target's colour mode: (h, w) grey for grey targets, (h, w, 3) RGB else.

    A colour defect on a grey part would be a shortcut no real defect offers.
    """
    pattern = check_image(pattern, "pattern")
    if pattern.ndim == 3 and pattern.shape[2] == 1:
        pattern = pattern[..., 0]
    if target_is_grey:
        return pattern if pattern.ndim == 2 else cv2.cvtColor(pattern, cv2.COLOR_RGB2GRAY)
    return cv2.cvtColor(pattern, cv2.COLOR_GRAY2RGB) if pattern.ndim == 2 else pattern


@dataclass(frozen=True)
class Injection:
    """Result of :func:`inject_pattern`.

    image : (H, W[, 3]) uint8 ndarray — the pseudo-anomaly image.
    placed_mask : (H, W) bool ndarray — the source defect mask where it was placed (inside the foreground).
    region : (H, W) bool ndarray — Ω, the pixels the injection was allowed to change.
    clipped : int — pixel channels of Ω whose blended value left [0, 255] and was clipped.
    mode : str — the injection mode used.
    """

    image: np.ndarray
    placed_mask: np.ndarray
    region: np.ndarray
    clipped: int = 0
    mode: str = "normal"


def inject_pattern(normal, foreground, pattern_image, pattern_mask, center, config: CAIConfig = CAIConfig(),
                   mode: str | None = None, gain: float = 1.0):
    """Inject a resized pattern into a normal image with its defect bounding box centred at ``center``.

    The Poisson region Ω is the placed defect mask closed and dilated by ``config.region_dilation``
    pixels (so the seam lies outside the defect), limited to where the pattern crop provides source
    pixels and kept off the image border. ``mode`` (default ``config.mode``, which must then be a
    single mode) picks Normal or Mixed gradient Poisson (Eq. 3), a plain paste of the defect
    pixels, or ``"relative"``: the guidance field is the source's on the defect pixels and the
    target's elsewhere, ``v = grad(normal + D)`` with ``D`` the defect's deviation from its own
    source background (:func:`cai.engine.refine.defect_deviation`). ``D`` vanishes on the region's
    boundary, so the Poisson solution is ``normal + D`` in closed form and no solve is needed. Pixels
    outside the foreground are then reset to the normal image. ``gain`` multiplies the change
    ``blend - normal`` before rounding; in paste mode it multiplies the defect's deviation from its
    own source background instead (pasted = source background + gain x deviation), a contrast
    jitter of the pattern that keeps its background level.

    Parameters
    ----------
    normal : (H, W) or (H, W, 3) uint8 ndarray
    foreground : (H, W) bool ndarray
    pattern_image : (h, w) or (h, w, 3) uint8 ndarray, in the colour mode of ``normal``
    pattern_mask : (h, w) bool ndarray, non-empty
    center : (int, int)
        (row, col) where the centre of the defect's bounding box goes.

    Returns
    -------
    Injection
    """
    normal = check_image(normal, "normal")
    foreground = as_bool_mask(foreground, "foreground")
    pattern_image = check_image(pattern_image, "pattern_image")
    pattern_mask = as_bool_mask(pattern_mask, "pattern_mask")
    if foreground.shape != normal.shape[:2]:
        raise ValueError(f"foreground shape {foreground.shape} differs from image shape {normal.shape[:2]}")
    if pattern_mask.shape != pattern_image.shape[:2]:
        raise ValueError(f"pattern_mask shape {pattern_mask.shape} differs from pattern_image {pattern_image.shape[:2]}")
    if pattern_image.ndim != normal.ndim:
        raise ValueError("pattern_image must be in the colour mode of normal (see match_colour_mode)")
    if not pattern_mask.any():
        raise ValueError("pattern_mask is empty")
    H, W = foreground.shape
    r0, c0, r1, c1 = bbox(pattern_mask)
    top = center[0] - (r1 - r0) // 2 - r0  # where the crop's (0, 0) lands
    left = center[1] - (c1 - c0) // 2 - c0
    ph, pw = pattern_mask.shape
    # overlap of the crop with the image
    y0, x0, y1, x1 = max(top, 0), max(left, 0), min(top + ph, H), min(left + pw, W)
    if y0 >= y1 or x0 >= x1:
        raise ValueError(f"center {center} puts the pattern outside the image")
    crop = (slice(y0 - top, y1 - top), slice(x0 - left, x1 - left))
    window = (slice(y0, y1), slice(x0, x1))

    placed = np.zeros((H, W), bool)
    placed[window] = pattern_mask[crop]
    placed &= foreground
    source = normal.copy()
    source[window] = pattern_image[crop]
    has_source = np.zeros((H, W), bool)
    has_source[window] = True

    mode = config.mode if mode is None else mode
    if mode not in ("normal", "mixed", "paste", "relative"):
        raise ValueError(f"mode must be normal, mixed, paste or relative, got {mode!r}")
    clipped = 0
    if mode == "paste":
        region = placed
        out = normal.copy()
        if gain != 1.0 and placed.any():  # contrast: the defect's deviation from its own background x gain
            boosted = source.astype(np.float32)
            boosted[window] += np.float32(gain - 1.0) * defect_deviation(pattern_image, pattern_mask)[crop]
            clipped = int(((boosted < -0.5) | (boosted > 255.5))[placed].sum())
            out[placed] = np.clip(np.rint(boosted[placed]), 0, 255).astype(np.uint8)
        else:
            out[placed] = source[placed]
    elif mode == "relative":
        region = placed
        out = normal.copy()
        if placed.any():
            b0, b1, b2, b3 = bbox(placed)
            box = (slice(b0, b2), slice(b1, b3))
            deviation = defect_deviation(pattern_image, pattern_mask)
            full = np.zeros(normal.shape, np.float32)
            full[window] = deviation[crop]
            blended = normal[box].astype(np.float32) + np.float32(gain) * full[box]
            clipped = int(((blended < -0.5) | (blended > 255.5))[placed[box]].sum())
            out[box] = np.where(placed[box] if normal.ndim == 2 else placed[box][..., None],
                                np.clip(np.rint(blended), 0, 255).astype(np.uint8), normal[box])
    else:
        region = dilate(cv2.morphologyEx(placed.astype(np.uint8), cv2.MORPH_CLOSE, np.ones((3, 3), np.uint8)).astype(bool),
                        config.region_dilation)
        region &= has_source
        region[[0, -1], :] = False
        region[:, [0, -1]] = False
        out = normal.copy()
        if region.any():
            b0, b1, b2, b3 = bbox(region)
            box = (slice(b0 - 1, b2 + 1), slice(b1 - 1, b3 + 1))
            blended = poisson_blend(normal[box], source[box], region[box], mode=mode)
            if gain != 1.0:
                base = normal[box].astype(np.float32)
                blended = base + np.float32(gain) * (blended - base)
            clipped = int(((blended < -0.5) | (blended > 255.5))[region[box]].sum())
            out[box] = np.clip(np.rint(blended), 0, 255).astype(np.uint8)
    out[~foreground] = normal[~foreground]
    return Injection(image=out, placed_mask=placed, region=region & foreground, clipped=clipped, mode=mode)

"""Pure foreground backends m(.): an image in, an ``(H, W) bool`` mask at its size out.

``foreground_all`` (every pixel; textures) and ``foreground_threshold`` (classical, weight-free:
background colour from the image border, Otsu threshold on the colour distance, morphology; all-True
when no object separates). Model-based backends and the choice between them live at the edge,
:mod:`cai.foreground`. Input images are ``(H, W, 3) uint8`` RGB or ``(H, W) uint8`` grayscale.
"""

from __future__ import annotations

import cv2
import numpy as np

__all__ = ["TEXTURE_CATEGORIES", "OBJECT_CATEGORIES", "foreground_all", "foreground_threshold"]

#: MVTec AD texture categories: the whole image is the inspected surface.
TEXTURE_CATEGORIES = frozenset({"carpet", "grid", "leather", "tile", "wood"})
#: MVTec AD object categories: an object on a (mostly plain) background.
OBJECT_CATEGORIES = frozenset(
    {
        "bottle",
        "cable",
        "capsule",
        "hazelnut",
        "metal_nut",
        "pill",
        "screw",
        "toothbrush",
        "transistor",
        "zipper",
    }
)
# foreground_threshold parameters (fractions are of min(H, W) unless stated).
_BORDER_FRAC = 0.02  # width of the border ring that samples the background
_BLUR_FRAC = 1.0 / 256.0  # Gaussian sigma applied before the colour distance
_MIN_CONTRAST = 10.0  # max colour distance (0-255 units) below which nothing separates
_MAX_BORDER_FG = 0.25  # max fraction of the border ring above half the threshold
_MORPH_FRAC = 0.01  # structuring-element diameter for close/open
_KEEP_FRAC = 0.1  # keep components with area >= this fraction of the largest
_MIN_COVER, _MAX_COVER = 0.01, 0.99  # accepted foreground coverage

# ----------------------------------------------------------------------------
# validation helpers
# ----------------------------------------------------------------------------



def fill_holes(mask: np.ndarray) -> np.ndarray:
    """``mask`` with its holes filled: background pixels not 4-connected to the image border become
    foreground (as ``scipy.ndimage.binary_fill_holes`` with its default structure).

    Parameters
    ----------
    mask : (H, W) bool ndarray

    Returns
    -------
    (H, W) bool ndarray
    """
    mask = np.asarray(mask, bool)
    n, labels = cv2.connectedComponents((~mask).astype(np.uint8), connectivity=4)
    outside = np.zeros(n, bool)
    for edge in (labels[0], labels[-1], labels[:, 0], labels[:, -1]):
        outside[edge] = True
    outside[0] = True  # label 0 is the mask itself
    return ~outside[labels] | mask

def _check_image(image, name: str = "image") -> np.ndarray:
    """Validate an image and return it as an ndarray (not copied)."""
    if not isinstance(image, np.ndarray):
        raise ValueError(
            f"{name} must be a numpy ndarray, got {type(image).__name__}"
        )
    if image.dtype != np.uint8:
        raise ValueError(f"{name} must have dtype uint8, got {image.dtype}")
    if image.ndim == 2:
        pass
    elif image.ndim == 3 and image.shape[2] == 3:
        pass
    else:
        raise ValueError(
            f"{name} must have shape (H, W, 3) or (H, W), got {image.shape}"
        )
    if image.shape[0] < 1 or image.shape[1] < 1:
        raise ValueError(f"{name} must be non-empty, got shape {image.shape}")
    return image


def _to_rgb(image: np.ndarray) -> np.ndarray:
    """(H, W) or (H, W, 3) uint8 -> new (H, W, 3) uint8 RGB array."""
    if image.ndim == 2:
        return np.repeat(image[:, :, None], 3, axis=2)
    return np.ascontiguousarray(image).copy()


# ----------------------------------------------------------------------------
# "all"
# ----------------------------------------------------------------------------


def foreground_all(image) -> np.ndarray:
    """Foreground mask that marks every pixel (texture categories).

    Parameters
    ----------
    image : (H, W, 3) or (H, W) uint8 ndarray
        RGB or grayscale image. Only its size is used.

    Returns
    -------
    mask : (H, W) bool ndarray
        All True.

    Raises
    ------
    ValueError
        If ``image`` is not a uint8 array of shape (H, W, 3) or (H, W).
    """
    image = _check_image(image)
    return np.ones(image.shape[:2], dtype=bool)


# ----------------------------------------------------------------------------
# "threshold"
# ----------------------------------------------------------------------------


def _odd(n: float) -> int:
    n = max(1, int(round(n)))
    return n if n % 2 == 1 else n + 1


def _threshold_mask(image: np.ndarray) -> tuple[np.ndarray, dict]:
    """Core of :func:`foreground_threshold`; returns (mask or None, info)."""
    h, w = image.shape[:2]
    side = min(h, w)
    info: dict = {
        "fallback": False,
        "reason": "",
        "coverage": 1.0,
        "background": None,
        "threshold": None,
        "border_fraction": None,
    }
    ring = max(1, int(round(_BORDER_FRAC * side)))
    if 2 * ring >= side:
        info.update(fallback=True, reason="image too small for a border ring")
        return None, info

    img = image.astype(np.float32)
    if img.ndim == 2:
        img = img[:, :, None]
    sigma = max(1.0, _BLUR_FRAC * side)
    img = cv2.GaussianBlur(img, (0, 0), sigmaX=sigma, sigmaY=sigma,
                           borderType=cv2.BORDER_REFLECT)
    if img.ndim == 2:  # cv2 drops a singleton channel axis
        img = img[:, :, None]

    border = np.ones((h, w), dtype=bool)
    border[ring:-ring, ring:-ring] = False
    background = np.median(img[border], axis=0)
    info["background"] = tuple(float(v) for v in background)

    dist = np.sqrt(np.sum((img - background) ** 2, axis=2))
    dmax = float(dist.max())
    if dmax < _MIN_CONTRAST:
        info.update(fallback=True, reason="no pixel differs from the border colour")
        return None, info

    dist8 = np.round(dist * (255.0 / dmax)).astype(np.uint8)
    t, _ = cv2.threshold(dist8, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    raw = dist8 > t
    info["threshold"] = float(t) * dmax / 255.0
    border_fraction = float((2 * dist8[border].astype(np.int32) > int(t)).mean())
    info["border_fraction"] = border_fraction
    if border_fraction > _MAX_BORDER_FG:
        # The border is supposed to be plain background, far below the
        # threshold; when much of it reaches even half the threshold the image
        # has no plain background (a texture) and Otsu only splits its noise.
        info.update(
            fallback=True,
            reason=f"{border_fraction:.0%} of the border ring is above half the "
                   f"threshold (no plain background)",
        )
        return None, info

    k = _odd(_MORPH_FRAC * side)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k))
    m = raw.astype(np.uint8)
    m = cv2.morphologyEx(m, cv2.MORPH_CLOSE, kernel, borderType=cv2.BORDER_REPLICATE)
    m = cv2.morphologyEx(m, cv2.MORPH_OPEN, kernel, borderType=cv2.BORDER_REPLICATE)
    m = fill_holes(m.astype(bool))

    n, labels = cv2.connectedComponents(m.astype(np.uint8), connectivity=4)
    if n > 2:  # background + more than one component
        areas = np.bincount(labels.ravel())[1:]
        keep = np.flatnonzero(areas >= _KEEP_FRAC * areas.max()) + 1
        m = np.isin(labels, keep)

    coverage = float(m.mean())
    info["coverage"] = coverage
    if not (_MIN_COVER <= coverage <= _MAX_COVER):
        info.update(
            fallback=True,
            reason=f"separated region covers {coverage:.1%} of the image",
        )
        return None, info
    return m, info


def foreground_threshold(image, return_info: bool = False):
    """Classical foreground mask for an object on a plain background.

    No weights are needed. Steps: Gaussian blur (sigma = min(H, W)/256, at
    least 1 px); background colour = per-channel median of a border ring
    (2 % of min(H, W) wide); Euclidean colour distance of every pixel to it;
    Otsu threshold (cv2) on that distance; morphological close then open
    (elliptic element, ~1 % of min(H, W)); hole filling; keep connected
    components with at least 10 % of the largest component's area.

    When no object can be separated, the result is all True (every pixel is
    foreground) and ``info["fallback"]`` is True. This happens when the
    image is nearly uniform (colour distance < 10 everywhere), when more than
    25 % of the border ring lies above half the Otsu threshold (no plain
    background, e.g. a texture), or when the
    separated region covers less than 1 % or more than 99 % of the image.
    Deterministic; the input is not modified.

    Parameters
    ----------
    image : (H, W, 3) or (H, W) uint8 ndarray
        RGB or grayscale image.
    return_info : bool, optional
        Also return a dict describing the result.

    Returns
    -------
    mask : (H, W) bool ndarray
        True on the object (all True on fallback).
    info : dict, only if ``return_info``
        ``fallback`` (bool), ``reason`` (str, empty unless fallback),
        ``coverage`` (float in [0, 1], of the separated region before any
        fallback; 1.0 when it fell back before segmenting), ``background``
        (tuple of float, border colour, or None), ``threshold`` (float
        colour distance in 0-255 units, or None), ``border_fraction``
        (float, fraction of the border ring above half the threshold, or None).

    Raises
    ------
    ValueError
        If ``image`` is not a uint8 array of shape (H, W, 3) or (H, W).
    """
    image = _check_image(image)
    mask, info = _threshold_mask(image)
    if mask is None:
        mask = np.ones(image.shape[:2], dtype=bool)
    return (mask, info) if return_info else mask

"""CutPaste and CutPaste-scar (Li et al., CVPR 2021): a patch of the image itself, pasted elsewhere."""
from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from ..engine._checks import bbox, check_image
from ..engine.location import select_center
from ..engine.pseudo_mask import grey
from ..engine.scale import bbox_long_side
from ..engine.synthesizer import Skipped
from ._common import (
    SlotSynthesizer,
    _box_slices,
    _check_positive_int,
    _made,
    _resamples,
)


def colour_jitter(patch, rng=None, strength: float = 0.1) -> np.ndarray:
    """Random brightness, contrast, saturation and hue change, in random order (torchvision's
    ``ColorJitter(s, s, s, s)`` semantics; grey patches get brightness and contrast only).

    Parameters
    ----------
    patch : (h, w) or (h, w, 3) uint8 ndarray
        RGB or grey pixels.
    rng : None, int or numpy.random.Generator
        Source of the four factors and their order.
    strength : float
        Factors are drawn in ``[1 - strength, 1 + strength]``; the hue shift in
        ``[-strength, strength]`` of the hue circle (at most 0.5). 0 returns a copy.

    Returns
    -------
    ndarray, uint8, same shape as ``patch``

    Example
    -------
    >>> p = np.full((4, 4, 3), 100, np.uint8)
    >>> colour_jitter(p, rng=0, strength=0.0).tolist() == p.tolist()
    True
    """
    patch = check_image(patch, "patch")
    if patch.dtype != np.uint8:
        raise ValueError(f"patch must be uint8, got {patch.dtype}")
    if not 0 <= strength <= 0.5:
        raise ValueError(f"strength must be in [0, 0.5], got {strength}")
    rng = np.random.default_rng(rng)
    out = patch.copy()
    if strength == 0:
        return out
    colour = out.ndim == 3 and out.shape[2] == 3
    ops = ["brightness", "contrast"] + (["saturation", "hue"] if colour else [])
    for op in rng.permutation(ops):
        x = out.astype(np.float32)
        if op == "hue":
            hsv = cv2.cvtColor(out, cv2.COLOR_RGB2HSV)  # uint8 hue in [0, 180)
            shift = int(round(rng.uniform(-strength, strength) * 180))
            hsv[..., 0] = ((hsv[..., 0].astype(np.int32) + shift) % 180).astype(np.uint8)
            out = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
            continue
        factor = rng.uniform(1 - strength, 1 + strength)
        if op == "brightness":
            x = x * factor
        elif op == "contrast":
            mean = float(_luma(x).mean())
            x = (x - mean) * factor + mean
        else:  # saturation
            grey = _luma(x)[..., None]
            x = (x - grey) * factor + grey
        out = np.clip(np.rint(x), 0, 255).astype(np.uint8)
    return out


def _luma(x: np.ndarray) -> np.ndarray:
    return x if x.ndim == 2 else grey(x)


@dataclass
class CutPasteSynthesizer(SlotSynthesizer):
    """CutPaste (Li et al. 2021): a patch of the normal image itself, pasted somewhere else.

    ``variant="rect"``: a rectangle of area ``area_ratio`` x H x W (uniform) and aspect ratio
    (rows / cols) log-uniform in ``aspect_ratio``. ``variant="scar"``: a thin rectangle, width
    2-16 px and length 10-25 px at 256 px (scaled by ``min(H, W) / 256``), rotated by an angle
    uniform in [-45, 45) degrees. The patch is cut at a centre drawn in the foreground (so an object
    target is not patched with background), colour-jittered (``jitter``) and pasted at another
    centre drawn in the foreground; pixels outside the foreground are kept. ``mask`` =
    ``placed_mask`` = the pasted pixels (the whole rectangle when it lies in the foreground).
    An attempt that changes no pixel (a patch pasted onto identical pixels) is redrawn.

    Attributes
    ----------
    variant : {"rect", "scar"}
    per_image : int
        Pseudo anomalies per normal image.
    area_ratio : (float, float)
        Patch area as a share of the image (paper: 0.02-0.15), rect variant.
    aspect_ratio : (float, float)
        Bounds of the log-uniform aspect ratio (paper: 0.3-3.3), rect variant.
    jitter : float
        Colour-jitter strength (paper: 0.1); 0 pastes the pixels unchanged.
    max_attempts : int
        Draws per slot before it is skipped.
    threshold : int
        Grey-level threshold of the fidelity figures (as CAI's).
    """

    variant: str = "rect"
    per_image: int = 10
    area_ratio: tuple[float, float] = (0.02, 0.15)
    aspect_ratio: tuple[float, float] = (0.3, 3.3)
    jitter: float = 0.1
    max_attempts: int = 20
    threshold: int = 7

    def __post_init__(self):
        if self.variant not in ("rect", "scar"):
            raise ValueError(f"variant must be 'rect' or 'scar', got {self.variant!r}")
        _check_positive_int(self.per_image, "per_image")
        _check_positive_int(self.max_attempts, "max_attempts")
        if not 0 < self.area_ratio[0] <= self.area_ratio[1] < 1:
            raise ValueError(f"area_ratio must satisfy 0 < low <= high < 1, got {self.area_ratio}")
        if not 0 < self.aspect_ratio[0] <= self.aspect_ratio[1]:
            raise ValueError(f"aspect_ratio must satisfy 0 < low <= high, got {self.aspect_ratio}")

    @property
    def name(self) -> str:
        return "cutpaste" if self.variant == "rect" else "cutpaste-scar"

    def _patch_shape(self, H, W, rng):
        if self.variant == "rect":
            area = rng.uniform(*self.area_ratio) * H * W
            aspect = math.exp(rng.uniform(math.log(self.aspect_ratio[0]), math.log(self.aspect_ratio[1])))
            h = int(np.clip(round(math.sqrt(area * aspect)), 1, H))
            w = int(np.clip(round(math.sqrt(area / aspect)), 1, W))
            return h, w, 0.0
        s = min(H, W) / 256
        w = max(1, int(round(rng.uniform(2, 16) * s)))
        h = max(1, int(round(rng.uniform(10, 25) * s)))
        return min(h, H), min(w, W), float(rng.uniform(-45, 45))

    def _one(self, normal, foreground, normal_index, k, rng):
        H, W = foreground.shape
        resamples = _resamples()
        for attempt in range(1, self.max_attempts + 1):
            h, w, angle = self._patch_shape(H, W, rng)
            src_center = select_center(foreground, (h, w), rng)
            if src_center is None:
                resamples["location"] += 1
                continue
            patch = colour_jitter(normal[_box_slices(src_center, (h, w))], rng, self.jitter)
            shape = np.ones((h, w), bool)
            if angle:
                patch, shape = _rotate_patch(patch, angle)
            center = select_center(foreground, shape.shape, rng)
            if center is None:
                resamples["location"] += 1
                continue
            box = _box_slices(center, shape.shape)
            placed = np.zeros((H, W), bool)
            placed[box] = shape & foreground[box]
            image = normal.copy()
            image[box][placed[box]] = patch[placed[box]]
            if not placed.any() or np.array_equal(image, normal):
                resamples["empty_mask"] += 1
                continue
            r0, c0, r1, c1 = bbox(placed)
            return _made(normal, image, placed, placed.copy(), k, self.name,
                         max(r1 - r0, c1 - c0) / bbox_long_side(foreground), 1.0, center, "self", "self",
                         attempt, resamples, self.threshold)
        return Skipped(k, "max_attempts", "", resamples)


def _rotate_patch(patch, angle: float):
    """Rotate a (h, w[, 3]) patch by ``angle`` degrees on a canvas that holds it whole.

    Returns the rotated patch (bilinear, edge pixels replicated) and its (h', w') bool shape mask
    (nearest neighbour: exactly the rotated rectangle's pixels).
    """
    h, w = patch.shape[:2]
    cos, sin = abs(math.cos(math.radians(angle))), abs(math.sin(math.radians(angle)))
    nh, nw = int(math.ceil(h * cos + w * sin)), int(math.ceil(w * cos + h * sin))
    m = cv2.getRotationMatrix2D(((w - 1) / 2, (h - 1) / 2), angle, 1.0)
    m[0, 2] += (nw - w) / 2
    m[1, 2] += (nh - h) / 2
    rotated = cv2.warpAffine(patch, m, (nw, nh), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    shape = cv2.warpAffine(np.ones((h, w), np.uint8), m, (nw, nh), flags=cv2.INTER_NEAREST,
                           borderMode=cv2.BORDER_CONSTANT, borderValue=0).astype(bool)
    if not shape.any():  # a 1-px patch may fall between pixel centres
        shape[nh // 2, nw // 2] = True
    return rotated, shape

"""Baseline pseudo-anomaly synthesizers and CAI ablations behind CAI's synthesizer interface.

Every synthesizer here has a ``name`` and ``synthesize(normal, foreground, normal_index, seed,
is_grey=False)`` returning one :class:`~cai.synthesizer.PseudoAnomaly` or
:class:`~cai.synthesizer.Skipped` per slot ``k``, with the randomness of slot ``k`` of normal image
``i`` drawn from ``np.random.default_rng([seed, i, k])`` only, so results do not depend on
sharding, worker count or call order. Images come back (H, W, 3) uint8, or (H, W) uint8 for grey
targets; ``mask`` and ``placed_mask`` are (H, W) bool.

Baselines (each changes pixels inside the foreground only):

* :class:`CutPasteSynthesizer` — CutPaste and CutPaste-scar (Li et al., CVPR 2021): a rectangle
  (or a thin rotated scar) cut from the same image, colour-jittered, pasted elsewhere; the mask is
  the pasted patch.
* :class:`NSASynthesizer` — Natural Synthetic Anomalies, Normal and Mixed (Schlüter et al., ECCV
  2022): a patch of *another* normal image of the same target, resized and Poisson-blended; the
  mask is the thresholded, median-cleaned difference.
* :class:`DRAEMSynthesizer` — DRAEM-style (Zavrtanik et al., ICCV 2021): a thresholded, rotated
  Perlin-noise mask filled with an augmented texture image, blended with opacity in [0.2, 1].

CAI ablations (paper Tables 3 and 4) are :class:`~cai.synthesizer.CAISynthesizer` with another
:class:`~cai.config.CAIConfig` or :class:`CAIVariant` (no scale matching, no injection location
selection, other scale mixes). :func:`make_synthesizer` builds any of them by name
(:data:`SYNTHESIZERS`).

References
----------
.. [1] C.-L. Li, K. Sohn, J. Yoon, T. Pfister, "CutPaste: Self-Supervised Learning for Anomaly
   Detection and Localization", CVPR 2021.
.. [2] H. M. Schlüter, J. Tan, B. Hou, B. Kainz, "Natural Synthetic Anomalies for Self-Supervised
   Anomaly Detection and Localization", ECCV 2022.
.. [3] V. Zavrtanik, M. Kristan, D. Skočaj, "DRAEM — A discriminatively trained reconstruction
   embedding for surface anomaly detection", ICCV 2021.
.. [4] K. Perlin, "Improving noise", SIGGRAPH 2002 (the quintic fade).
"""
from __future__ import annotations

import dataclasses
import functools
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import cv2
import numpy as np

from ._checks import as_bool_mask, bbox, check_image
from .config import CAIConfig
from .inject import match_colour_mode
from .location import select_center
from .poisson import poisson_blend
from .pseudo_mask import mask_fidelity
from .scale import bbox_long_side, scale_type
from .synthesizer import CAISynthesizer, PatternBank, PseudoAnomaly, Skipped
from .targets import DEFAULT_SAMPLE

__all__ = [
    "SYNTHESIZERS", "DEFAULT_TEXTURE_DIR", "CAIVariant", "CutPasteSynthesizer", "NSASynthesizer",
    "DRAEMSynthesizer", "TextureSet", "texture_set", "make_synthesizer", "perlin_noise", "perlin_mask",
    "augment_texture", "blend_texture", "colour_jitter", "nsa_blend",
]

#: Every name :func:`make_synthesizer` accepts.
SYNTHESIZERS = (
    "cai-n", "cai-m", "cai-paste", "cai-r", "cai-mix", "cai-nmr", "cai-rp", "cai-no-stm", "cai-no-ils", "cai-622", "cai-262", "cai-226", "cai-433",
    "cutpaste", "cutpaste-scar", "nsa-n", "nsa-m", "draem", "glass-las",
)
#: Textures DRAEM uses by default: the embedded sample's anomaly photographs (cracks, stains).
DEFAULT_TEXTURE_DIR = DEFAULT_SAMPLE / "anomalies" / "images"
_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
_CAI_MODES = {"cai-n": "normal", "cai-m": "mixed", "cai-paste": "paste", "cai-r": "relative",
              "cai-mix": "normal+mixed+paste", "cai-nmr": "normal+mixed+relative", "cai-rp": "relative+paste"}
# Modifiers appended to a CAI name with "+" (e.g. "cai-r+refine+aug"), each a CAIConfig setting.
CAI_MODIFIERS = {"refine": {"refine_mask": True}, "noborder": {"border": "exclude"}, "aug": {"augment": True},
                 "chmask": {"mask_rule": "channel"}, "luma": {"mask_rule": "luma"},
                 "gain2": {"gain": (1.0, 2.0)}, "gain3": {"gain": (1.0, 3.0)}, "x2": {"gain": (2.0, 2.0)}}
_CAI_MIXES = {"cai-622": (6, 2, 2), "cai-262": (2, 6, 2), "cai-226": (2, 2, 6), "cai-433": (4, 3, 3)}


# --------------------------------------------------------------------------------------------
# Shared helpers
# --------------------------------------------------------------------------------------------
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


def _run_slots(one, normal, foreground, normal_index, seed, per_image):
    """``one(k, rng)`` for every slot, or ``Skipped(k, "empty_foreground")`` for all of them."""
    if not foreground.any():
        return [Skipped(k, "empty_foreground") for k in range(per_image)]
    return [one(k, _slot_rng(seed, normal_index, k)) for k in range(per_image)]


# --------------------------------------------------------------------------------------------
# CutPaste
# --------------------------------------------------------------------------------------------
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
    return x if x.ndim == 2 else x @ np.array([0.299, 0.587, 0.114], np.float32)


@dataclass
class CutPasteSynthesizer:
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

    def synthesize(self, normal, foreground, normal_index: int, seed: int, is_grey: bool = False):
        """``per_image`` pseudo anomalies of one normal image (see the class docstring).

        Parameters
        ----------
        normal : (H, W, 3) or (H, W) uint8 ndarray
        foreground : (H, W) bool ndarray
        normal_index, seed : int
            Slot k draws from ``np.random.default_rng([seed, normal_index, k])``.
        is_grey : bool
            Grey target: channel 0 is used and images come back (H, W).

        Returns
        -------
        list of PseudoAnomaly or Skipped, length ``per_image``
        """
        normal, foreground = _prepare(normal, foreground, is_grey)
        return _run_slots(lambda k, rng: self._one(normal, foreground, k, rng), normal, foreground,
                          normal_index, seed, self.per_image)

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

    def _one(self, normal, foreground, k, rng):
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


# --------------------------------------------------------------------------------------------
# NSA
# --------------------------------------------------------------------------------------------
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
class NSASynthesizer:
    """Natural Synthetic Anomalies (Schlüter et al. 2022), Normal or Mixed gradient Poisson blending.

    Per slot: another normal image ``j != normal_index`` of the same target is drawn; a rectangle
    with half-sides uniform in ``half_width`` x the image sides is cut from it at a centre drawn in
    the *target's* foreground (normals of one target are roughly aligned; source foregrounds are
    not available), resized by ``clip(N(1, 0.5), *resize_bounds)`` and Poisson-blended
    (:func:`cai.poisson.poisson_blend`, ``mode``) at another centre in the foreground, the region
    being the patch rectangle less its 1-pixel rim, within the foreground. The mask is NSA's binary
    label: channel-maximum ``|blended - normal| > threshold``, median-filtered (``median_ksize``),
    within the region; specks under ``min_component`` pixels are dropped. An empty mask is redrawn.
    One patch per pseudo anomaly (NSA may paste several).

    Attributes
    ----------
    normals : sequence of (H, W[, 3]) uint8 ndarray, or callable i -> ndarray
        The target's normal images, indexed like the ``normal_index`` passed to :meth:`synthesize`
        (so that the image itself is excluded). A source of another size is resized to the target's.
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

    def synthesize(self, normal, foreground, normal_index: int, seed: int, is_grey: bool = False):
        """``per_image`` pseudo anomalies of normal image ``normal_index`` (see the class docstring).

        Parameters
        ----------
        normal : (H, W, 3) or (H, W) uint8 ndarray
        foreground : (H, W) bool ndarray
        normal_index, seed : int
            Slot k draws from ``np.random.default_rng([seed, normal_index, k])``.
        is_grey : bool
            Grey target: channel 0 is used, sources are made grey, images come back (H, W).

        Returns
        -------
        list of PseudoAnomaly or Skipped, length ``per_image``
        """
        normal, foreground = _prepare(normal, foreground, is_grey)
        return _run_slots(lambda k, rng: self._one(normal, foreground, normal_index, k, rng), normal, foreground,
                          normal_index, seed, self.per_image)

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
        Guidance field of :func:`cai.poisson.poisson_blend`.

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


# --------------------------------------------------------------------------------------------
# DRAEM
# --------------------------------------------------------------------------------------------
def _fade(t: np.ndarray) -> np.ndarray:
    """Perlin's quintic 6 t^5 - 15 t^4 + 10 t^3 (zero first and second derivatives at 0 and 1)."""
    return t * t * t * (t * (t * 6 - 15) + 10)


def perlin_noise(shape, scales, rng=None) -> np.ndarray:
    """2-D gradient (Perlin) noise with ``scales`` lattice cells along rows and columns.

    Random unit gradients sit on an (sr + 1, sc + 1) lattice spanning the image; pixel (r, c) lies
    at lattice coordinate ``(r * sr / H, c * sc / W)``, takes the dot products of the four corner
    gradients with its offsets to them and blends them with the quintic fade. The result is scaled
    by sqrt(2) (as DRAEM's generator) so that it lies in [-1, 1]; it is 0 on lattice points.

    Parameters
    ----------
    shape : (int, int)
        (H, W) of the output.
    scales : (int, int)
        Lattice cells (sr, sc) along rows and columns, each >= 1 (DRAEM: powers of 2).
    rng : None, int or numpy.random.Generator
        Source of the gradient angles.

    Returns
    -------
    (H, W) float64 ndarray, values in [-1, 1]

    Example
    -------
    >>> n = perlin_noise((8, 8), (2, 2), rng=0)
    >>> n.shape, float(n[0, 0]), float(n[4, 4]), bool(np.abs(n).max() <= 1)
    ((8, 8), 0.0, 0.0, True)
    """
    H, W = (int(v) for v in shape)
    sr, sc = (int(v) for v in scales)
    if H < 1 or W < 1:
        raise ValueError(f"shape must be positive, got {shape}")
    if sr < 1 or sc < 1:
        raise ValueError(f"scales must be positive integers, got {scales}")
    angles = np.random.default_rng(rng).uniform(0, 2 * np.pi, (sr + 1, sc + 1))
    g_row, g_col = np.sin(angles), np.cos(angles)  # gradient components along rows and columns
    tr, tc = np.arange(H) * sr / H, np.arange(W) * sc / W
    ir, ic = np.floor(tr).astype(np.int64), np.floor(tc).astype(np.int64)
    fr, fc = (tr - ir)[:, None], (tc - ic)[None, :]
    ir, ic = ir[:, None], ic[None, :]

    def corner(dr, dc):  # gradient of corner (ir + dr, ic + dc) dotted with the offset to it
        return g_row[ir + dr, ic + dc] * (fr - dr) + g_col[ir + dr, ic + dc] * (fc - dc)

    u, v = _fade(fr), _fade(fc)
    top = corner(0, 0) * (1 - v) + corner(0, 1) * v
    bottom = corner(1, 0) * (1 - v) + corner(1, 1) * v
    return np.sqrt(2) * (top * (1 - u) + bottom * u)


def perlin_mask(shape, rng=None, threshold: float = 0.5, max_exponent: int = 6, rotate: bool = True):
    """DRAEM's anomaly shape: Perlin noise with random scales, optionally rotated, thresholded.

    Scales are ``2 ** e`` with ``e`` drawn independently for rows and columns from
    ``0 .. max_exponent - 1`` (DRAEM: 0-5, i.e. 1-32 cells). The rotation angle is uniform in
    [-90, 90) degrees about the image centre; corners the rotated noise does not cover are 0.

    Parameters
    ----------
    shape : (int, int)
        (H, W).
    rng : None, int or numpy.random.Generator
    threshold : float
        Pixels whose noise exceeds it are in the mask (DRAEM: 0.5).
    max_exponent : int
        Exclusive upper bound of the scale exponent (>= 1).
    rotate : bool

    Returns
    -------
    (H, W) bool ndarray, possibly empty

    Example
    -------
    >>> m = perlin_mask((32, 32), rng=1)
    >>> m.shape, m.dtype
    ((32, 32), dtype('bool'))
    """
    if max_exponent < 1:
        raise ValueError(f"max_exponent must be >= 1, got {max_exponent}")
    rng = np.random.default_rng(rng)
    H, W = (int(v) for v in shape)
    scales = (2 ** int(rng.integers(max_exponent)), 2 ** int(rng.integers(max_exponent)))
    noise = perlin_noise((H, W), scales, rng).astype(np.float32)
    if rotate:
        m = cv2.getRotationMatrix2D(((W - 1) / 2, (H - 1) / 2), float(rng.uniform(-90, 90)), 1.0)
        noise = cv2.warpAffine(noise, m, (W, H), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                               borderValue=0)
    return noise > threshold


def _gamma(x, rng, colour):
    gamma = rng.uniform(0.5, 2.0, 3 if colour else 1)
    return 255.0 * (x / 255.0) ** gamma


def _brightness(x, rng, colour):
    return x * rng.uniform(0.8, 1.2) + rng.uniform(-30, 30)


def _sharpness(x, rng, colour):
    blurred = cv2.GaussianBlur(x, (3, 3), 0)
    return blurred + rng.uniform(0.1, 2.0) * (x - blurred)


def _hue_saturation(x, rng, colour):
    if not colour:
        return x
    hsv = cv2.cvtColor(np.clip(np.rint(x), 0, 255).astype(np.uint8), cv2.COLOR_RGB2HSV).astype(np.float32)
    hsv[..., 0] = np.mod(hsv[..., 0] + rng.uniform(-50, 50) * 180 / 255, 180)
    hsv[..., 1] = np.clip(hsv[..., 1] + rng.uniform(-50, 50), 0, 255)
    return cv2.cvtColor(hsv.astype(np.uint8), cv2.COLOR_HSV2RGB).astype(np.float32)


def _solarize(x, rng, colour):
    return np.where(x >= rng.uniform(32, 128), 255.0 - x, x)


def _posterize(x, rng, colour):
    bits = int(rng.integers(1, 8))
    step = 2 ** (8 - bits)
    return np.floor(np.clip(x, 0, 255) / step) * step


def _invert(x, rng, colour):
    return 255.0 - x


def _autocontrast(x, rng, colour):
    axes = (0, 1)
    lo, hi = x.min(axis=axes, keepdims=True), x.max(axis=axes, keepdims=True)
    return np.where(hi > lo, (x - lo) * 255.0 / np.maximum(hi - lo, 1e-6), x)


def _equalize(x, rng, colour):
    u8 = np.clip(np.rint(x), 0, 255).astype(np.uint8)
    if u8.ndim == 2:
        return cv2.equalizeHist(u8).astype(np.float32)
    return np.stack([cv2.equalizeHist(np.ascontiguousarray(u8[..., c])) for c in range(3)], axis=2).astype(np.float32)


def _rotate(x, rng, colour):
    H, W = x.shape[:2]
    m = cv2.getRotationMatrix2D(((W - 1) / 2, (H - 1) / 2), float(rng.uniform(-45, 45)), 1.0)
    return cv2.warpAffine(x, m, (W, H), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)


#: DRAEM's texture augmenters (imgaug in the original), re-implemented with numpy and cv2.
_AUGMENTERS = {
    "gamma": _gamma, "brightness": _brightness, "sharpness": _sharpness, "hue_saturation": _hue_saturation,
    "solarize": _solarize, "posterize": _posterize, "invert": _invert, "autocontrast": _autocontrast,
    "equalize": _equalize, "rotate": _rotate,
}


def augment_texture(texture, rng=None, n_ops: int = 3) -> tuple[np.ndarray, tuple[str, ...]]:
    """``n_ops`` distinct DRAEM augmenters, drawn at random and applied in the drawn order.

    The augmenters: per-channel gamma contrast (0.5-2), brightness (x 0.8-1.2, + -30..30), sharpness,
    hue and saturation shift (colour only), solarize (threshold 32-128), posterize (1-7 bits),
    invert, autocontrast, equalize and rotation (-45..45 degrees, black corners).

    Parameters
    ----------
    texture : (h, w) or (h, w, 3) uint8 ndarray
    rng : None, int or numpy.random.Generator
    n_ops : int
        Number of augmenters (DRAEM: 3), 0 to 10.

    Returns
    -------
    texture : ndarray, uint8, same shape as the input
    ops : tuple of str
        Names of the augmenters applied, in order.

    Example
    -------
    >>> t = np.arange(48, dtype=np.uint8).reshape(4, 4, 3)
    >>> out, ops = augment_texture(t, rng=0)
    >>> out.shape, out.dtype, len(ops)
    ((4, 4, 3), dtype('uint8'), 3)
    """
    texture = check_image(texture, "texture")
    if texture.dtype != np.uint8:
        raise ValueError(f"texture must be uint8, got {texture.dtype}")
    if not 0 <= n_ops <= len(_AUGMENTERS):
        raise ValueError(f"n_ops must be in [0, {len(_AUGMENTERS)}], got {n_ops}")
    rng = np.random.default_rng(rng)
    if texture.ndim == 3 and texture.shape[2] == 1:
        texture = texture[..., 0]
    colour = texture.ndim == 3
    names = list(_AUGMENTERS)
    ops = tuple(names[i] for i in rng.choice(len(names), n_ops, replace=False))
    x = texture.astype(np.float32)
    for op in ops:
        x = np.clip(_AUGMENTERS[op](x, rng, colour), 0, 255).astype(np.float32)
    return np.rint(x).astype(np.uint8), ops


def blend_texture(image, texture, mask, opacity: float) -> np.ndarray:
    """``(1 - opacity) * image + opacity * texture`` inside ``mask``, ``image`` outside.

    DRAEM writes this as ``beta * image + (1 - beta) * texture`` with ``beta = 1 - opacity``.

    Parameters
    ----------
    image, texture : (H, W) or (H, W, 3) uint8 ndarray, same shape
    mask : (H, W) bool ndarray
    opacity : float in [0, 1]
        0 leaves the image unchanged, 1 puts the texture in unchanged.

    Returns
    -------
    ndarray, uint8, shape of ``image`` (rounded)

    Example
    -------
    >>> img = np.zeros((2, 2), np.uint8); tex = np.full((2, 2), 200, np.uint8)
    >>> blend_texture(img, tex, np.eye(2, dtype=bool), 0.5).tolist()
    [[100, 0], [0, 100]]
    """
    image = check_image(image, "image")
    texture = check_image(texture, "texture")
    mask = as_bool_mask(mask, "mask")
    if texture.shape != image.shape:
        raise ValueError(f"texture shape {texture.shape} differs from image shape {image.shape}")
    if mask.shape != image.shape[:2]:
        raise ValueError(f"mask shape {mask.shape} differs from image shape {image.shape[:2]}")
    if not 0 <= opacity <= 1:
        raise ValueError(f"opacity must be in [0, 1], got {opacity}")
    out = image.copy()
    mixed = (1 - opacity) * image[mask].astype(np.float64) + opacity * texture[mask].astype(np.float64)
    out[mask] = np.clip(np.rint(mixed), 0, 255).astype(image.dtype)
    return out


@dataclass
class TextureSet:
    """Anomaly-source textures for DRAEM: ``ids[i]`` names texture i, ``load(i)`` returns it as an
    (h, w, 3) or (h, w) uint8 ndarray."""

    ids: Sequence[str]
    load: Callable[[int], np.ndarray]

    def __post_init__(self):
        if len(self.ids) == 0:
            raise ValueError("TextureSet is empty: DRAEM needs at least one texture image")

    @classmethod
    def from_arrays(cls, arrays: Sequence[np.ndarray], ids: Sequence[str] | None = None) -> "TextureSet":
        arrays = list(arrays)
        return cls(ids=list(ids) if ids is not None else [f"array:{i}" for i in range(len(arrays))],
                   load=arrays.__getitem__)


def texture_set(texture_dir=None, include_default: bool = True, cache_size: int = 64) -> TextureSet:
    """The texture images DRAEM blends in: the embedded default ones and/or those under folder(s).

    DTD (DRAEM's texture set) is not shipped; by default the embedded sample's 18 anomaly
    photographs (:data:`DEFAULT_TEXTURE_DIR`, cracks and stains) are used. Images under
    ``texture_dir`` (recursively; png, jpg, jpeg, bmp, tif, tiff, webp) are added to them, in sorted
    order. Files are listed here and decoded on first use (RGB, 8 bit), keeping the latest
    ``cache_size``.

    Parameters
    ----------
    texture_dir : None, str, Path or sequence of them
    include_default : bool
        Include the embedded textures (set False to use only ``texture_dir``, e.g. DTD).

    Returns
    -------
    TextureSet
        Ids ``"<folder name>/<path relative to it>"``, e.g. ``"images/crack_01.png"``.
    """
    folders = []
    if include_default:
        folders.append(Path(DEFAULT_TEXTURE_DIR))
    if texture_dir is not None:
        extra = [texture_dir] if isinstance(texture_dir, (str, Path)) else list(texture_dir)
        for folder in map(Path, extra):
            if not folder.is_dir():
                raise ValueError(f"texture_dir {folder} is not a folder")
            folders.append(folder)
    paths, ids = [], []
    for folder in folders:
        files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in _IMAGE_SUFFIXES)
        paths += files
        ids += [f"{folder.name}/{p.relative_to(folder).as_posix()}" for p in files]
    if not paths:
        raise ValueError(f"no texture image (extensions {_IMAGE_SUFFIXES}) under {[str(f) for f in folders]}")

    @functools.lru_cache(maxsize=cache_size)
    def load(i: int) -> np.ndarray:
        from .imageio import load_rgb
        return load_rgb(str(paths[i]))[0]

    return TextureSet(ids=ids, load=load)


@dataclass
class DRAEMSynthesizer:
    """DRAEM-style pseudo anomalies (Zavrtanik et al. 2021).

    Per slot: a :func:`perlin_mask` (scales 2^0-2^5 per axis, rotated, noise > 0.5) within the
    foreground (redrawn while empty), a texture drawn uniformly from ``textures``, resized to the
    image, in the target's colour mode, augmented by :func:`augment_texture` (3 augmenters), and
    blended by :func:`blend_texture` with ``opacity = 1 - beta``, ``beta`` uniform in
    [0, ``beta_max``) (DRAEM's code: the normal image keeps weight ``beta``, so the texture's weight
    is in (0.2, 1]). ``mask`` = ``placed_mask`` = the Perlin mask in the foreground. DRAEM's 50 %
    of untouched training images is the training loop's business, not done here.

    Attributes
    ----------
    textures : TextureSet or sequence of (h, w[, 3]) uint8 ndarray
        Default: :func:`texture_set` () — the embedded sample's anomaly photographs.
    per_image, max_attempts : int
    threshold : float
        Perlin threshold (DRAEM: 0.5).
    max_exponent : int
        Scale exponents are drawn from 0 .. max_exponent - 1 (DRAEM: 6).
    beta_max : float
        Upper end of beta (DRAEM: 0.8).
    n_ops : int
        Texture augmenters per anomaly (DRAEM: 3).
    fidelity_threshold : int
        Grey-level threshold of the fidelity figures (as CAI's).
    """

    textures: TextureSet | Sequence[np.ndarray] = field(default_factory=texture_set)
    per_image: int = 10
    threshold: float = 0.5
    max_exponent: int = 6
    rotate: bool = True
    beta_max: float = 0.8
    n_ops: int = 3
    max_attempts: int = 20
    fidelity_threshold: int = 7

    def __post_init__(self):
        if not isinstance(self.textures, TextureSet):
            self.textures = TextureSet.from_arrays(self.textures)
        _check_positive_int(self.per_image, "per_image")
        _check_positive_int(self.max_attempts, "max_attempts")
        if not 0 <= self.beta_max <= 1:
            raise ValueError(f"beta_max must be in [0, 1], got {self.beta_max}")

    name = "draem"

    def synthesize(self, normal, foreground, normal_index: int, seed: int, is_grey: bool = False):
        """``per_image`` pseudo anomalies of one normal image (see the class docstring).

        Parameters
        ----------
        normal : (H, W, 3) or (H, W) uint8 ndarray
        foreground : (H, W) bool ndarray
        normal_index, seed : int
            Slot k draws from ``np.random.default_rng([seed, normal_index, k])``.
        is_grey : bool
            Grey target: channel 0 is used, textures are made grey, images come back (H, W).

        Returns
        -------
        list of PseudoAnomaly or Skipped, length ``per_image``
        """
        normal, foreground = _prepare(normal, foreground, is_grey)
        return _run_slots(lambda k, rng: self._one(normal, foreground, k, rng), normal, foreground,
                          normal_index, seed, self.per_image)

    def _one(self, normal, foreground, k, rng):
        H, W = foreground.shape
        resamples = _resamples()
        for attempt in range(1, self.max_attempts + 1):
            mask = perlin_mask((H, W), rng, self.threshold, self.max_exponent, self.rotate) & foreground
            if not mask.any():
                resamples["empty_mask"] += 1
                continue
            t = int(rng.integers(len(self.textures.ids)))
            texture = match_colour_mode(check_image(self.textures.load(t), "texture"), normal.ndim == 2)
            if texture.shape[:2] != (H, W):
                texture = cv2.resize(texture, (W, H), interpolation=cv2.INTER_AREA
                                     if texture.shape[0] * texture.shape[1] > H * W else cv2.INTER_LINEAR)
            texture, _ = augment_texture(texture, rng, self.n_ops)
            opacity = 1.0 - float(rng.uniform(0, self.beta_max))
            image = blend_texture(normal, texture, mask, opacity)
            r0, c0, r1, c1 = bbox(mask)
            return _made(normal, image, mask, mask.copy(), k, "draem", 0.0, 0.0, ((r0 + r1 - 1) // 2, (c0 + c1 - 1) // 2),
                         f"texture:{self.textures.ids[t]}", "texture", attempt, resamples, self.fidelity_threshold)
        return Skipped(k, "max_attempts", "", resamples)


# --------------------------------------------------------------------------------------------
# CAI ablations
# --------------------------------------------------------------------------------------------
@dataclass
class CAIVariant(CAISynthesizer):
    """CAI with a part switched off (paper Tables 3/4), under its own ``name``.

    Attributes
    ----------
    variant : str
        The name reported (e.g. ``"cai-622"``).
    scale_matching : bool
        False (``cai-no-stm``): every slot draws a pattern uniformly from the whole bank and keeps
        its own size (resize ratio 1), shrunk only as far as needed for its defect's bounding box
        (plus the Poisson margin) to fit inside the image; quotas are ignored and each result's
        ``scale`` is the scale type of the ratio it got (``"trivial"`` included), ``""`` when skipped.
    location : {"foreground", "anywhere"}
        ``"anywhere"`` (``cai-no-ils``): the centre is drawn over the whole image and neither the
        injection nor the pseudo mask is limited to the foreground (scale matching still measures
        against the foreground). Same as CAI on texture targets whose foreground is the image.
    """

    variant: str = "cai-n"
    scale_matching: bool = True
    location: str = "foreground"

    def __post_init__(self):
        super().__post_init__()
        if self.location not in ("foreground", "anywhere"):
            raise ValueError(f"location must be 'foreground' or 'anywhere', got {self.location!r}")

    @property
    def name(self) -> str:
        return self.variant

    def synthesize(self, normal, foreground, normal_index: int, seed: int, is_grey: bool = False):
        results = super().synthesize(normal, foreground, normal_index, seed, is_grey)
        if self.scale_matching:
            return results
        return [dataclasses.replace(r, scale=scale_type(r.str_ratio, self.config) if isinstance(r, PseudoAnomaly)
                                    else "") for r in results]

    def _placement_area(self, foreground):
        if self.location == "anywhere":
            return np.ones(np.shape(foreground), bool)
        return foreground

    def _choose(self, ratios, scale, rng, image_shape):
        if self.scale_matching:
            return super()._choose(ratios, scale, rng, image_shape)
        index = int(rng.integers(len(ratios)))
        margin = self.config.region_dilation + 1
        room = max(1.0, min(image_shape) - 2 * margin - 2)  # -2: slack for the resize's rounding
        resize = min(1.0, room / float(self.bank.long_sides[index]))
        return index, float(ratios[index]) * resize, resize


def _scaled_quota(quota, n: int) -> tuple[int, int, int]:
    """``quota`` proportions over ``n`` slots (largest remainder, ties to the larger scale)."""
    total = sum(quota)
    if total == n:
        return tuple(int(q) for q in quota)
    if total == 0:
        raise ValueError("quota sums to 0")
    exact = [q * n / total for q in quota]
    out = [int(math.floor(e)) for e in exact]
    for i in sorted(range(3), key=lambda i: (-(exact[i] - out[i]), i))[: n - sum(out)]:
        out[i] += 1
    return tuple(out)


def _normals_arg(normals):
    if isinstance(normals, tuple) and len(normals) == 2 and callable(normals[0]):
        return {"normals": normals[0], "count": int(normals[1])}
    if callable(normals):
        raise ValueError("normals given as a callable needs its count: pass (load, count)")
    return {"normals": normals}


def make_synthesizer(name: str, *, bank: PatternBank | None = None, normals=None, texture_dir=None,
                     config: CAIConfig | None = None, per_image: int = 10):
    """Build a synthesizer by name.

    Parameters
    ----------
    name : str
        One of :data:`SYNTHESIZERS`: ``cai-n``, ``cai-m``, ``cai-paste`` (CAI with Normal / Mixed
        Poisson or plain paste), ``cai-no-stm`` (no scale matching), ``cai-no-ils`` (no injection
        location selection), ``cai-622``, ``cai-262``, ``cai-226``, ``cai-433`` (large/medium/small
        quota mixes), ``cutpaste``, ``cutpaste-scar``, ``nsa-n``, ``nsa-m`` (NSA Normal / Mixed),
        ``draem``.
    bank : PatternBank
        Required by the ``cai-*`` synthesizers.
    normals : sequence of (H, W[, 3]) uint8 ndarray, or (callable i -> ndarray, count)
        The target's normal images, indexed like ``normal_index``; required by ``nsa-*`` (>= 2).
    texture_dir : None, str, Path or sequence of them
        Extra texture folders for ``draem`` (added to the embedded default textures, see
        :func:`texture_set`).
    config : CAIConfig, optional
        CAI settings (default ``CAIConfig()``); ``cai-n/m/paste`` override its ``mode``, the mixes
        its ``quota``. The baselines take ``threshold`` (label and fidelity threshold; NSA's label)
        and ``max_attempts`` from it when given.
    per_image : int
        Results per normal image. For CAI the quota's proportions are spread over ``per_image``
        slots (largest remainder, ties to the larger scale): 4/3/3 and 6/2/2 etc. exactly at 10.

    Returns
    -------
    Synthesizer
        With ``synthesizer.name == name``.

    Raises
    ------
    ValueError
        Unknown name, or an input the synthesizer needs is missing or unusable.
    """
    full_name = name
    name, *modifiers = name.split("+")
    if name not in SYNTHESIZERS:
        raise ValueError(f"unknown synthesizer {name!r}; choose one of {', '.join(SYNTHESIZERS)}")
    if modifiers and not name.startswith("cai-"):
        raise ValueError(f"modifiers ({'+'.join(modifiers)}) apply to cai-* synthesizers only, not {name!r}")
    unknown = [m for m in modifiers if m not in CAI_MODIFIERS]
    if unknown:
        raise ValueError(f"unknown modifier(s) {unknown} in {full_name!r}; choose from {', '.join(CAI_MODIFIERS)}")
    per_image = _check_positive_int(per_image, "per_image")
    given = config is not None
    config = config if given else CAIConfig()
    for m in modifiers:
        config = dataclasses.replace(config, **CAI_MODIFIERS[m])
    if name.startswith("cai-"):
        if bank is None:
            raise ValueError(f"{name} needs a PatternBank (bank=...) of anomaly patterns")
        quota = _scaled_quota(_CAI_MIXES.get(name, config.quota), per_image)
        if name in _CAI_MODES:
            config = dataclasses.replace(config, mode=_CAI_MODES[name], quota=quota)
            if not modifiers and name in ("cai-n", "cai-m", "cai-paste"):
                return CAISynthesizer(bank, config)
            return CAIVariant(bank, config, variant=full_name)
        return CAIVariant(bank, dataclasses.replace(config, quota=quota), variant=full_name,
                          scale_matching=name != "cai-no-stm",
                          location="anywhere" if name == "cai-no-ils" else "foreground")
    extra = {"max_attempts": config.max_attempts} if given else {}
    if name.startswith("cutpaste"):
        if given:
            extra["threshold"] = config.threshold
        return CutPasteSynthesizer(variant="rect" if name == "cutpaste" else "scar", per_image=per_image, **extra)
    if name.startswith("nsa"):
        if normals is None:
            raise ValueError(f"{name} needs the target's normal images (normals=[...] or (load, count))")
        if given:
            extra["threshold"] = config.threshold
        return NSASynthesizer(**_normals_arg(normals), mode="normal" if name == "nsa-n" else "mixed",
                              per_image=per_image, **extra)
    if given:
        extra["fidelity_threshold"] = config.threshold
    if name == "glass-las":
        from .glass import GLASSSynthesizer
        return GLASSSynthesizer(texture_set(texture_dir), per_image=per_image, **extra)
    return DRAEMSynthesizer(texture_set(texture_dir), per_image=per_image, **extra)

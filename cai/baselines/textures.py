"""Texture images for DRAEM and GLASS: the texture set, DRAEM's augmenters and the opacity blend."""
from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import cv2
import numpy as np

from ..engine._checks import as_bool_mask, bbox, check_image
from ..engine.inject import match_colour_mode
from ..engine.synthesizer import Skipped
from ..imageio import IMAGE_EXTENSIONS, list_images
from ..targets import DEFAULT_SAMPLE
from ._common import SlotSynthesizer, _check_positive_int, _made, _resamples

#: Textures DRAEM uses by default: the embedded sample's anomaly photographs (cracks, stains).
DEFAULT_TEXTURE_DIR = DEFAULT_SAMPLE / "anomalies" / "images"


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


def augment_texture(texture, rng=None, n_ops: int = 3, augmenters=None) -> tuple[np.ndarray, tuple[str, ...]]:
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
    augmenters = _AUGMENTERS if augmenters is None else augmenters
    if not 0 <= n_ops <= len(augmenters):
        raise ValueError(f"n_ops must be in [0, {len(augmenters)}], got {n_ops}")
    rng = np.random.default_rng(rng)
    if texture.ndim == 3 and texture.shape[2] == 1:
        texture = texture[..., 0]
    colour = texture.ndim == 3
    names = list(augmenters)
    ops = tuple(names[i] for i in rng.choice(len(names), n_ops, replace=False))
    x = texture.astype(np.float32)
    for op in ops:
        x = np.clip(augmenters[op](x, rng, colour), 0, 255).astype(np.float32)
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
        files = list_images(folder, recursive=True)
        paths += files
        ids += [f"{folder.name}/{p.relative_to(folder).as_posix()}" for p in files]
    if not paths:
        raise ValueError(f"no texture image (extensions {IMAGE_EXTENSIONS}) under {[str(f) for f in folders]}")

    @functools.lru_cache(maxsize=cache_size)
    def load(i: int) -> np.ndarray:
        from ..imageio import load_rgb
        return load_rgb(str(paths[i]))[0]

    return TextureSet(ids=ids, load=load)


def fit_texture(texture, normal) -> np.ndarray:
    """``texture`` ((h, w[, 3]) uint8) in the colour mode and at the (H, W) size of ``normal``
    (INTER_AREA when shrinking, else INTER_LINEAR): (H, W[, 3]) uint8."""
    H, W = normal.shape[:2]
    texture = match_colour_mode(check_image(texture, "texture"), normal.ndim == 2)
    if texture.shape[:2] != (H, W):
        texture = cv2.resize(texture, (W, H), interpolation=cv2.INTER_AREA
                             if texture.shape[0] * texture.shape[1] > H * W else cv2.INTER_LINEAR)
    return texture


class TextureSlotSynthesizer(SlotSynthesizer):
    """The slot of the texture baselines (DRAEM, GLASS-LAS), drawing from ``rng`` in this order:
    ``_mask(foreground, rng)`` -> (H, W) bool mask in the foreground (redrawn while empty); a texture
    index uniform over ``self.textures``, the texture fitted to the image (:func:`fit_texture`);
    ``_augment(texture, rng)`` -> (H, W[, 3]) uint8; ``_blend(normal, texture, mask, rng)`` -> the
    (H, W[, 3]) uint8 image. ``mask`` = ``placed_mask``; ``center`` is the mask's bbox centre.

    Subclasses are dataclasses with ``textures``, ``per_image``, ``max_attempts`` and
    ``fidelity_threshold`` fields and an ``anomaly_class`` name.
    """

    def __post_init__(self):
        if not isinstance(self.textures, TextureSet):
            self.textures = TextureSet.from_arrays(self.textures)
        _check_positive_int(self.per_image, "per_image")
        _check_positive_int(self.max_attempts, "max_attempts")

    def _one(self, normal, foreground, normal_index, k, rng):
        resamples = _resamples()
        for attempt in range(1, self.max_attempts + 1):
            mask = self._mask(foreground, rng)
            if not mask.any():
                resamples["empty_mask"] += 1
                continue
            t = int(rng.integers(len(self.textures.ids)))
            texture = self._augment(fit_texture(self.textures.load(t), normal), rng)
            image = self._blend(normal, texture, mask, rng)
            r0, c0, r1, c1 = bbox(mask)
            return _made(normal, image, mask, mask.copy(), k, self.anomaly_class, 0.0, 0.0,
                         ((r0 + r1 - 1) // 2, (c0 + c1 - 1) // 2), f"texture:{self.textures.ids[t]}", "texture",
                         attempt, resamples, self.fidelity_threshold)
        return Skipped(k, "max_attempts", "", resamples)

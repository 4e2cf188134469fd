"""Foreground masks m(.) for the CAI synthesis engine.

Pseudo-anomalies are injected only where ``m(image)`` is True. Three backends
are provided, all mapping an image to an ``(H, W) bool`` mask at the input
size:

``"all"``
    :func:`foreground_all`: every pixel is foreground. Right for textures
    (MVTec AD carpet, grid, leather, tile, wood), where the whole frame is the
    inspected surface.
``"threshold"``
    :func:`foreground_threshold`: a classical, weight-free method for an
    object photographed on a plain background (background colour taken from
    the image border, Otsu threshold on the colour distance, morphology).
    Falls back to all-True when no object can be separated.
``"rembg"``
    :class:`RembgForeground`: a salient-object network run through rembg
    (default ``u2net``). It needs the model file on disk; nothing is ever
    downloaded. A missing file raises :class:`ForegroundUnavailable`.

:func:`make_foreground` picks a backend (``kind="auto"``: ``"all"`` for
texture categories, else ``"rembg"`` when its model file is present, else
``"threshold"``) and returns a callable carrying ``.kind`` and ``.note`` for
run summaries.

Input images are ``(H, W, 3) uint8`` RGB or ``(H, W) uint8`` grayscale.
rembg is imported lazily, so importing this module stays cheap.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import cv2
import numpy as np
from scipy import ndimage

__all__ = [
    "TEXTURE_CATEGORIES",
    "OBJECT_CATEGORIES",
    "FOREGROUND_KINDS",
    "ForegroundUnavailable",
    "Foreground",
    "foreground_all",
    "foreground_threshold",
    "RembgForeground",
    "default_model_dir",
    "default_foreground_kind",
    "make_foreground",
]

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
#: Values accepted by :func:`make_foreground` for ``kind``.
FOREGROUND_KINDS = ("auto", "rembg", "threshold", "all")

# foreground_threshold parameters (fractions are of min(H, W) unless stated).
_BORDER_FRAC = 0.02  # width of the border ring that samples the background
_BLUR_FRAC = 1.0 / 256.0  # Gaussian sigma applied before the colour distance
_MIN_CONTRAST = 10.0  # max colour distance (0-255 units) below which nothing separates
_MAX_BORDER_FG = 0.25  # max fraction of the border ring above half the threshold
_MORPH_FRAC = 0.01  # structuring-element diameter for close/open
_KEEP_FRAC = 0.1  # keep components with area >= this fraction of the largest
_MIN_COVER, _MAX_COVER = 0.01, 0.99  # accepted foreground coverage

# rembg session names that cannot be loaded from one local "<name>.onnx" file.
_REMBG_UNSUPPORTED = frozenset({"sam", "u2net_custom", "dis_custom", "ben_custom"})


class ForegroundUnavailable(RuntimeError):
    """A foreground backend cannot be used here (e.g. its model file is missing).

    The message says what is missing and how to provide it.
    """


# ----------------------------------------------------------------------------
# validation helpers
# ----------------------------------------------------------------------------


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
    m = ndimage.binary_fill_holes(m.astype(bool))

    labels, n = ndimage.label(m)
    if n > 1:
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


# ----------------------------------------------------------------------------
# "rembg"
# ----------------------------------------------------------------------------


def default_model_dir() -> Path:
    """Directory searched for rembg model files when none is given.

    Returns
    -------
    path : pathlib.Path
        ``$U2NET_HOME`` if set and non-empty, else ``~/.u2net`` (expanded).
    """
    env = os.environ.get("U2NET_HOME")
    return Path(os.path.expanduser(env if env else "~/.u2net"))


def _model_path(model: str, model_dir) -> Path:
    base = default_model_dir() if model_dir is None else Path(os.path.expanduser(str(model_dir)))
    return base / f"{model}.onnx"


def _missing_model_message(model: str, path: Path) -> str:
    return (
        f"rembg model file not found: {path}. Nothing is downloaded at run time. "
        f"Copy the '{model}' weights to that path (file name '{model}.onnx'), or "
        f"point model_dir / the U2NET_HOME environment variable at the folder "
        f"holding it, or use '--foreground threshold' (classical, no weights) "
        f"or '--foreground all' instead."
    )


class RembgForeground:
    """Foreground mask from a rembg salient-object model loaded from disk.

    The model file ``<model_dir>/<model>.onnx`` must exist; its presence is
    checked before rembg is touched and :class:`ForegroundUnavailable` is
    raised otherwise. The file is loaded through rembg's session class for
    ``model`` (so rembg's own pre/post-processing is used) with the
    class's model lookup replaced by that exact path: rembg's download
    code (``pooch.retrieve``) is never reached and no checksum is imposed,
    so any compatible ONNX file works offline. One onnxruntime session is
    created in ``__init__`` and reused by every call.

    Parameters
    ----------
    model : str, optional
        rembg session name, e.g. ``"u2net"`` (default), ``"u2netp"``,
        ``"isnet-general-use"``, ``"silueta"``. Remote, credentialed,
        multi-file (``sam``) and ``*_custom`` sessions are not supported.
    model_dir : str or os.PathLike, optional
        Folder holding ``<model>.onnx``. Default: ``$U2NET_HOME``, else
        ``~/.u2net``.

    Attributes
    ----------
    model : str
    model_path : pathlib.Path
        The file that was loaded.
    session : rembg.sessions.base.BaseSession
        The (single) rembg session.

    Raises
    ------
    ValueError
        If ``model`` is not a non-empty string or names an unsupported
        rembg session.
    ForegroundUnavailable
        If the model file is missing, rembg is not importable, or
        onnxruntime cannot load the file.
    """

    def __init__(self, model: str = "u2net", model_dir=None):
        if not isinstance(model, str) or not model or os.sep in model or "/" in model:
            raise ValueError(f"model must be a rembg model name, got {model!r}")
        self.model = model
        self.model_path = _model_path(model, model_dir)
        if not self.model_path.is_file():
            raise ForegroundUnavailable(_missing_model_message(model, self.model_path))

        try:
            import onnxruntime as ort
            from rembg.sessions import sessions as rembg_sessions
        except ImportError as exc:  # pragma: no cover - rembg is a dependency
            raise ForegroundUnavailable(
                f"rembg/onnxruntime cannot be imported ({exc}); install "
                f"rembg[cpu] or use '--foreground threshold' or '--foreground all'."
            ) from exc

        base = rembg_sessions.get(model)
        if (
            base is None
            or model in _REMBG_UNSUPPORTED
            or not base.is_local()
            or base.requires_credentials()
        ):
            supported = sorted(
                n
                for n, c in rembg_sessions.items()
                if n not in _REMBG_UNSUPPORTED and c.is_local() and not c.requires_credentials()
            )
            raise ValueError(
                f"model {model!r} is not a supported rembg model; use one of {supported}"
            )

        path = str(self.model_path.resolve())

        def _local_file(cls, *args, **kwargs):
            # Replaces rembg's lookup/download: always the file checked above.
            return path

        session_cls = type(
            f"_Local{base.__name__}", (base,), {"download_models": classmethod(_local_file)}
        )
        opts = ort.SessionOptions()
        threads = os.environ.get("OMP_NUM_THREADS", "")
        if threads.isdigit():  # as rembg.new_session does
            opts.inter_op_num_threads = int(threads)
            opts.intra_op_num_threads = int(threads)
        try:
            self.session = session_cls(model, opts)
        except Exception as exc:  # onnxruntime raises its own exception types
            raise ForegroundUnavailable(
                f"could not load rembg model {model!r} from {path}: {exc}. Replace the "
                f"file with valid '{model}' weights, or use '--foreground threshold' "
                f"or '--foreground all'."
            ) from exc

    def __call__(self, image) -> np.ndarray:
        """Segment the salient object.

        Parameters
        ----------
        image : (H, W, 3) or (H, W) uint8 ndarray
            RGB or grayscale image (grayscale is replicated to RGB).

        Returns
        -------
        mask : (H, W) bool ndarray
            True where rembg's mask (uint8, 0-255, min-max normalised by
            rembg per image) is >= 128; for models returning several masks,
            their union. No fallback: the mask may be empty.

        Raises
        ------
        ValueError
            If ``image`` is not a uint8 array of shape (H, W, 3) or (H, W).
        """
        from PIL import Image

        image = _check_image(image)
        h, w = image.shape[:2]
        pil = Image.fromarray(_to_rgb(image), mode="RGB")
        masks = self.session.predict(pil)
        out = np.zeros((h, w), dtype=bool)
        for mask in masks:
            a = np.asarray(mask.convert("L"))
            if a.shape != (h, w):
                a = cv2.resize(a, (w, h), interpolation=cv2.INTER_LINEAR)
            out |= a >= 128
        return out

    def __repr__(self) -> str:
        return f"RembgForeground(model={self.model!r}, model_path='{self.model_path}')"


# ----------------------------------------------------------------------------
# selection
# ----------------------------------------------------------------------------


def _norm_category(category) -> str | None:
    if category is None:
        return None
    if not isinstance(category, str):
        raise ValueError(f"category must be a str or None, got {type(category).__name__}")
    return category.strip().lower()


def default_foreground_kind(category: str | None) -> str:
    """Preferred foreground backend for a category.

    Parameters
    ----------
    category : str or None
        Category name (case-insensitive), e.g. ``"grid"``, ``"hazelnut"``.

    Returns
    -------
    kind : {"all", "rembg"}
        ``"all"`` for :data:`TEXTURE_CATEGORIES`; ``"rembg"`` for object,
        unknown and ``None`` categories. Whether the rembg model is
        available is not checked here (see :func:`make_foreground`, which
        falls back to ``"threshold"``).

    Raises
    ------
    ValueError
        If ``category`` is neither a str nor None.
    """
    cat = _norm_category(category)
    return "all" if cat in TEXTURE_CATEGORIES else "rembg"


class Foreground:
    """Callable ``image -> (H, W) bool`` mask returned by :func:`make_foreground`.

    Attributes
    ----------
    kind : {"all", "threshold", "rembg"}
        The backend actually used.
    note : str
        Why this backend was chosen (for run summaries).
    backend : callable
        The underlying function or :class:`RembgForeground`.
    """

    def __init__(self, kind: str, note: str, backend: Callable[[np.ndarray], np.ndarray]):
        self.kind = kind
        self.note = note
        self.backend = backend

    def __call__(self, image) -> np.ndarray:
        """Apply the backend; see the backend for the contract."""
        return self.backend(image)

    def __repr__(self) -> str:
        return f"Foreground(kind={self.kind!r}, note={self.note!r})"


def make_foreground(kind: str = "auto", category: str | None = None,
                    model: str = "u2net", model_dir=None) -> Foreground:
    """Build the foreground function m(.) for a run.

    Parameters
    ----------
    kind : {"auto", "rembg", "threshold", "all"}, optional
        ``"auto"``: ``"all"`` for texture categories; otherwise ``"rembg"`` if
        ``<model_dir>/<model>.onnx`` exists and loads, else ``"threshold"``.
        An explicit ``"rembg"`` raises :class:`ForegroundUnavailable` when the
        model is missing instead of falling back.
    category : str or None, optional
        Category name (case-insensitive), used by ``"auto"``.
    model : str, optional
        rembg model name (default ``"u2net"``).
    model_dir : str or os.PathLike, optional
        Folder holding the model file; default ``$U2NET_HOME`` else
        ``~/.u2net``.

    Returns
    -------
    fg : Foreground
        Callable ``image -> (H, W) bool`` with ``.kind`` (backend used) and
        ``.note`` (why).

    Raises
    ------
    ValueError
        If ``kind`` is not one of :data:`FOREGROUND_KINDS` or ``category`` is
        not a str/None.
    ForegroundUnavailable
        If ``kind="rembg"`` and the model cannot be used.
    """
    if not isinstance(kind, str) or kind not in FOREGROUND_KINDS:
        raise ValueError(f"kind must be one of {FOREGROUND_KINDS}, got {kind!r}")
    cat = _norm_category(category)

    if kind == "all":
        return Foreground("all", "requested: whole image is foreground", foreground_all)
    if kind == "threshold":
        return Foreground("threshold", "requested: classical border-colour threshold",
                          foreground_threshold)
    if kind == "rembg":
        fg = RembgForeground(model=model, model_dir=model_dir)
        return Foreground("rembg", f"requested: rembg '{model}' from {fg.model_path}", fg)

    # auto
    if default_foreground_kind(cat) == "all":
        return Foreground("all", f"auto: '{cat}' is a texture category", foreground_all)
    what = (f"'{cat}' is an object category" if cat in OBJECT_CATEGORIES
            else f"category {cat!r} is not a known texture")
    try:
        fg = RembgForeground(model=model, model_dir=model_dir)
    except ForegroundUnavailable as exc:
        return Foreground(
            "threshold",
            f"auto: {what}; rembg unavailable, using the classical threshold "
            f"backend ({exc})",
            foreground_threshold,
        )
    return Foreground("rembg", f"auto: {what}; rembg '{model}' from {fg.model_path}", fg)

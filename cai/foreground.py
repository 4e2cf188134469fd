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

from .engine.foreground import (OBJECT_CATEGORIES, TEXTURE_CATEGORIES, _check_image, _to_rgb,  # noqa: F401
                                foreground_all, foreground_threshold)

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

#: Values accepted by :func:`make_foreground` for ``kind``.
FOREGROUND_KINDS = ("auto", "rembg", "threshold", "all")

# rembg session names that cannot be loaded from one local "<name>.onnx" file.
_REMBG_UNSUPPORTED = frozenset({"sam", "u2net_custom", "dis_custom", "ben_custom"})


class ForegroundUnavailable(RuntimeError):
    """A foreground backend cannot be used here (e.g. its model file is missing).

    The message says what is missing and how to provide it.
    """


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

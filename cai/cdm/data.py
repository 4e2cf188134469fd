"""The CAI pseudo-anomaly split as CDM training data.

Each row of a CAI split (``cai-hub build-synthetic``) gives the CDM an image, the pseudo mask y_loc
that weights the loss, the placed defect mask (the inpainting region and E_s's input) and the
anomaly class whose token it teaches.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch

from ..imageio import decode_mask as _decode_mask
from ..imageio import load_rgb, open_image
from ..engine.pseudo_mask import dilate

REQUIRED_COLUMNS = ("image", "mask", "placed_mask", "anomaly_class")


class CDMDataError(ValueError):
    """The training split cannot be used (missing columns, no row of the requested classes...)."""


def load_cai_split(spec: str, classes=(), cache_dir: str | None = None):
    """Load a CAI pseudo-anomaly split (local hub-ready folder or hub id) with ``datasets.load_dataset``.

    Returns
    -------
    (datasets.Dataset, list of str)
        The rows of ``classes`` (all rows when empty), images undecoded; and the classes, sorted.
    """
    import datasets

    path = Path(spec)
    if path.exists() and not path.is_dir():
        raise CDMDataError(f"{spec} is a file; give the CAI output folder or a hub id")
    if path.is_dir() and not any(path.glob("data/*.parquet")) and not any(path.glob("*.parquet")):
        raise CDMDataError(f"{spec} holds no parquet shards (expected the output folder of cai-hub build-synthetic)")
    ds = datasets.load_dataset(str(spec), split="train", cache_dir=cache_dir)
    missing = [c for c in REQUIRED_COLUMNS if c not in ds.column_names]
    if missing:
        raise CDMDataError(f"{spec} lacks column(s) {missing}: not a CAI pseudo-anomaly split ({ds.column_names})")
    for column in ("image", "mask", "placed_mask"):
        ds = ds.cast_column(column, datasets.Image(decode=False))
    names = [str(c) for c in ds["anomaly_class"]]
    present = sorted(set(names))
    if classes:
        unknown = sorted(set(classes) - set(present))
        if unknown:
            raise CDMDataError(f"classes {unknown} not in {spec} (it has {present})")
        keep = [i for i, c in enumerate(names) if c in set(classes)]
        ds = ds.select(keep)
        present = sorted(set(classes))
    if len(ds) == 0:
        raise CDMDataError(f"{spec} has no row to train on")
    return ds, present


def decode_mask(value) -> np.ndarray:
    """(H, W) bool from a stored 0/255 mask PNG (pixels > 127); may be empty (no error)."""
    return _decode_mask(value, threshold=127)


class CAITrainingSet(torch.utils.data.Dataset):
    """Torch view of a CAI split at a square training ``resolution``.

    Item: ``pixel_values`` (3, R, R) float32 in [-1, 1]; ``loss_mask`` (1, R, R) float32 in [0, 1]
    (the pseudo mask, area-resized); ``region`` (1, R, R) float32 0/1 (placed mask union pseudo mask,
    dilated by ``dilation`` pixels at the stored size, then nearest-resized: the inpainting region);
    ``placed`` (1, R, R) float32 in [0, 1] (the placed mask, area-resized: E_s's input);
    ``class_index`` int. Grey images are given as three equal channels.
    """

    def __init__(self, ds, classes, resolution: int = 512, dilation: int = 4):
        if resolution < 8:
            raise ValueError(f"resolution must be >= 8, got {resolution}")
        self.ds = ds
        self.classes = list(classes)
        self.class_index = {c: i for i, c in enumerate(self.classes)}
        self.labels = [self.class_index[str(c)] for c in ds["anomaly_class"]]
        self.resolution = int(resolution)
        self.dilation = int(dilation)

    def __len__(self) -> int:
        return len(self.ds)

    def _resize(self, array: np.ndarray, interpolation) -> np.ndarray:
        if array.shape[:2] == (self.resolution, self.resolution):
            return array
        return cv2.resize(array, (self.resolution, self.resolution), interpolation=interpolation)

    def __getitem__(self, index: int) -> dict:
        row = self.ds[int(index)]
        image, _ = load_rgb(row["image"])
        mask = decode_mask(row["mask"])
        placed = decode_mask(row["placed_mask"])
        if mask.shape != image.shape[:2] or placed.shape != image.shape[:2]:
            raise CDMDataError(f"row {index}: mask sizes {mask.shape}/{placed.shape} differ from the image "
                               f"{image.shape[:2]}")
        region = dilate(mask | placed, self.dilation)
        shrink = self.resolution < image.shape[0]
        image = self._resize(image, cv2.INTER_AREA if shrink else cv2.INTER_CUBIC)
        loss_mask = self._resize(mask.astype(np.float32), cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
        placed_f = self._resize(placed.astype(np.float32), cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
        region = self._resize(region.astype(np.uint8), cv2.INTER_NEAREST).astype(np.float32)
        pixels = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float() / 127.5 - 1.0
        return {
            "pixel_values": pixels,
            "loss_mask": torch.from_numpy(np.clip(loss_mask, 0, 1))[None],
            "region": torch.from_numpy(region)[None],
            "placed": torch.from_numpy(np.clip(placed_f, 0, 1))[None],
            "class_index": self.labels[int(index)],
        }


class EpochSampler(torch.utils.data.Sampler):
    """A permutation of the rows drawn from ``(seed, epoch)``: the order of any epoch is known in
    advance, so a resumed run sees the batches an uninterrupted run would."""

    def __init__(self, n: int, seed: int = 0):
        self.n = int(n)
        self.seed = int(seed)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.n

    def __iter__(self):
        return iter(np.random.default_rng([self.seed, self.epoch]).permutation(self.n).tolist())

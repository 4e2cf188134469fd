"""CrackForest (CFD) road cracks with MATLAB ground truth.

Layout::

    ROOT/image/NNN.jpg
    ROOT/groundTruth/NNN.mat    struct ``groundTruth`` with field ``Segmentation`` (uint8 region map:
                                1 background, 2 crack)

``Segmentation`` is a BSDS-style region map: besides 1 and 2, 22 of the 118 files have regions 3
(mostly background enclosed by a crack loop) and 4 (short separate strokes). Only ``crack_values``
(default 2, the documented crack label) become defect; files with other regions get note
``extra_segments:<values>``. Images without a ``.mat`` (201-208, 301-329 in the published set) are
counted in ``stats["skipped_no_mask"]``.
"""
from __future__ import annotations

from typing import Iterator

import numpy as np

from cai.extras import require
from cai.layouts._common import (list_images, new_stats, count, fit_to_image, relative,
                                          require_dirs)
from cai.layouts.record import RawAnomaly

SOURCE = "crackforest"
LICENSE = "LicenseRef-CFD-NonCommercial-Research"  # "non-commercial research purposes only"
SOURCE_DOMAIN = "road"
SOURCE_KIND = "existing_dataset"
LAYOUT = "ROOT/image/NNN.jpg + ROOT/groundTruth/NNN.mat (groundTruth.Segmentation: 1 background, 2 crack)"
LABEL = "crack"


def _segmentations(value, under_key: bool = False) -> list[np.ndarray]:
    """Every numeric 2-D array found under a ``Segmentation`` key of a
    ``loadmat(simplify_cells=True)`` value (structs are dicts, cell/struct arrays object arrays)."""
    if isinstance(value, dict):
        if "Segmentation" in value:
            return _segmentations(value["Segmentation"], True)
        return [s for v in value.values() for s in _segmentations(v, under_key)]
    if isinstance(value, (list, tuple)) or (isinstance(value, np.ndarray) and value.dtype == object):
        elements = value.ravel() if isinstance(value, np.ndarray) else value
        return [s for v in elements for s in _segmentations(v, under_key)]
    if under_key and isinstance(value, np.ndarray) and value.ndim == 2 and np.issubdtype(value.dtype, np.number):
        return [value]
    return []


def read_segmentation(path) -> np.ndarray:
    """The ``groundTruth.Segmentation`` region map of a CFD ``.mat`` (ValueError when absent).

    Several annotators (a 1xN struct array, as in BSDS) must agree in size; their maps are stacked
    as (N, H, W). Needs scipy (``pip install 'cai-hub[mat]'``)."""
    require("mat", "reading CrackForest .mat ground truth")
    import scipy.io

    mat = scipy.io.loadmat(path, simplify_cells=True)
    if "groundTruth" not in mat:
        raise ValueError(f"{path}: no 'groundTruth' variable")
    maps = _segmentations(mat["groundTruth"])
    if not maps or len({m.shape for m in maps}) != 1:
        raise ValueError(f"{path}: no usable groundTruth.Segmentation")
    return maps[0] if len(maps) == 1 else np.stack(maps)


def iter_anomalies(root, *, crack_values=(2,), source: str = SOURCE, license: str = LICENSE,
                   stats: dict | None = None) -> Iterator[RawAnomaly]:
    """Yield one record per image that has a ``groundTruth/<stem>.mat``, sorted by name."""
    root = require_dirs(root, LAYOUT, "image", "groundTruth")
    require("mat", "reading CrackForest .mat ground truth")  # before the loop, which counts read errors
    stats = new_stats(stats)
    mats = {p.stem: p for p in sorted((root / "groundTruth").glob("*.mat"))}
    pairs = []
    for path in list_images(root / "image"):
        if path.stem in mats:
            pairs.append((path, mats[path.stem]))
        else:
            stats["skipped_no_mask"] += 1
    return _records(root, pairs, tuple(crack_values), source, license, stats)


def _records(root, pairs, crack_values, source, license, stats):
    for path, mat in pairs:
        stats["images"] += 1
        notes = []
        try:
            segmentation = read_segmentation(mat)
        except Exception as exc:  # scipy raises many types on a corrupt/truncated/v7.3 file (IndexError, MatReadError, ...)
            mask, notes = None, [f"mask_unreadable:{type(exc).__name__}"]
        else:
            mask = np.isin(segmentation, crack_values)
            if mask.ndim == 3:
                mask, notes = mask.any(axis=0), [f"annotators:{mask.shape[0]}"]
            extra = sorted(int(v) for v in np.unique(segmentation) if v not in crack_values and v != 1)
            if extra:
                notes.append("extra_segments:" + ",".join(map(str, extra)))
            if not mask.any():
                notes.append("mask_empty")
            mask, more = fit_to_image(mask, path)
            notes += more
        yield count(stats, RawAnomaly(
            source=source, original_file=relative(path, root), image_path=path, mask=mask, original_label=LABEL,
            source_kind=SOURCE_KIND, source_domain=SOURCE_DOMAIN, license=license, component=0, notes=notes))

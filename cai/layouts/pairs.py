"""Generic same-stem image/mask folders (e.g. the fabric-stain samples, any hand-made set).

Layout::

    ROOT/<images>/<stem>.<ext>                 anomaly photos
    ROOT/<masks>/<stem><mask_suffix>.<ext>     masks: {0,255}, {0,1} or a class index {0,k};
                                               1- or 3-channel (see ``_common`` for the rules)
    ROOT/labels.csv                            optional: stem,label (per-image original label)

Images without a mask are left out and counted in ``stats["skipped_no_mask"]``.
"""
from __future__ import annotations

import csv
from pathlib import Path
from typing import Iterator

from cai.layouts._common import (Item, list_images, new_stats, records_from_items, relative,
                                          require_dirs)
from cai.layouts.record import RawAnomaly

SOURCE = "folder_pairs"
LICENSE = "unknown"
SOURCE_DOMAIN = ""
SOURCE_KIND = "existing_dataset"
LAYOUT = "ROOT/<images>/<stem>.<ext> + ROOT/<masks>/<stem><mask_suffix>.<ext> [+ ROOT/labels.csv: stem,label]"


def read_labels_csv(path: Path) -> dict[str, str]:
    """``{stem: label}`` from a ``stem,label`` CSV (empty when the file is absent)."""
    if not path.is_file():
        return {}
    with open(path, newline="", encoding="utf-8") as f:
        return {row["stem"]: row["label"] for row in csv.DictReader(f) if row.get("stem") and row.get("label")}


def iter_anomalies(root, *, images: str = "images", masks: str = "masks", mask_suffix: str = "",
                   source: str = SOURCE, license: str = LICENSE, label: str = "anomaly",
                   domain: str = SOURCE_DOMAIN, source_kind: str = SOURCE_KIND,
                   mask_orientation: str = "stored", stats: dict | None = None) -> Iterator[RawAnomaly]:
    """Yield one record per image that has a same-stem mask, sorted by image path.

    ``label`` is the original label of every pair unless ``labels.csv`` names one for the stem;
    ``mask_orientation`` says how masks relate to an EXIF-rotated image (see ``_common``).
    Raises :class:`~cai.layouts.LayoutError` when ``images``/``masks`` are missing.
    """
    root = require_dirs(root, LAYOUT, images, masks)
    stats = new_stats(stats)
    labels = read_labels_csv(root / "labels.csv")
    mask_by_stem = {}
    for path in list_images(root / masks):
        if path.stem.endswith(mask_suffix):
            mask_by_stem.setdefault(path.stem[: len(path.stem) - len(mask_suffix)] if mask_suffix else path.stem, path)
    items = []
    for path in list_images(root / images):
        if path.stem not in mask_by_stem:
            stats["skipped_no_mask"] += 1
            continue
        items.append(Item(relative(path, root), path, mask_by_stem[path.stem],
                          labels.get(path.stem, label), domain))
    return records_from_items(items, source=source, license=license, source_kind=source_kind,
                              mask_orientation=mask_orientation, stats=stats)

"""NEU-Seg (hot-rolled steel strip), VOC-style class-index masks.

Layout::

    ROOT/JPEGImages/<stem>.jpg
    ROOT/SegmentationClass/<stem>.png    class index: 0 background, 1 Inclusions, 2 Patches, 3 Scratches
    ROOT/labels.txt or ROOT/../labels.txt  labelme-style class list (``__ignore__``, ``_background_``, ...)

One record per class present in an image: ``component`` = class index, ``original_label`` = class
name. Images without a mask, or whose mask has no class, are counted (``skipped_no_mask``,
``skipped_empty``), not yielded.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

from cai.layouts._common import (Item, list_images, new_stats, records_per_class, relative,
                                          require_dirs)
from cai.layouts.record import RawAnomaly

SOURCE = "neu_seg"
LICENSE = "unknown"  # none stated by the publisher
SOURCE_DOMAIN = "steel"
SOURCE_KIND = "existing_dataset"
LAYOUT = "ROOT/JPEGImages/<stem>.jpg + ROOT/SegmentationClass/<stem>.png (class index) [+ labels.txt]"
CLASS_NAMES = {1: "Inclusions", 2: "Patches", 3: "Scratches"}


def read_class_names(root: Path) -> dict[int, str]:
    """``{index: name}`` from ``labels.txt`` in ``root`` or its parent (labelme order: ``__ignore__``
    is -1, the next line index 0); :data:`CLASS_NAMES` when neither has one."""
    for path in (root / "labels.txt", root.parent / "labels.txt"):
        if path.is_file():
            names = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
            names = [n for n in names if n != "__ignore__"]
            return {k: n for k, n in enumerate(names) if k > 0}
    return dict(CLASS_NAMES)


def iter_anomalies(root, *, class_names: dict | None = None, source: str = SOURCE, license: str = LICENSE,
                   stats: dict | None = None) -> Iterator[RawAnomaly]:
    """Yield one record per (image, class present), sorted by image then class index."""
    root = require_dirs(root, LAYOUT, "JPEGImages", "SegmentationClass")
    names = read_class_names(root) if class_names is None else dict(class_names)
    stats = new_stats(stats)
    masks = {p.stem: p for p in list_images(root / "SegmentationClass")}
    items = []
    for path in list_images(root / "JPEGImages"):
        if path.stem not in masks:
            stats["skipped_no_mask"] += 1
            continue
        items.append(Item(relative(path, root), path, masks[path.stem], "", SOURCE_DOMAIN))
    return records_per_class(items, names, source=source, license=license, source_kind=SOURCE_KIND,
                             stats=stats, yield_empty=False)
